/**
 * The PgBouncer endpoint driver: what clients connect to on bare metal. One instance is a
 * config directory on a host (`pgbouncer.ini`, an `%include`d `databases.ini`, a userlist,
 * log and pid file), a PgBouncer process started from it, and its admin console.
 *
 * The driver knows nothing about Pulumi; it runs over any {@link Host} (local or SSH). The
 * admin console is reached with `pg` over TCP: directly for a local host, through
 * `SshHost.forward` (an SSH `direct-tcpip` channel) for a remote one.
 *
 * Cut-over without lost writes: {@link PgBouncerEndpoint.switchTarget} does `PAUSE db`
 * (bounded by a client-side timeout) -> atomic rename of the databases file -> `RELOAD` ->
 * verify with `SHOW DATABASES` -> `RESUME db`. Clients keep their connections to PgBouncer;
 * queries sent while paused wait and then run on the new server. Any failure after `PAUSE`
 * restores the old file and resumes clients on the old target.
 */
import { performance } from "node:perf_hooks";
import type { Client, ClientConfig } from "pg";
import type { Host, RunOptions } from "../host/types";
import { HostCommandError } from "../host/types";
import {
  adminIdent,
  DatabaseStatus,
  DatabaseTarget,
  describeTarget,
  listenersOnPort,
  listenSignature,
  parseDatabases,
  parseShowDatabases,
  PgBouncerConfigError,
  PgBouncerEndpointConfig,
  PgBouncerPaths,
  checkConfig,
  parseUserlist,
  pathsFor,
  renderDatabases,
  renderIni,
  renderUserlist,
  ResolvedPgBouncerConfig,
  resolveConfig,
  secretsOf,
  statusMatches,
  validateEntryName,
  validateTarget,
} from "./pgbouncer-config";
import { LazyStream } from "./tunnel";
import { canForward } from "../host/types";
import { setTimeout as sleep } from "node:timers/promises";
import { InputError } from "../errors";
import { validateTimeoutMs } from "../validate";

export * from "./pgbouncer-config";

/** Where clients are after a failed operation. */
export type ClientState =
  /** Nothing was paused or changed. */
  | "unaffected"
  /** Clients were resumed and use the target they used before. */
  | "old-target"
  /** Clients were resumed and use the new target. */
  | "new-target"
  /** RESUME could not be confirmed: clients may still be held. Run `RESUME <db>` on the admin console. */
  | "maybe-paused"
  | "unknown";

/** An operation on a running PgBouncer failed. The message says what happened and where clients are. */
export class PgBouncerError extends Error {
  readonly host: string;
  readonly database?: string;
  readonly clients: ClientState;
  constructor(message: string, args: { host: string; database?: string; clients: ClientState; cause?: unknown }) {
    super(message);
    this.name = "PgBouncerError";
    this.host = args.host;
    this.database = args.database;
    this.clients = args.clients;
    if (args.cause !== undefined) (this as { cause?: unknown }).cause = args.cause;
  }
}

/** `PAUSE` did not complete in time; RESUME was sent and nothing was changed. */
export class PauseTimeoutError extends PgBouncerError {
  readonly timeoutMs: number;
  constructor(message: string, args: { host: string; database: string; clients: ClientState; timeoutMs: number }) {
    super(message, args);
    this.name = "PauseTimeoutError";
    this.timeoutMs = args.timeoutMs;
  }
}

export interface EnsureResult {
  /** The config directory was created by this call. */
  created: boolean;
  /** PgBouncer was started by this call. */
  started: boolean;
  /** PgBouncer was restarted because a listen setting changed (clients were disconnected). */
  restarted: boolean;
  /** A running PgBouncer was told to RELOAD because a file changed. */
  reloaded: boolean;
  pid: number;
}

export interface EndpointStatus {
  /** The config directory exists and carries our marker. */
  exists: boolean;
  running: boolean;
  pid?: number;
}

export interface HoldOptions {
  /** Give up on `PAUSE` after this long (then RESUME, nothing changed). Default 10000. */
  pauseTimeoutMs?: number;
}

/** Milliseconds, measured on the driver's side with `performance.now()`. */
export interface RetargetTimings {
  /** Rename of the staged databases file (or write, when nothing was staged). */
  writeMs: number;
  reloadMs: number;
  verifyMs: number;
}

/** What `fn` may do while {@link PgBouncerEndpoint.hold} keeps clients waiting. */
export interface HoldContext {
  readonly database: string;
  /** Milliseconds since `PAUSE` was sent. */
  elapsedMs(): number;
  /**
   * Point the held database at `target`: atomic rewrite of the databases file, RELOAD,
   * check with SHOW DATABASES. If `fn` later throws, the old file is restored.
   */
  retarget(target: DatabaseTarget): Promise<RetargetTimings>;
  /** RELOAD the configuration. */
  reload(): Promise<void>;
  /** SHOW DATABASES through the held admin connection. */
  databases(): Promise<DatabaseStatus[]>;
}

export interface HoldResult<T> {
  value: T;
  /** From `PAUSE` sent to `RESUME` acknowledged: how long new queries could wait. */
  pauseWindowMs: number;
  phases: {
    /** `PAUSE` sent -> acknowledged (in-flight transactions finishing). */
    pauseMs: number;
    /** Time spent in `fn`. */
    workMs: number;
    /** `RESUME` sent -> acknowledged. */
    resumeMs: number;
  };
}

export interface SwitchResult {
  database: string;
  from: DatabaseTarget;
  to: DatabaseTarget;
  /** False when the entry already pointed at `to` (nothing was paused). */
  changed: boolean;
  /** From `PAUSE` sent to `RESUME` acknowledged. */
  pauseWindowMs: number;
  phases: { pauseMs: number; writeMs: number; reloadMs: number; verifyMs: number; resumeMs: number };
}

export interface StopOptions {
  /** `safe` (default): SIGINT, PgBouncer waits for queries in flight; `immediate`: SIGTERM. */
  mode?: "safe" | "immediate";
  /** How long to wait for a safe shutdown before SIGTERM (then SIGKILL). Default 10000. */
  timeoutMs?: number;
}

interface AdminConn {
  query(sql: string): Promise<Record<string, unknown>[]>;
  /** Close politely; never throws. */
  end(): Promise<void>;
  /** Drop the connection at once (a query may be pending on it). */
  destroy(): void;
}

function now(): number {
  return performance.now();
}

function round(ms: number): number {
  return Math.round(ms * 10) / 10;
}

function msg(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

function validateTimeout(v: unknown, field: string): number {
  try {
    return validateTimeoutMs(v, field, { min: 1, max: 3_600_000 });
  } catch (e) {
    if (e instanceof InputError) throw new PgBouncerConfigError(e.field, e.reason);
    throw e;
  }
}

const NOT_PAUSED = /is not paused|not paused/i;
const MARKER_HEAD = "understudy-pgbouncer";

/** Write stdin to a temp file with umask 077, chmod, rename over the target. Constant script, paths as arguments. */
const WRITE_SCRIPT = 'umask 077 && cat > "$1" && chmod "$2" "$1" && mv -f "$1" "$3"';
/** Print pid and command line of the process in a pidfile; nothing when absent or dead. */
const STATUS_SCRIPT =
  'pid=$(cat "$1" 2>/dev/null) || exit 0; case "$pid" in ""|*[!0-9]*) exit 0;; esac; ' +
  'args=$(ps -o args= -p "$pid" 2>/dev/null) || exit 0; printf "%s\\n%s\\n" "$pid" "$args"';
/**
 * Send signal `$3` (`0`: only look) to pid `$1` if, and only if, it is still a pgbouncer
 * started from ini `$2`; exit 3 when it is not (gone, or its pid now names another process).
 * Checked right before each signal: a stopped PgBouncer's pid is soon reused (pid_max is
 * often 32768), e.g. by a PostgreSQL backend, and a SIGKILL to a backend restarts its whole
 * server as after a crash.
 */
export const SIGNAL_IF_OURS_SCRIPT =
  'args=$(ps -o args= -p "$1" 2>/dev/null) || exit 3; ' +
  'case "$args" in *pgbouncer*) ;; *) exit 3;; esac; case "$args" in *"$2"*) ;; *) exit 3;; esac; ' +
  '[ "$3" = 0 ] && exit 0; kill -"$3" "$1" 2>/dev/null || exit 3';
/** Print a file if it exists; exit 3 when it does not. */
const READ_SCRIPT = 'if [ -e "$1" ]; then cat -- "$1"; else exit 3; fi';

/**
 * A PgBouncer instance on a host. Construct it with a validated config (the constructor
 * throws {@link PgBouncerConfigError} on any bad input and runs nothing), then
 * {@link ensure} it.
 *
 * @example
 * ```ts
 * const ep = new PgBouncerEndpoint(new LocalHost(), {
 *   name: "app", listenPort: 6432, authType: "scram-sha-256", adminPassword: secret,
 *   users: [{ name: "app", password: appSecret }],
 *   databases: { app: { host: "127.0.0.1", port: 5432, dbname: "app" } },
 * });
 * await ep.ensure();
 * const r = await ep.switchTarget("app", { host: "127.0.0.1", port: 5433, dbname: "app" }, { pauseTimeoutMs: 5000 });
 * console.log(`clients held for ${r.pauseWindowMs} ms`);
 * ```
 */
export class PgBouncerEndpoint {
  readonly config: ResolvedPgBouncerConfig;

  constructor(
    readonly host: Host,
    config: PgBouncerEndpointConfig,
  ) {
    this.config = resolveConfig(config);
  }

  /**
   * The instance as it runs on the host, for a caller that does not hold the admin
   * password (the cut-over): when `config` has none, it is read from the instance's userlist
   * (mode 0600, owned by the PgBouncer OS user), so the secret has one copy in Pulumi state,
   * the endpoint's. Throws when the userlist has no line for the admin user and the
   * instance needs a password.
   */
  static async open(host: Host, config: PgBouncerEndpointConfig): Promise<PgBouncerEndpoint> {
    if (config.adminPassword !== undefined) return new PgBouncerEndpoint(host, config);
    const c = checkConfig(config);
    const userlist = pathsFor(c.configDir).userlist;
    const r = await host.runAs("root", ["sh", "-c", READ_SCRIPT, "sh", userlist], { okExitCodes: [0, 3], timeoutMs: 30_000 });
    const pw = r.exitCode === 3 ? undefined : parseUserlist(r.stdout).get(c.adminUser);
    if (pw === undefined && c.authType !== "trust") {
      throw new PgBouncerError(
        `cannot log into the admin console of PgBouncer "${c.name}" on ${host.description}: ${userlist} ${r.exitCode === 3 ? "does not exist" : `has no line for ${c.adminUser}`} (was the endpoint created by Understudy and is it up to date? run pulumi up)`,
        { host: host.description, clients: "unaffected" },
      );
    }
    return new PgBouncerEndpoint(host, { ...config, adminPassword: pw ?? "" });
  }

  get paths(): PgBouncerPaths {
    return this.config.paths;
  }

  /** The address the admin console is reached on, as seen from the host. */
  get adminAddress(): { host: string; port: number } {
    const a = this.config.listenAddr;
    const host = a === "*" || a === "0.0.0.0" ? "127.0.0.1" : a === "::" ? "::1" : a;
    return { host, port: this.config.listenPort };
  }

  private where(): string {
    return `PgBouncer "${this.config.name}" on ${this.host.description} (port ${this.config.listenPort})`;
  }

  // ---------------------------------------------------------------- commands on the host

  /** Run as root (directly when logged in as root, `sudo -n` otherwise). */
  private root(argv: string[], opts?: RunOptions) {
    return this.host.runAs("root", argv, opts);
  }

  private owner(argv: string[], opts?: RunOptions) {
    return this.host.runAs(this.config.osUser, argv, opts);
  }

  private loginUser: string | undefined;

  /** Logged in as root or as the PgBouncer OS user: files in the config dir can be renamed without switching user. */
  private async canRunDirectly(): Promise<boolean> {
    if (this.loginUser === undefined) {
      this.loginUser = (await this.host.run(["id", "-un"], { timeoutMs: 30_000 })).stdout.trim();
    }
    return this.loginUser === "root" || this.loginUser === this.config.osUser;
  }

  private async writeOwned(path: string, content: string, mode: "0600" | "0644"): Promise<void> {
    await this.owner(["sh", "-c", WRITE_SCRIPT, "sh", `${path}.understudy-tmp`, mode, path], {
      input: content,
      redact: secretsOf(this.config),
      timeoutMs: 30_000,
    });
  }

  /** A file's content, or undefined when it does not exist. */
  private async readOptional(path: string, asRoot = false): Promise<string | undefined> {
    const argv = ["sh", "-c", READ_SCRIPT, "sh", path];
    const r = asRoot
      ? await this.root(argv, { okExitCodes: [0, 3], timeoutMs: 30_000 })
      : await this.owner(argv, { okExitCodes: [0, 3], timeoutMs: 30_000 });
    return r.exitCode === 3 ? undefined : r.stdout;
  }

  private async isDir(path: string): Promise<boolean> {
    const r = await this.root(["test", "-d", path], { okExitCodes: [0, 1], timeoutMs: 30_000 });
    return r.exitCode === 0;
  }

  private markerContent(): string {
    return `${MARKER_HEAD}\ninstance=${this.config.name}\n`;
  }

  /** Is the config directory ours? undefined when it does not exist. */
  private async ownDir(): Promise<boolean | undefined> {
    const dir = this.paths.configDir;
    const exists = await this.root(["test", "-e", dir], { okExitCodes: [0, 1], timeoutMs: 30_000 });
    if (exists.exitCode !== 0) return undefined;
    if (!(await this.isDir(dir))) return false;
    const marker = await this.readOptional(this.paths.marker, true);
    return marker !== undefined && marker.split("\n")[0] === MARKER_HEAD && marker.includes(`instance=${this.config.name}\n`);
  }

  private async assertOwnDir(action: string): Promise<boolean> {
    const own = await this.ownDir();
    if (own === false) {
      throw new PgBouncerError(
        `cannot ${action} ${this.where()}: ${this.paths.configDir} exists but was not created by this driver for instance "${this.config.name}" (no matching ${this.paths.marker}); refusing to touch it`,
        { host: this.host.description, clients: "unaffected" },
      );
    }
    return own === true;
  }

  // ---------------------------------------------------------------- process

  /** Is PgBouncer running from this instance's config? */
  async status(): Promise<EndpointStatus> {
    if (!(await this.ownDir())) return { exists: false, running: false };
    return await this.pidStatus();
  }

  /** {@link status} for an instance directory known to be ours: the pidfile and the process only. */
  private async pidStatus(): Promise<EndpointStatus> {
    const r = await this.owner(["sh", "-c", STATUS_SCRIPT, "sh", this.paths.pidfile], { timeoutMs: 30_000 });
    const [pidLine, args] = r.stdout.split("\n");
    const pid = Number(pidLine);
    if (!pidLine || !Number.isInteger(pid) || !args) return { exists: true, running: false };
    // The pid must be a pgbouncer started from *our* ini (a stale pidfile may name a reused pid).
    if (!args.includes("pgbouncer") || !args.includes(this.paths.ini)) return { exists: true, running: false };
    return { exists: true, running: true, pid };
  }

  /** Fail with a clear message when something listens on the port already. */
  private async assertPortFree(): Promise<void> {
    const port = this.config.listenPort;
    let out: string;
    try {
      out = (await this.root(["ss", "-Hltnp"], { timeoutMs: 30_000 })).stdout;
    } catch (e) {
      if (e instanceof HostCommandError && /not found/.test(e.message)) return; // no `ss`: PgBouncer's own bind error will tell
      throw e;
    }
    const hits = listenersOnPort(out, port);
    if (hits.length > 0) {
      const who = hits
        .map((l) => /users:\(\("([^"]+)",pid=(\d+)/.exec(l))
        .filter((m): m is RegExpExecArray => !!m)
        .map((m) => `${m[1]} pid ${m[2]}`);
      throw new PgBouncerError(
        `listenPort: port ${port} on ${this.host.description} is already in use${who.length ? ` (by ${[...new Set(who)].join(", ")})` : ""}; ` +
          `choose another listenPort for PgBouncer "${this.config.name}" or stop what listens there. Nothing was started.`,
        { host: this.host.description, clients: "unaffected" },
      );
    }
  }

  private async logTail(lines = 15): Promise<string> {
    try {
      const r = await this.owner(["tail", "-n", String(lines), this.paths.logfile], { timeoutMs: 30_000, okExitCodes: [0, 1] });
      return r.stdout.trim();
    } catch {
      return "";
    }
  }

  private async start(): Promise<number> {
    const c = this.config;
    try {
      await this.owner([c.binary, "-d", this.paths.ini], { cwd: this.paths.configDir, timeoutMs: 60_000 });
    } catch (e) {
      throw new PgBouncerError(`could not start ${this.where()}: ${msg(e)}`, { host: this.host.description, clients: "unaffected", cause: e });
    }
    const deadline = Date.now() + c.startTimeoutMs;
    let lastError: string;
    let deadChecks = 0;
    for (;;) {
      try {
        const a = await this.admin(2000);
        try {
          await a.query("SHOW VERSION");
        } finally {
          await a.end();
        }
        const st = await this.pidStatus();
        if (st.running && st.pid) return st.pid;
        lastError = "admin console answered but the pidfile names no pgbouncer";
      } catch (e) {
        lastError = msg(e);
      }
      // A process that died at start (e.g. bind failure) leaves its reason in the log.
      const st = await this.pidStatus();
      if (!st.running && ++deadChecks >= 3) {
        const log = await this.logTail();
        const inUse = /Address already in use/i.test(log);
        throw new PgBouncerError(
          inUse
            ? `listenPort: port ${c.listenPort} on ${this.host.description} is already in use: PgBouncer "${c.name}" could not bind it and exited`
            : `${this.where()} exited right after start${log ? `; log ${this.paths.logfile}:\n${log}` : ""}`,
          { host: this.host.description, clients: "unaffected" },
        );
      }
      if (Date.now() > deadline) {
        throw new PgBouncerError(
          `${this.where()} did not answer on its admin console within ${c.startTimeoutMs} ms (${lastError}); it may still be starting. Log ${this.paths.logfile}:\n${await this.logTail()}`,
          { host: this.host.description, clients: "unaffected" },
        );
      }
      await sleep(100);
    }
  }

  /**
   * Create the config directory (marked as ours), write the files, and start PgBouncer if
   * it is not running; RELOAD when a running instance's files changed; restart when a
   * listen setting changed. Waits until the admin console answers. Idempotent.
   */
  async ensure(): Promise<EnsureResult> {
    const c = this.config;
    const p = this.paths;
    const own = await this.assertOwnDir("use");
    let status: EndpointStatus = own ? await this.pidStatus() : { exists: false, running: false };
    if (!status.running) await this.assertPortFree();
    if (c.unixSocketDir !== null && c.unixSocketDir !== p.configDir && !(await this.isDir(c.unixSocketDir))) {
      throw new PgBouncerConfigError("unixSocketDir", `${c.unixSocketDir} does not exist on ${this.host.description}`);
    }

    let created = false;
    if (!own) {
      const parent = p.configDir.slice(0, p.configDir.lastIndexOf("/")) || "/";
      await this.root(["mkdir", "-p", "--", parent], { timeoutMs: 30_000 });
      // No -p: fails if the directory appeared in between (then it is not ours).
      await this.root(["mkdir", "-m", "0755", "--", p.configDir], { timeoutMs: 30_000 });
      await this.root(["chown", "--", `${c.osUser}:`, p.configDir], { timeoutMs: 30_000 });
      await this.writeOwned(p.marker, this.markerContent(), "0644");
      created = true;
    }

    // Files. The userlist is rewritten every time (passwords may have been rotated).
    const oldUserlist = created ? undefined : await this.readOptional(p.userlist);
    const userlist = renderUserlist(c);
    const userlistChanged = oldUserlist !== userlist;
    if (userlistChanged) await this.writeOwned(p.userlist, userlist, "0600");

    const oldIni = created ? undefined : await this.readOptional(p.ini);
    const ini = renderIni(c);
    const iniChanged = oldIni !== ini;
    if (iniChanged) await this.writeOwned(p.ini, ini, "0644");

    const oldDbText = created ? undefined : await this.readOptional(p.databases);
    const dbs = oldDbText === undefined ? {} : parseDatabases(oldDbText, p.databases);
    for (const [name, t] of Object.entries(c.databases)) if (!(name in dbs)) dbs[name] = t;
    const dbText = renderDatabases(dbs);
    const dbChanged = oldDbText === undefined || parseAndRender(oldDbText, p.databases) !== dbText;
    if (dbChanged) await this.writeOwned(p.databases, dbText, "0644");

    let started = false;
    let restarted = false;
    let reloaded = false;
    if (status.running && oldIni !== undefined && listenSignatureOf(oldIni) !== listenSignature(c)) {
      // RELOAD does not re-bind sockets: a changed listen setting needs a restart.
      await this.stop();
      await this.assertPortFree();
      status = { exists: true, running: false };
      restarted = true;
    }
    let pid: number;
    if (!status.running) {
      pid = await this.start();
      started = !restarted;
    } else {
      pid = status.pid as number;
      if (userlistChanged) {
        // The running PgBouncer still knows the old admin password (rotated, or generated for
        // an endpoint made by 0.1.0): a signal reloads without logging in, then the new one must work.
        await this.owner(["kill", "-HUP", String(pid)], { timeoutMs: 30_000 });
        await this.waitForAdmin(10_000);
        reloaded = true;
      } else if (iniChanged || dbChanged) {
        await this.reload();
        reloaded = true;
      }
    }
    return { created, started, restarted, reloaded, pid };
  }

  /**
   * Make PgBouncer's `query_wait_timeout` at least `minSeconds` (0, no limit, is left alone):
   * the running value from SHOW CONFIG; when lower, the `query_wait_timeout` line of the ini
   * is written (a runtime SET would not survive the RELOAD of a switch), then RELOAD. Returns
   * the value it had when it was raised, else undefined. For an endpoint whose config has no
   * `queryWaitTimeoutMs` yet (made by 0.1.0): its next `ensure()` writes the config's ini again.
   */
  async raiseQueryWaitTimeout(minSeconds: number): Promise<number | undefined> {
    if (!Number.isInteger(minSeconds) || minSeconds < 1 || minSeconds > 86_400) throw new PgBouncerConfigError("queryWaitTimeout", `${minSeconds} must be whole seconds from 1 to 86400`);
    const rows = await this.withAdmin((a) => a.query("SHOW CONFIG"));
    const current = Number(rows.find((r) => r.key === "query_wait_timeout")?.value);
    if (!Number.isFinite(current) || current === 0 || current >= minSeconds) return undefined;
    const ini = await this.readOptional(this.paths.ini);
    if (ini === undefined) throw new PgBouncerError(`${this.paths.ini} does not exist on ${this.host.description}: run ensure() first`, { host: this.host.description, clients: "unaffected" });
    const line = `query_wait_timeout = ${minSeconds}`;
    const lines = ini.split("\n");
    const at = lines.findIndex((l) => /^query_wait_timeout\s*=/.test(l));
    if (at >= 0) lines[at] = line;
    else {
      const section = lines.indexOf("[pgbouncer]");
      if (section < 0) throw new PgBouncerError(`${this.paths.ini} on ${this.host.description} has no [pgbouncer] section; not rewriting it`, { host: this.host.description, clients: "unaffected" });
      lines.splice(section + 1, 0, line);
    }
    await this.writeOwned(this.paths.ini, lines.join("\n"), "0644");
    await this.reload();
    return current;
  }

  /** Until the admin console accepts this config's admin user (after a reload by signal). */
  private async waitForAdmin(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        const a = await this.admin(2000);
        try {
          await a.query("SHOW VERSION");
          return;
        } finally {
          await a.end();
        }
      } catch (e) {
        if (Date.now() > deadline) {
          throw new PgBouncerError(`${this.where()} did not accept the new userlist within ${timeoutMs} ms after SIGHUP: ${msg(e)}`, {
            host: this.host.description,
            clients: "unaffected",
            cause: e,
          });
        }
        await sleep(100);
      }
    }
  }

  /** Stop PgBouncer (safe shutdown by default). Returns false when it was not running. */
  async stop(opts: StopOptions = {}): Promise<boolean> {
    const timeoutMs = validateTimeout(opts.timeoutMs ?? 10_000, "timeoutMs");
    const st = await this.status();
    if (!st.running || !st.pid) return false;
    const pid = String(st.pid);
    // Every look and every signal names the pid AND checks that it is still our pgbouncer.
    const ifOurs = async (sig: string) =>
      (await this.owner(["sh", "-c", SIGNAL_IF_OURS_SCRIPT, "sh", pid, this.paths.ini, sig], { okExitCodes: [0, 3], timeoutMs: 30_000 })).exitCode === 0;
    const waitGone = async (ms: number): Promise<boolean> => {
      const deadline = Date.now() + ms;
      for (;;) {
        if (!(await ifOurs("0"))) return true;
        if (Date.now() > deadline) return false;
        await sleep(100);
      }
    };
    const signal = async (sig: string) => void (await ifOurs(sig));
    if ((opts.mode ?? "safe") === "safe") {
      await signal("INT");
      if (await waitGone(timeoutMs)) return true;
    }
    await signal("TERM");
    if (await waitGone(5000)) return true;
    await signal("KILL");
    if (await waitGone(5000)) return true;
    throw new PgBouncerError(`${this.where()} (pid ${pid}) did not exit after SIGINT, SIGTERM and SIGKILL`, {
      host: this.host.description,
      clients: "unknown",
    });
  }

  /**
   * Stop PgBouncer and remove the config directory — only when it carries this driver's
   * marker for this instance. Returns false when there was nothing to remove.
   */
  async destroy(opts: StopOptions = {}): Promise<boolean> {
    const own = await this.assertOwnDir("destroy");
    if (!own) return false;
    await this.stop(opts);
    await this.root(["rm", "-rf", "--", this.paths.configDir], { timeoutMs: 60_000 });
    return true;
  }

  // ---------------------------------------------------------------- admin console

  private async admin(connectTimeoutMs = 5000): Promise<AdminConn> {
     
    const pg = require("pg") as typeof import("pg");
    const { host, port } = this.adminAddress;
    const cfg: ClientConfig = {
      host,
      port,
      user: this.config.adminUser,
      database: "pgbouncer",
      connectionTimeoutMillis: connectTimeoutMs,
    };
    if (this.config.adminPassword !== undefined) cfg.password = this.config.adminPassword;
    const h = this.host;
    if (canForward(h)) cfg.stream = () => new LazyStream(() => h.forward(host, port));
    const client: Client = new pg.Client(cfg);
    client.on("error", () => undefined); // reported through the pending query / connect instead
    try {
      await client.connect();
    } catch (e) {
      try {
        client.connection?.stream?.destroy();
      } catch {
        /* ignore */
      }
      throw new Error(`cannot reach the admin console of ${this.where()} at ${host}:${port}: ${msg(e)}`, { cause: e });
    }
    return {
      query: async (sql: string) => (await client.query(sql)).rows as Record<string, unknown>[],
      end: async () => {
        try {
          await Promise.race([client.end(), sleep(2000)]);
        } catch {
          /* ignore */
        }
        try {
          client.connection.stream.destroy();
        } catch {
          /* ignore */
        }
      },
      destroy: () => {
        try {
          client.connection.stream.destroy();
        } catch {
          /* ignore */
        }
      },
    };
  }

  private async withAdmin<T>(fn: (a: AdminConn) => Promise<T>): Promise<T> {
    const a = await this.admin();
    try {
      return await fn(a);
    } finally {
      await a.end();
    }
  }

  /** `SHOW DATABASES`, parsed (the `pgbouncer` admin entry left out). */
  async databases(): Promise<DatabaseStatus[]> {
    return await this.withAdmin(async (a) => parseShowDatabases(await a.query("SHOW DATABASES")));
  }

  /** Where PgBouncer sends `db` right now (from SHOW DATABASES), or undefined when there is no such entry. */
  async target(db: string): Promise<DatabaseTarget | undefined> {
    validateEntryName(db, "database");
    const s = (await this.databases()).find((d) => d.name === db);
    return s ? statusToTarget(s) : undefined;
  }

  /** `RELOAD`: re-read pgbouncer.ini, the databases file and the userlist. */
  async reload(): Promise<void> {
    await this.withAdmin(async (a) => {
      await a.query("RELOAD");
    });
  }

  /**
   * `PAUSE db`, bounded: if it has not completed after `timeoutMs`, send `RESUME db` and
   * throw {@link PauseTimeoutError}. Returns how long PAUSE took. The database stays paused
   * until {@link resume}: prefer {@link hold}, which always resumes.
   */
  async pause(db: string, opts: HoldOptions = {}): Promise<number> {
    validateEntryName(db, "database");
    const timeoutMs = validateTimeout(opts.pauseTimeoutMs ?? 10_000, "pauseTimeoutMs");
    const [a, b] = await Promise.all([this.admin(), this.admin()]);
    try {
      const t0 = now();
      await this.pauseOn(a, b, db, timeoutMs);
      return round(now() - t0);
    } finally {
      await Promise.all([a.end(), b.end()]);
    }
  }

  /** `RESUME db`. A database that is not paused is fine (returns false). */
  async resume(db: string): Promise<boolean> {
    validateEntryName(db, "database");
    return await this.withAdmin(async (a) => {
      try {
        await a.query(`RESUME ${adminIdent(db)}`);
        return true;
      } catch (e) {
        if (NOT_PAUSED.test(msg(e))) return false;
        throw e;
      }
    });
  }

  /** PAUSE on `a`, with `b` kept ready to RESUME if PAUSE does not complete in time. */
  private async pauseOn(a: AdminConn, b: AdminConn, db: string, timeoutMs: number): Promise<void> {
    const ident = adminIdent(db);
    const pending = a.query(`PAUSE ${ident}`);
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<"timeout">((r) => {
      timer = setTimeout(() => r("timeout"), timeoutMs);
    });
    let outcome: "timeout" | "done";
    try {
      outcome = await Promise.race([pending.then(() => "done" as const), timedOut]);
    } catch (e) {
      const text = msg(e);
      if (/already/i.test(text)) {
        throw new PgBouncerError(
          `PAUSE ${db} on ${this.where()} refused: ${text}. Another operator or an interrupted run holds it; check with SHOW DATABASES and run RESUME ${ident} when it is safe. Nothing was changed.`,
          { host: this.host.description, database: db, clients: "maybe-paused", cause: e },
        );
      }
      if ((e as { severity?: string }).severity) {
        // PgBouncer answered with an error: PAUSE did not take effect.
        throw new PgBouncerError(`PAUSE ${db} on ${this.where()} failed: ${text}. Nothing was changed.`, {
          host: this.host.description, database: db, clients: "unaffected", cause: e,
        });
      }
      // The connection broke: PAUSE may or may not have been applied. Undo it to be sure.
      let resumed = true;
      try {
        await b.query(`RESUME ${ident}`);
      } catch (re) {
        if (!NOT_PAUSED.test(msg(re))) resumed = false;
      }
      throw new PgBouncerError(
        `PAUSE ${db} on ${this.where()}: the admin connection failed (${text}); ` +
          (resumed
            ? "RESUME was sent: clients continue on the old target, nothing was changed."
            : `RESUME could not be sent either: clients may be held; run RESUME ${ident} on the admin console. Nothing was changed.`),
        { host: this.host.description, database: db, clients: resumed ? "old-target" : "maybe-paused", cause: e },
      );
    } finally {
      clearTimeout(timer);
    }
    if (outcome === "done") return;

    // PAUSE is still waiting (a transaction or, in session pooling, a session holds a server
    // connection). Undo it from the second connection, then drop the first.
    pending.catch(() => undefined);
    let resumeError: unknown;
    try {
      await b.query(`RESUME ${ident}`);
    } catch (e) {
      if (!NOT_PAUSED.test(msg(e))) resumeError = e;
    }
    a.destroy();
    let stillPaused: boolean | undefined;
    let holders = "";
    try {
      stillPaused = parseShowDatabases(await b.query("SHOW DATABASES")).find((d) => d.name === db)?.paused;
      holders = describeHolders(await b.query("SHOW SERVERS"), await b.query("SHOW CLIENTS"), db);
    } catch {
      stillPaused = undefined;
    }
    const clients: ClientState = resumeError || stillPaused !== false ? "maybe-paused" : "old-target";
    const tail =
      clients === "old-target"
        ? "RESUME was sent: clients continue on the old target, nothing was changed."
        : `RESUME could not be confirmed (${resumeError ? msg(resumeError) : "SHOW DATABASES still says paused"}): clients may still be held; run RESUME ${ident} on the admin console. Nothing was changed.`;
    throw new PauseTimeoutError(
      `PAUSE ${db} on ${this.where()} did not complete within ${timeoutMs} ms: a client is in a transaction (or, with session pooling, connected) on a server connection${holders ? ` (${holders})` : ""}. ${tail}`,
      { host: this.host.description, database: db, clients, timeoutMs },
    );
  }

  /** RESUME through `a`, then `b`, then a fresh connection. Returns the error when all fail. */
  private async resumeSomehow(conns: AdminConn[], db: string): Promise<unknown> {
    const ident = adminIdent(db);
    let last: unknown;
    for (const c of conns) {
      try {
        await c.query(`RESUME ${ident}`);
        return undefined;
      } catch (e) {
        if (NOT_PAUSED.test(msg(e))) return undefined;
        last = e;
      }
    }
    for (let i = 0; i < 3; i++) {
      try {
        await this.resume(db);
        return undefined;
      } catch (e) {
        last = e;
        await sleep(200);
      }
    }
    return last ?? new Error("RESUME failed");
  }

  private async readDatabasesFile(): Promise<{ text: string; entries: Record<string, DatabaseTarget> }> {
    const text = await this.readOptional(this.paths.databases);
    if (text === undefined) {
      throw new PgBouncerError(`${this.paths.databases} does not exist on ${this.host.description}: run ensure() first`, {
        host: this.host.description,
        clients: "unaffected",
      });
    }
    return { text, entries: parseDatabases(text, this.paths.databases) };
  }

  /**
   * Hold clients of `db` while `fn` runs: `PAUSE db` (bounded by `pauseTimeoutMs`), `fn`,
   * then always `RESUME db`. New queries wait inside PgBouncer; client connections stay
   * open. If `fn` throws after {@link HoldContext.retarget}, the old databases file is
   * restored and reloaded before clients are resumed; the error says where clients are.
   * Do `fn`'s own clean-up inside `fn` (e.g. restart the old server) so that it happens
   * while clients are still held.
   */
  async hold<T>(db: string, fn: (ctx: HoldContext) => Promise<T>, opts: HoldOptions = {}): Promise<HoldResult<T>> {
    validateEntryName(db, "database");
    validateTimeout(opts.pauseTimeoutMs ?? 10_000, "pauseTimeoutMs");
    return await this.holdInternal(db, fn, opts, undefined);
  }

  private async holdInternal<T>(
    db: string,
    fn: (ctx: HoldContext) => Promise<T>,
    opts: HoldOptions,
    prepared: { before: { text: string; entries: Record<string, DatabaseTarget> }; staged?: { path: string; text: string } } | undefined,
  ): Promise<HoldResult<T>> {
    const timeoutMs = validateTimeout(opts.pauseTimeoutMs ?? 10_000, "pauseTimeoutMs");
    const before = prepared?.before ?? (await this.readDatabasesFile());
    if (!(db in before.entries)) {
      throw new PgBouncerError(`database "${db}" is not an entry of ${this.paths.databases} on ${this.host.description}`, {
        host: this.host.description,
        database: db,
        clients: "unaffected",
      });
    }
    const [a, b] = await Promise.all([this.admin(), this.admin()]);
    try {
      const live = parseShowDatabases(await a.query("SHOW DATABASES")).find((d) => d.name === db);
      if (!live) {
        throw new PgBouncerError(`${this.where()} has no database "${db}" (SHOW DATABASES); RELOAD or ensure() first`, {
          host: this.host.description,
          database: db,
          clients: "unaffected",
        });
      }
      if (live.paused) {
        throw new PgBouncerError(
          `database "${db}" on ${this.where()} is paused already (another operator or an interrupted run); run RESUME ${adminIdent(db)} when it is safe. Nothing was changed.`,
          { host: this.host.description, database: db, clients: "maybe-paused" },
        );
      }
      const oldTarget = before.entries[db];

      const t0 = now();
      await this.pauseOn(a, b, db, timeoutMs);
      const tPaused = now();

      let changed = false;
      let staged = prepared?.staged;
      const ctx: HoldContext = {
        database: db,
        elapsedMs: () => round(now() - t0),
        reload: async () => {
          await a.query("RELOAD");
        },
        databases: async () => parseShowDatabases(await a.query("SHOW DATABASES")),
        retarget: async (target: DatabaseTarget) => {
          const to = validateTarget(target, "target");
          const text = renderDatabases({ ...before.entries, [db]: to });
          const w0 = now();
          changed = true;
          if (staged && staged.text === text) {
            // A rename keeps the file's owner: as root (or as the owner) skip runuser/sudo,
            // which costs more than the rename itself while clients wait.
            const mv = ["mv", "-f", "--", staged.path, this.paths.databases];
            if (await this.canRunDirectly()) await this.host.run(mv, { timeoutMs: 30_000 });
            else await this.owner(mv, { timeoutMs: 30_000 });
            staged = undefined;
          } else {
            await this.writeOwned(this.paths.databases, text, "0644");
          }
          const w1 = now();
          await a.query("RELOAD");
          const w2 = now();
          const s = parseShowDatabases(await a.query("SHOW DATABASES")).find((d) => d.name === db);
          const w3 = now();
          if (!s || !statusMatches(s, to)) {
            throw new Error(
              `after RELOAD, SHOW DATABASES shows ${db} -> ${s ? describeTarget(s) : "no entry"}, not ${describeTarget(to)} (PgBouncer rejected the new entry? see ${this.paths.logfile})`,
            );
          }
          return { writeMs: round(w1 - w0), reloadMs: round(w2 - w1), verifyMs: round(w3 - w2) };
        },
      };

      let value: T;
      try {
        value = await fn(ctx);
      } catch (e) {
        // Put things back while clients are still held, then let them go.
        let restore = "the databases file was not changed";
        let restoredOk = true;
        if (changed) {
          try {
            await this.writeOwned(this.paths.databases, before.text, "0644");
            await a.query("RELOAD");
            const s = parseShowDatabases(await a.query("SHOW DATABASES")).find((d) => d.name === db);
            // eslint-disable-next-line preserve-caught-error -- a new finding about the restore, not a wrap of `e`
            if (!s || !statusMatches(s, oldTarget)) throw new Error(`SHOW DATABASES shows ${s ? describeTarget(s) : "no entry"}`);
            restore = `the old databases file was restored and reloaded (${db} -> ${describeTarget(oldTarget)})`;
          } catch (re) {
            restoredOk = false;
            restore = `restoring the old databases file FAILED (${msg(re)})`;
          }
        }
        const resumeError = await this.resumeSomehow([a, b], db);
        const clients: ClientState = resumeError ? "maybe-paused" : restoredOk ? "old-target" : "unknown";
        const where =
          clients === "old-target"
            ? `clients were resumed and are on the old target ${describeTarget(oldTarget)}`
            : clients === "maybe-paused"
              ? `RESUME failed (${msg(resumeError)}): clients may still be held; run RESUME ${adminIdent(db)} on the admin console`
              : `clients were resumed but may be on the new target; check SHOW DATABASES`;
        throw new PgBouncerError(`while ${db} was paused on ${this.where()}: ${msg(e)}; ${restore}; ${where}.`, {
          host: this.host.description,
          database: db,
          clients,
          cause: e,
        });
      }
      const tWork = now();
      const resumeError = await this.resumeSomehow([a, b], db);
      const tEnd = now();
      if (resumeError) {
        throw new PgBouncerError(
          `RESUME ${db} on ${this.where()} failed after the work was done (${msg(resumeError)}): clients may still be held${changed ? " (on the new target)" : ""}; run RESUME ${adminIdent(db)} on the admin console.`,
          { host: this.host.description, database: db, clients: "maybe-paused", cause: resumeError },
        );
      }
      return {
        value,
        pauseWindowMs: round(tEnd - t0),
        phases: { pauseMs: round(tPaused - t0), workMs: round(tWork - tPaused), resumeMs: round(tEnd - tWork) },
      };
    } finally {
      await Promise.all([a.end(), b.end()]);
    }
  }

  /**
   * Move `db` to `target` without failing client transactions: PAUSE (bounded by
   * `pauseTimeoutMs`; on timeout RESUME and throw {@link PauseTimeoutError}, nothing
   * changed), atomic rename of a databases file staged beforehand, RELOAD, verify with
   * SHOW DATABASES, RESUME. Any failure after PAUSE restores the old file and resumes
   * clients on the old target. A target equal to the current one is a no-op.
   */
  async switchTarget(db: string, target: DatabaseTarget, opts: HoldOptions = {}): Promise<SwitchResult> {
    validateEntryName(db, "database");
    const to = validateTarget(target, "target");
    validateTimeout(opts.pauseTimeoutMs ?? 10_000, "pauseTimeoutMs");

    const before = await this.readDatabasesFile();
    const from = before.entries[db];
    if (!from) {
      throw new PgBouncerError(`database "${db}" is not an entry of ${this.paths.databases} on ${this.host.description}; nothing was changed`, {
        host: this.host.description,
        database: db,
        clients: "unaffected",
      });
    }
    const live = (await this.databases()).find((d) => d.name === db);
    if (!live || !statusMatches(live, from)) {
      throw new PgBouncerError(
        `${this.where()} serves ${db} -> ${live ? describeTarget(live) : "nothing"} but ${this.paths.databases} says ${describeTarget(from)}; ` +
          `run ensure() or RELOAD and check before switching. Nothing was changed.`,
        { host: this.host.description, database: db, clients: "unaffected" },
      );
    }
    if (statusMatches(live, to) && renderDatabases({ [db]: from }) === renderDatabases({ [db]: to })) {
      return { database: db, from, to, changed: false, pauseWindowMs: 0, phases: { pauseMs: 0, writeMs: 0, reloadMs: 0, verifyMs: 0, resumeMs: 0 } };
    }
    // Stage the new file before PAUSE so that, while clients wait, only a rename happens.
    // A unique name: two switches on one instance at once are a caller error (serialize them),
    // but must not at least swap each other's files.
    const suffix = `${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
    const staged = { path: `${this.paths.databases}.understudy-next-${suffix}`, text: renderDatabases({ ...before.entries, [db]: to }) };
    await this.writeOwned(staged.path, staged.text, "0644");
    await this.canRunDirectly();
    let r: HoldResult<RetargetTimings>;
    try {
      r = await this.holdInternal(db, (ctx) => ctx.retarget(to), opts, { before, staged });
    } finally {
      // Consumed by the rename on success; left over after a timeout or failure.
      await this.owner(["rm", "-f", "--", staged.path], { timeoutMs: 30_000 }).catch(() => undefined);
    }
    return {
      database: db,
      from,
      to,
      changed: true,
      pauseWindowMs: r.pauseWindowMs,
      phases: { pauseMs: r.phases.pauseMs, ...r.value, resumeMs: r.phases.resumeMs },
    };
  }
  /**
   * Hold clients of several databases at once (the whole cluster moves in a cut-over):
   * `PAUSE` each in the order given (each bounded by `pauseTimeoutMs`; a timeout resumes the
   * ones already paused, nothing changed), `fn`, then `RESUME` each in reverse order. The
   * context's `retarget` points ALL given entries at once (one rewrite of the databases file,
   * one RELOAD, checked with SHOW DATABASES); if `fn` throws after it, the old file is put
   * back before clients resume. One database: the same as {@link hold}.
   */
  async holdAll<T>(
    dbs: string[],
    fn: (ctx: { elapsedMs(): number; retarget(targets: Record<string, DatabaseTarget>): Promise<RetargetTimings> }) => Promise<T>,
    opts: HoldOptions = {},
  ): Promise<HoldResult<T>> {
    if (!Array.isArray(dbs) || dbs.length === 0) throw new InputError("databases", "must list at least one database");
    dbs.forEach((d, i) => validateEntryName(d, `databases[${i}]`));
    const timeoutMs = validateTimeout(opts.pauseTimeoutMs ?? 10_000, "pauseTimeoutMs");
    const before = await this.readDatabasesFile();
    const missing = dbs.filter((d) => !(d in before.entries));
    if (missing.length) {
      throw new PgBouncerError(`database(s) ${missing.join(", ")} not an entry of ${this.paths.databases} on ${this.host.description}; nothing was changed`, {
        host: this.host.description,
        database: missing[0],
        clients: "unaffected",
      });
    }
    const [a, b] = await Promise.all([this.admin(), this.admin()]);
    const paused: string[] = [];
    const resumeAll = async (): Promise<string[]> => {
      const failed: string[] = [];
      for (const d of [...paused].reverse()) if (await this.resumeSomehow([a, b], d)) failed.push(d);
      return failed;
    };
    try {
      const shown = parseShowDatabases(await a.query("SHOW DATABASES"));
      for (const d of dbs) {
        const st = shown.find((x) => x.name === d);
        if (!st) throw new PgBouncerError(`${this.where()} has no database "${d}" (SHOW DATABASES); RELOAD or ensure() first`, { host: this.host.description, database: d, clients: "unaffected" });
        if (st.paused) {
          throw new PgBouncerError(`database "${d}" on ${this.where()} is paused already (another operator or an interrupted run); run RESUME ${adminIdent(d)} when it is safe. Nothing was changed.`, {
            host: this.host.description,
            database: d,
            clients: "maybe-paused",
          });
        }
      }
      const t0 = now();
      for (const d of dbs) {
        try {
          await this.pauseOn(a, b, d, timeoutMs);
        } catch (e) {
          const failed = await resumeAll();
          if (failed.length && e instanceof PgBouncerError) throw new PgBouncerError(`${e.message} RESUME of ${failed.join(", ")} failed too: run RESUME on the admin console.`, { host: this.host.description, database: d, clients: "maybe-paused", cause: e });
          throw e;
        }
        paused.push(d);
      }
      const tPaused = now();
      let changed = false;
      const ctx = {
        elapsedMs: () => round(now() - t0),
        retarget: async (targets: Record<string, DatabaseTarget>): Promise<RetargetTimings> => {
          const to: Record<string, DatabaseTarget> = {};
          for (const [d, t] of Object.entries(targets)) {
            if (!dbs.includes(d)) throw new InputError("targets", `${d} is not held`);
            to[d] = validateTarget(t, `targets.${d}`);
          }
          const w0 = now();
          changed = true;
          await this.writeOwned(this.paths.databases, renderDatabases({ ...before.entries, ...to }), "0644");
          const w1 = now();
          await a.query("RELOAD");
          const w2 = now();
          const s = parseShowDatabases(await a.query("SHOW DATABASES"));
          const w3 = now();
          for (const [d, t] of Object.entries(to)) {
            const x = s.find((y) => y.name === d);
            if (!x || !statusMatches(x, t)) throw new Error(`after RELOAD, SHOW DATABASES shows ${d} -> ${x ? describeTarget(x) : "no entry"}, not ${describeTarget(t)} (see ${this.paths.logfile})`);
          }
          return { writeMs: round(w1 - w0), reloadMs: round(w2 - w1), verifyMs: round(w3 - w2) };
        },
      };
      let value: T;
      try {
        value = await fn(ctx);
      } catch (e) {
        let restore = "the databases file was not changed";
        let restoredOk = true;
        if (changed) {
          try {
            await this.writeOwned(this.paths.databases, before.text, "0644");
            await a.query("RELOAD");
            restore = "the old databases file was restored and reloaded";
          } catch (re) {
            restoredOk = false;
            restore = `restoring the old databases file FAILED (${msg(re)})`;
          }
        }
        const failed = await resumeAll();
        const clients: ClientState = failed.length ? "maybe-paused" : restoredOk ? "old-target" : "unknown";
        const where =
          clients === "old-target"
            ? `clients were resumed and are on the old targets (${dbs.map((d) => `${d} -> ${before.entries[d] ? describeTarget(before.entries[d]) : "its old entry"}`).join(", ")})`
            : clients === "maybe-paused"
              ? `RESUME failed for ${failed.join(", ")}: clients may still be held; run RESUME on the admin console`
              : "clients were resumed but may be on the new targets; check SHOW DATABASES";
        throw new PgBouncerError(`while ${dbs.join(", ")} were paused on ${this.where()}: ${msg(e)}; ${restore}; ${where}.`, { host: this.host.description, database: dbs[0], clients, cause: e });
      }
      const tWork = now();
      const failed = await resumeAll();
      const tEnd = now();
      if (failed.length) {
        throw new PgBouncerError(`RESUME ${failed.join(", ")} on ${this.where()} failed after the work was done: clients may still be held; run RESUME on the admin console.`, {
          host: this.host.description,
          database: failed[0],
          clients: "maybe-paused",
        });
      }
      return { value, pauseWindowMs: round(tEnd - t0), phases: { pauseMs: round(tPaused - t0), workMs: round(tWork - tPaused), resumeMs: round(tEnd - tWork) } };
    } finally {
      await Promise.all([a.end(), b.end()]);
    }
  }
}


/** "2 server connections busy, for clients 127.0.0.1:40000 (psql), ..." from SHOW SERVERS / SHOW CLIENTS rows. */
export function describeHolders(servers: Record<string, unknown>[], clients: Record<string, unknown>[], db: string): string {
  const busy = servers.filter((s) => s.database === db && s.state !== "idle" && s.state !== "used");
  if (busy.length === 0) return "";
  const links = new Set(busy.map((s) => String(s.link ?? "")).filter(Boolean));
  const who = clients
    .filter((c) => c.database === db && links.has(String(c.ptr ?? "")))
    .map((c) => `${c.user}@${c.addr}:${c.port}${c.application_name ? ` "${c.application_name}"` : ""}`);
  return `${busy.length} server connection(s) busy${who.length ? `, for client(s) ${who.slice(0, 5).join(", ")}${who.length > 5 ? ", …" : ""}` : ""}`;
}

function statusToTarget(s: DatabaseStatus): DatabaseTarget {
  const t: DatabaseTarget = { host: s.host ?? "", port: s.port ?? 0, dbname: s.database };
  if (s.forceUser) t.user = s.forceUser;
  return t;
}

function parseAndRender(text: string, where: string): string {
  return renderDatabases(parseDatabases(text, where));
}

/** The listen settings of an ini this driver wrote (see {@link listenSignature}). */
function listenSignatureOf(ini: string): string {
  const get = (k: string) => new RegExp(`^${k} = (.*)$`, "m").exec(ini)?.[1] ?? "";
  return `${get("listen_addr")}|${get("listen_port")}|${get("unix_socket_dir")}|${get("pidfile")}|${get("logfile")}`;
}
