/**
 * A real moto server (an AWS API server) on 127.0.0.1 for the EBS tests. The binary is
 * `$UNDERSTUDY_MOTO_SERVER` (setup exports the one it installs) or `moto_server` on PATH.
 *
 * What moto does NOT do, and the tests say so where it matters: snapshots are `completed` at
 * once (waiters never wait), `ExcludeDataVolumeIds` and `CopyTagsFromSource` are ignored,
 * AttachVolume accepts a volume from another zone, fast snapshot restore and DLM do not exist.
 */
import { ChildProcess, spawn } from "node:child_process";
import * as net from "node:net";

export interface Moto {
  endpoint: string;
  port: number;
  stop(): Promise<void>;
}

/** Ports this project's tests may use for moto (see the task's allocation). */
const PORT_RANGE = (process.env.UNDERSTUDY_MOTO_PORTS ?? "29100-29149").split("-").map(Number);

async function portFree(port: number): Promise<boolean> {
  return await new Promise((resolve) => {
    const srv = net.createServer();
    srv.once("error", () => resolve(false));
    srv.listen(port, "127.0.0.1", () => srv.close(() => resolve(true)));
  });
}

async function ready(endpoint: string, timeoutMs: number, proc: ChildProcess, log: () => string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (proc.exitCode !== null) throw new Error(`moto_server exited with code ${proc.exitCode}:\n${log()}`);
    try {
      const r = await fetch(`${endpoint}/moto-api/reset`, { method: "POST" });
      if (r.ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`moto_server did not answer on ${endpoint} within ${timeoutMs} ms:\n${log()}`);
}

/** Start moto on the first free port of the range; resolves once it answers. */
export async function startMoto(): Promise<Moto> {
  const bin = process.env.UNDERSTUDY_MOTO_SERVER || "moto_server";
  let port = 0;
  for (let p = PORT_RANGE[0]; p <= PORT_RANGE[1]; p++) {
    if (await portFree(p)) {
      port = p;
      break;
    }
  }
  if (!port) throw new Error(`no free port for moto in ${PORT_RANGE.join("-")}`);
  let out = "";
  const proc = spawn(bin, ["-H", "127.0.0.1", "-p", String(port)], { stdio: ["ignore", "pipe", "pipe"] });
  proc.stdout!.on("data", (d) => (out = (out + d).slice(-4000)));
  proc.stderr!.on("data", (d) => (out = (out + d).slice(-4000)));
  const spawnError = new Promise<never>((_, reject) =>
    proc.once("error", (e) => reject(new Error(`cannot start ${bin} (${e.message}): install moto[server] (scripts/setup.sh does) or set UNDERSTUDY_MOTO_SERVER`))),
  );
  const endpoint = `http://127.0.0.1:${port}`;
  await Promise.race([ready(endpoint, 30_000, proc, () => out), spawnError]);
  return {
    endpoint,
    port,
    async stop() {
      if (proc.exitCode !== null) return;
      const exited = new Promise((r) => proc.once("exit", r));
      proc.kill("SIGTERM");
      await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
      if (proc.exitCode === null) proc.kill("SIGKILL");
    },
  };
}

/** Credentials moto accepts; set for the SDK's default chain (nothing real is ever used here). */
export function motoCredentials(): void {
  process.env.AWS_ACCESS_KEY_ID = "testing";
  process.env.AWS_SECRET_ACCESS_KEY = "testing";
  delete process.env.AWS_SESSION_TOKEN;
  delete process.env.AWS_PROFILE;
  process.env.AWS_EC2_METADATA_DISABLED = "true";
}
