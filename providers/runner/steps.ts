/**
 * The rehearsal's steps, with no Pulumi in them: each takes the plan's parameters and a
 * host, and runs on a clone set through the {@link Storage} interface. The rehearsal's
 * resources call {@link executeStep} (resume from the last good snapshot set, run, snapshot
 * the clone set); the cut-over replays {@link runStep} for its steps on the new live.
 */
import type { Host } from "../host/types";
import type { Storage } from "../storage/types";
import { checkClusterSettings, type ClusterSettings, type PostgresDriver } from "../postgres/driver";
import type { PgPlan } from "../plan/rehearsal";
import type { PlannedStep, StepKind } from "../plan/steps";
import type { CheckRecord } from "../rehearsal/report";
import { assertions, collect, compare, type Snapshot, type VerifySpec } from "../rehearsal/verify";
import { prepareClone, type SourceLayout } from "./layout";
import { CONFIGURED_SETTINGS_SQL, writeCarriedConfig } from "./config";

export type ServerState = "none" | "new";

/** Whether the upgraded server runs after a step of `kind`, given whether it ran before. */
export function serverAfter(kind: StepKind, prev: ServerState): ServerState {
  if (kind === "start") return "new";
  if (kind === "recover" || kind === "check" || kind === "upgrade") return "none";
  return prev;
}

export interface RunnerEnv {
  host: Host;
  storage: Storage;
  pg: PostgresDriver;
  log: (message: string) => void;
  /** Starts the upgraded server instead of pg_ctl (a promotion's new live with the user's start command). */
  startServer?: (p: PgPlan) => Promise<void>;
}

/** The clone a rehearsal runs on: its volumes (the one holding PGDATA first), where that one is mounted, and its owner. */
export interface CloneSet {
  volumes: string[];
  mountpoint: string;
  owner: string;
  /** Where each volume is mounted, in `volumes` order (default: just `mountpoint`). */
  mounts?: string[];
  /** Live's layout when it is more than one plain volume: links to re-point, configuration to copy. */
  layout?: SourceLayout;
}

export interface StepRun {
  step: PlannedStep;
  /** 1-based position in the plan (part of the snapshot name). */
  index: number;
  pg: PgPlan;
  /** Whether the upgraded server runs before this step. */
  prevServer: ServerState;
  verify?: VerifySpec;
  baseline?: Snapshot;
  updateExtensionsSql?: string;
  /** Live's configured settings (`[name, setting]`) for the upgrade step; default: what recover kept on the clone. */
  liveSettings?: string[][];
  /**
   * A new cluster initdb'ed before clients were held (the cut-over), with the settings it
   * matches: the upgrade step copies it into place instead of reading the old cluster and
   * running initdb while clients wait.
   */
  staged?: StagedCluster;
  /** The superuser file's text, when the caller already read it from the clone. */
  keptSuperuser?: string;
}

/** A cluster made by PostgresDriver.stageCluster: its directory and what it was made to match. */
export interface StagedCluster {
  dir: string;
  settings: ClusterSettings;
}

export interface StepResult {
  detail: string[];
  baseline?: Snapshot;
  updateExtensionsSql?: string;
  checks?: CheckRecord[];
  /** What the upgrade carried over of live's configuration, and what it left out. */
  carriedConfig?: { carried: string[]; dropped: Array<{ name: string; why: string }> };
  /** The role the step connected as (the cluster's bootstrap superuser). */
  superuser?: string;
  /** Recover: how long the recovered clone took to stop cleanly (what a promotion's clean stop of live is predicted from). */
  cleanStopMs?: number;
  /** Check: how long copying the staged new cluster into the clone took (a promotion copies it while clients wait). */
  placeMs?: number;
}

/** A verification that found differences: carries the checks for the report. */
export class VerificationError extends Error {
  constructor(
    message: string,
    readonly checks: CheckRecord[],
  ) {
    super(message);
    this.name = "VerificationError";
  }
}

/** Live's configured settings, as recover read them, kept in the clone's copy of PGDATA (PostgreSQL ignores the file). */
const SETTINGS_FILE = "understudy-live-settings.json";

/** A file the steps keep in the clone's copy of PGDATA (undefined when it is not there). */
async function readCloneFile(env: RunnerEnv, p: PgPlan, name: string): Promise<string | undefined> {
  const r = await env.host.runAs(p.osUser, ["cat", "--", `${p.oldDataDir}/${name}`], { okExitCodes: [0, 1], cwd: "/" });
  return r.exitCode === 0 ? r.stdout : undefined;
}

async function readSettingsFile(env: RunnerEnv, p: PgPlan): Promise<string[][] | undefined> {
  const text = await readCloneFile(env, p, SETTINGS_FILE);
  if (text === undefined) return undefined;
  try {
    const v = JSON.parse(text) as unknown;
    return Array.isArray(v) ? (v as string[][]) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * What a new cluster must match (encoding, locales, checksums, WAL segment size, superuser), as
 * the recover step read it while its server ran: the check step's initdb uses it instead of
 * starting the old version once more. Kept like the file above.
 */
const CLUSTER_FILE = "understudy-cluster-settings.json";

async function readClusterFile(env: RunnerEnv, p: PgPlan): Promise<ClusterSettings | undefined> {
  const text = await readCloneFile(env, p, CLUSTER_FILE);
  if (text === undefined) return undefined;
  try {
    return checkClusterSettings(JSON.parse(text) as unknown);
  } catch {
    env.log(`${p.oldDataDir}/${CLUSTER_FILE} is not what the recover step wrote: the check step reads the cluster's settings again`);
    return undefined;
  }
}

/** The cluster's bootstrap superuser, as the recover step read it, kept in the clone's copy of PGDATA. */
export const SUPERUSER_FILE = "understudy-superuser";

async function writeCloneFile(env: RunnerEnv, p: PgPlan, name: string, content: string): Promise<void> {
  await env.host.runAs(p.osUser, ["sh", "-c", 'umask 077 && cat > "$1"', "sh", `${p.oldDataDir}/${name}`], { input: content, cwd: "/" });
}

/**
 * The role every step connects as: the plan's (`source.superuser`) when given; else the
 * bootstrap superuser the recover step read from this clone; else (a promotion's fresh clone
 * of live's final snapshot, a clone made before this was kept) read now from whichever of the
 * clone's clusters is cleanly stopped, and kept; else the driver's default (the OS user's name).
 */
export async function stepSuperuser(env: RunnerEnv, p: PgPlan, keptText?: string): Promise<string> {
  if (p.superuser) return p.superuser;
  const kept = (keptText ?? (await readCloneFile(env, p, SUPERUSER_FILE)))?.trim();
  if (kept !== undefined && /^[A-Za-z_][A-Za-z0-9_]{0,62}$/.test(kept)) return kept;
  if (env.pg.superuserGiven) return env.pg.superuser;
  for (const [dir, inst] of [[p.oldDataDir, oldInstall(p)], [p.newDataDir, newInstall(p)]] as const) {
    try {
      if ((await env.pg.dataDirVersion(dir)) === undefined) continue;
      const name = await env.pg.readSuperuser(dir, inst);
      await writeCloneFile(env, p, SUPERUSER_FILE, `${name}\n`);
      env.log(`the cluster's bootstrap superuser (read from ${dir} in single-user mode): ${name}`);
      return name;
    } catch {
      // running, not cleanly stopped, or unusable after pg_upgrade --link: try the next one
    }
  }
  return env.pg.superuser;
}

/** The driver as `superuser`. */
function driverAs(env: RunnerEnv, superuser: string): PostgresDriver {
  return superuser === env.pg.superuser && env.pg.superuserGiven ? env.pg : env.pg.as(superuser);
}

const oldInstall = (p: PgPlan) => ({ version: p.from, binDir: p.fromBinDir, field: "from" });
const newInstall = (p: PgPlan) => ({ version: p.to, binDir: p.toBinDir, field: "to" });
const newServer = (p: PgPlan) => ({ version: p.to, binDir: p.toBinDir, socketDir: p.socketDir, port: p.port });
/** pg_upgrade's private servers use tempPort+1 (old) and tempPort+2 (new): the same for --check and the upgrade. */
const upgradeOptions = (p: PgPlan, log: (m: string) => void) => ({ mode: p.mode, oldPort: p.tempPort + 1, newPort: p.tempPort + 2, onProgress: log });

/** Stop whatever runs on the clone (the upgraded server, an old one a killed pg_upgrade left behind). */
export async function stopAll(env: RunnerEnv, p: PgPlan): Promise<void> {
  for (const [dir, inst] of [[p.newDataDir, newInstall(p)], [p.oldDataDir, oldInstall(p)]] as const) {
    const r = await env.pg.stopIfPresent(dir, inst, { mode: "fast" });
    if (r?.wasRunning) env.log(`stopped the server on ${dir}`);
  }
}

/**
 * Start the upgraded server on the clone. Its pg_hba.conf is live's (pg_upgrade copied it):
 * a marked block at its top lets the OS user in as `superuser` by peer first, so that the
 * steps reach it whatever live's local authentication is (removed again on a promoted new live).
 */
export async function startNew(env: RunnerEnv, p: PgPlan, superuser?: string): Promise<void> {
  const st = await env.pg.status(p.newDataDir, newInstall(p));
  if (st.running) return;
  const su = superuser ?? (await stepSuperuser(env, p));
  if (await env.pg.grantOwnerAccess(p.newDataDir, newInstall(p), su)) env.log(`pg_hba.conf of ${p.newDataDir}: the OS user ${p.osUser} may connect as ${su} by peer (a marked block on the clone)`);
  if (env.startServer) return await env.startServer(p);
  await env.pg.start(p.newDataDir, newInstall(p), { port: p.port, socketDir: p.socketDir, listen: p.listen, isolate: p.isolate ?? true, ...(p.logFile ? { logFile: p.logFile } : {}), onProgress: env.log });
}

/** Run one step's work on a clone (no snapshot, no resume logic). */
export async function runStep(envIn: RunnerEnv, r: StepRun): Promise<StepResult> {
  const p = r.pg;
  const s = r.step;
  // Recover reads the superuser (the clone is not cleanly stopped yet); every other step uses what it read.
  const su = s.kind === "recover" ? p.superuser : await stepSuperuser(envIn, p, r.keptSuperuser);
  const env: RunnerEnv = su === undefined ? envIn : { ...envIn, pg: driverAs(envIn, su) };
  const { pg } = env;
  const out: StepResult = { detail: [], ...(su ? { superuser: su } : {}) };
  switch (s.kind) {
    case "recover": {
      // One start of the old version: recovery, then (while it runs) live's configured
      // settings and the baseline the upgraded clone is verified against.
      const rec = await pg.recoverCrashConsistent(p.oldDataDir, oldInstall(p), p.tempPort, {
        onProgress: env.log,
        whileRunning: async (srv) => {
          const q = (sql: string, db = "postgres") => pg.adminQuery(srv, sql, { database: db });
          const settings = await q(CONFIGURED_SETTINGS_SQL);
          let baseline: Snapshot | undefined;
          if (r.verify) {
            env.log("measuring the baseline (the source as of the snapshot) with the old version");
            baseline = await collect((sql, db) => q(sql, db), r.verify);
          }
          return { settings, baseline };
        },
      });
      out.detail.push(`crash recovery ${rec.recoveryMs} ms, clean stop ${rec.stopMs} ms (state: ${rec.stateBefore} -> ${rec.stateAfter})`);
      out.cleanStopMs = rec.stopMs;
      // Kept on the clone (its snapshots and roll-backs carry it) for the steps after this one.
      const superuser = p.superuser ?? rec.settings.superuser;
      await writeCloneFile(env, p, SUPERUSER_FILE, `${superuser}\n`);
      out.superuser = superuser;
      out.detail.push(`steps run as ${superuser} (${p.superuser ? "source.superuser" : "the bootstrap superuser, read from the clone"})`);
      env.log(`steps run as ${superuser}`);
      if (rec.removedStalePid) out.detail.push(`removed the postmaster.pid copied from the source (pid ${rec.removedStalePid.pid})`);
      const extra = rec.extra as { settings: string[][]; baseline?: Snapshot };
      // Kept on the clone itself (its snapshots and roll-backs carry it) for the upgrade step.
      await writeCloneFile(env, p, SETTINGS_FILE, JSON.stringify(extra.settings));
      await writeCloneFile(env, p, CLUSTER_FILE, JSON.stringify(rec.settings));
      if (extra.baseline) {
        out.baseline = extra.baseline;
        out.detail.push(`baseline: ${Object.keys(extra.baseline.rowCounts).length} tables, ${Object.keys(extra.baseline.sequences).length} sequences in ${extra.baseline.databases.length} databases`);
      }
      return out;
    }
    case "check": {
      const cluster = await readClusterFile(env, p);
      if (cluster && (await env.host.runAs(p.osUser, ["test", "-e", p.newDataDir], { okExitCodes: [0, 1], cwd: "/" })).exitCode === 1) {
        // As a promotion does it: initdb outside the clone (before clients wait, there), then copy
        // it into place (while they wait). The copy is timed for the predicted pause.
        // When that cannot run (e.g. /tmp is full), initdb runs in the clone, as before; a promotion falls back the same way.
        const dir = await pg.stageCluster(newInstall(p), cluster).catch((e: unknown) => {
          env.log(`warning: the new cluster could not be initialized outside the clone (${e instanceof Error ? e.message.split("\n")[0] : String(e)}): initdb runs in the clone; the predicted pause then leaves out the copy a promotion makes`);
          return undefined;
        });
        if (dir) {
          try {
            const t0 = Date.now();
            await pg.placeStagedCluster(dir, p.newDataDir);
            out.placeMs = Date.now() - t0;
          } finally {
            await pg.removeStagedCluster(dir).catch((e: unknown) => env.log(`warning: could not remove ${dir}: ${e instanceof Error ? e.message.split("\n")[0] : String(e)}`));
          }
          out.detail.push(`new cluster initialized outside the clone and copied into place in ${out.placeMs} ms (as a promotion does while clients wait)`);
        }
      }
      const c = await pg.upgradeCheck(p.oldDataDir, p.newDataDir, oldInstall(p), newInstall(p), { ...upgradeOptions(p, env.log), ...(cluster ? { settings: cluster } : {}) });
      out.detail.push(`pg_upgrade --check passed${c.initializedNew ? " (new cluster initialized)" : ""}`);
      return out;
    }
    case "upgrade": {
      if (r.staged) {
        await pg.placeStagedCluster(r.staged.dir, p.newDataDir);
        out.detail.push(`the new cluster was initialized before clients were held (copied from ${r.staged.dir})`);
      }
      const u = await pg.upgrade(p.oldDataDir, p.newDataDir, oldInstall(p), newInstall(p), { ...upgradeOptions(p, env.log), ...(r.staged ? { settings: r.staged.settings } : {}) });
      out.detail.push(`pg_upgrade --${u.mode}: ${u.durationMs} ms`);
      out.updateExtensionsSql = u.updateExtensionsSql;
      const settings = r.liveSettings ?? (await readSettingsFile(env, p));
      if (settings) {
        // The new cluster runs with live's settings from here on: the rehearsal tests them.
        const c = await writeCarriedConfig(env.host, p.osUser, p.newDataDir, p.toBinDir, settings, p.from, p.to);
        out.detail.push(`live's configuration carried over: ${c.carried.length} settings${c.dropped.length ? `; left out: ${c.dropped.map((d) => `${d.name} (${d.why})`).join(", ")}` : ""}`);
        out.carriedConfig = { carried: c.carried, dropped: c.dropped };
      }
      return out;
    }
    case "start": {
      await startNew(env, p, su);
      out.detail.push(`PostgreSQL ${p.to} running on port ${p.port} (socket ${p.socketDir}${p.listen ? `, listen ${p.listen}` : ""})`);
      return out;
    }
    case "post-upgrade": {
      const u = await pg.postUpgrade(p.newDataDir, newInstall(p), {
        server: { port: p.port, socketDir: p.socketDir },
        updateExtensionsSql: r.updateExtensionsSql,
        analyze: "none",
        onProgress: env.log,
      });
      out.detail.push(u.extensionsUpdated ? `extensions updated in ${u.extensionsMs} ms` : "no extension needed an update");
      return out;
    }
    case "analyze": {
      const a = await pg.postUpgrade(p.newDataDir, newInstall(p), { server: { port: p.port, socketDir: p.socketDir }, analyze: "in-stages", onProgress: env.log });
      out.detail.push(`vacuumdb --analyze-in-stages: ${a.analyzeMs} ms`);
      return out;
    }
    case "sql":
    case "command": {
      const db = s.database ?? p.database;
      const exec = async (srv: { version: number; binDir?: string; socketDir: string; port: number }) => {
        if (s.kind === "sql") {
          const rows = await pg.adminQuery(srv, s.sql!, { database: db, timeoutMs: s.timeoutMs });
          out.detail.push(`SQL ran on ${db}${rows.length ? `; last row: ${rows[rows.length - 1].join(" | ")}` : ""}`);
        } else {
          // The environment is applied after the switch to the OS user (host.runAs): sudo cannot drop it.
          const res = await env.host.runAs(p.osUser, s.command!, {
            env: { PGHOST: srv.socketDir, PGPORT: String(srv.port), PGDATABASE: db, PGUSER: pg.superuser },
            timeoutMs: s.timeoutMs ?? 30 * 60_000,
          });
          const tail = (res.stdout + res.stderr).trim().split("\n").slice(-5).join("\n");
          out.detail.push(`command exited 0${tail ? `: ${tail}` : ""}`);
        }
      };
      if (r.prevServer === "new") {
        await exec(newServer(p));
      } else {
        // Before the upgrade: on the old version, privately, stopped cleanly afterwards.
        const inst = await pg.resolveInstall(oldInstall(p), ["pg_ctl", "psql"]);
        await pg.withPrivateServer(s.name, p.oldDataDir, inst, p.tempPort, { onProgress: env.log }, async (srv) =>
          exec({ version: p.from, binDir: p.fromBinDir, socketDir: srv.socketDir, port: srv.port }),
        );
      }
      return out;
    }
    case "verify": {
      if (!r.baseline || !r.verify) throw new Error("no baseline to verify against (the recover step measures it)");
      const srv = newServer(p);
      const after = await collect((sql, db) => pg.adminQuery(srv, sql, { database: db }), r.verify);
      const checks = [...compare(r.baseline, after), ...(await assertions((sql, db) => pg.adminQuery(srv, sql, { database: db }), r.verify, p.database))];
      out.checks = checks;
      const failed = checks.filter((x) => x.status === "fail");
      out.detail.push(`${checks.length - failed.length} of ${checks.length} checks passed`);
      if (failed.length) {
        const list = failed.slice(0, 10).map((x) => `${x.name}: expected ${x.expected}, got ${x.actual}`).join("; ");
        throw new VerificationError(`${failed.length} verification check(s) failed: ${list}`, checks);
      }
      return out;
    }
  }
}

const pad = (n: number) => String(n).padStart(2, "0");

/** The short name of the snapshot set taken after step `index`. */
export function stepSnapshotName(storage: Pick<Storage, "validateSnapshotName">, index: number, name: string): string {
  return storage.validateSnapshotName(`s${pad(index)}-${name}`, "steps.name");
}

/** The set taken of the clone right after it was made: where the first step starts. */
export const CLONED_SNAPSHOT = "s00-cloned";
const MARKER = ".understudy-step-in-progress";

/**
 * The snapshot set named by the marker file's text (`step <index> <name> started <time>`,
 * written before each step): the set that step takes when it finishes. Undefined for text
 * that is not a marker.
 */
export function markerSet(storage: Pick<Storage, "validateSnapshotName">, text: string): string | undefined {
  const m = /^step (\d{1,2}) (\S+) started /.exec(text);
  if (!m) return undefined;
  try {
    return stepSnapshotName(storage, Number(m[1]), m[2]);
  } catch {
    return undefined;
  }
}

/** The previous step, as the next one needs it. */
export interface PrevStep {
  /** Short name of its snapshot set. */
  snapshot: string;
  serverAfter: ServerState;
}

export interface ExecutedStep extends StepResult {
  snapshot: string;
  serverAfter: ServerState;
}

/**
 * One rehearsal step on a clone set: bring the clone to the previous step's snapshot set
 * (roll back when the marker file names a step whose set was never taken, i.e. a step cut
 * off; when this step's set exists from an earlier attempt; or when the clone's content is
 * another set), run the step, then snapshot the set. The marker, written before the step, is
 * in that set: it names the set the clone's content is (clones of earlier builds, without a
 * marker after a finished step, are judged by their `head` mark).
 */
export async function executeStep(env: RunnerEnv, clone: CloneSet, r: StepRun, prev: PrevStep | undefined): Promise<ExecutedStep> {
  const { storage, host } = env;
  const snapName = stepSnapshotName(storage, r.index, r.step.name);
  const primary = clone.volumes[0];
  const marker = `${clone.mountpoint}/${MARKER}`;
  let prevSnapshot = prev?.snapshot;
  if (!prevSnapshot) {
    prevSnapshot = CLONED_SNAPSHOT;
    if (!(await storage.findSnapshotSet(clone.volumes, prevSnapshot))) await storage.snapshot(clone.volumes, prevSnapshot, clone.owner);
  }
  // Independent reads, asked at once (one round trip's wait instead of three).
  const [marked, found, prevFound] = await Promise.all([
    host.runAs("root", ["cat", "--", marker], { okExitCodes: [0, 1] }),
    storage.findSnapshotSet(clone.volumes, snapName).catch(() => undefined),
    storage.findSnapshotSet(clone.volumes, prevSnapshot).catch(() => undefined),
  ]);
  const leftover = found !== undefined;
  // Where the clone's content is: the set the marker names, when that set exists (it was taken
  // after the step, marker included); a marker naming no existing set is a step cut off.
  let at: string | undefined;
  let unfinished: string | undefined;
  if (marked.exitCode === 0) {
    const started = markerSet(storage, marked.stdout);
    const exists =
      started === undefined
        ? false
        : started === prevSnapshot
          ? prevFound !== undefined
          : started === snapName
            ? leftover
            : (await storage.findSnapshotSet(clone.volumes, started).catch(() => undefined)) !== undefined;
    if (exists) at = started;
    else unfinished = started ?? "a step";
  } else {
    // No marker: the clone as made (s00), or a clone of 0.1.0 or an earlier 0.2.0 build, which kept
    // the state in a head mark (0.1.0 stored `dataset@name`) and removed the marker after each step.
    const rawHead = await storage.getMark(primary, "head");
    at = rawHead?.includes("@") ? rawHead.slice(rawHead.indexOf("@") + 1) : rawHead;
  }
  const atPrev = unfinished === undefined && (at === prevSnapshot || (at === undefined && !prev));
  if (unfinished !== undefined || leftover || !atPrev) {
    env.log(
      `${unfinished !== undefined ? `an earlier attempt (${unfinished}) did not finish` : `the clone is at ${at ?? "an unknown state"}`}: rolling ${clone.volumes.join(", ")} back to ${primary}@${prevSnapshot}`,
    );
    await stopAll(env, r.pg);
    await storage.rollback(clone.volumes, prevSnapshot, clone.owner);
  }
  // Before anything runs on the clone: its links point into the clone, never into live
  // (a roll-back to the first snapshot brings live's links back: re-pointed here again).
  await prepareClone(host, r.pg.osUser, r.pg.oldDataDir, clone.mounts ?? [clone.mountpoint], clone.layout, env.log, [r.pg.newDataDir]);
  if ((unfinished !== undefined || leftover || !atPrev) && prev?.serverAfter === "new") await startNew(env, r.pg);
  // As root: the clone's mount directory belongs to root (a non-root login goes through sudo -n).
  // Read at once: the superuser the recover step kept (a read only; runStep falls back when it is not there).
  const [, keptSuperuser] = await Promise.all([
    host.runAs("root", ["sh", "-c", 'umask 022 && cat > "$1"', "sh", marker], { input: `step ${r.index} ${r.step.name} started ${new Date().toISOString()}\n` }),
    r.step.kind === "recover" || r.pg.superuser ? undefined : readCloneFile(env, r.pg, SUPERUSER_FILE),
  ]);
  env.log(`step ${r.index} (${r.step.kind}) started`);
  const result = await runStep(env, { ...r, ...(keptSuperuser !== undefined ? { keptSuperuser } : {}) });
  const after = serverAfter(r.step.kind, r.prevServer);
  if (after === "new") await env.pg.adminQuery(newServer(r.pg), "CHECKPOINT", { user: result.superuser });
  // The marker stays: the set taken now carries it, naming this step. From here on the clone's
  // content is that set; no other mark is written (one storage round trip less per step).
  await storage.snapshot(clone.volumes, snapName, clone.owner);
  return { ...result, snapshot: snapName, serverAfter: after };
}
