import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { sh } from "./zfs";

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * Stop every PostgreSQL server whose data directory is under `root` (servers tests started
 * on clones, also ones a killed pg_upgrade left behind). Only a PID whose working directory
 * IS that data directory is signalled: a clone's postmaster.pid copied from the source names
 * the live server, which must never be touched.
 */
export async function stopServersUnder(root: string, opts: { maxDepth?: number; mode?: "fast" | "immediate" } = {}): Promise<void> {
  const files = sh(["find", root, "-maxdepth", String(opts.maxDepth ?? 5), "-name", "postmaster.pid", "-type", "f"], { allowFail: true })
    .split("\n")
    .filter(Boolean);
  for (const f of files) {
    const dir = path.dirname(f);
    const pid = Number(fs.readFileSync(f, "utf8").split("\n")[0]);
    let cwd: string;
    try {
      cwd = fs.readlinkSync(`/proc/${pid}/cwd`);
    } catch {
      continue;
    }
    const real = fs.realpathSync(dir);
    if (!pid || cwd !== real) continue;
    // Looked at again before each signal: an ended server's pid is soon reused (pid_max 32768
    // here), and a SIGQUIT to another server's backend restarts that server as after a crash.
    const stillThat = () => {
      try {
        return fs.readlinkSync(`/proc/${pid}/cwd`) === real;
      } catch {
        return false;
      }
    };
    process.kill(pid, opts.mode === "immediate" ? "SIGQUIT" : "SIGINT");
    for (let i = 0; i < 100 && stillThat(); i++) await sleep(100);
    if (stillThat()) process.kill(pid, "SIGQUIT");
  }
}

/**
 * Stop the PgBouncer a test started from `dir` (its pid file there; only if that process
 * really runs from `dir`), then remove `dir`. SIGTERM, then SIGKILL after 5 s.
 */
export async function stopBouncerIn(dir: string): Promise<void> {
  const pidFile = `${dir}/pgbouncer.pid`;
  if (fs.existsSync(pidFile)) {
    const pid = Number(fs.readFileSync(pidFile, "utf8").trim());
    // That PgBouncer, looked at again before each signal (its pid may be reused once it ends).
    const stillThat = () => {
      try {
        return fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").includes(dir);
      } catch {
        return false;
      }
    };
    if (pid && stillThat()) {
      process.kill(pid, "SIGTERM");
      for (let i = 0; i < 50 && stillThat(); i++) await sleep(100);
      if (stillThat()) process.kill(pid, "SIGKILL");
    }
  }
  fs.rmSync(dir, { recursive: true, force: true });
}

/**
 * The lines of a server log that say a PostgreSQL process died (a crash, a PANIC, a signal,
 * an out-of-memory kill), with the two lines before each: printed by a test whose clients saw
 * "terminating connection because of crash of another server process", so a failure in CI
 * says which process died and why instead of only that one did.
 */
export function crashLinesOf(logFile: string): string[] {
  let text: string;
  try {
    text = fs.readFileSync(logFile, "utf8");
  } catch {
    return [];
  }
  const lines = text.split("\n");
  const out: string[] = [];
  lines.forEach((l, i) => {
    // "exited with exit code 1" is a worker's normal end (a fast shutdown, a dropped subscription).
    if (/PANIC|terminated by signal|was terminated|exited with exit code (?!1\b)|out of memory|terminating any other active server processes/.test(l)) {
      out.push(...lines.slice(Math.max(0, i - 2), i + 1).filter((x) => !out.includes(x)));
    }
  });
  return out;
}

/**
 * After a run: when `logFile` says a server process died, print those lines and keep a copy
 * of the whole log in the temp directory (the run's datasets, and the log with them, are
 * destroyed next). Returns the copy's path, or undefined when nothing died.
 */
export function keepCrashLog(logFile: string, label: string): string | undefined {
  const lines = crashLinesOf(logFile);
  if (!lines.length) return undefined;
  const copy = path.join(os.tmpdir(), `understudy-crash-${label}-${Date.now()}.log`);
  fs.copyFileSync(logFile, copy);
  console.error(`[${label}] ${logFile} says a server process died (whole log kept in ${copy}):\n${lines.join("\n")}`);
  return copy;
}

function logsUnder(root: string): string[] {
  return sh(["find", root, "-maxdepth", "5", "-name", "*.log", "-type", "f"], { allowFail: true }).split("\n").filter(Boolean);
}

/** {@link crashLinesOf} for every `*.log` under `root` (live's, the clones', the new live's), each file named. */
export function crashLinesUnder(root: string): string[] {
  return logsUnder(root).flatMap((l) => {
    const lines = crashLinesOf(l);
    return lines.length ? [`${l}:`, ...lines] : [];
  });
}

/**
 * The message for a pgbench run's assertion: when its output says a server crashed under it,
 * the lines of every log under `root` that say which process died and why (CI prints a
 * failure's message at the end; a test's afterAll output is pages above). Else undefined.
 */
export function crashMessage(pgbenchOutput: string, root: string): string | undefined {
  if (!/crash of another server process|server conn crashed/.test(pgbenchOutput)) return undefined;
  const died = crashLinesUnder(root);
  return died.length ? `a server log says:\n${died.join("\n")}` : undefined;
}

/** {@link keepCrashLog} for every `*.log` under `root`. */
export function keepCrashLogsUnder(root: string, label: string): string[] {
  return logsUnder(root)
    .map((l) => keepCrashLog(l, label))
    .filter((c): c is string => c !== undefined);
}
