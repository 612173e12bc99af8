/** What the benches share. */
import { spawn } from "node:child_process";

/** A command with its stderr passed through; resolves to stdout, rejects with the tail of its output on failure. */
export function run(argv: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const p = spawn(argv[0], argv.slice(1), { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    p.stdout.on("data", (d) => (out += d));
    p.stderr.on("data", (d) => {
      err += d;
      process.stderr.write(d);
    });
    p.on("error", reject);
    p.on("close", (code) => (code === 0 ? resolve(out) : reject(new Error(`${argv.join(" ")} exited ${code}:\n${err.slice(-2000)}\n${out.slice(-1000)}`))));
  });
}
