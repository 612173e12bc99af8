/**
 * The cut-over as phases, each with its undo (./phases.ts), for the `replay` method:
 * clients held (PAUSE) -> live's sequences read -> live stopped cleanly -> a final snapshot
 * set of live -> cloned -> the rehearsed cut-over steps replayed on the clone -> verified ->
 * the endpoint switched -> clients resumed -> statistics. Any failure undoes what ran, in
 * reverse: the endpoint back, live started again the way it was, all before clients resume;
 * the half-made clone and its snapshot removed afterwards. And the roll-back (promoted ->
 * old live) as phases too.
 *
 * No Pulumi here. Everything the phases touch is an interface (storage, live, the new
 * server, the endpoint, the replay), so the unit tests run every phase's failure on fakes.
 */
import { errorMessage, InputError } from "../errors";
import type { DatabaseTarget } from "../endpoint/pgbouncer-config";
import type { PgPlan, SourcePlan, UpgradeMode } from "../plan/rehearsal";
import { pgPlanFor } from "../plan/rehearsal";
import type { PlannedStep } from "../plan/steps";
import type { SnapshotSet, Storage } from "../storage/types";
import { newLiveLogFileFor, type LiveServer } from "./live";
import { PhaseError, runPhases, type Hold, type Phase, type PhaseRun, type PhaseTiming } from "./phases";
import type { JournalEntry } from "./journal";
import { serverAfter, type ServerState, type StagedCluster } from "./steps";
import type { ClusterSettings } from "../postgres/driver";
import type { LogicalEnv, LogicalSettings } from "./logical-cutover";
import type { ServerRef } from "../postgres/logical";
import type { LinkRecord, NewLiveService } from "./newlive-service";

/** What clients connect to, as the cut-over uses it (PgBouncer; a DNS record on AWS). */
export interface EndpointSwitch {
  readonly description: string;
  /** Where `database` points now; undefined when the endpoint has no such entry. */
  current(database: string): Promise<DatabaseTarget | undefined>;
  /**
   * Hold clients of every database in `databases` while `fn` runs (the whole cluster moves);
   * always resume; a failure in `fn` puts the old targets back first. `retarget` moves all
   * the given entries at once.
   */
  hold(
    databases: string[],
    fn: (ctl: { retarget(targets: Record<string, DatabaseTarget>): Promise<unknown> }) => Promise<void>,
    opts: { pauseTimeoutMs: number },
  ): Promise<{ pauseWindowMs: number; phases: { pauseMs: number; resumeMs: number } }>;
  /** Whether clients of `database` are held right now (an attempt that died mid-way leaves them held). */
  paused(database: string): Promise<boolean>;
  /** Let clients of `database` go on (a database that is not held is fine). */
  resume(database: string): Promise<void>;
}

/** The upgraded server the cut-over creates (real: PostgresDriver on the clone; fakes in tests). */
export interface NewServer {
  /** Before anything is held: its port is free and its binaries are there. */
  checkReady(): Promise<void>;
  running(dataDir: string): Promise<boolean>;
  stop(dataDir: string): Promise<void>;
  start(dataDir: string): Promise<void>;
  sequences(database: string): Promise<string[][]>;
  /** The first field of the first row of `sql` in `database`. */
  value(sql: string, database: string): Promise<string | undefined>;
  /** vacuumdb --analyze-in-stages on a running server. */
  analyze(dataDir: string): Promise<void>;
  /** CHECKPOINT on the running new live (before a roll-back holds clients: its clean stop then has little to write). */
  checkpoint?(): Promise<void>;
  /**
   * Remove the block that let the steps in by peer from the new live's pg_hba.conf and
   * pg_ident.conf (they are then live's, byte for byte) and reload; true when a file changed.
   */
  revokeOwnerAccess?(dataDir: string): Promise<boolean>;
  /** initdb a new cluster matching `settings` in a private directory of the new live's host, before clients are held; returns it. */
  stage?(settings: ClusterSettings): Promise<string>;
  /** Remove what stage() made (idempotent). */
  unstage?(dir: string): Promise<void>;
  /** `newLive.dataDirLink` as it is now, read before anyone is held (undefined without a link). */
  readLink?(): Promise<LinkRecord | undefined>;
  /** Put `newLive.dataDirLink` back as `rec` recorded it (only a symlink is ever changed; ./newlive-service.ts). */
  restoreLink?(rec: LinkRecord): Promise<void>;
}

/** Runs one replayed step on the new live (real: runStep). Returns update_extensions.sql when pg_upgrade wrote one. */
export type Replay = (
  step: PlannedStep,
  pg: PgPlan,
  state: { server: ServerState; updateExtensionsSql?: string; liveSettings?: string[][]; staged?: StagedCluster },
) => Promise<{ updateExtensionsSql?: string; carried?: { carried: string[]; dropped: Array<{ name: string; why: string }> } }>;

export interface CutoverEnv {
  /** Re-point a new clone's links into it (and refuse links into live) before anything starts on it. */
  prepareClone(dataDir: string, mounts: string[]): Promise<void>;
  storage: Storage;
  live: LiveServer;
  server: NewServer;
  endpoint: EndpointSwitch;
  replay: Replay;
  log(message: string): void;
  /** The logical method's machinery (real: LogicalReplication through the driver; absent: the method cannot run). */
  logical?: LogicalEnv;
  /** The journal on the host (./journal.ts); without one, an interrupted attempt cannot be recovered automatically. */
  journal?: { load(): Promise<JournalEntry | undefined>; save(e: JournalEntry): Promise<void> };
}

/** What a cut-over runs: the slice of the rehearsal's and the promotion's plans it needs. */
export interface CutoverSpec {
  /** Owner mark of everything the promotion creates (final snapshot, new live). */
  owner: string;
  /** Safe stack name for snapshot names. */
  stack: string;
  /** The rehearsal that proved the plan: its status must be `passed`. */
  rehearsal: { name: string; status: string };
  /** Live. */
  source: SourcePlan;
  /** Live's volumes, the one holding PGDATA first. */
  liveVolumes: string[];
  to: number;
  toBinDir: string;
  mode: UpgradeMode;
  /** The rehearsal's steps (the cut-over ones are replayed). */
  steps: PlannedStep[];
  assertions: Array<{ name: string; sql: string; database?: string }>;
  /** The endpoint's main database (PgBouncer entry) and how long PAUSE may wait. */
  database: string;
  /**
   * Every PgBouncer entry that moves with the cluster (`database` among them): all are held,
   * switched and resumed together; live's sequences are compared in each (absent: `[database]`).
   */
  databases?: string[];
  /** `replay` (default) or `logical` (./logical-cutover.ts). */
  method?: "replay" | "logical";
  /** The logical method's settings (defaults in ./logical-cutover.ts). */
  logical?: LogicalSettings;
  pauseTimeoutMs: number;
  /**
   * `logFile`: where the new live logs (absent: next to live's own log, else in its data
   * directory); `dataDirLink`/`startCommand`/`stopCommand`: how it runs as a service (./newlive-service.ts).
   */
  newLive: { dataset: string; port: number; socketDir: string; listen: string; logFile?: string } & NewLiveService;
  /** Where PgBouncer reaches live and the new live over TCP (default: their unix socket directory). */
  serverHost?: string;
  /**
   * Where the endpoint reaches the new live when it runs on another machine than live (EBS: the
   * instance its volumes are attached to); default `serverHost`. With a DNS endpoint, the
   * record's value for the new live (and `serverHost` its value for live).
   */
  newServerHost?: string;
  /** Bound on how long clients are held (runPhases' holdTimeoutMs); absent: unbounded, as in 0.1.0. */
  switchoverTimeoutMs?: number;
  /** State left by the last promotion of this resource (for the next generation's name). */
  prior?: { state: string };
}

export interface PromoteResult {
  /** Live's settings carried into the new live, and the ones left out with the reason. */
  carried?: { carried: string[]; dropped: Array<{ name: string; why: string }> };
  finalSnapshot: string;
  newLiveVolumes: string[];
  newLiveDataDir: string;
  /** Where the new live logs (next to live's log, or `newLive.logFile`); absent: in its data directory. */
  newLiveLogFile?: string;
  /** Live's own log file, read before it stopped (a roll-back starts live logging there again). */
  liveLogFile?: string;
  pauseWindowMs: number;
  phases: PhaseTiming[];
}

/** Value written on a new-live clone whose promotion failed and whose removal failed too: the next promotion removes it. */
export const FAILED_ATTEMPT = "failed-attempt";

const target = (socketDir: string, port: number, dbname: string): DatabaseTarget => ({ host: socketDir, port, dbname });

export function liveTarget(s: CutoverSpec, db = s.database): DatabaseTarget {
  return target(s.serverHost ?? s.source.socketDir, s.source.port, db);
}

export function newLiveTarget(s: CutoverSpec, db = s.database): DatabaseTarget {
  return target(s.newServerHost ?? s.serverHost ?? s.newLive.socketDir, s.newLive.port, db);
}

/** Every PgBouncer entry that moves, the main database first. */
export function databasesOf(s: Pick<CutoverSpec, "database" | "databases">): string[] {
  return [s.database, ...(s.databases ?? []).filter((d) => d !== s.database)];
}

/** Live's target for every entry that moves. */
export function liveTargets(s: CutoverSpec): Record<string, DatabaseTarget> {
  return Object.fromEntries(databasesOf(s).map((d) => [d, liveTarget(s, d)]));
}

/** The new live's target for every entry that moves. */
export function newLiveTargets(s: CutoverSpec): Record<string, DatabaseTarget> {
  return Object.fromEntries(databasesOf(s).map((d) => [d, newLiveTarget(s, d)]));
}

/** The new live as psql reaches it (for the logical method's subscriber side). */
export function newServerRef(s: CutoverSpec): ServerRef {
  return { version: s.to, binDir: s.toBinDir, socketDir: s.newLive.socketDir, port: s.newLive.port };
}

/** The new live's PostgreSQL parameters on a clone mounted at `mountpoint` (the rehearsal's rules, the new live's server). */
export function newLivePgPlan(s: CutoverSpec, mountpoint: string): PgPlan {
  // The new live is production: live's configuration (carried over by the replayed upgrade), no rehearsal isolation.
  return {
    ...pgPlanFor({ source: s.source, to: s.to, toBinDir: s.toBinDir, mode: s.mode }, mountpoint, { ...s.newLive, tempPort: s.newLive.port + 1, database: s.database }),
    isolate: false,
    ...(s.newLive.logFile ? { logFile: s.newLive.logFile } : {}),
  };
}

/** The steps a promotion replays while clients wait: the rehearsal's cut-over steps, without recover/verify. */
export function replayedSteps(steps: PlannedStep[]): PlannedStep[] {
  return steps.filter((x) => x.cutover && x.kind !== "recover" && x.kind !== "verify");
}

/** `20261202-182711-123` (UTC, with milliseconds: two attempts in one second get two names). */
function stamp(): string {
  return new Date().toISOString().replace(/[-:]/g, "").replace("T", "-").replace(".", "-").replace("Z", "");
}

/**
 * The new live's primary volume id for this promotion. A rolled-back new live holds the
 * writes made while it served: it is kept, and this promotion takes the next generation's
 * name. A volume left by a failed attempt (marked so) is that generation's name again.
 */
async function newLivePrimary(env: CutoverEnv, s: CutoverSpec): Promise<string> {
  let id = s.newLive.dataset;
  for (let n = 2; s.prior?.state === "rolled-back"; n++) {
    const v = await env.storage.volume(id);
    if (!v || v.marks.promotion === FAILED_ATTEMPT) break;
    id = env.storage.siblingVolume(s.newLive.dataset, `${s.newLive.dataset.split("/").pop()}-${n}`);
  }
  return id;
}

export interface PromoteState {
  spec: CutoverSpec;
  finalSnapshot: string;
  /** Set once this attempt took the final snapshot: an undo removes only what the attempt made. */
  snapshotTaken?: boolean;
  newVolumes: string[];
  pg?: PgPlan;
  /** Live's own log file (its postmaster's stderr), read before it stops. */
  liveLogFile?: string;
  /** Where the new live logs: `newLive.logFile`, else like live's own log file (see {@link newLiveLogFile}). */
  newLiveLogFile?: string;
  /** Live's sequences per database, read while clients were held. */
  seqBefore?: Record<string, string[][]>;
  /** Live's configured settings, read while it ran: carried into the new live by the replayed upgrade. */
  liveSettings?: string[][];
  /** What was carried over and what was left out (reported). */
  carried?: { carried: string[]; dropped: Array<{ name: string; why: string }> };
  server: ServerState;
  updateExtensionsSql?: string;
  /** The new cluster, initdb'ed before clients were held (absent: the replayed upgrade runs initdb). */
  staged?: StagedCluster;
  /** A staged cluster not used (live's settings changed): removed with the other. */
  unused?: StagedCluster;
  /** The journal entry written before anything ran (the staged directory is added to it). */
  entry?: JournalEntry;
  /** `newLive.dataDirLink` as it was before this attempt (read before anyone was held): what an undo puts back. */
  link?: LinkRecord;
  switched: boolean;
  retarget?: (t: Record<string, DatabaseTarget>) => Promise<unknown>;
}

/**
 * The new live's log file, like live's: a log on one of live's volumes moves to the same place
 * on the matching volume of the new live (never a write into live's volumes); a log elsewhere
 * (`/var/log/postgresql/...`) stays in its directory. Live's major in the name becomes the new
 * one. Undefined (the new live logs in its data directory) when live's log is not a file.
 */
export function newLiveLogFile(liveLog: string | undefined, liveMounts: Array<string | undefined>, newMounts: Array<string | undefined>, from: number, to: number): string | undefined {
  if (!liveLog) return undefined;
  const renamed = newLiveLogFileFor(liveLog, from, to);
  for (let i = 0; i < liveMounts.length; i++) {
    const m = liveMounts[i];
    if (!m || !(liveLog === m || liveLog.startsWith(m.endsWith("/") ? m : `${m}/`))) continue;
    const n = newMounts[i];
    return n ? n.replace(/\/$/, "") + renamed.slice(m.replace(/\/$/, "").length) : undefined;
  }
  return renamed;
}

/** Remove what a failed attempt left on the new live's volumes (ours only; a volume holding writes is never ours to remove). */
async function removeFailedAttempt(env: CutoverEnv, s: CutoverSpec, volumes: string[]): Promise<void> {
  const primary = await env.storage.volume(volumes[0]);
  if (!primary) return;
  if (primary.owner !== s.owner) {
    throw new Error(`${volumes[0]} already exists and was not created by this promotion. Rename or destroy it, or set newLive.dataset; nothing was done`);
  }
  const pg = newLivePgPlan(s, primary.mountpoint ?? "/nonexistent");
  if (primary.mountpoint && (await env.server.running(pg.newDataDir))) {
    throw new Error(`a server is running on ${volumes[0]} (${pg.newDataDir}); nothing was done`);
  }
  env.log(`removing ${volumes.join(", ")} left by a failed promotion attempt`);
  for (const v of [...volumes].reverse()) await env.storage.destroyVolume(v, s.owner);
  // ... and live's final snapshot it was cloned from (ours, and nothing else uses it).
  const origin = primary.origin ?? "";
  const at = origin.lastIndexOf("@");
  const name = at >= 0 ? origin.slice(at + 1) : "";
  if (name.startsWith(`understudy-final-${s.stack}-`)) {
    await env.storage.destroySnapshotSet(s.liveVolumes, name, s.owner).catch((e) => env.log(`left ${name} in place: ${errorMessage(e)}`));
  }
}

/** The held phase that points every entry at the new live (both methods); its undo points them back at live. */
export function switchEndpointPhase(s: CutoverSpec, st: PromoteState): Phase<PromoteState> {
  return {
    name: "switch endpoint",
    held: true,
    run: async () => {
      await st.retarget!(newLiveTargets(s));
      st.switched = true;
    },
    undo: async () => {
      if (st.retarget) await st.retarget(liveTargets(s));
      st.switched = false;
    },
  };
}

/** The `replay` cut-over's phases (exported for the unit tests, which fail each in turn). */
export function replayPhases(env: CutoverEnv, st: PromoteState): Array<Phase<PromoteState>> {
  const s = st.spec;
  const db = s.database;
  const steps = replayedSteps(s.steps);
  const phases: Array<Phase<PromoteState>> = [
    stagePhase(env, st, steps),
    {
      name: "read live sequences",
      held: true,
      run: async () => {
        // Only what clients' last writes change is read while they wait; live's settings and
        // how it was started were read just before (the end of the phase above).
        st.seqBefore = {};
        for (const d of databasesOf(s)) st.seqBefore[d] = await env.live.sequences(d);
      },
    },
    {
      name: "stop live cleanly",
      held: true,
      run: async () => env.live.stop(),
      undo: async () => {
        // Whatever state the stop left, live must serve again before clients resume.
        if (!(await env.live.running())) await env.live.start();
      },
    },
    {
      name: "final snapshot",
      held: true,
      run: async () => {
        await env.storage.snapshot(s.liveVolumes, st.finalSnapshot, s.owner);
        st.snapshotTaken = true;
      },
      undo: async () => {
        if (!st.snapshotTaken) return;
        // A half-made clone that could not be removed (marked for the next attempt) still
        // depends on it: then both stay, and the next promotion removes both.
        for (const v of st.newVolumes) {
          if (await env.storage.volume(v)) {
            env.log(`kept ${st.finalSnapshot}: ${v} (marked ${FAILED_ATTEMPT}) was cloned from it`);
            return;
          }
        }
        await env.storage.destroySnapshotSet(s.liveVolumes, st.finalSnapshot, s.owner);
      },
      undoAfterResume: true,
    },
    {
      name: "clone",
      held: true,
      run: async () => {
        const set = (await env.storage.findSnapshotSet(s.liveVolumes, st.finalSnapshot)) as SnapshotSet;
        // The new live is a production volume: it keeps live's own settings (ZFS: recordsize,
        // compression, logbias, ...), which a clone would otherwise take from its parent.
        const props = await Promise.all(s.liveVolumes.map(async (v) => (await env.storage.volume(v))?.properties ?? {}));
        const made = await env.storage.clone(set, s.liveVolumes.map((src, i) => ({ source: src, target: st.newVolumes[i], properties: props[i] })), s.owner);
        const mnt = made[0].mountpoint;
        if (!mnt) throw new Error(`the clone ${made[0].id} is not mounted`);
        const liveMounts = await Promise.all(s.liveVolumes.map(async (v) => (await env.storage.volume(v))?.mountpoint));
        st.newLiveLogFile = s.newLive.logFile ?? newLiveLogFile(st.liveLogFile, liveMounts, made.map((m) => m.mountpoint), s.source.version, s.to);
        if (st.newLiveLogFile && !s.newLive.logFile) env.log(`the new live logs to ${st.newLiveLogFile} (like live's ${st.liveLogFile})`);
        const plan = newLivePgPlan(s, mnt);
        st.pg = {
          ...plan,
          ...(st.newLiveLogFile ? { logFile: st.newLiveLogFile } : {}),
          // Read from live with the staged settings: no single-user read of the clone while clients wait.
          ...(st.staged && !plan.superuser ? { superuser: st.staged.settings.superuser } : {}),
        };
        await env.prepareClone(st.pg.oldDataDir, made.map((m) => m.mountpoint ?? ""));
      },
      undo: async () => {
        if (st.pg && (await env.server.running(st.pg.newDataDir).catch(() => false))) await env.server.stop(st.pg.newDataDir);
        try {
          for (const v of [...st.newVolumes].reverse()) await env.storage.destroyVolume(v, s.owner);
        } catch (e) {
          // Marked, so that the next promotion removes it (an unmarked one may hold writes and is kept).
          await env.storage.setMark(st.newVolumes[0], "promotion", FAILED_ATTEMPT).catch(() => undefined);
          throw new Error(`could not remove the half-made clone ${st.newVolumes.join(", ")} (marked ${FAILED_ATTEMPT}; the next promotion removes it): ${errorMessage(e)}`, { cause: e });
        }
      },
      undoAfterResume: true,
    },
    ...steps.map(
      (step): Phase<PromoteState> => ({
        name: `replay ${step.name}`,
        held: true,
        run: async () => {
          const r = await env.replay(step, st.pg!, { server: st.server, updateExtensionsSql: st.updateExtensionsSql, liveSettings: st.liveSettings, ...(step.kind === "upgrade" && st.staged ? { staged: st.staged } : {}) });
          if (step.kind === "upgrade") {
            st.updateExtensionsSql = r.updateExtensionsSql;
            st.carried = r.carried;
          }
          st.server = serverAfter(step.kind, st.server);
        },
        // The step that starts the new live re-points newLive.dataDirLink at this generation:
        // undone, the new live is stopped (while the link still points at it, so with the
        // user's stopCommand) and the link is put back as it was before the attempt. Without a
        // link there is nothing to undo here (the clone's undo stops the server, as always).
        ...(step.kind === "start" && st.link !== undefined ? { undo: async () => undoStartLink(env, st), undoAfterResume: true } : {}),
      }),
    ),
    {
      name: "verify",
      held: true,
      run: async () => {
        if (st.server !== "new") throw new Error("the replayed plan did not start the new server");
        for (const d of databasesOf(s)) {
          const before = st.seqBefore?.[d];
          const seqAfter = await env.server.sequences(d);
          if (JSON.stringify(seqAfter) !== JSON.stringify(before)) {
            throw new Error(`sequences differ between live and the upgraded clone in database ${d}: ${JSON.stringify(before).slice(0, 200)} vs ${JSON.stringify(seqAfter).slice(0, 200)}`);
          }
        }
        for (const a of s.assertions) {
          const v = await env.server.value(a.sql, a.database ?? db);
          if (v !== "t" && v !== "true") throw new Error(`assertion "${a.name}" returned ${v ?? "no row"}`);
        }
      },
    },
    switchEndpointPhase(s, st),
    {
      name: "analyze (after resume)",
      optional: true,
      run: async () => env.server.analyze(st.pg!.newDataDir),
    },
    restoreAccessPhase(env, st),
    {
      name: "remove the staged cluster (after resume)",
      optional: true,
      run: async () => unstage(env, st),
    },
  ];
  return phases;
}

/**
 * Before clients are held: live's cluster settings read (read-only) and the new cluster
 * initdb'ed to match them in a private directory of the new live's host; a CHECKPOINT on
 * live (unless `source.checkpoint: false`), so that its clean stop writes little. The replayed upgrade
 * then copies it into the clone instead of reading the stopped clone (single-user mode, a
 * private server) and running initdb while clients wait. When it cannot run, the upgrade
 * does all of that held, as before (a warning, not a failure); its undo removes the directory.
 */
function stagePhase(env: CutoverEnv, st: PromoteState, steps: PlannedStep[]): Phase<PromoteState> {
  return {
    name: "initdb the new cluster, CHECKPOINT on live, read its settings (before clients wait)",
    run: async () => {
      if (env.live.clusterSettings && env.server.stage && steps.some((x) => x.kind === "upgrade")) {
        try {
          const settings = await env.live.clusterSettings();
          st.staged = { dir: await env.server.stage(settings), settings };
          env.log(`the new cluster is initialized in ${st.staged.dir} (PostgreSQL ${st.spec.to}, ${settings.encoding}, ${settings.lcCollate}, checksums ${settings.dataChecksums ? "on" : "off"}, superuser ${settings.superuser})`);
        } catch (e) {
          // Not a reason to stop: the replayed upgrade initializes it, as it always did.
          env.log(`warning: the new cluster could not be initialized before clients wait (${errorMessage(e).split("\n")[0]}): initdb runs while they are held`);
        }
        if (st.staged && st.entry) {
          // Before clients are held: a killed engine leaves it to the next run's recovery.
          st.entry = { ...st.entry, staged: st.staged.dir };
          await env.journal?.save(st.entry).catch((e: unknown) => env.log(`warning: could not record ${st.staged?.dir} in the journal (${errorMessage(e).split("\n")[0]}); if the engine dies, remove it by hand`));
        }
      }
      // Live is stopped while clients wait: its shutdown checkpoint then writes only what changed since this one.
      if (st.spec.source.checkpoint && env.live.checkpoint) await checkpointBeforeHold("live", env.live.checkpoint.bind(env.live), env.log);
      // Last, right before clients are held (not while they wait): live's configured settings
      // (carried to the new live), its cluster settings against the staged cluster's, and how it
      // was started (to start it the same way if anything fails after the stop).
      st.liveSettings = await env.live.configuredSettings();
      if (st.staged && env.live.clusterSettings) {
        // Live's bootstrap superuser could have been renamed since: then initdb runs held, as before.
        const now = await env.live.clusterSettings();
        if (JSON.stringify(now) !== JSON.stringify(st.staged.settings)) {
          env.log(`live's cluster settings changed since the new cluster was staged (${JSON.stringify(st.staged.settings)} -> ${JSON.stringify(now)}): initdb runs again while clients are held`);
          st.unused = st.staged;
          delete st.staged;
        }
      }
      await env.live.rememberStart();
      st.liveLogFile = env.live.logFile?.();
    },
    undo: async () => unstage(env, st),
    undoAfterResume: true,
  };
}

/**
 * Undo of the step that started the new live (and re-pointed `newLive.dataDirLink`): the new
 * live stopped, then the link as before the attempt. Without a recorded link: nothing (the
 * clone's undo stops the server, as it always did).
 */
async function undoStartLink(env: CutoverEnv, st: PromoteState): Promise<void> {
  if (!st.link || !env.server.restoreLink) return;
  try {
    if (st.pg && (await env.server.running(st.pg.newDataDir).catch(() => false))) await env.server.stop(st.pg.newDataDir);
  } finally {
    await env.server.restoreLink(st.link);
  }
}

async function unstage(env: CutoverEnv, st: PromoteState): Promise<void> {
  for (const x of [st.staged, st.unused]) if (x && env.server.unstage) await env.server.unstage(x.dir);
}

/**
 * The last phase of a promotion: the new live's pg_hba.conf and pg_ident.conf without the
 * block the replayed steps used, i.e. live's own, byte for byte; the server reloaded.
 */
export function restoreAccessPhase<C>(env: CutoverEnv, st: { pg?: PgPlan }): Phase<C> {
  return {
    name: "live's pg_hba.conf on the new live (after resume)",
    optional: true,
    run: async () => {
      if (!env.server.revokeOwnerAccess || !st.pg) return;
      try {
        if (await env.server.revokeOwnerAccess(st.pg.newDataDir)) env.log(`the new live runs with live's pg_hba.conf and pg_ident.conf again (Understudy's peer block removed, server reloaded)`);
      } catch (e) {
        env.log(`warning: Understudy's peer block is still at the top of ${st.pg.newDataDir}/pg_hba.conf (remove the lines between its BEGIN and END markers, then reload): ${errorMessage(e)}`);
        throw e;
      }
    },
  };
}

export function holdFor(env: CutoverEnv, st: { retarget?: (t: Record<string, DatabaseTarget>) => Promise<unknown> }, databases: string[], pauseTimeoutMs: number): Hold {
  return async (fn) => {
    const r = await env.endpoint.hold(
      databases,
      async (ctl) => {
        st.retarget = (t) => ctl.retarget(t);
        await fn();
      },
      { pauseTimeoutMs },
    );
    return { pauseWindowMs: r.pauseWindowMs, pauseMs: r.phases.pauseMs, resumeMs: r.phases.resumeMs };
  };
}

/**
 * Everything before anyone is held: the rehearsal passed, the new live's name is free (or a
 * failed attempt's, removed), its ports and binaries are there, the endpoint has the
 * database; the names the attempt will use are written to the journal on the host.
 */
export async function preparePromotion(env: CutoverEnv, s: CutoverSpec, extra: Partial<JournalEntry> = {}): Promise<{ st: PromoteState; entry: JournalEntry }> {
  if (s.rehearsal.status !== "passed") {
    throw new Error(`the rehearsal ${s.rehearsal.name} has not passed (status: ${s.rehearsal.status}); nothing was done`);
  }
  const primary = await newLivePrimary(env, s);
  const newVolumes = env.storage.cloneTargets(primary, s.liveVolumes);
  await removeFailedAttempt(env, s, newVolumes);
  await env.server.checkReady();
  // What the link is now, before anything re-points it: an undone attempt puts it back (also after a crash: in the journal).
  const link = await env.server.readLink?.();
  if (s.newLive.logFile) {
    // The new live never writes into live's volumes.
    for (const v of s.liveVolumes) {
      const m = (await env.storage.volume(v))?.mountpoint?.replace(/\/$/, "");
      if (m && (s.newLive.logFile === m || s.newLive.logFile.startsWith(`${m}/`))) {
        throw new InputError("newLive.logFile", `${s.newLive.logFile} is on live's volume ${v}: the new live would write into live. Choose a path elsewhere; nothing was done`);
      }
    }
  }
  const db = s.database;
  for (const d of databasesOf(s)) if (!(await env.endpoint.current(d))) throw new Error(`${env.endpoint.description} has no database ${d}; nothing was done`);

  let finalSnapshot = `understudy-final-${s.stack}-${stamp()}`;
  for (let n = 2; await env.storage.findSnapshotSet(s.liveVolumes, finalSnapshot).catch(() => true); n++) finalSnapshot = `understudy-final-${s.stack}-${stamp()}-${n}`;
  const st: PromoteState = { spec: s, finalSnapshot, newVolumes, server: "none", switched: false, ...(link ? { link } : {}) };
  // Before anyone is held: every name this attempt will use, where the next run finds it.
  const entry: JournalEntry = {
    op: "promote",
    startedAt: new Date().toISOString(),
    liveVolumes: s.liveVolumes,
    finalSnapshot,
    newVolumes,
    database: db,
    databases: databasesOf(s),
    liveTarget: liveTarget(s),
    newTarget: newLiveTarget(s),
    owner: s.owner,
    ...(link ? { dataDirLink: link } : {}),
    ...extra,
  };
  await env.journal?.save(entry);
  st.entry = entry;
  return { st, entry };
}

/** Promote: everything checked first (nothing held), then the phases. `wrap` lets tests fail a phase. */
export async function promote(env: CutoverEnv, s: CutoverSpec, wrap: (p: Array<Phase<PromoteState>>) => Array<Phase<PromoteState>> = (p) => p): Promise<PromoteResult> {
  const { st, entry } = await preparePromotion(env, s);
  let run: PhaseRun;
  try {
    run = await runPhases(wrap(replayPhases(env, st)), st, { hold: holdFor(env, st, databasesOf(s), s.pauseTimeoutMs), log: env.log, holdTimeoutMs: s.switchoverTimeoutMs });
  } catch (e) {
    // Undone in full: nothing for a later run to recover. An undo that failed leaves the
    // journal open, so the next run restores what the host shows.
    if (e instanceof PhaseError && e.undoFailures.length === 0) await finishJournal(env, st.entry ?? entry, "undone");
    throw e;
  }
  await finishJournal(env, st.entry ?? entry, "promoted");
  // The phases that ran before clients were held (the staged initdb), then the hold.
  const firstHeld = run.phases.findIndex((p) => p.held);
  const before = firstHeld < 0 ? [] : run.phases.slice(0, firstHeld);
  return {
    ...(st.carried ? { carried: st.carried } : {}),
    finalSnapshot: st.finalSnapshot,
    newLiveVolumes: st.newVolumes,
    newLiveDataDir: st.pg!.newDataDir,
    ...(st.newLiveLogFile ? { newLiveLogFile: st.newLiveLogFile } : {}),
    ...(st.liveLogFile ? { liveLogFile: st.liveLogFile } : {}),
    pauseWindowMs: run.hold?.pauseWindowMs ?? 0,
    phases: [
      ...before,
      { phase: "PAUSE (in-flight transactions finish)", ms: run.hold?.pauseMs ?? 0, held: true, status: "ok" },
      ...run.phases.filter((p) => p.held),
      { phase: "RESUME", ms: run.hold?.resumeMs ?? 0, held: true, status: "ok" },
      ...run.phases.slice(before.length).filter((p) => !p.held),
    ],
  };
}

/**
 * A CHECKPOINT on the server that is stopped cleanly while clients wait, run before they are
 * held, so that the shutdown checkpoint has little left to write. A failure only warns: the
 * clean stop then writes it all, while clients wait.
 */
async function checkpointBeforeHold(what: string, checkpoint: () => Promise<void>, log: (m: string) => void): Promise<void> {
  const t0 = Date.now();
  try {
    await checkpoint();
    log(`CHECKPOINT on ${what} (${Date.now() - t0} ms): the clean stop has little left to write`);
  } catch (e) {
    log(`warning: CHECKPOINT on ${what} failed (${errorMessage(e).split("\n")[0]}); the clean stop writes it while clients wait`);
  }
}

/** Roll back a promotion: clients back on the old live; the new live stopped and kept (it holds the writes made while it served). */
export async function rollBack(env: CutoverEnv, s: CutoverSpec, newLiveDataDir: string, newVolumes: string[] = []): Promise<{ pauseWindowMs: number; phases: PhaseTiming[] }> {
  const db = s.database;
  const entry: JournalEntry = {
    op: "rollback",
    startedAt: new Date().toISOString(),
    liveVolumes: s.liveVolumes,
    newVolumes,
    newDataDir: newLiveDataDir,
    database: db,
    databases: databasesOf(s),
    liveTarget: liveTarget(s),
    newTarget: newLiveTarget(s),
    owner: s.owner,
  };
  await env.journal?.save(entry);
  const st: { retarget?: (t: Record<string, DatabaseTarget>) => Promise<unknown> } = {};
  const checkpoint = env.server.checkpoint?.bind(env.server);
  const phases: Array<Phase<typeof st>> = [
    ...(checkpoint
      ? [
          {
            name: "CHECKPOINT on the new live (before clients wait)",
            // The new live is stopped while clients wait: its shutdown checkpoint then writes only what changed since this one.
            run: async () => await checkpointBeforeHold("the new live", checkpoint, env.log),
          },
        ]
      : []),
    {
      name: "stop new live cleanly",
      held: true,
      run: async () => env.server.stop(newLiveDataDir),
      undo: async () => {
        if (!(await env.server.running(newLiveDataDir))) await env.server.start(newLiveDataDir);
      },
    },
    {
      name: "start old live",
      held: true,
      run: async () => {
        if (!(await env.live.running())) await env.live.start();
      },
      undo: async () => {
        if (await env.live.running()) await env.live.stop();
      },
    },
    {
      name: "switch endpoint",
      held: true,
      run: async () => {
        await st.retarget!(liveTargets(s));
      },
      undo: async () => {
        await st.retarget?.(newLiveTargets(s));
      },
    },
  ];
  let run: PhaseRun;
  try {
    run = await runPhases(phases, st, { hold: holdFor(env, st, databasesOf(s), s.pauseTimeoutMs), log: env.log, holdTimeoutMs: s.switchoverTimeoutMs });
  } catch (e) {
    if (e instanceof PhaseError && e.undoFailures.length === 0) await finishJournal(env, entry, "undone");
    throw e;
  }
  await finishJournal(env, entry, "rolled-back");
  return { pauseWindowMs: run.hold?.pauseWindowMs ?? 0, phases: run.phases };
}

export async function finishJournal(env: CutoverEnv, e: JournalEntry, outcome: NonNullable<JournalEntry["finished"]>["outcome"]): Promise<void> {
  try {
    await env.journal?.save({ ...e, finished: { at: new Date().toISOString(), outcome } });
  } catch (err) {
    env.log(`warning: could not close the cut-over's journal (${errorMessage(err)}); the next run checks the host and finds nothing to recover`);
  }
}

const sameTarget = (a: DatabaseTarget | undefined, b: DatabaseTarget) => !!a && a.host === b.host && a.port === b.port && a.dbname === b.dbname;

export interface Recovery {
  /** What the host showed and what was done: `promoted` (the switch had happened: kept), `restored` (live serves again, the attempt's leftovers removed), `rolled-back`. */
  outcome: "promoted" | "restored" | "rolled-back";
  entry: JournalEntry;
  newLiveDataDir?: string;
}

/**
 * An attempt that died with the engine (its journal is open): bring the host to a state
 * clients can use, from what it shows now, before anything else runs. A promotion whose
 * endpoint already points at the new live is finished (the new live started if it stopped,
 * clients resumed); otherwise live is started if it is stopped, clients resume on it, and
 * what the attempt made (its new volumes, its final snapshot) is removed. A roll-back is
 * finished or undone the same way. Idempotent.
 */
export async function recoverInterrupted(env: CutoverEnv, s: CutoverSpec): Promise<Recovery | undefined> {
  const e = await env.journal?.load();
  if (!e || e.finished) return undefined;
  const db = e.database;
  const now = await env.endpoint.current(db);
  const resumeAll = async () => {
    for (const d of [...(e.databases ?? [db])].reverse()) await env.endpoint.resume(d);
  };
  const lr = e.method === "logical" && e.logical && env.logical ? env.logical.open(e.logical.tag, e.logical.databases) : undefined;
  const lr2 = lr?.withTarget(newServerRef(s));
  const bestEffort = async (what: string, fn: () => Promise<unknown>) => {
    try {
      await fn();
    } catch (err) {
      env.log(`warning: ${what} failed: ${errorMessage(err)}`);
    }
  };
  const dataDirOf = async (volume: string | undefined) => {
    const v = volume ? await env.storage.volume(volume) : undefined;
    return v?.mountpoint ? newLivePgPlan(s, v.mountpoint).newDataDir : e.newDataDir;
  };
  env.log(`a ${e.op} started ${e.startedAt} did not finish (the engine stopped mid-way): recovering from what the host shows`);
  if (e.op === "promote") {
    const newDir = await dataDirOf(e.newVolumes[0]);
    if (sameTarget(now, e.newTarget) && newDir) {
      if (!(await env.server.running(newDir))) await env.server.start(newDir);
      await resumeAll();
      if (!lr2 && env.server.revokeOwnerAccess) await bestEffort("restoring live's pg_hba.conf on the new live", () => env.server.revokeOwnerAccess!(newDir));
      if (lr2) {
        // The point where the way back would start was read while clients were held and died with the engine: no way back.
        await bestEffort("retiring the way forward", () => lr2.retireForward());
        await bestEffort("making the old live read-only", () => lr2.makeReadOnly());
        env.log("the way back (new live -> old live) was not started: a roll-back cannot keep the new live's writes");
      }
      if (e.staged && env.server.unstage) await bestEffort(`removing the staged cluster ${e.staged}`, () => env.server.unstage!(e.staged!));
      await finishJournal(env, e, "recovered");
      env.log(`the switch had happened: clients go on with PostgreSQL ${s.to} (${e.newVolumes[0]})`);
      return { outcome: "promoted", entry: e, newLiveDataDir: newDir };
    }
    if (!(await env.live.running())) await env.live.start();
    await resumeAll();
    env.log("live serves again and clients resumed on it; removing what the attempt made");
    if (newDir && (await env.server.running(newDir).catch(() => false))) await env.server.stop(newDir);
    // The link as it was before the attempt (journals written before this was recorded have none: left as it is).
    if (e.dataDirLink && env.server.restoreLink) await bestEffort(`restoring ${e.dataDirLink.path}`, () => env.server.restoreLink!(e.dataDirLink!));
    // Nothing of ours stays on live (the new side's consumers are stopped: its slots can be dropped).
    if (lr) await bestEffort("removing the slots and publications on live", () => lr.cleanup({ target: false }));
    try {
      for (const v of [...e.newVolumes].reverse()) await env.storage.destroyVolume(v, e.owner);
      if (e.finalSnapshot) await env.storage.destroySnapshotSet(e.liveVolumes, e.finalSnapshot, e.owner);
    } catch (err) {
      await env.storage.setMark(e.newVolumes[0], "promotion", FAILED_ATTEMPT).catch(() => undefined);
      env.log(`left ${e.newVolumes.join(", ")} (marked ${FAILED_ATTEMPT}, the next promotion removes it): ${errorMessage(err)}`);
    }
    if (e.staged && env.server.unstage) await bestEffort(`removing the staged cluster ${e.staged}`, () => env.server.unstage!(e.staged!));
    await finishJournal(env, e, "recovered");
    return { outcome: "restored", entry: e };
  }
  // A roll-back: finished when the endpoint is on live and live serves; otherwise the new live serves again.
  const newDir = e.newDataDir ?? (await dataDirOf(e.newVolumes[0]));
  if (sameTarget(now, e.liveTarget) && (await env.live.running())) {
    await resumeAll();
    if (lr2) await bestEffort("removing the way back", () => lr2.cleanup());
    if (newDir && (await env.server.running(newDir).catch(() => false))) await env.server.stop(newDir);
    await finishJournal(env, e, "recovered");
    return { outcome: "rolled-back", entry: e };
  }
  if (newDir && !(await env.server.running(newDir))) await env.server.start(newDir);
  if (lr2) {
    // Logical: the old live keeps running (it receives the way back); read-only again if the attempt lifted it.
    await bestEffort("making the old live read-only again", () => lr2.unfinish("back"));
  } else if (await env.live.running()) await env.live.stop();
  await resumeAll();
  await finishJournal(env, e, "recovered");
  return { outcome: "promoted", entry: e, newLiveDataDir: newDir };
}
