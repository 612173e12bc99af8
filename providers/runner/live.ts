/**
 * Live, as the cut-over handles it: read (sequences), stopped cleanly, started again the way
 * it was started. Until a promotion, nothing in Understudy calls anything here but reads.
 * Privileged file work (a log directory) runs as root through `host.runAs("root", ...)`, so
 * a non-root SSH login with `sudo -n` can restart live exactly when it must.
 */
import type { Host } from "../host/types";
import type { ClusterSettings, PostgresDriver } from "../postgres/driver";
import { isCleanShutdown } from "../postgres/parse";
import type { SourcePlan } from "../plan/rehearsal";
import { CONFIGURED_SETTINGS_SQL } from "./config";

export const SEQUENCES_SQL = `SELECT schemaname || '.' || sequencename, coalesce(last_value::text, 'unused') FROM pg_sequences ORDER BY 1`;

/** What the cut-over phases need from live (the real one below; fakes in unit tests). */
export interface LiveServer {
  readonly description: string;
  running(): Promise<boolean>;
  /** Read how live was started (before stopping it), so that it can be started the same way. */
  rememberStart(): Promise<void>;
  /** Stop cleanly; throws when pg_controldata does not say `shut down`. */
  stop(): Promise<void>;
  /** Start as it was started and wait until it answers. */
  start(): Promise<void>;
  sequences(database: string): Promise<string[][]>;
  /** The settings live took from its configuration files (`[name, setting]`). */
  configuredSettings(): Promise<string[][]>;
  /** What a new cluster must match (encoding, locale, checksums, WAL segment size, bootstrap superuser): read-only. */
  clusterSettings?(): Promise<ClusterSettings>;
  /** `CHECKPOINT`: before clients are held, so that the clean stop's own checkpoint has little left to write. */
  checkpoint?(): Promise<void>;
  /** The file live's server log (its stderr) goes to, as read by rememberStart(); undefined when not a file (journald, a pipe). */
  logFile?(): string | undefined;
}

/**
 * Where the new live logs, next to live's own log: the same directory, live's major replaced
 * by the new one in the name (`postgresql-13-main.log` -> `postgresql-15-main.log`, Debian's
 * convention), or `-pg<to>` added before the extension when the name holds no version.
 */
export function newLiveLogFileFor(liveLog: string, from: number, to: number): string {
  const slash = liveLog.lastIndexOf("/");
  const dir = liveLog.slice(0, slash + 1);
  const base = liveLog.slice(slash + 1);
  const token = new RegExp(`(^|[^0-9])${from}(?=[^0-9]|$)`);
  if (token.test(base)) return dir + base.replace(token, `$1${to}`);
  const dot = base.lastIndexOf(".");
  return dot > 0 ? `${dir}${base.slice(0, dot)}-pg${to}${base.slice(dot)}` : `${dir}${base}-pg${to}`;
}

/** `readlink /proc/<pid>/fd/2` output -> a log file path, or undefined (a socket, a pipe, /dev/null, a deleted file, an odd name). */
export function logTargetOf(link: string): string | undefined {
  const t = link.trim();
  if (!/^\/[A-Za-z0-9._/-]+$/.test(t) || t.startsWith("/dev/") || t.startsWith("/proc/") || t.includes("/../") || t.endsWith("/..")) return undefined;
  return t;
}

export interface LiveSpec {
  source: SourcePlan;
  /** Live's data directory on the host. */
  dataDir: string;
  startCommand?: string[];
  stopCommand?: string[];
  /** Where a pg_ctl-started live logs when its own log is not a file (default /var/log/understudy/live-<stack>.log). */
  logFile: string;
  /** Live's own log file as an earlier run read it (before a promotion stopped live): a roll-back starts live logging there. */
  ownLogFile?: string;
}

export class PgLiveServer implements LiveServer {
  private startOptions?: string;
  private logTarget?: string;

  constructor(
    private readonly host: Host,
    private readonly pg: PostgresDriver,
    private readonly spec: LiveSpec,
  ) {}

  get description(): string {
    return `PostgreSQL ${this.spec.source.version} on ${this.spec.dataDir} (port ${this.spec.source.port})`;
  }

  private get install() {
    return { version: this.spec.source.version, binDir: this.spec.source.binDir, field: "source" };
  }

  private get server() {
    return { version: this.spec.source.version, binDir: this.spec.source.binDir, socketDir: this.spec.source.socketDir, port: this.spec.source.port };
  }

  async running(): Promise<boolean> {
    return (await this.pg.status(this.spec.dataDir, this.install).catch(() => ({ running: false }))).running;
  }

  logFile(): string | undefined {
    return this.logTarget ?? this.spec.ownLogFile;
  }

  /**
   * How live was started: its options from postmaster.opts (written by postgres itself), and
   * the file its server log goes to (its postmaster's stderr: `pg_ctl -l`, pg_ctlcluster's
   * /var/log/postgresql/...), so that a restart logs where live always logged.
   */
  async rememberStart(): Promise<void> {
    const s = this.spec.source;
    const pidFile = await this.host.runAs(s.osUser, ["head", "-n", "1", "--", `${this.spec.dataDir}/postmaster.pid`], { okExitCodes: [0, 1], cwd: "/" });
    const pid = pidFile.stdout.trim();
    if (pidFile.exitCode === 0 && /^[1-9][0-9]*$/.test(pid)) {
      const link = await this.host.runAs(s.osUser, ["readlink", "--", `/proc/${pid}/fd/2`], { okExitCodes: [0, 1], cwd: "/" });
      this.logTarget = link.exitCode === 0 ? logTargetOf(link.stdout) : undefined;
    }
    const r = await this.host.runAs(s.osUser, ["cat", "--", `${this.spec.dataDir}/postmaster.opts`], { okExitCodes: [0, 1] });
    const text = r.exitCode === 0 ? r.stdout.trim() : "";
    const args = [...text.matchAll(/"((?:[^"\\]|\\.)*)"/g)].map((m) => m[1]);
    if (!text || args.length === 0 || /[$`\\\n]/.test(text)) {
      this.startOptions = `-p ${s.port} -k ${s.socketDir}`;
      return;
    }
    const out: string[] = [];
    // The binary's path comes first, unquoted; the quoted words are the options. -D names
    // the data directory (pg_ctl passes its own).
    for (let k = 0; k < args.length; k++) {
      if (args[k] === "-D") {
        k++;
        continue;
      }
      out.push(`"${args[k]}"`);
    }
    this.startOptions = out.join(" ");
  }

  async stop(): Promise<void> {
    let state: string | undefined;
    if (this.spec.stopCommand) await this.host.run(this.spec.stopCommand, { timeoutMs: 30 * 60_000 });
    else state = (await this.pg.stop(this.spec.dataDir, this.install, { mode: "fast", timeoutMs: 30 * 60_000 })).state;
    // stop() reads pg_controldata already; a stop command of the user's does not.
    state ??= (await this.pg.controlData(this.spec.dataDir, this.install)).state;
    if (!isCleanShutdown(state)) throw new Error(`live did not shut down cleanly (pg_controldata: ${state})`);
  }

  async start(): Promise<void> {
    const s = this.spec.source;
    if (this.spec.startCommand) {
      await this.host.run(this.spec.startCommand, { timeoutMs: 30 * 60_000 });
    } else {
      if (this.startOptions === undefined) await this.rememberStart();
      // Live's own log when it was a file (its directory exists: nothing is created or changed
      // there); else ours.
      let logFile = this.logTarget ?? this.spec.ownLogFile;
      if (logFile === undefined) {
        logFile = this.spec.logFile;
        const dir = logFile.slice(0, logFile.lastIndexOf("/")) || "/";
        await this.host.runAs("root", ["install", "-d", "-m", "0750", "-o", s.osUser, "--", dir]);
      }
      await this.host.runAs(s.osUser, [`${s.binDir}/pg_ctl`, "start", "-w", "-t", "3600", "-D", this.spec.dataDir, "-l", logFile, "-o", this.startOptions!], {
        timeoutMs: 3700_000,
        cwd: "/",
      });
    }
    await this.pg.adminQuery(this.server, "SELECT 1");
  }

  async sequences(database: string): Promise<string[][]> {
    return await this.pg.adminQuery(this.server, SEQUENCES_SQL, { database });
  }

  async configuredSettings(): Promise<string[][]> {
    return await this.pg.adminQuery(this.server, CONFIGURED_SETTINGS_SQL);
  }

  async clusterSettings(): Promise<ClusterSettings> {
    return await this.pg.runningClusterSettings(this.server);
  }

  async checkpoint(): Promise<void> {
    await this.pg.adminQuery(this.server, "CHECKPOINT", { timeoutMs: 30 * 60_000 });
  }
}
