/**
 * A pgbench run in the background for the integration tests (a writer through PgBouncer
 * while `pulumi up` promotes or rolls back): its output kept, its counts parsed when it ends.
 */
import { spawn, type ChildProcess } from "node:child_process";

export interface PgbenchResult {
  code: number | null;
  output: string;
  /** "number of transactions actually processed" (NaN when pgbench printed none). */
  processed: number;
  /** "number of failed transactions" (NaN when pgbench printed none). */
  failed: number;
}

export interface PgbenchRun {
  done: Promise<PgbenchResult>;
  running: () => boolean;
}

/**
 * Start `argv` (the pgbench binary, then its arguments), as `opts.asUser` through runuser when
 * given, with `opts.env` added to this process's environment. The child is pushed onto
 * `opts.children` so that the test's cleanup can kill it.
 */
export function startPgbench(argv: string[], opts: { asUser?: string; env?: Record<string, string>; children?: ChildProcess[] } = {}): PgbenchRun {
  const [cmd, ...args] = opts.asUser ? ["runuser", "-u", opts.asUser, "--", ...argv] : argv;
  const p = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"], ...(opts.env ? { env: { ...process.env, ...opts.env } } : {}) });
  opts.children?.push(p);
  let output = "";
  let exited = false;
  p.stdout.on("data", (d) => (output += d));
  p.stderr.on("data", (d) => (output += d));
  const done = new Promise<PgbenchResult>((resolve) =>
    p.on("close", (code) => {
      exited = true;
      resolve({
        code,
        output,
        processed: Number(/number of transactions actually processed: (\d+)/.exec(output)?.[1] ?? NaN),
        failed: Number(/number of failed transactions: (\d+)/.exec(output)?.[1] ?? NaN),
      });
    }),
  );
  return { done, running: () => !exited };
}
