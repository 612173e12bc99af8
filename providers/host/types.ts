import type { Duplex } from "node:stream";

/**
 * Where commands run. A host runs argv arrays only: no shell string is ever built from
 * input. Over SSH each argument is quoted by {@link quoteArg} before it crosses the wire.
 */
export interface RunOptions {
  /** Kill the command after this many milliseconds (default 10 minutes). */
  timeoutMs?: number;
  /** Bytes written to the command's stdin, then stdin is closed. */
  input?: string | Buffer;
  /** Extra environment variables (names must match `[A-Za-z_][A-Za-z0-9_]*`). */
  env?: Record<string, string>;
  /** Working directory on the host. */
  cwd?: string;
  /** Exit codes that count as success (default `[0]`). */
  okExitCodes?: number[];
  /** Words in output that must never be printed in an error (passwords, keys). */
  redact?: string[];
}

export interface RunResult {
  stdout: string;
  stderr: string;
  exitCode: number;
  durationMs: number;
}

export interface Host {
  /** Human-readable identity, e.g. `local` or `postgres@db1:22`. Never contains a secret. */
  readonly description: string;
  /** Run one command, argv only. Rejects with {@link HostCommandError} on a bad exit code. */
  run(argv: readonly string[], opts?: RunOptions): Promise<RunResult>;
  /**
   * Run a command as another OS user: directly when it is the login user, `runuser` when we
   * are root, `sudo -n` otherwise (`runAs("root", ...)` is how privileged commands run for a
   * non-root login). `opts.env` is applied AFTER the switch (`... -- env K=V cmd`): sudo
   * resets the environment, and a PGHOST dropped on the way would send a command to live.
   */
  runAs(user: string, argv: readonly string[], opts?: RunOptions): Promise<RunResult>;
  /** Write a file on the host (atomically: temp file + rename) with the given octal mode. */
  writeFile(path: string, content: string, mode?: string): Promise<void>;
  /** Release connections. Safe to call twice. */
  close(): Promise<void>;
}

const TAIL = 2000;

/** Keep the end of a long output: errors are usually at the end. */
/** A command given as argv (run without a shell): a non-empty array of single-line strings. */
export function isArgv(v: unknown): v is string[] {
  return Array.isArray(v) && v.length > 0 && v.every((a) => typeof a === "string" && !/[\0\n]/.test(a));
}

/** A host that can open a TCP stream to an address as seen from itself (SshHost does). */
export interface ForwardingHost extends Host {
  forward(host: string, port: number): Promise<Duplex>;
}

export function canForward(host: Host): host is ForwardingHost {
  return typeof (host as Partial<ForwardingHost>).forward === "function";
}

export function tail(text: string, max = TAIL): string {
  const t = text.trimEnd();
  return t.length <= max ? t : "…" + t.slice(t.length - max);
}

export function redactText(text: string, secrets: readonly string[] | undefined): string {
  let out = text;
  for (const s of secrets ?? []) {
    if (s && s.length >= 3) out = out.split(s).join("[secret]");
  }
  return out;
}

/** A command ran and failed (or could not start, or timed out). */
export class HostCommandError extends Error {
  readonly host: string;
  readonly argv: readonly string[];
  readonly exitCode: number | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly timedOut: boolean;

  constructor(args: {
    host: string;
    argv: readonly string[];
    exitCode: number | null;
    stdout: string;
    stderr: string;
    timedOut?: boolean;
    reason?: string;
    redact?: readonly string[];
  }) {
    const shown = redactText(args.argv.join(" "), args.redact);
    const stderr = redactText(args.stderr, args.redact);
    const stdout = redactText(args.stdout, args.redact);
    const why = args.reason
      ? args.reason
      : args.timedOut
        ? "timed out"
        : `exited with code ${args.exitCode}`;
    const detail = tail(stderr) || tail(stdout);
    super(`on ${args.host}: \`${shown}\` ${why}${detail ? `:\n${detail}` : ""}`);
    this.name = "HostCommandError";
    this.host = args.host;
    this.argv = args.argv;
    this.exitCode = args.exitCode;
    this.stdout = stdout;
    this.stderr = stderr;
    this.timedOut = !!args.timedOut;
  }
}

export const DEFAULT_TIMEOUT_MS = 10 * 60 * 1000;

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

export function checkEnvNames(env: Record<string, string> | undefined): void {
  for (const k of Object.keys(env ?? {})) {
    if (!ENV_NAME.test(k)) throw new Error(`invalid environment variable name ${JSON.stringify(k)}`);
  }
}

/**
 * The argv and options that run `argv` as `user` with `opts.env` set for that user: the
 * switch (runuser / sudo) first, then `env K=V ...`, then the command. Used by every host's
 * `runAs`, so that the environment survives `sudo -n` (which resets it).
 */
export function asUser(loginUser: string, user: string, argv: readonly string[], opts: RunOptions = {}): { argv: string[]; opts: RunOptions } {
  checkEnvNames(opts.env);
  const entries = Object.entries(opts.env ?? {});
  let inner = entries.length ? ["env", ...entries.map(([k, v]) => `${k}=${v}`), ...argv] : [...argv];
  const { env: _env, ...rest } = opts;
  // Through sudo the working directory is entered AFTER the switch: it is often the target
  // user's own 0700 directory (a data directory), which the login user cannot enter.
  if (opts.cwd && user !== loginUser && loginUser !== "root") {
    inner = ["sh", "-c", 'unset CDPATH; cd -- "$1" && shift && exec "$@"', "sh", opts.cwd, ...inner];
    delete rest.cwd;
  }
  return { argv: switchUserArgv(loginUser, user, inner), opts: rest };
}

/** argv prefix that switches to `user`, given who we are logged in as. */
export function switchUserArgv(loginUser: string, user: string, argv: readonly string[]): string[] {
  if (!/^[a-z_][a-z0-9_-]*\$?$/i.test(user) || user.length > 32) {
    throw new Error(`invalid OS user name ${JSON.stringify(user)}`);
  }
  if (user === loginUser) return [...argv];
  if (loginUser === "root") return ["runuser", "-u", user, "--", ...argv];
  return ["sudo", "-n", "-u", user, "--", ...argv];
}
