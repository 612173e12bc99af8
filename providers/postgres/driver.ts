/**
 * PostgreSQL on a data directory, on any {@link Host} (local or SSH): version -> bin
 * directory resolution, initdb, start / wait / stop / status, pg_controldata, crash
 * recovery of a crash-consistent clone, pg_upgrade (check, then link / clone / copy),
 * post-upgrade steps, and SQL through `pg`.
 *
 * Rules kept by every method:
 * - Every input is validated before any command runs (see ./validate.ts); then the host is
 *   checked (binaries installed, port free, data directory holds the expected major);
 *   only then does anything act.
 * - Commands are argv arrays run as the PostgreSQL OS user (`postgres` by default) with
 *   `LC_ALL=C`, so that output can be parsed.
 * - The only thing this driver ever does to a *source* database is {@link checkpoint}.
 *   Everything else that starts, stops or writes is meant for clones; the callers
 *   (components) decide which data directory is which.
 * - Servers started on clones are isolated from the source they were copied from:
 *   archiving off, no external pid file, logging to our own log file, no synchronous
 *   standbys, no primary_conninfo/restore/cleanup commands (see {@link isolationSettings}).
 *
 * No Pulumi here: this module is used by dynamic providers, scripts and tests alike.
 */
import type { QueryResultRow } from "pg";
import type { Host, RunOptions, RunResult } from "../host/types";
import { HostCommandError, tail } from "../host/types";
import { PgUpgradeError, PostgresError, PostgresInputError } from "./errors";
import {
  ControlData,
  lastLogLine,
  parseControlData,
  parseBusyPorts,
  parsePgCtlStatusPid,
  parsePgUpgradeFailure,
  parsePsqlRows,
  parseRecoveryLog,
  parseServerVersion,
  RecoveryLog,
} from "./parse";
import { PgConnection, queryRows, withClient } from "./sql";
import { ownerHbaBlock, ownerIdentBlock, parseSingleUserRolname, withOwnerBlock, withoutOwnerBlock } from "./owner-access";
import {
  parentDir,
  validateDataDir,
  validateEncoding,
  validateListen,
  validateLocale,
  validateName,
  validateOsUser,
  validatePath,
  validatePort,
  validateSettingName,
  validateSettingValue,
  validateSocketDir,
  validateTimeout,
  validateVersion,
} from "./validate";
import { setTimeout as sleep } from "node:timers/promises";

export type PgBinary =
  | "pg_ctl"
  | "postgres"
  | "initdb"
  | "pg_controldata"
  | "pg_upgrade"
  | "pg_isready"
  | "psql"
  | "vacuumdb"
  | "pgbench";

/** A major version, optionally with its own bin directory. `field` names it in errors. */
export interface PgInstallSpec {
  version: number | string;
  /** Default: the Debian layout `/usr/lib/postgresql/<major>/bin`. */
  binDir?: string;
  /** Prefix of error messages, e.g. `postgres` -> `postgres.version: ...`. */
  field?: string;
}

export type PgVersionArg = number | string | PgInstallSpec;

/** A resolved installation: checked on the host. */
export interface PgInstall {
  major: number;
  binDir: string;
  /** As printed by `postgres --version`, e.g. `13.16`. */
  fullVersion: string;
}

export interface PostgresDriverOptions {
  /** The OS user that owns data directories and runs servers. Default `postgres`. */
  osUser?: string;
  /**
   * The bootstrap superuser (role with OID 10) used by psql, pg_upgrade and vacuumdb. When
   * absent, it is read from the cluster wherever that is possible without a password
   * ({@link PostgresDriver.readSuperuser}: single-user mode on a cleanly stopped cluster;
   * a private server's trust socket), and `osUser` is the name tried first or used on a
   * running server.
   */
  superuser?: string;
}

export type AuthMethod = "peer" | "trust" | "md5" | "scram-sha-256" | "reject";

export interface InitdbOptions {
  /** Default true. */
  dataChecksums?: boolean;
  /** Default `C.UTF-8`. */
  locale?: string;
  lcCollate?: string;
  lcCtype?: string;
  /** Default `UTF8`. */
  encoding?: string;
  /** PostgreSQL 15+: `icu` with `icuLocale`; 17+: `builtin` with `icuLocale` as the builtin locale. */
  localeProvider?: "libc" | "icu" | "builtin";
  icuLocale?: string;
  /** Default: the driver's superuser. */
  superuser?: string;
  /** pg_hba.conf method for local (socket) connections. Default `peer`. */
  authLocal?: AuthMethod;
  /** pg_hba.conf method for TCP connections. Default `scram-sha-256`. */
  authHost?: AuthMethod;
  /** WAL segment size in MB (a power of two, 1..1024). Default: initdb's (16). */
  walSegmentMb?: number;
  timeoutMs?: number;
}

export interface StartOptions {
  port: number;
  /** Where the unix socket goes; created (0700, owned by the OS user) when missing. */
  socketDir: string;
  /** `listen_addresses`: `""` (socket only, the default), `127.0.0.1`, ... */
  listen?: string;
  /** Default `<dataDir>/understudy-server.log`. */
  logFile?: string;
  /** Extra `-c name=value` settings (validated strictly: pg_ctl passes them through a shell). */
  settings?: Record<string, string | number | boolean>;
  /** Apply {@link isolationSettings} (default true: a clone must not act on its source's archive, standbys or pid files). */
  isolate?: boolean;
  /** Wait until the server accepts connections (default true). */
  wait?: boolean;
  /** For the wait. Default 10 minutes. */
  timeoutMs?: number;
  onProgress?: (message: string) => void;
  /** How often progress is reported while waiting (default 5 s). */
  progressEveryMs?: number;
}

/** A server started by {@link PostgresDriver.start}. */
export interface PgServer {
  host: string;
  dataDir: string;
  version: number;
  binDir: string;
  port: number;
  socketDir: string;
  listen: string;
  logFile: string;
  /** Milliseconds from `pg_ctl start` until ready (when waited). */
  readyMs?: number;
  /** The role psql connects as on this server when known (the bootstrap superuser read from the cluster). */
  user?: string;
}

export interface WaitOptions {
  /** Default 10 minutes. */
  timeoutMs?: number;
  onProgress?: (message: string) => void;
  /** How often progress is reported (default 5 s). */
  progressEveryMs?: number;
}

export interface ServerStatus {
  running: boolean;
  pid?: number;
  /** The PID's working directory is this data directory (checked through /proc). */
  verified?: boolean;
  /** postmaster.pid names a live process that is NOT this directory's server (a copy from the source). */
  stalePid?: number;
}

export interface StopResult {
  wasRunning: boolean;
  durationMs: number;
  /** `Database cluster state` after the stop (undefined when pg_control is unreadable, e.g. after --link). */
  state?: string;
}

/** What a new cluster must match for pg_upgrade: read from the old cluster. */
export interface ClusterSettings {
  encoding: string;
  lcCollate: string;
  lcCtype: string;
  localeProvider: "libc" | "icu" | "builtin";
  icuLocale?: string;
  dataChecksums: boolean;
  walSegmentBytes: number;
  /** Name of the bootstrap superuser (OID 10). */
  superuser: string;
}

export interface RecoveryResult {
  dataDir: string;
  /** Start of the old version until it accepted connections: the crash recovery. */
  recoveryMs: number;
  stopMs: number;
  durationMs: number;
  /** State before (e.g. `in production`) and after (`shut down`). */
  stateBefore: string;
  stateAfter: string;
  /** The postmaster.pid copied from the source that was removed (only from this clone). */
  removedStalePid?: { pid: number; dataDir?: string };
  log: RecoveryLog;
  settings: ClusterSettings;
  control: ControlData;
  /** What `whileRunning` returned. */
  extra?: unknown;
}

export type UpgradeMode = "link" | "clone" | "copy";

export interface UpgradeOptions {
  /** Default `link` (the new data directory must be on the same filesystem as the old). */
  mode?: UpgradeMode;
  /** Temporary ports pg_upgrade starts the old and new servers on (defaults 50432 / 50433). */
  oldPort?: number;
  newPort?: number;
  /** Private socket directory for pg_upgrade's servers. Default: a fresh `mktemp -d` under /tmp. */
  socketDir?: string;
  /** pg_upgrade's working directory (update_extensions.sql, delete_old_cluster.sh). Default `<newDataDir>-pg_upgrade`. */
  workDir?: string;
  /** To initdb the new cluster when it does not exist yet; read from the old cluster when absent. */
  settings?: ClusterSettings;
  /** `pg_upgrade --jobs`. */
  jobs?: number;
  /** Copy pg_hba.conf and pg_ident.conf from the old data directory to the new (default true; upgrade only). */
  copyHbaConf?: boolean;
  /** Default 6 hours. */
  timeoutMs?: number;
  onProgress?: (message: string) => void;
}

export interface UpgradeCheckResult {
  ok: true;
  durationMs: number;
  output: string;
  /** True when the new cluster was initdb'ed by this call. */
  initializedNew: boolean;
}

export interface UpgradeResult {
  mode: UpgradeMode;
  /** pg_upgrade's own run time. */
  durationMs: number;
  output: string;
  workDir: string;
  /** `update_extensions.sql` when pg_upgrade wrote one: pass it to {@link PostgresDriver.postUpgrade}. */
  updateExtensionsSql?: string;
  initializedNew: boolean;
  /** After `link`, the old cluster cannot be started any more (pg_control renamed to pg_control.old). */
  oldClusterUsable: boolean;
  copiedConfig: string[];
}

export interface PostUpgradeOptions {
  /** A running server on the new data directory (peer/trust auth for the OS user). */
  server?: { port: number; socketDir: string };
  /** Without `server`: start one privately on this port, run, stop cleanly. */
  tempPort?: number;
  updateExtensionsSql?: string;
  /** Default `in-stages`. */
  analyze?: "in-stages" | "full" | "none";
  jobs?: number;
  timeoutMs?: number;
  onProgress?: (message: string) => void;
}

export interface PostUpgradeResult {
  extensionsUpdated: boolean;
  extensionsMs: number;
  analyzeMs: number;
  durationMs: number;
}

const BIN_ORDER: PgBinary[] = ["pg_ctl", "postgres", "initdb", "pg_controldata", "pg_upgrade", "pg_isready", "psql", "vacuumdb", "pgbench"];
const SHORT = 60_000;
const DEFAULT_WAIT = 10 * 60_000;
const DEFAULT_UPGRADE_TIMEOUT = 6 * 3600_000;

/**
 * Settings that keep a server on a clone away from everything its source uses. Values are
 * constants (no input), so they are safe inside pg_ctl's shell string.
 */
export function isolationSettings(major: number): Array<[string, string]> {
  const s: Array<[string, string]> = [
    ["archive_mode", "off"], // never push WAL into the source's archive
    ["external_pid_file", ""], // Debian configs point this at the source's pid file
    ["logging_collector", "off"], // logs go to our -l file, not the source's log_directory
    ["log_destination", "stderr"],
    ["synchronous_standby_names", ""], // writes would wait for the source's standbys
  ];
  if (major <= 14) s.push(["stats_temp_directory", "pg_stat_tmp"]); // Debian: /var/run/postgresql/<v>-main.pg_stat_tmp
  if (major >= 12) {
    s.push(["primary_conninfo", ""], ["primary_slot_name", ""], ["archive_cleanup_command", ""], ["recovery_end_command", ""], ["restore_command", ""]);
  }
  // Live's workers that act outward must not run on a copy of it: subscriptions would pull
  // from (and advance slots on) live's publishers, pg_cron would run live's jobs.
  s.push(["max_logical_replication_workers", "0"], ["cron.launch_active_jobs", "off"]);
  return s;
}

/** `-c name='value' ...` for pg_ctl -o / pg_upgrade -o: values are validated, then single-quoted. */
export function optionString(settings: Array<[string, string]>): string {
  return settings
    .map(([k, v]) => {
      validateSettingName(k);
      validateSettingValue(k, v);
      return `-c ${k}='${v}'`;
    })
    .join(" ");
}

function specOf(v: PgVersionArg | PgInstall, defaultField: string): { major: number; binDir: string; field: string; custom: boolean } {
  const spec: PgInstallSpec = isInstall(v) ? { version: v.major, binDir: v.binDir } : typeof v === "object" && v !== null ? v : { version: v };
  const field = spec.field ?? defaultField;
  const major = validateVersion(spec.version, `${field}.version`);
  if (spec.binDir !== undefined) {
    const binDir = validatePath(spec.binDir, `${field}.binDir`, "bin directory").replace(/\/$/, "");
    return { major, binDir, field, custom: binDir !== `/usr/lib/postgresql/${major}/bin` };
  }
  return { major, binDir: `/usr/lib/postgresql/${major}/bin`, field, custom: false };
}

function validateMode(mode: unknown, field = "mode"): UpgradeMode {
  if (mode === "link" || mode === "clone" || mode === "copy") return mode;
  throw new PostgresInputError(field, `${JSON.stringify(mode)} is not one of link, clone, copy`);
}

function validateJobs(v: unknown, field = "jobs"): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < 1 || v > 256) throw new PostgresInputError(field, `${JSON.stringify(v)} is not a job count in 1..256`);
  return v;
}

function validateAuth(v: unknown, field: string): AuthMethod {
  if (v === "peer" || v === "trust" || v === "md5" || v === "scram-sha-256" || v === "reject") return v;
  throw new PostgresInputError(field, `${JSON.stringify(v)} is not one of peer, trust, md5, scram-sha-256, reject`);
}

/** Check a ClusterSettings read back from somewhere (a file kept on a clone): what initdb would be given. */
export function checkClusterSettings(settings: unknown, field = "settings"): ClusterSettings {
  return validateSettings(settings, field);
}

function validateSettings(settings: unknown, field: string): ClusterSettings {
  if (!settings || typeof settings !== "object") throw new PostgresInputError(field, "must be the object returned by recoverCrashConsistent / inspectCluster");
  const s = settings as ClusterSettings;
  validateEncoding(s.encoding, `${field}.encoding`);
  validateLocale(s.lcCollate, `${field}.lcCollate`);
  validateLocale(s.lcCtype, `${field}.lcCtype`);
  if (!["libc", "icu", "builtin"].includes(s.localeProvider)) throw new PostgresInputError(`${field}.localeProvider`, `${JSON.stringify(s.localeProvider)} is not libc, icu or builtin`);
  if (s.icuLocale !== undefined) validateLocale(s.icuLocale, `${field}.icuLocale`);
  if (typeof s.dataChecksums !== "boolean") throw new PostgresInputError(`${field}.dataChecksums`, "must be a boolean");
  if (!Number.isInteger(s.walSegmentBytes) || s.walSegmentBytes < 1 << 20 || s.walSegmentBytes > 1 << 30) {
    throw new PostgresInputError(`${field}.walSegmentBytes`, `${JSON.stringify(s.walSegmentBytes)} is not a WAL segment size`);
  }
  validateName(s.superuser, `${field}.superuser`, "role name");
  return s;
}

/**
 * Typed PostgreSQL operations on one host. Cheap to construct; holds only the host, the
 * OS user and a cache of checked installations.
 */
/** The directories {@link PostgresDriver.makeTempDir} makes; nothing else is ever removed as a staged cluster. */
const STAGED_DIR = /^\/tmp\/understudy-pg\.[A-Za-z0-9]{8}$/;

function stagedDirOf(dir: string): string {
  if (typeof dir !== "string" || !STAGED_DIR.test(dir)) throw new PostgresInputError("stagedDir", `${JSON.stringify(dir)} is not a directory stageCluster made (/tmp/understudy-pg.XXXXXXXX)`);
  return dir;
}

/** A look asked at once with others (Promise.allSettled): its value, or its error thrown now, in the caller's order. */
function judged<T>(r: PromiseSettledResult<T>): T {
  if (r.status === "rejected") throw r.reason;
  return r.value;
}

/** What one look at a bin directory found (resolveInstall checks each caller's binaries against it). */
interface CheckedInstall {
  dirFound: boolean;
  executables: Set<PgBinary>;
  /** The installation, or what `postgres --version` reported instead (each caller names its own field). */
  version: PgInstall | { found: string };
}

/**
 * Checked installations shared by every driver of one provider process on one host (see
 * {@link PostgresDriver.sharedInstallChecks}): a rehearsal's steps each open their own
 * connection and driver, and would otherwise check the same bin directories once per step.
 */
const SHARED_INSTALLS = new Map<string, Map<string, Promise<CheckedInstall>>>();

export class PostgresDriver {
  readonly osUser: string;
  readonly superuser: string;
  /** The superuser was given (not the OS user's name by default): never read, never guessed. */
  readonly superuserGiven: boolean;
  /**
   * Checked installations by bin directory, major and field: one `stat` of every binary we
   * use and one `postgres --version` per bin directory, shared with the drivers `as()` makes
   * (each step of a rehearsal connects as the clone's superuser through one of them).
   */
  private readonly installs: Map<string, Promise<CheckedInstall>>;

  constructor(
    readonly host: Host,
    opts: PostgresDriverOptions = {},
    installCache?: Map<string, Promise<CheckedInstall>>,
  ) {
    this.osUser = validateOsUser(opts.osUser ?? "postgres", "postgres.osUser");
    this.superuser = validateName(opts.superuser ?? this.osUser, "postgres.superuser", "role name");
    this.superuserGiven = opts.superuser !== undefined;
    this.installs = installCache ?? new Map();
  }

  /**
   * The cache of checked installations for `hostKey` (one host, as its connection names it),
   * shared for the life of this process: give it to the constructor when many short-lived
   * drivers work on the same host in one deployment. A failed check is never kept.
   */
  static sharedInstallChecks(hostKey: string): Map<string, Promise<CheckedInstall>> {
    let m = SHARED_INSTALLS.get(hostKey);
    if (!m) SHARED_INSTALLS.set(hostKey, (m = new Map()));
    return m;
  }

  /** The same driver (host, OS user) connecting as `superuser` (validated: `postgres.superuser`). */
  as(superuser: string): PostgresDriver {
    return new PostgresDriver(this.host, { osUser: this.osUser, superuser: validateName(superuser, "postgres.superuser", "role name") }, this.installs);
  }

  // ---------------------------------------------------------------- installations

  /**
   * Resolve a version to its bin directory and check, on the host, that the directory
   * and `need`ed binaries exist and that `postgres --version` reports that major.
   */
  async resolveInstall(version: PgVersionArg | PgInstall, need: readonly PgBinary[] = ["pg_ctl", "postgres"], defaultField = "postgres"): Promise<PgInstall> {
    const spec = specOf(version, defaultField);
    const bins = [...new Set<PgBinary>(["postgres", ...need])].sort((a, b) => BIN_ORDER.indexOf(a) - BIN_ORDER.indexOf(b));
    // One look per bin directory and major, whichever field asks (the error names the caller's field).
    const key = `${spec.binDir}|${spec.major}`;
    let p = this.installs.get(key);
    if (!p) {
      p = this.checkInstall(spec);
      this.installs.set(key, p);
      // A missing directory or another version is looked at again next time (it may be installed meanwhile).
      p.then(
        (c) => {
          if (!c.dirFound || !("binDir" in c.version)) this.installs.delete(key);
        },
        () => this.installs.delete(key),
      );
    }
    const c = await p;
    const h = this.host.description;
    const hint = `(apt-get install postgresql-${spec.major}, or set binDir)`;
    if (!c.dirFound) {
      if (spec.custom) throw new PostgresInputError(`${spec.field}.binDir`, `${spec.binDir} does not exist on ${h}`);
      throw new PostgresInputError(`${spec.field}.version`, `${spec.major} is not installed on ${h}: ${spec.binDir}/${bins[0]} not found ${hint}`);
    }
    const missing = bins.filter((b) => !c.executables.has(b));
    if (missing.length) {
      const field = spec.custom ? `${spec.field}.binDir` : `${spec.field}.version`;
      throw new PostgresInputError(
        field,
        `${spec.major}: ${missing.map((b) => `${spec.binDir}/${b}`).join(", ")} not found or not executable on ${h} ${hint}`,
      );
    }
    if (!("binDir" in c.version)) {
      throw new PostgresInputError(spec.custom ? `${spec.field}.binDir` : `${spec.field}.version`, `${spec.binDir} on ${h} holds ${c.version.found}, not ${spec.major}`);
    }
    return c.version;
  }

  /** One look at a bin directory: which of our binaries are executable files there, and (when `postgres` is) its version. */
  private async checkInstall(spec: { major: number; binDir: string; field: string; custom: boolean }): Promise<CheckedInstall> {
    const h = this.host.description;
    const paths = [spec.binDir, ...BIN_ORDER.map((b) => `${spec.binDir}/${b}`)];
    let out: RunResult;
    try {
      out = await this.host.run(["stat", "-L", "-c", "%F|%a|%n", "--", ...paths], { okExitCodes: [0, 1], timeoutMs: SHORT });
    } catch (e) {
      throw new PostgresError({ step: "check installation", host: h, message: `could not inspect ${spec.binDir}: ${(e as Error).message}`, leftBehind: "nothing" });
    }
    const found = new Map<string, { type: string; mode: number }>();
    for (const line of out.stdout.split("\n")) {
      const [type, mode, ...name] = line.split("|");
      if (type && mode && name.length) found.set(name.join("|"), { type, mode: parseInt(mode, 8) });
    }
    const dir = found.get(spec.binDir);
    const executables = new Set<PgBinary>(
      BIN_ORDER.filter((b) => {
        const f = found.get(`${spec.binDir}/${b}`);
        return f !== undefined && f.type === "regular file" && (f.mode & 0o111) !== 0;
      }),
    );
    const dirFound = dir !== undefined && dir.type === "directory";
    if (!dirFound || !executables.has("postgres")) return { dirFound, executables, version: { found: "no postgres binary" } };
    let v: RunResult;
    try {
      v = await this.host.run([`${spec.binDir}/postgres`, "--version"], { timeoutMs: SHORT });
    } catch (e) {
      throw new PostgresError({ step: "check installation", host: h, message: `${spec.binDir}/postgres --version failed: ${(e as Error).message}`, leftBehind: "nothing" });
    }
    const parsed = parseServerVersion(v.stdout);
    if (!parsed || parsed.major !== spec.major) {
      return { dirFound, executables, version: { found: parsed ? `PostgreSQL ${parsed.full}` : `an unknown version (${v.stdout.trim()})` } };
    }
    return { dirFound, executables, version: { major: spec.major, binDir: spec.binDir, fullVersion: parsed.full } };
  }

  // ---------------------------------------------------------------- low-level helpers

  /** Run a PostgreSQL binary as the OS user with LC_ALL=C; failures become PostgresError. */
  private async pg(
    inst: PgInstall,
    bin: PgBinary,
    args: string[],
    o: { step: string; dataDir?: string; leftBehind?: string; timeoutMs?: number; okExitCodes?: number[]; input?: string; cwd?: string; redact?: string[] },
  ): Promise<RunResult> {
    const argv = ["env", "LC_ALL=C", `${inst.binDir}/${bin}`, ...args];
    try {
      return await this.host.runAs(this.osUser, argv, {
        timeoutMs: o.timeoutMs ?? SHORT,
        okExitCodes: o.okExitCodes,
        input: o.input,
        cwd: o.cwd ?? "/",
        redact: o.redact,
      });
    } catch (e) {
      throw this.commandError(e, o.step, bin, o.dataDir, o.leftBehind);
    }
  }

  private commandError(e: unknown, step: string, what: string, dataDir?: string, leftBehind?: string): Error {
    if (!(e instanceof HostCommandError)) return e as Error;
    const why = e.timedOut ? "timed out" : e.exitCode === null ? "could not start" : `exited with code ${e.exitCode}`;
    return new PostgresError({
      step,
      host: this.host.description,
      dataDir,
      message: `${what} ${why}`,
      detail: tail(e.stderr) || tail(e.stdout) || e.message,
      leftBehind,
      cause: e,
    });
  }

  /** Run a plain command as the OS user (no LC_ALL), for file operations. */
  private async asUser(argv: string[], o: RunOptions & { step: string; dataDir?: string } ): Promise<RunResult> {
    try {
      return await this.host.runAs(this.osUser, argv, { timeoutMs: SHORT, cwd: "/", ...o });
    } catch (e) {
      throw this.commandError(e, o.step, argv[0], o.dataDir, "nothing");
    }
  }

  /** The last `bytes` of a file the OS user can read ("" when missing). */
  private async readTail(path: string, bytes = 4000): Promise<string> {
    try {
      const r = await this.host.runAs(this.osUser, ["tail", "-c", String(bytes), "--", path], { okExitCodes: [0, 1], timeoutMs: SHORT, cwd: "/" });
      return r.exitCode === 0 ? r.stdout : "";
    } catch {
      return "";
    }
  }

  private async exists(path: string, test: "-e" | "-d" | "-f" = "-e"): Promise<boolean> {
    const r = await this.host.runAs(this.osUser, ["test", test, path], { okExitCodes: [0, 1], timeoutMs: SHORT, cwd: "/" });
    return r.exitCode === 0;
  }

  /** Create a directory owned by the OS user with `mode` when it is missing; check it is writable. */
  async ensureDir(path: string, mode = "0700", field = "directory"): Promise<void> {
    validatePath(path, field, "directory");
    if (!/^0?[0-7]{3}$/.test(mode)) throw new PostgresInputError("mode", `${JSON.stringify(mode)} is not an octal mode`);
    if (!(await this.exists(path, "-d"))) {
      try {
        await this.host.runAs(this.osUser, ["mkdir", "-p", "-m", mode, "--", path], { timeoutMs: SHORT, cwd: "/" });
      } catch {
        // The parent is not writable by the OS user: create it as the login user (root).
        try {
          await this.host.run(["install", "-d", "-m", mode, "-o", this.osUser, "--", path], { timeoutMs: SHORT });
        } catch (e) {
          throw this.commandError(e, "create directory", `install -d ${path}`, undefined, "nothing");
        }
      }
    }
    const w = await this.host.runAs(this.osUser, ["test", "-w", path], { okExitCodes: [0, 1], timeoutMs: SHORT, cwd: "/" });
    if (w.exitCode !== 0) throw new PostgresInputError(field, `${path} on ${this.host.description} is not writable by OS user ${this.osUser}`);
  }

  /** The major a data directory was initialized with (PG_VERSION), or undefined when it has none. */
  async dataDirVersion(dataDir: string, field = "dataDir"): Promise<number | undefined> {
    validateDataDir(dataDir, field);
    const r = await this.host.runAs(this.osUser, ["cat", "--", `${dataDir}/PG_VERSION`], { okExitCodes: [0, 1], timeoutMs: SHORT, cwd: "/" });
    if (r.exitCode !== 0) return undefined;
    const n = Number(r.stdout.trim());
    return Number.isFinite(n) ? n : undefined;
  }

  private async expectDataDir(dataDir: string, inst: PgInstall, field: string, step: string): Promise<void> {
    const v = await this.dataDirVersion(dataDir, field);
    if (v === undefined) {
      throw new PostgresInputError(field, `${dataDir} on ${this.host.description} is not a PostgreSQL data directory (no PG_VERSION readable by ${this.osUser})`);
    }
    if (v !== inst.major) {
      throw new PostgresInputError(field, `${dataDir} on ${this.host.description} holds a PostgreSQL ${v} cluster, but ${step} was asked to use ${inst.major}`);
    }
  }

  /**
   * Throws `"port N is already in use on <host>"` when something listens on TCP `port`
   * (any address) or a live connection holds it as its local port, or a server's socket
   * lock file for it exists in `socketDir`. Ports inside the host's ephemeral range
   * (Linux: 32768-60999) can still be taken by an outgoing connection right after the check;
   * {@link start} then reports that.
   */
  async assertPortFree(port: number, field = "postgres.port", socketDir?: string): Promise<void> {
    validatePort(port, field);
    if (socketDir !== undefined) validateSocketDir(socketDir);
    let inUse: boolean;
    try {
      const r = await this.host.run(["ss", "-tanH"], { timeoutMs: SHORT });
      inUse = parseBusyPorts(r.stdout).has(port);
    } catch (e) {
      // exit code null: could not start (local); 127: command not found (remote shell).
      if (!(e instanceof HostCommandError) || (e.exitCode !== null && e.exitCode !== 127)) throw e;
      // No `ss` on this host: try to connect instead (constant script, port as an argument).
      const r = await this.host.run(["bash", "-c", 'exec 3<>"/dev/tcp/127.0.0.1/$1"', "probe", String(port)], { okExitCodes: [0, 1], timeoutMs: SHORT });
      inUse = r.exitCode === 0;
    }
    if (!inUse && socketDir !== undefined) inUse = await this.socketLockHeld(`${socketDir}/.s.PGSQL.${port}.lock`);
    if (inUse) throw new PostgresInputError(field, `port ${port} is already in use on ${this.host.description}`);
  }

  /**
   * Whether a socket lock file belongs to a running server. A server killed with -9 leaves
   * its lock behind; PostgreSQL replaces such a lock when its pid is gone, so only a lock
   * whose pid runs holds the port.
   */
  private async socketLockHeld(lock: string): Promise<boolean> {
    if (!(await this.exists(lock))) return false;
    const r = await this.host.runAs(this.osUser, ["head", "-n", "1", "--", lock], { okExitCodes: [0, 1], timeoutMs: SHORT, cwd: "/" });
    const pid = r.stdout.trim();
    if (r.exitCode !== 0 || !/^\d+$/.test(pid)) return true; // unreadable: assume held
    const alive = await this.host.runAs("root", ["kill", "-0", pid], { okExitCodes: [0, 1], timeoutMs: SHORT });
    return alive.exitCode === 0;
  }

  // ---------------------------------------------------------------- operations

  /** `initdb` a new cluster (for demos, tests and the new side of an upgrade). */
  async initdb(dataDir: string, version: PgVersionArg | PgInstall, opts: InitdbOptions = {}): Promise<{ durationMs: number; install: PgInstall }> {
    validateDataDir(dataDir, "postgres.dataDir");
    const locale = validateLocale(opts.locale ?? "C.UTF-8", "postgres.locale");
    const lcCollate = opts.lcCollate === undefined ? undefined : validateLocale(opts.lcCollate, "postgres.lcCollate");
    const lcCtype = opts.lcCtype === undefined ? undefined : validateLocale(opts.lcCtype, "postgres.lcCtype");
    const encoding = validateEncoding(opts.encoding ?? "UTF8");
    const superuser = validateName(opts.superuser ?? this.superuser, "postgres.superuser", "role name");
    const authLocal = validateAuth(opts.authLocal ?? "peer", "postgres.authLocal");
    const authHost = validateAuth(opts.authHost ?? "scram-sha-256", "postgres.authHost");
    const provider = opts.localeProvider ?? "libc";
    if (!["libc", "icu", "builtin"].includes(provider)) throw new PostgresInputError("postgres.localeProvider", `${JSON.stringify(provider)} is not libc, icu or builtin`);
    const icu = opts.icuLocale === undefined ? undefined : validateLocale(opts.icuLocale, "postgres.icuLocale");
    if (opts.walSegmentMb !== undefined && (!Number.isInteger(opts.walSegmentMb) || opts.walSegmentMb < 1 || opts.walSegmentMb > 1024 || (opts.walSegmentMb & (opts.walSegmentMb - 1)) !== 0)) {
      throw new PostgresInputError("postgres.walSegmentMb", `${JSON.stringify(opts.walSegmentMb)} is not a power of two in 1..1024`);
    }
    const timeoutMs = opts.timeoutMs === undefined ? 10 * 60_000 : validateTimeout(opts.timeoutMs, "postgres.timeoutMs");
    const inst = await this.resolveInstall(version, ["initdb"]);
    if (provider !== "libc" && inst.major < (provider === "icu" ? 15 : 17)) {
      throw new PostgresInputError("postgres.localeProvider", `${provider} needs PostgreSQL ${provider === "icu" ? 15 : 17} or newer, not ${inst.major}`);
    }
    if ((await this.dataDirVersion(dataDir)) !== undefined) {
      throw new PostgresInputError("postgres.dataDir", `${dataDir} on ${this.host.description} already holds a cluster; initdb needs an empty directory`);
    }
    await this.ensureDir(dataDir, "0700", "postgres.dataDir");
    const args = ["-D", dataDir, "-U", superuser, `--encoding=${encoding}`, `--locale=${locale}`, `--auth-local=${authLocal}`, `--auth-host=${authHost}`];
    if (lcCollate) args.push(`--lc-collate=${lcCollate}`);
    if (lcCtype) args.push(`--lc-ctype=${lcCtype}`);
    if (provider === "icu") args.push("--locale-provider=icu", ...(icu ? [`--icu-locale=${icu}`] : []));
    if (provider === "builtin") args.push("--locale-provider=builtin", ...(icu ? [`--builtin-locale=${icu}`] : []));
    if (opts.dataChecksums ?? true) args.push("--data-checksums");
    if (opts.walSegmentMb) args.push(`--wal-segsize=${opts.walSegmentMb}`);
    const t0 = Date.now();
    await this.pg(inst, "initdb", args, {
      step: "initdb",
      dataDir,
      timeoutMs,
      leftBehind: `${dataDir} may hold a partial cluster (initdb removes it on most failures); it is not running`,
    });
    return { durationMs: Date.now() - t0, install: inst };
  }

  /** The `-c` settings for a start: ours, then isolation, then the caller's. */
  private startSettings(major: number, port: number, socketDir: string, listen: string, isolate: boolean, extra: Record<string, string | number | boolean>): Array<[string, string]> {
    const s: Array<[string, string]> = [
      ["port", String(port)],
      ["unix_socket_directories", socketDir],
      ["listen_addresses", listen],
    ];
    if (isolate) s.push(...isolationSettings(major));
    for (const [k, v] of Object.entries(extra)) {
      validateSettingName(k, "postgres.settings");
      s.push([k, validateSettingValue(k, v, "postgres.settings")]);
    }
    return s;
  }

  /**
   * Start a server on `dataDir` as the OS user (`pg_ctl start`), then (by default) wait
   * until it accepts connections — through crash recovery, with progress.
   */
  async start(dataDir: string, version: PgVersionArg | PgInstall, opts: StartOptions): Promise<PgServer> {
    validateDataDir(dataDir, "postgres.dataDir");
    const port = validatePort(opts?.port, "postgres.port");
    const socketDir = validateSocketDir(opts.socketDir, "postgres.socketDir");
    const listen = validateListen(opts.listen ?? "", "postgres.listen");
    const logFile = validatePath(opts.logFile ?? `${dataDir}/understudy-server.log`, "postgres.logFile", "log file");
    const settingsList = this.startSettings(specOf(version, "postgres").major, port, socketDir, listen, opts.isolate ?? true, opts.settings ?? {});
    const o = optionString(settingsList);
    if (opts.timeoutMs !== undefined) validateTimeout(opts.timeoutMs, "postgres.timeoutMs");

    const inst = await this.resolveInstall(version, ["pg_ctl", "pg_isready"]);
    // Read-only looks at once, judged in the order they were written one after the other;
    // only then are the directories made (nothing is created for a start that is refused).
    const looks = await Promise.allSettled([this.expectDataDir(dataDir, inst, "postgres.dataDir", "start"), this.status(dataDir, inst), this.assertPortFree(port, "postgres.port", socketDir)]);
    judged(looks[0]);
    const st = judged(looks[1]);
    if (st.running) {
      throw new PostgresInputError("postgres.dataDir", `a server (PID ${st.pid}) is already running on ${dataDir} on ${this.host.description}`);
    }
    if (st.stalePid !== undefined) {
      throw new PostgresInputError(
        "postgres.dataDir",
        `${dataDir}/postmaster.pid on ${this.host.description} names PID ${st.stalePid}, a live process running elsewhere: this is a copy of a running server's data directory. Run recoverCrashConsistent on it first (it removes the copied pid file); nothing was started`,
      );
    }
    judged(looks[2]);
    // One look per directory (the log often sits in the socket directory), at once.
    const dirs = new Map<string, string>();
    for (const [dir, field] of [[socketDir, "postgres.socketDir"], [parentDir(logFile), "postgres.logFile"]] as const) if (!dirs.has(dir)) dirs.set(dir, field);
    for (const r of await Promise.allSettled([...dirs].map(([dir, field]) => this.ensureDir(dir, "0700", field)))) judged(r);

    const server: PgServer = { host: this.host.description, dataDir, version: inst.major, binDir: inst.binDir, port, socketDir, listen, logFile };
    const t0 = Date.now();
    await this.pg(inst, "pg_ctl", ["start", "-D", dataDir, "-l", logFile, "-W", "-o", o], {
      step: "start",
      dataDir,
      leftBehind: `possibly a starting server; see ${logFile}`,
    });
    if (opts.wait ?? true) {
      await this.waitReady(server, { timeoutMs: opts.timeoutMs, onProgress: opts.onProgress, progressEveryMs: opts.progressEveryMs });
      server.readyMs = Date.now() - t0;
    }
    return server;
  }

  /**
   * Poll until the server accepts connections (pg_isready). Reports progress (elapsed,
   * the last server log line, e.g. `redo starts at ...`) through `onProgress`. Fails fast
   * with the log's tail when the server process exits.
   */
  async waitReady(server: PgServer, opts: WaitOptions = {}): Promise<{ durationMs: number }> {
    const timeoutMs = opts.timeoutMs === undefined ? DEFAULT_WAIT : validateTimeout(opts.timeoutMs, "timeoutMs");
    const every = opts.progressEveryMs ?? 5000;
    const inst = await this.resolveInstall({ version: server.version, binDir: server.binDir }, ["pg_ctl", "pg_isready"]);
    const t0 = Date.now();
    let lastReport = t0;
    let lastState: string;
    for (;;) {
      const r = await this.pg(inst, "pg_isready", ["-h", server.socketDir, "-p", String(server.port), "-t", "2"], {
        step: "wait for ready",
        dataDir: server.dataDir,
        okExitCodes: [0, 1, 2, 3],
      });
      const elapsed = Date.now() - t0;
      if (r.exitCode === 0) {
        opts.onProgress?.(`PostgreSQL ${server.version} on ${server.dataDir} (${this.host.description}) accepts connections after ${(elapsed / 1000).toFixed(1)} s`);
        return { durationMs: elapsed };
      }
      if (r.exitCode === 3) {
        throw new PostgresError({ step: "wait for ready", host: this.host.description, dataDir: server.dataDir, message: `pg_isready rejected its parameters: ${r.stdout.trim()}`, leftBehind: "the server, if it started" });
      }
      lastState = r.exitCode === 1 ? "starting up (recovering)" : "not answering yet";
      if (r.exitCode === 2 && elapsed > 1500) {
        const st = await this.status(server.dataDir, inst);
        if (!st.running) {
          const log = await this.readTail(server.logFile, 3000);
          const taken = /could not bind .*Address already in use/.test(log);
          throw new PostgresError({
            step: "start",
            host: this.host.description,
            dataDir: server.dataDir,
            message: taken
              ? `port ${server.port} was taken between the check and the start (an outgoing connection may hold it: on Linux they use local ports 32768-60999, see net.ipv4.ip_local_port_range; prefer a port outside that range)`
              : `the server exited before accepting connections (port ${server.port})`,
            detail: log ? `last lines of ${server.logFile}:\n${tail(log, 2000)}` : `no log at ${server.logFile}`,
            leftBehind: `no server is running; ${server.logFile}`,
          });
        }
      }
      if (elapsed >= timeoutMs) {
        const st = await this.status(server.dataDir, inst);
        const log = await this.readTail(server.logFile, 2000);
        throw new PostgresError({
          step: "wait for ready",
          host: this.host.description,
          dataDir: server.dataDir,
          message: `not accepting connections after ${Math.round(elapsed / 1000)} s (${lastState})`,
          detail: log ? `last lines of ${server.logFile}:\n${tail(log, 1500)}` : undefined,
          leftBehind: st.running ? `the server is still running (PID ${st.pid}); stop it or wait longer` : "no server is running",
        });
      }
      if (opts.onProgress && Date.now() - lastReport >= every) {
        lastReport = Date.now();
        const line = lastLogLine(await this.readTail(server.logFile, 2000));
        opts.onProgress(`PostgreSQL ${server.version} on ${server.dataDir}: ${lastState}, ${Math.round(elapsed / 1000)} s${line ? `; log: ${line}` : ""}`);
      }
      // Most starts take well under 2 s: poll every 50 ms until then (a pg_isready costs about
      // 10 ms), then back off; a long crash recovery is polled once a second.
      await sleep(elapsed < 2000 ? 50 : elapsed < 10_000 ? 250 : 1000);
    }
  }

  /**
   * Is a server running on this data directory? `pg_ctl status` only checks that the PID in
   * postmaster.pid is alive — in a clone that file is a copy of the SOURCE's, whose PID is
   * very much alive on the same host. So the PID is also checked to be a process whose
   * working directory is this data directory (a postmaster chdirs there). A copied pid
   * file is reported as `stalePid`, not as running.
   */
  async status(dataDir: string, version: PgVersionArg | PgInstall): Promise<ServerStatus> {
    validateDataDir(dataDir, "postgres.dataDir");
    const inst = isInstall(version) ? version : await this.resolveInstall(version, ["pg_ctl"]);
    const r = await this.pg(inst, "pg_ctl", ["status", "-D", dataDir], { step: "status", dataDir, okExitCodes: [0, 3, 4] });
    if (r.exitCode === 4) {
      throw new PostgresError({ step: "status", host: this.host.description, dataDir, message: "the data directory is not accessible", detail: tail(r.stderr || r.stdout), leftBehind: "nothing" });
    }
    if (r.exitCode !== 0) return { running: false };
    const pid = parsePgCtlStatusPid(r.stdout);
    if (pid === undefined) return { running: true, verified: false };
    const owner = await this.pidRunsIn(pid, dataDir);
    if (owner === "elsewhere") return { running: false, stalePid: pid };
    return { running: true, pid, verified: owner === "here" };
  }

  /** Whether process `pid` has `dataDir` as its working directory (`unknown` without /proc). */
  private async pidRunsIn(pid: number, dataDir: string): Promise<"here" | "elsewhere" | "unknown"> {
    // As the OS user: postmasters run as that user, so /proc/<pid>/cwd is readable without root.
    const o = { okExitCodes: [0, 1], timeoutMs: SHORT, cwd: "/" };
    const [cwd, real] = await Promise.all([
      this.host.runAs(this.osUser, ["readlink", "-e", `/proc/${pid}/cwd`], o),
      this.host.runAs(this.osUser, ["readlink", "-e", "--", dataDir], o),
    ]);
    const procCwd = cwd.stdout.trim();
    if (cwd.exitCode !== 0 || !procCwd) return "unknown";
    return procCwd === real.stdout.trim() ? "here" : "elsewhere";
  }

  /** {@link stop} for a data directory that may not exist (yet): `undefined` when it has no PG_VERSION. */
  async stopIfPresent(dataDir: string, version: PgVersionArg | PgInstall, opts: { mode?: "fast" | "smart"; timeoutMs?: number } = {}): Promise<StopResult | undefined> {
    if ((await this.dataDirVersion(dataDir)) === undefined) return undefined;
    return await this.stop(dataDir, version, opts);
  }

  /** Stop cleanly (`pg_ctl stop -m fast` by default) and wait; a stopped server is not an error. */
  async stop(dataDir: string, version: PgVersionArg | PgInstall, opts: { mode?: "fast" | "smart"; timeoutMs?: number } = {}): Promise<StopResult> {
    validateDataDir(dataDir, "postgres.dataDir");
    const mode = opts.mode ?? "fast";
    if (mode !== "fast" && mode !== "smart") throw new PostgresInputError("mode", `${JSON.stringify(mode)} is not fast or smart`);
    const timeoutMs = opts.timeoutMs === undefined ? DEFAULT_WAIT : validateTimeout(opts.timeoutMs, "timeoutMs");
    const inst = isInstall(version) ? version : await this.resolveInstall(version, ["pg_ctl", "pg_controldata"]);
    const t0 = Date.now();
    const st = await this.status(dataDir, inst);
    if (st.running && !st.verified) {
      // pg_ctl stop signals the PID in postmaster.pid: never do that unless it is this directory's server.
      throw new PostgresError({
        step: "stop",
        host: this.host.description,
        dataDir,
        message: `cannot verify that PID ${st.pid ?? "?"} in postmaster.pid is the server of this data directory (no /proc?); refusing to signal it`,
        leftBehind: "the server, if it is one, still running",
      });
    }
    if (st.running) {
      await this.pg(inst, "pg_ctl", ["stop", "-D", dataDir, "-m", mode, "-w", "-t", String(Math.ceil(timeoutMs / 1000))], {
        step: "stop",
        dataDir,
        timeoutMs: timeoutMs + 30_000,
        leftBehind: `the server (PID ${st.pid}) may still be running`,
      });
    }
    let state: string | undefined;
    try {
      state = (await this.controlData(dataDir, inst)).state;
    } catch {
      state = undefined;
    }
    return { wasRunning: st.running, durationMs: Date.now() - t0, state };
  }

  /** `pg_controldata`, parsed (cluster state, checkpoint, data checksums, ...). */
  async controlData(dataDir: string, version: PgVersionArg | PgInstall): Promise<ControlData> {
    validateDataDir(dataDir, "postgres.dataDir");
    const inst = isInstall(version) ? version : await this.resolveInstall(version, ["pg_controldata"]);
    const r = await this.pg(inst, "pg_controldata", ["-D", dataDir], { step: "pg_controldata", dataDir, leftBehind: "nothing" });
    try {
      return parseControlData(r.stdout);
    } catch (e) {
      throw new PostgresError({ step: "pg_controldata", host: this.host.description, dataDir, message: (e as Error).message, detail: tail(r.stdout), leftBehind: "nothing" });
    }
  }

  // ---------------------------------------------------------------- SQL

  /** Rows of one statement through `pg`. */
  async query<R extends QueryResultRow = Record<string, unknown>>(conn: PgConnection, text: string, params: unknown[] = []): Promise<R[]> {
    return await queryRows<R>(this.host, conn, text, params);
  }

  /** One statement through `pg`; returns the command tag and row count. */
  async sql(conn: PgConnection, text: string, params: unknown[] = []): Promise<{ command: string; rowCount: number }> {
    return await withClient(this.host, conn, async (c) => {
      const r = await c.query(text, params);
      return { command: r.command, rowCount: r.rowCount ?? 0 };
    });
  }

  /** `pg_postmaster_start_time()`: unchanged means the server was not restarted. */
  async postmasterStartTime(conn: PgConnection): Promise<Date> {
    const rows = await this.query<{ t: Date }>(conn, "SELECT pg_postmaster_start_time() AS t");
    return rows[0].t;
  }

  /**
   * `CHECKPOINT` through `pg` — the only thing Understudy ever does to a source. A
   * checkpoint just before a snapshot shortens the clone's crash recovery to the WAL
   * written after it. Needs a superuser (or `pg_checkpoint` on 15+).
   */
  async checkpoint(conn: PgConnection): Promise<{ durationMs: number }> {
    const t0 = Date.now();
    await withClient(this.host, conn, async (c) => c.query("CHECKPOINT"), "checkpoint");
    return { durationMs: Date.now() - t0 };
  }

  /**
   * SQL through `psql` run on the host as the OS user, on a server's unix socket (works
   * over SSH without a tunnel, and on servers that listen on no TCP address). The text is
   * passed on stdin, never in argv; it must not be built from untrusted input. Returns the
   * rows as tab-separated fields.
   */
  async adminQuery(server: { version: number; binDir?: string; socketDir: string; port: number; user?: string }, text: string, opts: { database?: string; user?: string; timeoutMs?: number } = {}): Promise<string[][]> {
    const socketDir = validateSocketDir(server.socketDir, "server.socketDir");
    const port = validatePort(server.port, "server.port");
    const database = validateName(opts.database ?? "postgres", "database", "database name");
    const user = validateName(opts.user ?? server.user ?? this.superuser, "user", "role name");
    if (typeof text !== "string" || text.length === 0) throw new PostgresInputError("sql", "must be a non-empty string");
    const inst = await this.resolveInstall({ version: server.version, binDir: server.binDir }, ["psql"]);
    const r = await this.pg(inst, "psql", ["-X", "-w", "-q", "-A", "-t", "-F", "\t", "-v", "ON_ERROR_STOP=1", "-h", socketDir, "-p", String(port), "-U", user, "-d", database, "-f", "-"], {
      step: "psql",
      input: text,
      timeoutMs: opts.timeoutMs ?? 10 * 60_000,
      leftBehind: "statements before the failing one were committed (each runs in its own transaction)",
    });
    return parsePsqlRows(r.stdout);
  }

  // ---------------------------------------------------------------- clones

  /**
   * Run `fn` against a private server on `dataDir`: a fresh 0700 socket directory from
   * `mktemp`, no TCP listen address, trust auth on that socket only (nobody but the OS user
   * and root can reach it), isolated from the source; then stop it cleanly and remove the
   * temporary directory. On failure the server is stopped and the directory (with the
   * server log) is kept and named in the error. Meant for clones, never for a source.
   */
  async withPrivateServer<T>(
    step: string,
    dataDir: string,
    inst: PgInstall,
    port: number,
    opts: { timeoutMs?: number; onProgress?: (m: string) => void; progressEveryMs?: number; settings?: Record<string, string | number | boolean> },
    fn: (srv: PgServer) => Promise<T>,
  ): Promise<{ result: T; readyMs: number; stopMs: number; log: string }> {
    validateDataDir(dataDir, "dataDir");
    validatePort(port, "tempPort");
    if (!isInstall(inst)) throw new PostgresInputError("inst", "must be the PgInstall returned by resolveInstall");
    if (opts.timeoutMs !== undefined) validateTimeout(opts.timeoutMs, "timeoutMs");
    const tmp = await this.makeTempDir(step);
    const hba = `${tmp}/hba.conf`;
    const logFile = `${tmp}/server.log`;
    let server: PgServer | undefined;
    let started = false;
    try {
      await this.asUser(["tee", "--", hba], { input: "# Understudy: private server, socket directory is 0700\nlocal all all trust\n", step, dataDir });
      const t0 = Date.now();
      started = true;
      server = await this.start(dataDir, inst, {
        port,
        socketDir: tmp,
        listen: "",
        logFile,
        // The caller's settings (e.g. wal_level for a rehearsal's stand-in for live), never another hba_file.
        settings: { ...(opts.settings ?? {}), hba_file: hba },
        timeoutMs: opts.timeoutMs,
        onProgress: opts.onProgress,
        progressEveryMs: opts.progressEveryMs,
      });
      const readyMs = Date.now() - t0;
      const result = await fn(server);
      const s = await this.stop(dataDir, inst);
      started = false;
      const log = await this.readTail(logFile, 64_000);
      await this.host.runAs(this.osUser, ["rm", "-rf", "--", tmp], { timeoutMs: SHORT, cwd: "/" }).catch(() => undefined);
      return { result, readyMs, stopMs: s.durationMs, log };
    } catch (e) {
      if (e instanceof PostgresInputError && server === undefined) {
        // Refused before a server started (e.g. the port is taken): nothing worth keeping.
        await this.host.runAs(this.osUser, ["rm", "-rf", "--", tmp], { timeoutMs: SHORT, cwd: "/" }).catch(() => undefined);
        throw e;
      }
      let left = `${tmp} (server log, hba.conf)`;
      if (started) {
        try {
          const st = await this.stop(dataDir, inst, { timeoutMs: 120_000 });
          left += st.wasRunning ? "; the private server was stopped" : "";
        } catch {
          left += `; a server may still be running on ${dataDir} (socket ${tmp}, port ${port})`;
        }
      }
      if (e instanceof PostgresError && !(e instanceof PgUpgradeError)) {
        throw new PostgresError({ step: `${step}: ${e.step}`, host: e.host, dataDir, message: e.what, detail: e.detail, leftBehind: left, cause: e });
      }
      throw e;
    }
  }

  /** A private directory of the OS user's (`mktemp -d`), named like {@link STAGED_DIR}. */
  private async makeTempDir(step: string): Promise<string> {
    const r = await this.asUser(["mktemp", "-d", "/tmp/understudy-pg.XXXXXXXX"], { step });
    return validateSocketDir(r.stdout.trim(), "mktemp");
  }

  /**
   * The bootstrap superuser's name through a private server's trust socket, connecting as
   * the given (or default) name; undefined when no role of that name exists (then nobody
   * can be named to connect: {@link readSuperuser} after a clean stop).
   */
  private async probeSuperuser(srv: PgServer): Promise<string | undefined> {
    try {
      const rows = await this.adminQuery(srv, "SELECT rolname FROM pg_roles WHERE oid = 10;\n", { user: this.superuser });
      return rows[0]?.[0] ? validateName(rows[0][0], "superuser (read from the cluster)", "role name") : undefined;
    } catch (e) {
      if (!this.superuserGiven && e instanceof PostgresError && /role "[^"]*" does not exist/.test(`${e.detail ?? ""} ${e.message}`)) return undefined;
      throw e;
    }
  }

  private async querySettings(srv: { version: number; binDir?: string; socketDir: string; port: number; user?: string; dataDir?: string }, control: Pick<ControlData, "dataChecksums" | "walSegmentBytes">): Promise<ClusterSettings> {
    const major = srv.version;
    const prov = major >= 15 ? "datlocprovider" : "'c'";
    const icu = major >= 17 ? "datlocale" : major >= 15 ? "daticulocale" : "NULL";
    const rows = await this.adminQuery(
      srv,
      `SELECT pg_encoding_to_char(d.encoding), d.datcollate, d.datctype, ${prov}, coalesce(${icu}, ''), (SELECT rolname FROM pg_roles WHERE oid = 10)
         FROM pg_database d WHERE d.datname = 'template0';\n`,
    );
    const [encoding, lcCollate, lcCtype, p, icuLocale, superuser] = rows[0] ?? [];
    if (!encoding || !superuser) {
      throw new PostgresError({ step: "inspect", host: this.host.description, dataDir: srv.dataDir, message: "template0 not found", leftBehind: "nothing" });
    }
    return {
      encoding,
      lcCollate,
      lcCtype,
      localeProvider: p === "i" ? "icu" : p === "b" ? "builtin" : "libc",
      ...(icuLocale ? { icuLocale } : {}),
      dataChecksums: control.dataChecksums,
      walSegmentBytes: control.walSegmentBytes,
      superuser,
    };
  }

  /**
   * A snapshot of a running database is crash-consistent, and pg_upgrade refuses it
   * ("The source cluster was not shut down cleanly"). This starts the OLD version on the
   * CLONE privately (temporary port and socket, no listen address, isolated), waits until
   * crash recovery is done, reads what the new cluster must match, stops it cleanly and
   * checks that pg_controldata says `shut down`.
   *
   * A `postmaster.pid` copied from the source is removed first — only when no process
   * with that PID runs in this very directory. A copy of a standby (standby.signal,
   * recovery.signal, recovery.conf) is refused: it would try to follow the source's primary.
   */
  async recoverCrashConsistent(
    dataDir: string,
    version: PgVersionArg,
    tempPort: number,
    opts: {
      timeoutMs?: number;
      onProgress?: (m: string) => void;
      progressEveryMs?: number;
      /** More work on the recovered cluster while its private server runs (one start instead of several). */
      whileRunning?: (srv: PgServer) => Promise<unknown>;
    } = {},
  ): Promise<RecoveryResult> {
    validateDataDir(dataDir, "dataDir");
    validatePort(tempPort, "tempPort");
    const timeoutMs = opts.timeoutMs === undefined ? 24 * 3600_000 : validateTimeout(opts.timeoutMs, "timeoutMs");
    const inst = await this.resolveInstall(version, ["pg_ctl", "pg_isready", "pg_controldata", "psql"]);
    const signals = ["standby.signal", "recovery.signal", "recovery.conf"];
    // Read-only looks at once, judged in the order they were written one after the other.
    const looks = await Promise.allSettled([
      this.expectDataDir(dataDir, inst, "dataDir", "recoverCrashConsistent"),
      Promise.all(signals.map((f) => this.exists(`${dataDir}/${f}`))),
      this.assertPortFree(tempPort, "tempPort"),
      this.controlData(dataDir, inst),
    ]);
    judged(looks[0]);
    const present = judged(looks[1]);
    const f = signals.find((_, k) => present[k]);
    if (f !== undefined) {
      throw new PostgresInputError(
        "dataDir",
        `${dataDir} on ${this.host.description} holds ${f}: it is a copy of a standby or of a cluster in archive recovery; starting it would follow the source's primary or archive. Not supported; nothing was started`,
      );
    }
    judged(looks[2]);
    const t0 = Date.now();
    const before = judged(looks[3]);
    const removedStalePid = await this.removeStalePid(dataDir);
    opts.onProgress?.(
      `recovering ${dataDir} with PostgreSQL ${inst.major} on temporary port ${tempPort} (state: ${before.state}; redo from ${before.redoLocation})`,
    );
    let extra: unknown;
    const work = async (srv: PgServer, user: string) => {
      const s = { ...srv, user };
      const settings = await this.querySettings(s, before);
      if (opts.whileRunning) extra = await opts.whileRunning(s);
      return settings;
    };
    const privOpts = { timeoutMs, onProgress: opts.onProgress, progressEveryMs: opts.progressEveryMs };
    // Recovery first; the bootstrap superuser through the private trust socket, as the given
    // name (or the OS user's); when no role has that name, read it once the recovered cluster
    // is stopped cleanly (single-user mode) and start it again.
    const first = await this.withPrivateServer("recover", dataDir, inst, tempPort, privOpts, async (srv) => {
      const user = this.superuserGiven ? this.superuser : await this.probeSuperuser(srv);
      return user === undefined ? undefined : await work(srv, user);
    });
    let run: { result: ClusterSettings; readyMs: number; stopMs: number; log: string };
    if (first.result) run = first as typeof run;
    else {
      const user = await this.readSuperuser(dataDir, inst, "dataDir");
      opts.onProgress?.(`no role ${this.superuser}: the bootstrap superuser read in single-user mode is ${user}`);
      const second = await this.withPrivateServer("recover", dataDir, inst, tempPort, privOpts, (srv) => work(srv, user));
      run = { ...second, readyMs: first.readyMs, stopMs: first.stopMs + second.stopMs, log: `${first.log}\n${second.log}` };
    }
    const after = await this.controlData(dataDir, inst);
    if (!after.cleanShutdown) {
      throw new PostgresError({
        step: "recover",
        host: this.host.description,
        dataDir,
        message: `after recovery and a clean stop, pg_controldata says "${after.state}", not "shut down"`,
        leftBehind: "the clone's data directory, not running",
      });
    }
    return {
      dataDir,
      recoveryMs: run.readyMs,
      stopMs: run.stopMs,
      durationMs: Date.now() - t0,
      stateBefore: before.state,
      stateAfter: after.state,
      ...(removedStalePid ? { removedStalePid } : {}),
      log: parseRecoveryLog(run.log),
      settings: run.result,
      control: after,
      extra,
    };
  }

  /**
   * Remove `<dataDir>/postmaster.pid` when it is a stale copy. Refuses when a live process
   * with that PID has this data directory as its working directory (a postmaster chdirs to
   * its data directory): that is a running server, maybe the source itself.
   */
  async removeStalePid(dataDir: string): Promise<{ pid: number; dataDir?: string } | undefined> {
    const pidFile = `${dataDir}/postmaster.pid`;
    const r = await this.host.runAs(this.osUser, ["head", "-n", "2", "--", pidFile], { okExitCodes: [0, 1], timeoutMs: SHORT, cwd: "/" });
    if (r.exitCode !== 0) return undefined;
    const [pidLine, dirLine] = r.stdout.split("\n");
    const pid = Number(pidLine?.trim());
    if (Number.isInteger(pid) && pid > 0) {
      const alive = await this.host.runAs(this.osUser, ["kill", "-0", String(pid)], { okExitCodes: [0, 1], timeoutMs: SHORT, cwd: "/" }).catch(() => ({ exitCode: 1 }));
      if (alive.exitCode === 0) {
        const where = await this.pidRunsIn(pid, dataDir);
        if (where !== "elsewhere") {
          throw new PostgresInputError(
            "dataDir",
            `a process with PID ${pid} from ${pidFile} is running${where === "here" ? ` in ${dataDir}` : " (its directory cannot be checked)"} on ${this.host.description}: ${dataDir} looks like a live data directory, not a stopped clone. Nothing was changed`,
          );
        }
      }
    }
    await this.asUser(["rm", "-f", "--", pidFile], { step: "recover", dataDir });
    return { pid, ...(dirLine?.trim() ? { dataDir: dirLine.trim() } : {}) };
  }

  /** Read what a new cluster must match (encoding, locales, checksums, WAL segment size, superuser) by starting `dataDir` privately. */
  async inspectCluster(dataDir: string, version: PgVersionArg | PgInstall, tempPort: number, opts: { timeoutMs?: number; onProgress?: (m: string) => void } = {}): Promise<ClusterSettings> {
    validateDataDir(dataDir, "dataDir");
    validatePort(tempPort, "tempPort");
    const inst = await this.resolveInstall(version, ["pg_ctl", "pg_isready", "pg_controldata", "psql"]);
    await this.expectDataDir(dataDir, inst, "dataDir", "inspectCluster");
    await this.assertPortFree(tempPort, "tempPort");
    const control = await this.controlData(dataDir, inst);
    if (!control.cleanShutdown) {
      throw new PostgresInputError("dataDir", `${dataDir} was not shut down cleanly (state "${control.state}"): run recoverCrashConsistent first`);
    }
    return await this.readSettings(dataDir, inst, tempPort, control, opts);
  }

  /** inspectCluster without its checks, for callers that made them already. */
  private async readSettings(
    dataDir: string,
    inst: PgInstall,
    tempPort: number,
    control: ControlData,
    opts: { timeoutMs?: number; onProgress?: (m: string) => void; superuser?: string },
  ): Promise<ClusterSettings> {
    const user = opts.superuser ?? (this.superuserGiven ? this.superuser : await this.readSuperuser(dataDir, inst, "dataDir"));
    return (await this.withPrivateServer("inspect", dataDir, inst, tempPort, opts, (srv) => this.querySettings({ ...srv, user }, control))).result;
  }

  /**
   * The name of the bootstrap superuser (the role with OID 10) of a cleanly stopped cluster,
   * read without any password or pg_hba.conf rule: a single-user backend (`postgres --single`)
   * runs as that role whatever it is called (InitializeSessionUserIdStandalone). Refuses a
   * running cluster, one not shut down cleanly, and a copied postmaster.pid; the cluster stays
   * cleanly shut down (the backend writes a shutdown checkpoint).
   */
  async readSuperuser(dataDir: string, version: PgVersionArg | PgInstall, field = "dataDir"): Promise<string> {
    validateDataDir(dataDir, field);
    const inst = isInstall(version) ? version : await this.resolveInstall(version, ["postgres", "pg_ctl", "pg_controldata"]);
    await this.expectDataDir(dataDir, inst, field, "readSuperuser");
    const st = await this.status(dataDir, inst);
    if (st.running || st.stalePid !== undefined) {
      throw new PostgresInputError(field, `${st.running ? "a server is running" : `postmaster.pid names PID ${st.stalePid}, a live process`} on ${dataDir} on ${this.host.description}: the superuser is read from a stopped cluster; nothing was started`);
    }
    const control = await this.controlData(dataDir, inst);
    if (!control.cleanShutdown) {
      throw new PostgresInputError(field, `${dataDir} on ${this.host.description} was not shut down cleanly (state "${control.state}"): the superuser is read after recovery`);
    }
    // Settings as argv (no shell); the backend listens on nothing and starts no workers.
    const settings = isolationSettings(inst.major).flatMap(([k, v]) => ["-c", `${k}=${v}`]);
    const r = await this.pg(inst, "postgres", ["--single", "-D", dataDir, ...settings, "-c", "exit_on_error=on", "template1"], {
      step: "read the bootstrap superuser (single-user mode)",
      dataDir,
      input: "SELECT rolname FROM pg_authid WHERE oid = 10;\n",
      leftBehind: "the cluster, not running",
    });
    const name = parseSingleUserRolname(r.stdout);
    if (name === undefined) {
      throw new PostgresError({ step: "read the bootstrap superuser", host: this.host.description, dataDir, message: "the single-user backend printed no role with OID 10", detail: tail(r.stdout + r.stderr), leftBehind: "the cluster, not running" });
    }
    return validateName(name, "superuser (read from the cluster)", "role name");
  }

  /** The cluster's effective hba_file and ident_file; each must be a file inside `dataDir` (never live's). */
  private async ownAuthFiles(dataDir: string, inst: PgInstall, field: string): Promise<{ hba: string; ident: string }> {
    const real = (await this.asUser(["readlink", "-e", "--", dataDir], { step: "owner access", dataDir })).stdout.trim();
    const out: string[] = [];
    for (const name of ["hba_file", "ident_file"]) {
      const r = await this.pg(inst, "postgres", ["-D", dataDir, "-C", name], { step: "owner access", dataDir, leftBehind: "nothing changed" });
      const path = r.stdout.trim();
      const resolved = (await this.host.runAs(this.osUser, ["readlink", "-e", "--", path], { okExitCodes: [0, 1], timeoutMs: SHORT, cwd: "/" })).stdout.trim();
      if (!resolved || !resolved.startsWith(`${real}/`) || resolved.slice(real.length + 1).includes("/")) {
        throw new PostgresInputError(field, `${name} of ${dataDir} is ${path}${resolved && resolved !== path ? ` (-> ${resolved})` : ""}, not a file of that data directory: Understudy writes only a clone's own files; nothing was changed`);
      }
      out.push(resolved);
    }
    return { hba: out[0], ident: out[1] };
  }

  /** Rewrite a file of a clone with `edit` applied (atomically, mode kept); false when nothing changes. */
  private async editFile(path: string, edit: (text: string) => string, dataDir: string): Promise<boolean> {
    const before = (await this.asUser(["cat", "--", path], { step: "owner access", dataDir })).stdout;
    const after = edit(before);
    if (after === before) return false;
    await this.asUser(["sh", "-c", 'umask 077 && cat > "$1.understudy-new" && chmod --reference="$1" -- "$1.understudy-new" && mv -f -- "$1.understudy-new" "$1"', "sh", path], {
      step: "owner access",
      dataDir,
      input: after,
    });
    return true;
  }

  /**
   * Let the OS user in as `superuser` on the server of the CLONE `dataDir` whatever its
   * pg_hba.conf says (live's `scram-sha-256`, `md5`, ...): a marked `peer` block at the top of
   * the clone's pg_hba.conf, and its map line in the clone's pg_ident.conf. Only the OS user
   * owning the data directory gets in. Refuses when either file is not inside `dataDir`.
   * Idempotent; takes effect at the next start or reload. Returns whether a file changed.
   */
  async grantOwnerAccess(dataDir: string, version: PgVersionArg | PgInstall, superuser = this.superuser): Promise<boolean> {
    validateDataDir(dataDir, "dataDir");
    const su = validateName(superuser, "postgres.superuser", "role name");
    const inst = isInstall(version) ? version : await this.resolveInstall(version, ["postgres"]);
    await this.expectDataDir(dataDir, inst, "dataDir", "grantOwnerAccess");
    const f = await this.ownAuthFiles(dataDir, inst, "dataDir");
    const a = await this.editFile(f.ident, (t) => withOwnerBlock(t, ownerIdentBlock(this.osUser, su)), dataDir);
    const b = await this.editFile(f.hba, (t) => withOwnerBlock(t, ownerHbaBlock(su)), dataDir);
    return a || b;
  }

  /**
   * Remove the block {@link grantOwnerAccess} added (the files are then byte for byte what
   * they were) and reload the server when one runs on `dataDir`. Returns whether a file changed.
   */
  async revokeOwnerAccess(dataDir: string, version: PgVersionArg | PgInstall): Promise<boolean> {
    validateDataDir(dataDir, "dataDir");
    const inst = isInstall(version) ? version : await this.resolveInstall(version, ["postgres", "pg_ctl"]);
    await this.expectDataDir(dataDir, inst, "dataDir", "revokeOwnerAccess");
    const f = await this.ownAuthFiles(dataDir, inst, "dataDir");
    const b = await this.editFile(f.hba, withoutOwnerBlock, dataDir);
    const a = await this.editFile(f.ident, withoutOwnerBlock, dataDir);
    const st = await this.status(dataDir, inst);
    if ((a || b) && st.running) {
      if (!st.verified) throw new PostgresError({ step: "reload", host: this.host.description, dataDir, message: `cannot verify that PID ${st.pid ?? "?"} is this directory's server; not signalled`, leftBehind: "the files without the block; the server reads them at its next reload" });
      await this.pg(inst, "pg_ctl", ["reload", "-D", dataDir], { step: "reload", dataDir, leftBehind: "the files without the block; the server reads them at its next reload" });
    }
    return a || b;
  }

  /**
   * What a new cluster must match (as {@link querySettings} reads from a stopped one), read
   * from a RUNNING server: read-only, one query. The cut-over reads it from live before
   * clients are held, so that initdb runs while they still work ({@link stageCluster}).
   */
  async runningClusterSettings(srv: { version: number; binDir?: string; socketDir: string; port: number; user?: string }): Promise<ClusterSettings> {
    const rows = await this.adminQuery(srv, "SELECT current_setting('data_checksums'), (SELECT setting FROM pg_settings WHERE name = 'wal_segment_size'), (SELECT unit FROM pg_settings WHERE name = 'wal_segment_size');\n");
    const [checksums, size, unit] = rows[0] ?? [];
    const bytes = Number(size) * (unit === "8kB" ? 8192 : unit === "MB" ? 1 << 20 : 1);
    if (!Number.isInteger(bytes) || bytes <= 0) throw new PostgresError({ step: "inspect", host: this.host.description, message: `unexpected wal_segment_size ${size} ${unit}`, leftBehind: "nothing" });
    return await this.querySettings(srv, { dataChecksums: checksums === "on", walSegmentBytes: bytes });
  }

  /**
   * initdb a new cluster matching `settings` in a private directory of this host (0700, the
   * OS user's), to be copied into place with {@link placeStagedCluster}: the cut-over runs it
   * before clients are held. Returns the directory (its cluster is `<dir>/pgdata`).
   */
  async stageCluster(newVersion: PgVersionArg | PgInstall, settings: ClusterSettings): Promise<string> {
    const dir = await this.makeTempDir("stage the new cluster");
    try {
      await this.initdbFor(`${dir}/pgdata`, newVersion, settings);
    } catch (e) {
      await this.host.runAs(this.osUser, ["rm", "-rf", "--", dir], { timeoutMs: SHORT, cwd: "/" }).catch(() => undefined);
      throw e;
    }
    return dir;
  }

  /** Copy a cluster made by {@link stageCluster} to `newDataDir` (which must not exist yet: it is never overwritten). */
  async placeStagedCluster(stagedDir: string, newDataDir: string): Promise<void> {
    const staged = stagedDirOf(stagedDir);
    validateDataDir(newDataDir, "newDataDir");
    if (await this.exists(newDataDir, "-e")) throw new PostgresInputError("newDataDir", `${newDataDir} exists on ${this.host.description}; the staged cluster is copied only to a new directory`);
    await this.asUser(["cp", "-a", "--", `${staged}/pgdata`, newDataDir], { step: "place the staged cluster", dataDir: newDataDir });
  }

  /** Remove a directory made by {@link stageCluster} (idempotent). */
  async removeStagedCluster(stagedDir: string): Promise<void> {
    const staged = stagedDirOf(stagedDir);
    await this.asUser(["rm", "-rf", "--", staged], { step: "remove the staged cluster" });
  }

  /** initdb a new cluster that pg_upgrade will accept for an old one with `settings`. */
  async initdbFor(newDataDir: string, newVersion: PgVersionArg | PgInstall, settings: ClusterSettings): Promise<{ durationMs: number }> {
    const s = validateSettings(settings, "settings");
    const walMb = s.walSegmentBytes / (1024 * 1024);
    return await this.initdb(newDataDir, newVersion, {
      dataChecksums: s.dataChecksums,
      encoding: s.encoding,
      locale: s.lcCtype,
      lcCollate: s.lcCollate,
      lcCtype: s.lcCtype,
      localeProvider: s.localeProvider,
      icuLocale: s.icuLocale,
      superuser: s.superuser,
      ...(walMb !== 16 ? { walSegmentMb: walMb } : {}),
    });
  }

  // ---------------------------------------------------------------- pg_upgrade

  /** `pg_upgrade --check`: resolves or throws {@link PgUpgradeError} with pg_upgrade's reason. Changes nothing in the old cluster. */
  async upgradeCheck(oldDataDir: string, newDataDir: string, oldVersion: PgVersionArg, newVersion: PgVersionArg, opts: UpgradeOptions = {}): Promise<UpgradeCheckResult> {
    const r = await this.runUpgrade(true, oldDataDir, newDataDir, oldVersion, newVersion, opts);
    return { ok: true, durationMs: r.durationMs, output: r.output, initializedNew: r.initializedNew };
  }

  /**
   * `pg_upgrade` the (cleanly shut down) old cluster into `newDataDir` (initdb'ed here
   * when missing, matching the old cluster). Put the new data directory on the clone's
   * filesystem so `link` works. After `link` the old cluster cannot be started again.
   */
  async upgrade(oldDataDir: string, newDataDir: string, oldVersion: PgVersionArg, newVersion: PgVersionArg, opts: UpgradeOptions = {}): Promise<UpgradeResult> {
    return await this.runUpgrade(false, oldDataDir, newDataDir, oldVersion, newVersion, opts);
  }

  private async runUpgrade(
    check: boolean,
    oldDataDir: string,
    newDataDir: string,
    oldVersion: PgVersionArg,
    newVersion: PgVersionArg,
    opts: UpgradeOptions,
  ): Promise<UpgradeResult> {
    const step = check ? "pg_upgrade --check" : "pg_upgrade";
    const h = this.host.description;
    // -- inputs
    validateDataDir(oldDataDir, "oldDataDir");
    validateDataDir(newDataDir, "newDataDir");
    if (oldDataDir.replace(/\/$/, "") === newDataDir.replace(/\/$/, "")) throw new PostgresInputError("newDataDir", "must differ from oldDataDir");
    const oldSpec = specOf(oldVersion, "from");
    const newSpec = specOf(newVersion, "to");
    if (newSpec.major <= oldSpec.major) throw new PostgresInputError(`${newSpec.field}.version`, `${newSpec.major} is not newer than ${oldSpec.major}`);
    const mode = validateMode(opts.mode ?? "link");
    if (mode === "clone" && newSpec.major < 12) throw new PostgresInputError("mode", "clone needs pg_upgrade 12 or newer");
    const oldPort = validatePort(opts.oldPort ?? 50432, "oldPort");
    const newPort = validatePort(opts.newPort ?? 50433, "newPort");
    if (oldPort === newPort) throw new PostgresInputError("newPort", "must differ from oldPort");
    const socketDirIn = opts.socketDir === undefined ? undefined : validateSocketDir(opts.socketDir, "socketDir");
    const workDir = validatePath(opts.workDir ?? `${newDataDir.replace(/\/$/, "")}-pg_upgrade`, "workDir", "directory");
    const settingsIn = opts.settings === undefined ? undefined : validateSettings(opts.settings, "settings");
    const jobs = opts.jobs === undefined ? undefined : validateJobs(opts.jobs);
    const timeoutMs = opts.timeoutMs === undefined ? DEFAULT_UPGRADE_TIMEOUT : validateTimeout(opts.timeoutMs, "timeoutMs");

    // -- host checks
    const oldInst = await this.resolveInstall(oldVersion, ["pg_ctl", "pg_controldata", "pg_isready", "psql"], "from");
    const newInst = await this.resolveInstall(newVersion, ["pg_upgrade", "initdb", "pg_ctl", "pg_controldata", "pg_isready", "psql"], "to");
    // Read-only looks, asked at once; judged in the order they were written one after the other
    // (the first problem in that order is the one reported).
    const looks = await Promise.allSettled([
      this.expectDataDir(oldDataDir, oldInst, "oldDataDir", step),
      this.status(oldDataDir, oldInst),
      this.controlData(oldDataDir, oldInst),
      this.assertPortFree(oldPort, "oldPort"),
      this.assertPortFree(newPort, "newPort"),
      this.dataDirVersion(newDataDir, "newDataDir"),
    ]);
    judged(looks[0]);
    if (judged(looks[1]).running) {
      throw new PostgresInputError("oldDataDir", `a server is running on ${oldDataDir} on ${h}; pg_upgrade needs it stopped`);
    }
    const oldControl = judged(looks[2]);
    if (!oldControl.cleanShutdown) {
      throw new PostgresInputError(
        "oldDataDir",
        `${oldDataDir} on ${h} was not shut down cleanly (pg_controldata: "${oldControl.state}"), as in any snapshot of a running server: run recoverCrashConsistent on it first`,
      );
    }
    judged(looks[3]);
    judged(looks[4]);
    const newV = judged(looks[5]);
    if (newV !== undefined && newV !== newInst.major) {
      throw new PostgresInputError("newDataDir", `${newDataDir} on ${h} holds a PostgreSQL ${newV} cluster, not ${newInst.major}`);
    }
    if (newV !== undefined && (await this.status(newDataDir, newInst)).running) {
      throw new PostgresInputError("newDataDir", `a server is running on ${newDataDir} on ${h}; pg_upgrade needs it stopped`);
    }

    // -- new cluster
    let initializedNew = false;
    // The install user pg_upgrade needs (-U): given, or read from the (cleanly stopped) old cluster.
    let superuser = settingsIn?.superuser ?? (this.superuserGiven ? this.superuser : await this.readSuperuser(oldDataDir, oldInst, "oldDataDir"));
    if (newV === undefined) {
      // The old cluster, its clean shutdown and oldPort were checked above.
      const settings = settingsIn ?? (await this.readSettings(oldDataDir, oldInst, oldPort, oldControl, { onProgress: opts.onProgress, superuser }));
      superuser = settings.superuser;
      opts.onProgress?.(`initdb ${newDataDir} (PostgreSQL ${newInst.major}, ${settings.encoding}, ${settings.lcCollate}, checksums ${settings.dataChecksums ? "on" : "off"})`);
      await this.initdbFor(newDataDir, newInst, settings);
      initializedNew = true;
    } else {
      const newControl = await this.controlData(newDataDir, newInst);
      if (newControl.dataChecksums !== oldControl.dataChecksums) {
        throw new PostgresInputError(
          "newDataDir",
          `${newDataDir} has data checksums ${newControl.dataChecksums ? "on" : "off"} but the old cluster has them ${oldControl.dataChecksums ? "on" : "off"}: initdb it again (or let upgrade create it)`,
        );
      }
    }

    // -- run
    await this.ensureDir(workDir, "0700", "workDir");
    const ownSocket = socketDirIn === undefined;
    const socketDir = socketDirIn ?? (await this.makeTempDir(step));
    if (!ownSocket) await this.ensureDir(socketDir, "0700", "socketDir");
    const hba = `${socketDir}/understudy-upgrade-hba.conf`;
    await this.asUser(["tee", "--", hba], { input: "# Understudy: pg_upgrade's private servers\nlocal all all trust\n", step });
    const oldOpts = optionString([...isolationSettings(oldInst.major), ["hba_file", hba]]);
    const newOpts = optionString([["hba_file", hba]]);
    const args = [
      "-b", oldInst.binDir, "-B", newInst.binDir,
      "-d", oldDataDir, "-D", newDataDir,
      "-p", String(oldPort), "-P", String(newPort),
      "-U", superuser,
      `--socketdir=${socketDir}`,
      "-o", oldOpts, "-O", newOpts,
    ];
    if (mode === "link") args.push("--link");
    if (mode === "clone") args.push("--clone");
    if (mode === "copy" && newInst.major >= 16) args.push("--copy");
    if (jobs) args.push(`--jobs=${jobs}`);
    if (check) args.push("--check");
    opts.onProgress?.(`${step} ${oldInst.major} -> ${newInst.major} (${mode}) on ${h}: ${oldDataDir} -> ${newDataDir}`);
    const t0 = Date.now();
    let r: RunResult;
    try {
      r = await this.host.runAs(this.osUser, ["env", "LC_ALL=C", `${newInst.binDir}/pg_upgrade`, ...args], { cwd: workDir, timeoutMs, okExitCodes: [0, 1] });
    } catch (e) {
      throw this.commandError(e, step, "pg_upgrade", newDataDir, await this.upgradeLeftovers(check, mode, oldDataDir, newDataDir, workDir, initializedNew, oldInst, newInst));
    } finally {
      if (ownSocket) await this.host.runAs(this.osUser, ["rm", "-rf", "--", socketDir], { timeoutMs: SHORT, cwd: "/" }).catch(() => undefined);
      else await this.host.runAs(this.osUser, ["rm", "-f", "--", hba], { timeoutMs: SHORT, cwd: "/" }).catch(() => undefined);
    }
    const durationMs = Date.now() - t0;
    const output = r.stdout + (r.stderr ? `\n${r.stderr}` : "");
    if (r.exitCode !== 0) {
      const f = parsePgUpgradeFailure(r.stdout, r.stderr);
      const files: Record<string, string> = {};
      for (const p of f.files.slice(0, 6)) {
        const abs = p.startsWith("/") ? p : `${workDir}/${p}`;
        const txt = await this.readTail(abs, 4000);
        if (txt) files[abs] = txt;
      }
      const fileText = Object.entries(files)
        .map(([p, t]) => `--- ${p}:\n${tail(t, 1500)}`)
        .join("\n");
      throw new PgUpgradeError({
        step,
        host: h,
        dataDir: oldDataDir,
        message: `${oldInst.major} -> ${newInst.major} refused${f.failedCheck ? ` at "${f.failedCheck}"` : ""}: ${f.reason}`,
        detail: fileText || undefined,
        leftBehind: await this.upgradeLeftovers(check, mode, oldDataDir, newDataDir, workDir, initializedNew, oldInst, newInst),
        reason: f.reason,
        failedCheck: f.failedCheck,
        output,
        files,
        checkOnly: check,
      });
    }
    if (check) {
      return { mode, durationMs, output, workDir, initializedNew, oldClusterUsable: true, copiedConfig: [] };
    }
    // Independent files, each handled at once (in a promotion this runs while clients wait).
    const ext = `${workDir}/update_extensions.sql`;
    const [copied, hasExt, controlOld] = await Promise.all([
      Promise.all(
        (opts.copyHbaConf ?? true ? ["pg_hba.conf", "pg_ident.conf"] : []).map(async (f) => {
          if (!(await this.exists(`${oldDataDir}/${f}`, "-f"))) return undefined;
          await this.asUser(["cp", "--", `${oldDataDir}/${f}`, `${newDataDir}/${f}`], { step: "copy configuration", dataDir: newDataDir });
          return f;
        }),
      ),
      this.exists(ext, "-f"),
      this.exists(`${oldDataDir}/global/pg_control.old`),
    ]);
    const copiedConfig = copied.filter((f): f is string => f !== undefined);
    const oldClusterUsable = !controlOld;
    return { mode, durationMs, output, workDir, ...(hasExt ? { updateExtensionsSql: ext } : {}), initializedNew, oldClusterUsable, copiedConfig };
  }

  private async upgradeLeftovers(
    check: boolean,
    mode: UpgradeMode,
    oldDir: string,
    newDir: string,
    workDir: string,
    initializedNew: boolean,
    oldInst: PgInstall,
    newInst: PgInstall,
  ): Promise<string> {
    const parts: string[] = [];
    if (check) parts.push(`the old cluster ${oldDir} is unchanged`);
    else if (mode === "link" && (await this.exists(`${oldDir}/global/pg_control.old`).catch(() => false))) {
      parts.push(`the old cluster ${oldDir} can no longer be started (--link renamed global/pg_control to pg_control.old): roll the clone back to its snapshot or destroy it`);
    } else parts.push(`the old cluster ${oldDir} was not modified`);
    parts.push(`${initializedNew ? "the new cluster initdb'ed here" : "the new cluster"} at ${newDir}${check ? "" : " (partially upgraded: initdb it again before retrying)"}`);
    parts.push(`pg_upgrade's logs in ${newDir}/pg_upgrade_output.d and ${workDir}`);
    // pg_upgrade stops its servers when it fails by itself; killed or timed out, it leaves them running.
    const running: string[] = [];
    for (const [dir, inst] of [[oldDir, oldInst], [newDir, newInst]] as const) {
      try {
        const st = await this.status(dir, inst);
        if (st.running) running.push(`a server pg_upgrade started is still running on ${dir}${st.pid ? ` (PID ${st.pid})` : ""}`);
      } catch {
        running.push(`whether a server still runs on ${dir} could not be checked`);
      }
    }
    parts.push(...(running.length ? running : ["no server is running"]));
    return parts.join("; ");
  }

  /**
   * After pg_upgrade: run `update_extensions.sql` when there is one, then
   * `vacuumdb --all --analyze-in-stages` (statistics are not carried over). Uses a running
   * server when `server` is given, else starts one privately on `tempPort` and stops it.
   */
  async postUpgrade(newDataDir: string, newVersion: PgVersionArg, opts: PostUpgradeOptions): Promise<PostUpgradeResult> {
    validateDataDir(newDataDir, "newDataDir");
    if (!opts || (opts.server === undefined) === (opts.tempPort === undefined)) throw new PostgresInputError("postUpgrade", "give exactly one of server, tempPort");
    if (opts.server) {
      validatePort(opts.server.port, "server.port");
      validateSocketDir(opts.server.socketDir, "server.socketDir");
    } else validatePort(opts.tempPort, "tempPort");
    const ext = opts.updateExtensionsSql === undefined ? undefined : validatePath(opts.updateExtensionsSql, "updateExtensionsSql", "file");
    const analyze = opts.analyze ?? "in-stages";
    if (!["in-stages", "full", "none"].includes(analyze)) throw new PostgresInputError("analyze", `${JSON.stringify(analyze)} is not in-stages, full or none`);
    const jobs = opts.jobs === undefined ? undefined : validateJobs(opts.jobs);
    const timeoutMs = opts.timeoutMs === undefined ? DEFAULT_UPGRADE_TIMEOUT : validateTimeout(opts.timeoutMs, "timeoutMs");
    const inst = await this.resolveInstall(newVersion, ["pg_ctl", "pg_isready", "psql", "vacuumdb", "pg_controldata"], "to");
    await this.expectDataDir(newDataDir, inst, "newDataDir", "postUpgrade");
    // A private server's cluster is stopped: its superuser can be read. A running one: the given (or default) name.
    const su = this.superuserGiven || opts.server ? this.superuser : await this.readSuperuser(newDataDir, inst, "newDataDir");
    const t0 = Date.now();
    const work = async (srv: { socketDir: string; port: number }): Promise<PostUpgradeResult> => {
      let extensionsMs = 0;
      let extensionsUpdated = false;
      if (ext) {
        const e0 = Date.now();
        opts.onProgress?.(`applying ${ext}`);
        await this.pg(inst, "psql", ["-X", "-w", "-q", "-v", "ON_ERROR_STOP=1", "-h", srv.socketDir, "-p", String(srv.port), "-U", su, "-d", "postgres", "-f", ext], {
          step: "update extensions",
          dataDir: newDataDir,
          timeoutMs,
          leftBehind: "extensions in databases before the failing statement were updated",
        });
        extensionsMs = Date.now() - e0;
        extensionsUpdated = true;
      }
      let analyzeMs = 0;
      if (analyze !== "none") {
        const a0 = Date.now();
        opts.onProgress?.(`vacuumdb --all ${analyze === "in-stages" ? "--analyze-in-stages" : "--analyze-only"}`);
        await this.pg(
          inst,
          "vacuumdb",
          ["-w", "-h", srv.socketDir, "-p", String(srv.port), "-U", su, "--all", analyze === "in-stages" ? "--analyze-in-stages" : "--analyze-only", ...(jobs ? [`--jobs=${jobs}`] : [])],
          { step: "analyze", dataDir: newDataDir, timeoutMs, leftBehind: "statistics for some tables; nothing else changed" },
        );
        analyzeMs = Date.now() - a0;
      }
      return { extensionsUpdated, extensionsMs, analyzeMs, durationMs: Date.now() - t0 };
    };
    if (opts.server) return await work(opts.server);
    await this.assertPortFree(opts.tempPort as number, "tempPort");
    return (await this.withPrivateServer("postUpgrade", newDataDir, inst, opts.tempPort as number, { onProgress: opts.onProgress }, work)).result;
  }
}

function isInstall(v: unknown): v is PgInstall {
  return !!v && typeof v === "object" && typeof (v as PgInstall).major === "number" && typeof (v as PgInstall).binDir === "string" && typeof (v as PgInstall).fullVersion === "string";
}
