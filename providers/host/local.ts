import { spawn } from "node:child_process";
import * as os from "node:os";
import { recordCommand } from "./record";
import {
  checkEnvNames,
  DEFAULT_TIMEOUT_MS,
  Host,
  HostCommandError,
  RunOptions,
  RunResult,
  asUser,
} from "./types";

/** Runs commands on this machine with `spawn` (no shell). */
export class LocalHost implements Host {
  readonly description = "local";

  async run(argv: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
    if (argv.length === 0) throw new Error("empty command");
    checkEnvNames(opts.env);
    recordCommand(this.description, argv, opts.redact);
    const started = Date.now();
    const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    const ok = opts.okExitCodes ?? [0];
    return await new Promise<RunResult>((resolve, reject) => {
      const child = spawn(argv[0], argv.slice(1), {
        cwd: opts.cwd,
        env: { ...process.env, ...(opts.env ?? {}) },
        stdio: ["pipe", "pipe", "pipe"],
        // Its own process group, so that a timeout ends everything it started (runuser and
        // the command under it, pg_upgrade's servers...), not just the first process.
        detached: true,
      });
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      let timedOut = false;
      const timer = setTimeout(() => {
        timedOut = true;
        try {
          if (child.pid) process.kill(-child.pid, "SIGKILL");
        } catch {
          child.kill("SIGKILL");
        }
      }, timeoutMs);
      child.stdout.on("data", (d: Buffer) => out.push(d));
      child.stderr.on("data", (d: Buffer) => err.push(d));
      child.stdin.on("error", () => undefined);
      child.on("error", (e: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        reject(
          new HostCommandError({
            host: this.description,
            argv,
            exitCode: null,
            stdout: "",
            stderr: "",
            reason: e.code === "ENOENT" ? `could not start: ${argv[0]} not found` : `could not start: ${e.message}`,
            redact: opts.redact,
          }),
        );
      });
      child.on("close", (code, signal) => {
        clearTimeout(timer);
        const result: RunResult = {
          stdout: Buffer.concat(out).toString("utf8"),
          stderr: Buffer.concat(err).toString("utf8"),
          exitCode: code ?? (signal ? 128 : -1),
          durationMs: Date.now() - started,
        };
        if (!timedOut && ok.includes(result.exitCode)) resolve(result);
        else
          reject(
            new HostCommandError({
              host: this.description,
              argv,
              exitCode: code,
              stdout: result.stdout,
              stderr: result.stderr,
              timedOut,
              reason: signal && !timedOut ? `was killed by ${signal}` : undefined,
              redact: opts.redact,
            }),
          );
      });
      if (opts.input !== undefined) child.stdin.end(opts.input);
      else child.stdin.end();
    });
  }

  async runAs(user: string, argv: readonly string[], opts?: RunOptions): Promise<RunResult> {
    const r = asUser(os.userInfo().username, user, argv, opts);
    return await this.run(r.argv, r.opts);
  }

  async writeFile(path: string, content: string, mode = "0644"): Promise<void> {
    await writeFileVia(this, path, content, mode);
  }

  async close(): Promise<void> {
    /* nothing to release */
  }
}

/** Atomic file write through argv-only commands (works the same locally and over SSH). */
export async function writeFileVia(host: Host, path: string, content: string, mode: string): Promise<void> {
  if (!path.startsWith("/") || path.includes("\0") || path.includes("\n")) {
    throw new Error(`file path must be absolute and printable: ${JSON.stringify(path)}`);
  }
  if (!/^0?[0-7]{3,4}$/.test(mode)) throw new Error(`invalid file mode ${JSON.stringify(mode)}`);
  // A unique temporary name beside the target, created private (umask 077), then given its
  // mode and renamed over the target: readers see the old or the new file, never a part.
  const tmp = `${path}.understudy-${process.pid}-${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}`;
  try {
    await host.run(["sh", "-c", 'umask 077 && cat > "$1"', "sh", tmp], { input: content });
    await host.run(["chmod", mode, tmp]);
    await host.run(["mv", "-f", tmp, path]);
  } catch (e) {
    await host.run(["rm", "-f", tmp]).catch(() => undefined);
    throw e;
  }
}
