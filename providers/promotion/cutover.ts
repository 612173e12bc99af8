import * as pulumi from "@pulumi/pulumi";
import type { ConnectionArgs } from "../host/connection";
import { withHost } from "../host";
import type { Host } from "../host/types";
import { OWNER_PROPERTY, ZfsDriver } from "../zfs/driver";
import { PostgresDriver, UpgradeMode } from "../postgres/driver";
import { PgBouncerEndpoint } from "../endpoint/pgbouncer";
import type { DatabaseTarget, PgBouncerEndpointConfig } from "../endpoint/pgbouncer-config";
import { errorMessage, hostIdentity, isUnknown, progress, sanitize } from "../common";
import { isCleanShutdown } from "../postgres/parse";
import { UnderstudyResource } from "../shim";
import { runStep, serverAfter, ServerState, StepInputs, PgPlan, PlannedStep } from "../rehearsal/step";
export type { PlannedStep };
import type { VerifySpec } from "../rehearsal/verify";
import { isArgv } from "../host/types";

/** The live server that a promotion stops cleanly and keeps, intact, for roll-back. */
export interface LiveSpec {
  dataset: string;
  pgdata: string;
  version: number;
  binDir?: string;
  osUser: string;
  port: number;
  socketDir: string;
  /** argv that starts / stops live (e.g. `["systemctl", "start", "postgresql@13-main"]`); default: pg_ctl with the options live was started with (postmaster.opts). */
  startCommand?: string[];
  stopCommand?: string[];
}


export interface CutOverInputs {
  connection?: ConnectionArgs;
  label: string;
  owner: string;
  stack: string;
  promote: boolean;
  endpoint: PgBouncerEndpointConfig;
  database: string;
  pauseTimeoutMs: number;
  live: LiveSpec;
  newLive: { dataset: string; port: number; socketDir: string; listen: string };
  to: number;
  toBinDir?: string;
  mode: UpgradeMode;
  steps: PlannedStep[];
  assertions: VerifySpec["assertions"];
  /** The rehearsal that proved the plan: its status must be `passed`. */
  rehearsal: { name: string; status: string; predictedCutoverMs: number };
}

export interface PhaseTiming {
  phase: string;
  ms: number;
}

export interface CutOverOutputs extends CutOverInputs {
  state: "serving-old" | "promoted" | "rolled-back";
  target: DatabaseTarget;
  promotedAt?: string;
  rolledBackAt?: string;
  finalSnapshot?: string;
  newLiveDataset?: string;
  newLiveDataDir?: string;
  pauseWindowMs?: number;
  phases?: PhaseTiming[];
  events: Array<{ at: string; what: string }>;
}

const liveTarget = (i: CutOverInputs): DatabaseTarget => ({ host: i.live.socketDir, port: i.live.port, dbname: i.database });
const newTarget = (i: CutOverInputs): DatabaseTarget => ({ host: i.newLive.socketDir, port: i.newLive.port, dbname: i.database });
const liveInstall = (i: CutOverInputs) => ({ version: i.live.version, binDir: i.live.binDir, field: "source" });
const newInstall = (i: CutOverInputs) => ({ version: i.to, binDir: i.toBinDir, field: "to" });
const binOf = (i: CutOverInputs) => i.live.binDir ?? `/usr/lib/postgresql/${i.live.version}/bin`;

interface Env {
  host: Host;
  z: ZfsDriver;
  pg: PostgresDriver;
  ep: PgBouncerEndpoint;
  log: (m: string) => void;
}

async function mountpointOf(z: ZfsDriver, dataset: string): Promise<string> {
  const info = await z.get(dataset);
  if (!info) throw new Error(`dataset ${dataset} does not exist on ${z.host.description}`);
  if (!info.mountpoint || !info.mountpoint.startsWith("/")) throw new Error(`dataset ${dataset} has no mountpoint`);
  return info.mountpoint;
}

/** The options live was started with, from its postmaster.opts (written by postgres itself). */
async function liveStartOptions(e: Env, i: CutOverInputs, dataDir: string): Promise<string> {
  const r = await e.host.runAs(i.live.osUser, ["cat", "--", `${dataDir}/postmaster.opts`], { okExitCodes: [0, 1] });
  const text = r.exitCode === 0 ? r.stdout.trim() : "";
  const args = [...text.matchAll(/"((?:[^"\\]|\\.)*)"/g)].map((m) => m[1]);
  if (!text || args.length === 0 || /[$`\\\n]/.test(text)) {
    return `-p ${i.live.port} -k ${i.live.socketDir}`;
  }
  const out: string[] = [];
  for (let k = 0; k < args.length; k++) {
    if (args[k] === "-D") {
      k++;
      continue;
    }
    out.push(`"${args[k]}"`);
  }
  return out.join(" ");
}

/** The upgraded cluster's directory on a clone mounted at `mnt`: the rehearsal's rule (UpgradeRehearsal). */
const newDataDirOf = (mnt: string, i: CutOverInputs) => `${mnt}/${sanitize(i.live.pgdata)}.pg${i.to}`;

async function stopLive(e: Env, i: CutOverInputs, dataDir: string): Promise<void> {
  let state: string | undefined;
  if (i.live.stopCommand) await e.host.run(i.live.stopCommand, { timeoutMs: 30 * 60_000 });
  else state = (await e.pg.stop(dataDir, liveInstall(i), { mode: "fast", timeoutMs: 30 * 60_000 })).state;
  // stop() reads pg_controldata already; a stop command of the user's does not.
  state ??= (await e.pg.controlData(dataDir, liveInstall(i))).state;
  if (!isCleanShutdown(state)) throw new Error(`live did not shut down cleanly (pg_controldata: ${state})`);
}

async function startLive(e: Env, i: CutOverInputs, dataDir: string, opts: string): Promise<void> {
  if (i.live.startCommand) {
    await e.host.run(i.live.startCommand, { timeoutMs: 30 * 60_000 });
  } else {
    await e.host.run(["mkdir", "-p", "/var/log/understudy"]);
    await e.host.run(["chown", i.live.osUser, "/var/log/understudy"]);
    await e.host.runAs(
      i.live.osUser,
      [`${binOf(i)}/pg_ctl`, "start", "-w", "-t", "3600", "-D", dataDir, "-l", `/var/log/understudy/live-${i.stack}.log`, "-o", opts],
      { timeoutMs: 3700_000, cwd: "/" },
    );
  }
  await e.pg.adminQuery({ version: i.live.version, binDir: i.live.binDir, socketDir: i.live.socketDir, port: i.live.port }, "SELECT 1");
}

/** ZFS user property on a new-live clone whose promotion failed: the next promotion removes it (an unmarked one may hold writes and is kept). */
const ATTEMPT_PROPERTY = "understudy:promotion";
const FAILED_ATTEMPT = "failed-attempt";

const SEQUENCES = `SELECT schemaname || '.' || sequencename, coalesce(last_value::text, 'unused') FROM pg_sequences ORDER BY 1`;

async function promote(e: Env, i: CutOverInputs, prior: CutOverOutputs | undefined): Promise<CutOverOutputs> {
  if (i.rehearsal.status !== "passed") {
    throw new Error(`promote: the rehearsal ${i.rehearsal.name} has not passed (status: ${i.rehearsal.status}); nothing was done`);
  }
  const events: CutOverOutputs["events"] = [...(prior?.events ?? [])];
  const phases: PhaseTiming[] = [];
  let phaseNow = "";
  const timed = async <T>(phase: string, fn: () => Promise<T>): Promise<T> => {
    const t = Date.now();
    phaseNow = phase;
    e.log(`${phase}...`);
    const v = await fn();
    phases.push({ phase, ms: Date.now() - t });
    return v;
  };
  const liveMnt = await mountpointOf(e.z, i.live.dataset);
  const liveDir = `${liveMnt}/${i.live.pgdata}`;

  // Preconditions, before any client is held.
  // The new live of a promotion that was rolled back holds the writes made while it served:
  // it is kept, and this promotion gets the next generation's name. A clone left by a failed
  // attempt (marked so) is that generation's name again: it is removed below.
  let nlDataset = i.newLive.dataset;
  for (let n = 2; prior?.state === "rolled-back"; n++) {
    const mark = await e.z.getProperty(nlDataset, ATTEMPT_PROPERTY);
    if (mark === undefined || mark === FAILED_ATTEMPT) break;
    nlDataset = `${i.newLive.dataset}-${n}`;
  }
  const existing = await e.z.get(nlDataset);
  if (existing) {
    if (existing.user[OWNER_PROPERTY] !== i.owner) {
      throw new Error(`promote: ${nlDataset} already exists and was not created by this promotion. Rename or destroy it, or set newLive.dataset; nothing was done`);
    }
    const dir = existing.mountpoint && newDataDirOf(existing.mountpoint, i);
    if (dir && (await e.pg.status(dir, newInstall(i)).catch(() => ({ running: false }))).running) {
      throw new Error(`promote: a server is running on ${nlDataset}; nothing was done`);
    }
    e.log(`removing ${nlDataset} left by a failed promotion attempt`);
    await e.z.destroy(nlDataset, i.owner);
    // ... and the final snapshot of live it was cloned from (ours, and nothing else uses it).
    if (existing.origin && existing.origin.startsWith(`${i.live.dataset}@understudy-final-`)) {
      await e.z.destroy(existing.origin, i.owner).catch((err) => e.log(`left ${existing.origin} in place: ${errorMessage(err)}`));
    }
  }
  const nl = { ...i.newLive, dataset: nlDataset };
  await e.pg.assertPortFree(i.newLive.port, "newLive.port");
  await e.pg.resolveInstall(newInstall(i), ["pg_ctl", "pg_upgrade", "initdb", "psql"]);
  const current = await e.ep.target(i.database);
  if (!current) throw new Error(`promote: PgBouncer ${i.endpoint.name} has no database ${i.database}`);

  const stamp = new Date().toISOString().replace(/[-:]/g, "").replace(/\..*/, "").replace("T", "-");
  const finalSnapshot = `${i.live.dataset}@understudy-final-${i.stack}-${stamp}`;
  let newDataDir = "";
  let cloneMade = false;
  let failedPhase: string | undefined;
  let liveRestarted = false;
  const liveServer = { version: i.live.version, binDir: i.live.binDir, socketDir: i.live.socketDir, port: i.live.port };

  let held: Awaited<ReturnType<typeof e.ep.hold<void>>>;
  try {
    held = await e.ep.hold(
      i.database,
      async (ctx) => {
        e.log(`clients held on ${i.database} (PAUSE) after ${ctx.elapsedMs()} ms`);
        const seqBefore = await timed("read live sequences", () => e.pg.adminQuery(liveServer, SEQUENCES, { database: i.database }));
        // Read before the stop: how live was started, to start it the same way if anything fails.
        const opts = await liveStartOptions(e, i, liveDir);
        try {
          await timed("stop live cleanly", () => stopLive(e, i, liveDir));
        } catch (err) {
          // Whatever state the stop left, live must serve again before clients resume.
          const st = await e.pg.status(liveDir, liveInstall(i)).catch(() => ({ running: false }));
          if (!st.running) await startLive(e, i, liveDir, opts);
          throw new Error(`stop live: ${errorMessage(err)}. Live ${st.running ? "kept running" : "was started again"}; nothing else was done`);
        }
        try {
          await timed("final snapshot", () => e.z.snapshot(finalSnapshot, { [OWNER_PROPERTY]: i.owner }));
          await timed("clone", () => e.z.clone(finalSnapshot, nl.dataset, { [OWNER_PROPERTY]: i.owner }));
          cloneMade = true;
          const mnt = await mountpointOf(e.z, nl.dataset);
          const plan: PgPlan = {
            from: i.live.version,
            to: i.to,
            fromBinDir: i.live.binDir,
            toBinDir: i.toBinDir,
            osUser: i.live.osUser,
            oldDataDir: `${mnt}/${i.live.pgdata}`,
            newDataDir: newDataDirOf(mnt, i),
            port: i.newLive.port,
            tempPort: i.newLive.port + 1,
            socketDir: i.newLive.socketDir,
            listen: i.newLive.listen,
            mode: i.mode,
            database: i.database,
          };
          newDataDir = plan.newDataDir;
          let server: ServerState = "none";
          let updateExtensionsSql: string | undefined;
          for (const [n, s] of i.steps.filter((x) => x.cutover && x.kind !== "recover" && x.kind !== "verify").entries()) {
            const si: StepInputs = {
              connection: i.connection,
              label: i.label,
              rehearsal: i.rehearsal.name,
              index: n + 1,
              name: s.name,
              kind: s.kind,
              cutover: true,
              clone: { dataset: nl.dataset, mountpoint: mnt, owner: i.owner },
              source: { dataset: i.live.dataset, snapshot: finalSnapshot },
              pg: plan,
              sql: s.sql,
              command: s.command,
              database: s.database,
              timeoutMs: s.timeoutMs,
              prev: { snapshot: finalSnapshot, serverAfter: server, finishedAt: "", name: "" },
              history: [],
              updateExtensionsSql,
              reportDir: "",
            };
            const extra = await timed(`replay ${s.name}`, () => runStep({ host: e.host, z: e.z, pg: e.pg, i: si, log: e.log, detail: [] }));
            if (s.kind === "upgrade") updateExtensionsSql = extra.updateExtensionsSqlOut;
            server = serverAfter(s.kind, server);
          }
          if (server !== "new") throw new Error("the replayed plan did not start the new server");
          const newServer = { version: i.to, binDir: i.toBinDir, socketDir: i.newLive.socketDir, port: i.newLive.port };
          await timed("verify", async () => {
            const seqAfter = await e.pg.adminQuery(newServer, SEQUENCES, { database: i.database });
            if (JSON.stringify(seqAfter) !== JSON.stringify(seqBefore)) {
              throw new Error(`verify: sequences differ between live and the upgraded clone: ${JSON.stringify(seqBefore).slice(0, 200)} vs ${JSON.stringify(seqAfter).slice(0, 200)}`);
            }
            for (const a of i.assertions) {
              const v = (await e.pg.adminQuery(newServer, a.sql, { database: a.database ?? i.database }))[0]?.[0];
              if (v !== "t" && v !== "true") throw new Error(`verify: assertion "${a.name}" returned ${v ?? "no row"}`);
            }
          });
          await timed("switch endpoint", () => ctx.retarget(newTarget(i)));
        } catch (err) {
          failedPhase = phaseNow;
          e.log(`cut-over failed at "${failedPhase}": ${errorMessage(err).split("\n")[0]}; restoring live`);
          try {
            if (newDataDir) await e.pg.stopIfPresent(newDataDir, newInstall(i), { mode: "fast" });
          } catch (stopErr) {
            e.log(`could not stop the half-upgraded clone: ${errorMessage(stopErr)}`);
          }
          try {
            await startLive(e, i, liveDir, opts);
          } catch (startErr) {
            throw new Error(`${failedPhase}: ${errorMessage(err)}; then restarting live FAILED: ${errorMessage(startErr)}`);
          }
          liveRestarted = true;
          e.log("live restarted; clients resume on it");
          throw new Error(`${failedPhase}: ${errorMessage(err)}`);
        }
      },
      { pauseTimeoutMs: i.pauseTimeoutMs },
    );
  } catch (err) {
    // Outside the pause: mark the half-made clone so that the next promotion removes it.
    if (cloneMade) await e.z.set(nl.dataset, { [ATTEMPT_PROPERTY]: FAILED_ATTEMPT }).catch((m) => e.log(`could not mark ${nl.dataset}: ${errorMessage(m)}`));
    const clients = (err as { clients?: string }).clients;
    if (failedPhase === undefined) throw err;
    const left = cloneMade ? ` Left behind: ${nl.dataset} (the half-made clone, stopped; the next promotion removes it) and ${finalSnapshot}.` : "";
    if (liveRestarted && clients === "old-target") {
      throw new Error(
        `promote failed at phase "${failedPhase}"; nothing was switched: clients are on the old live (PostgreSQL ${i.live.version} on ${i.live.dataset}, port ${i.live.port}, restarted) and PgBouncer resumed them there.${left}\nDetails: ${errorMessage(err)}`,
      );
    }
    throw new Error(`promote failed at phase "${failedPhase}".${left}\n${errorMessage(err)}`);
  }
  events.push({ at: new Date().toISOString(), what: `promoted: ${i.database} now served by PostgreSQL ${i.to} on ${nl.dataset}` });
  e.log(`promoted: clients resumed on PostgreSQL ${i.to} (${nl.dataset}, port ${nl.port}); pause window ${held.pauseWindowMs} ms`);
  // After clients resume: statistics, in stages (queries work meanwhile).
  let analyzed: PhaseTiming | undefined;
  try {
    const t = Date.now();
    await e.pg.postUpgrade(newDataDir, newInstall(i), { server: { port: i.newLive.port, socketDir: i.newLive.socketDir }, analyze: "in-stages" });
    analyzed = { phase: "analyze (after resume)", ms: Date.now() - t };
  } catch (err) {
    e.log(`warning: vacuumdb --analyze-in-stages failed after promotion (run it by hand): ${errorMessage(err)}`);
  }
  return {
    ...i,
    state: "promoted",
    target: newTarget(i),
    promotedAt: new Date().toISOString(),
    finalSnapshot,
    newLiveDataset: nl.dataset,
    newLiveDataDir: newDataDir,
    pauseWindowMs: held.pauseWindowMs,
    phases: [
      { phase: "PAUSE (in-flight transactions finish)", ms: held.phases.pauseMs },
      ...phases,
      { phase: "RESUME", ms: held.phases.resumeMs },
      ...(analyzed ? [analyzed] : []),
    ],
    events,
  };
}

async function rollBack(e: Env, i: CutOverInputs, prior: CutOverOutputs): Promise<CutOverOutputs> {
  const liveDir = `${await mountpointOf(e.z, i.live.dataset)}/${i.live.pgdata}`;
  const newDir = prior.newLiveDataDir!;
  const phases: PhaseTiming[] = [];
  const held = await e.ep.hold(
    i.database,
    async (ctx) => {
      let t = Date.now();
      await e.pg.stop(newDir, newInstall(i), { mode: "fast" });
      phases.push({ phase: "stop new live cleanly", ms: Date.now() - t });
      try {
        t = Date.now();
        await startLive(e, i, liveDir, await liveStartOptions(e, i, liveDir));
        phases.push({ phase: "start old live", ms: Date.now() - t });
        t = Date.now();
        await ctx.retarget(liveTarget(i));
        phases.push({ phase: "switch endpoint", ms: Date.now() - t });
      } catch (err) {
        e.log(`roll-back failed (${errorMessage(err)}); restarting the new live`);
        await e.pg.start(newDir, newInstall(i), { port: i.newLive.port, socketDir: i.newLive.socketDir, listen: i.newLive.listen, isolate: false });
        throw err;
      }
    },
    { pauseTimeoutMs: i.pauseTimeoutMs },
  );
  const at = new Date().toISOString();
  e.log(
    `rolled back: clients resumed on PostgreSQL ${i.live.version} (${i.live.dataset}); pause window ${held.pauseWindowMs} ms. ` +
      `Writes made on the new live since ${prior.promotedAt} stay in ${prior.newLiveDataset} (stopped), they were not copied back.`,
  );
  return {
    ...i,
    state: "rolled-back",
    target: liveTarget(i),
    promotedAt: prior.promotedAt,
    rolledBackAt: at,
    finalSnapshot: prior.finalSnapshot,
    newLiveDataset: prior.newLiveDataset,
    newLiveDataDir: prior.newLiveDataDir,
    pauseWindowMs: held.pauseWindowMs,
    phases,
    events: [...prior.events, { at, what: `rolled back to PostgreSQL ${i.live.version}; ${prior.newLiveDataset} kept, stopped` }],
  };
}

async function withEnv<T>(i: CutOverInputs, fn: (e: Env) => Promise<T>): Promise<T> {
  return await withHost(i.connection, (host) =>
    fn({
      host,
      z: new ZfsDriver(host),
      pg: new PostgresDriver(host, { osUser: i.live.osUser }),
      ep: new PgBouncerEndpoint(host, i.endpoint),
      log: (m) => progress(i.label, m),
    }),
  );
}

export const cutOverProvider: pulumi.dynamic.ResourceProvider = {
  async check(_o: CutOverInputs, n: CutOverInputs) {
    const failures: pulumi.dynamic.CheckFailure[] = [];
    if (!isUnknown(n.promote) && typeof n.promote !== "boolean") failures.push({ property: "promote", reason: "promote: must be true or false" });
    for (const k of ["startCommand", "stopCommand"] as const) {
      const v = n.live?.[k];
      if (v !== undefined && !isUnknown(v) && !isArgv(v)) {
        failures.push({ property: k, reason: `source.${k}: must be a non-empty argv array` });
      }
    }
    if (!isUnknown(n.newLive?.port) && !isUnknown(n.live?.port) && n.newLive?.port === n.live?.port) {
      failures.push({ property: "newLive", reason: "newLive.port: must differ from the live port (PgBouncer must see a new target)" });
    }
    return { inputs: n, failures };
  },
  async diff(_id: string, o: CutOverOutputs, n: CutOverInputs) {
    // Nothing here is ever replaced: promote flips are updates (promote / roll back), the rest is
    // remembered for the next flip.
    const changes = JSON.stringify({ ...o, state: undefined, target: undefined, promotedAt: undefined, rolledBackAt: undefined, finalSnapshot: undefined, newLiveDataDir: undefined, pauseWindowMs: undefined, phases: undefined, events: undefined }) !== JSON.stringify({ ...o, ...n, state: undefined, target: undefined, promotedAt: undefined, rolledBackAt: undefined, finalSnapshot: undefined, newLiveDataDir: undefined, pauseWindowMs: undefined, phases: undefined, events: undefined });
    return { changes, replaces: [], deleteBeforeReplace: false };
  },
  async create(i: CutOverInputs) {
    const outs = i.promote
      ? await withEnv(i, (e) => promote(e, i, undefined))
      : { ...i, state: "serving-old" as const, target: liveTarget(i), events: [] };
    return { id: `${hostIdentity(i.connection)}:cutover:${i.endpoint.name}:${i.database}`, outs };
  },
  async read(id: string, p: CutOverOutputs) {
    return { id, props: p };
  },
  async update(_id: string, o: CutOverOutputs, n: CutOverInputs) {
    if (n.promote && o.state !== "promoted") return { outs: await withEnv(n, (e) => promote(e, n, o)) };
    if (!n.promote && o.state === "promoted") return { outs: await withEnv(n, (e) => rollBack(e, n, o)) };
    return { outs: { ...o, ...n, state: o.state, target: o.target } };
  },
  async delete(_id: string, p: CutOverOutputs) {
    // Hand-over: never stop, move or destroy anything on delete. A promoted new live keeps serving.
    if (p.state === "promoted") {
      progress(p.label, `hand-over: ${p.database} stays on PostgreSQL ${p.to} (${p.newLiveDataset}, port ${p.newLive.port}); the old live ${p.live.dataset} stays stopped and intact. Nothing was changed.`);
    }
  },
};

export type CutOverArgs = { [K in keyof CutOverInputs]: pulumi.Input<CutOverInputs[K]> };

/** The promotion itself (see {@link Promotion}). */
export class CutOver extends UnderstudyResource {
  declare readonly state: pulumi.Output<CutOverOutputs["state"]>;
  declare readonly target: pulumi.Output<DatabaseTarget>;
  declare readonly promotedAt: pulumi.Output<string | undefined>;
  declare readonly rolledBackAt: pulumi.Output<string | undefined>;
  declare readonly finalSnapshot: pulumi.Output<string | undefined>;
  declare readonly newLiveDataset: pulumi.Output<string | undefined>;
  declare readonly pauseWindowMs: pulumi.Output<number | undefined>;
  declare readonly phases: pulumi.Output<PhaseTiming[] | undefined>;
  declare readonly events: pulumi.Output<Array<{ at: string; what: string }>>;

  constructor(name: string, args: CutOverArgs, opts?: pulumi.CustomResourceOptions) {
    super(
      "CutOver",
      name,
      {
        ...args,
        state: undefined,
        target: undefined,
        promotedAt: undefined,
        rolledBackAt: undefined,
        finalSnapshot: undefined,
        newLiveDataset: undefined,
        newLiveDataDir: undefined,
        pauseWindowMs: undefined,
        phases: undefined,
        events: undefined,
      },
      opts,
      ["endpoint"], // it can carry user passwords
    );
  }
}
