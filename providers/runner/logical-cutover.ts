/**
 * The `logical` cut-over as phases, each with its undo (./phases.ts), on the PostgreSQL
 * machinery of providers/postgres/logical.ts. Everything slow happens while clients keep
 * working on live; clients are held only for the last transactions:
 *
 *   readiness -> WAL keeper (physical slot) -> CHECKPOINT -> snapshot set -> clone ->
 *   publications + logical slots -> conversion of the clone at the old major -> WAL keeper
 *   dropped -> the rehearsed cut-over steps (pg_upgrade --link, start, ...) -> the new live's
 *   replication settings -> subscriptions -> catch-up under the lag threshold (retained-WAL
 *   watch, schema check) -> the way back's slots ->
 *   HOLD [ PAUSE every database -> capture on live (markers, sequences, schema) -> finish on
 *   the new live (bounded wait until applied, sequences, subscriptions disabled) -> every
 *   entry switched ] RESUME ->
 *   the way back started, the old live read-only, the way forward retired.
 *
 * Any failure undoes what ran in reverse (clients resume on live, which never stopped); then
 * whatever of ours is still on live (slots, publications, settings) is removed. The roll-back
 * runs the held part the other way (new live -> old live, every write kept) and removes
 * everything of ours from both sides afterwards.
 *
 * No Pulumi here; LogicalOps is the slice of LogicalReplication the phases call (fakes in
 * unit tests).
 */
import { createHash } from "node:crypto";
import { errorMessage } from "../errors";
import type { DatabaseTarget } from "../endpoint/pgbouncer-config";
import {
  NotReadyError,
  type Capture,
  type FinishResult,
  type LogicalReplication,
  type RetainedWalWatch,
  type SchemaFingerprint,
  type ServerRef,
  type StartPoint,
} from "../postgres/logical";
import {
  databasesOf,
  finishJournal,
  holdFor,
  liveTargets,
  newLiveTargets,
  newServerRef,
  preparePromotion,
  replayPhases,
  switchEndpointPhase,
  type CutoverEnv,
  type CutoverSpec,
  type PromoteResult,
  type PromoteState,
} from "./cutover";
import { PhaseError, runPhases, type Phase, type PhaseRun, type PhaseTiming } from "./phases";
import type { JournalEntry } from "./journal";

export { LOGICAL_DEFAULTS, checkLogicalSettings, type LogicalSettings } from "../plan/logical";
import { LOGICAL_DEFAULTS } from "../plan/logical";

/** The slice of LogicalReplication the phases call. */
export type LogicalOps = Pick<
  LogicalReplication,
  | "readiness"
  | "createWalKeeper"
  | "dropWalKeeper"
  | "createSlots"
  | "dropForward"
  | "convertClone"
  | "subscribe"
  | "unsubscribe"
  | "waitCaughtUp"
  | "watchRetainedWal"
  | "checkSchema"
  | "prepareReverse"
  | "dropReverse"
  | "capture"
  | "finish"
  | "unfinish"
  | "startReverse"
  | "makeReadOnly"
  | "retireForward"
  | "retireReverse"
  | "cleanup"
  | "leftovers"
  | "names"
> & { withTarget(target: ServerRef): LogicalOps };

/** What the logical phases need beyond the replay's environment. */
export interface LogicalEnv {
  /** Every database of live's cluster that accepts connections (templates left out). */
  clusterDatabases(): Promise<string[]>;
  /** The machinery for one tag over `databases`, live only (`withTarget` for the new side). */
  open(tag: string, databases: string[]): LogicalOps;
  /** CHECKPOINT on live (the clone's recovery then replays little). */
  checkpoint(): Promise<void>;
  /**
   * Tables the new live has (it is live as of the start point) that live's publication of
   * this tag does not list, per database: a table created on live between the publications
   * and the start point. Its writes would not be replicated, so the cut-over refuses.
   */
  unpublishedTables(tag: string, databases: string[]): Promise<Array<{ database: string; tables: string[] }>>;
  /** The running new live gets what a subscriber and the way back need (raised with ALTER SYSTEM and a restart of the new live, only when short). */
  ensureTargetSettings(dataDir: string, databases: number): Promise<string[]>;
}

/** The tag that names everything the logical method creates for one promotion (stable: cleanup finds it again). */
export function logicalTag(owner: string): string {
  return `u${createHash("sha256").update(owner).digest("hex").slice(0, 12)}`;
}

export interface LogicalState extends PromoteState {
  lr: LogicalOps;
  lr2?: LogicalOps;
  clusterDbs: string[];
  start?: StartPoint;
  baseline?: SchemaFingerprint[];
  /** Live's catalog stamps from the last schema check before the hold: while held, only a changed one is fingerprinted again. */
  stamps?: Record<string, string>;
  watch?: RetainedWalWatch;
  capture?: Capture;
  finished?: FinishResult;
  /** Measured: catch-up (ms) and the lag when clients were held. */
  catchUp?: { ms: number; lagBytes: number; applyRate?: number };
  /** The after-resume steps that failed (the promotion stands; said in the events). */
  warnings: string[];
}

/** The logical cut-over's phases (exported for the unit tests). */
export function logicalPhases(env: CutoverEnv, st: LogicalState): Array<Phase<LogicalState>> {
  const s = st.spec;
  const o = { ...LOGICAL_DEFAULTS, ...(s.logical ?? {}) };
  const lenv = env.logical as LogicalEnv;
  // The replay's phases that are the same here, run before anyone is held.
  const replay = replayPhases(env, st);
  const unheld = (name: string): Phase<LogicalState> => {
    const p = replay.find((x) => x.name === name);
    if (!p) throw new Error(`no phase ${name}`);
    return { ...p, held: false, undoAfterResume: false } as Phase<LogicalState>;
  };
  const steps = replay.filter((p) => p.name.startsWith("replay ")).map((p) => ({ ...p, held: false }) as Phase<LogicalState>);
  const after = (name: string, fn: () => Promise<unknown>): Phase<LogicalState> => ({
    name: `${name} (after resume)`,
    optional: true,
    run: async () => {
      try {
        await fn();
      } catch (e) {
        st.warnings.push(`${name}: ${errorMessage(e).split("\n")[0]}`);
        throw e;
      }
    },
  });
  return [
    {
      name: "readiness",
      run: async () => {
        const r = await st.lr.readiness({ accept: o.accept ?? [] });
        if (!r.ok) throw new NotReadyError(r.problems);
        st.liveSettings = await env.live.configuredSettings();
      },
    },
    {
      name: "WAL keeper",
      run: async () => void (await st.lr.createWalKeeper()),
      undo: async () => void (await st.lr.dropWalKeeper()),
    },
    { name: "checkpoint", run: async () => lenv.checkpoint() },
    { ...unheld("final snapshot"), name: "snapshot" },
    unheld("clone"),
    {
      name: "publications and slots",
      run: async () => {
        st.start = await st.lr.createSlots();
        st.watch = st.lr.watchRetainedWal({ limitBytes: o.retainedWalLimitBytes, intervalMs: 2000 });
      },
      undo: async () => {
        await st.watch?.stop();
        await st.lr.dropForward();
      },
    },
    {
      name: "convert the clone",
      run: async () => {
        st.watch?.throwIfTripped();
        const c = await st.lr.convertClone({ dataDir: st.pg!.oldDataDir, version: s.source.version, binDir: s.source.binDir, port: st.pg!.tempPort }, st.start!, { onProgress: env.log });
        st.baseline = c.fingerprints;
      },
    },
    { name: "drop WAL keeper", run: async () => void (await st.lr.dropWalKeeper()) },
    ...steps,
    {
      name: "new live's replication settings",
      run: async () => {
        if (st.server !== "new") throw new Error("the replayed plan did not start the new server");
        const raised = await lenv.ensureTargetSettings(st.pg!.newDataDir, st.clusterDbs.length);
        if (raised.length) env.log(`the new live was restarted with ${raised.join(", ")}`);
      },
    },
    {
      name: "subscribe",
      run: async () => {
        // Every table the new live has must be published on live (a table created while the
        // publications were made exists on the clone but would never be replicated).
        const missing = (await lenv.unpublishedTables(st.lr.names.tag, st.clusterDbs)).filter((m) => m.tables.length);
        if (missing.length) {
          throw new Error(
            `the schema changed on live while the clone was prepared (logical replication does not carry DDL): ${missing.map((m) => `${m.database}: ${m.tables.join(", ")}`).join("; ")} ` +
              "exist on the new live but are not in our publication, so their writes would not be replicated. Promote again (a new snapshot)",
          );
        }
        st.lr2 = st.lr.withTarget(newServerRef(s));
        await st.lr2.subscribe(st.start!);
      },
      undo: async () => void (await st.lr2?.unsubscribe()),
    },
    {
      name: "catch up",
      run: async () => {
        const t0 = Date.now();
        let last = 0;
        const r = await st.lr2!.waitCaughtUp({
          maxLagBytes: o.maxLagBytes,
          timeoutMs: o.switchoverTimeoutMs,
          watch: st.watch,
          onProgress: (l) => {
            if (Date.now() - last > 5000) {
              last = Date.now();
              env.log(`catching up: lag ${l.maxLagBytes} bytes${l.etaSeconds !== undefined ? `, about ${Math.round(l.etaSeconds)} s to go` : ""}`);
            }
          },
        });
        st.catchUp = { ms: Date.now() - t0, lagBytes: r.maxLagBytes, ...(r.applyRate !== undefined ? { applyRate: r.applyRate } : {}) };
        // DDL on live since the snapshot: refused here, before anyone is held.
        st.stamps = await st.lr2!.checkSchema(st.baseline!);
      },
    },
    {
      name: "prepare the way back",
      run: async () => {
        await st.lr2!.prepareReverse();
        // The last check before holding clients.
        st.watch?.throwIfTripped();
        await st.lr2!.waitCaughtUp({ maxLagBytes: o.maxLagBytes, timeoutMs: o.switchoverTimeoutMs, watch: st.watch });
      },
      undo: async () => void (await st.lr2?.dropReverse()),
    },
    {
      name: "capture on live (markers, sequences, schema)",
      held: true,
      run: async () => {
        st.capture = await st.lr2!.capture("forward", { baseline: st.baseline, ...(st.stamps ? { stamps: st.stamps } : {}) });
      },
    },
    {
      name: "applied on the new live (bounded), sequences, subscriptions off",
      held: true,
      run: async () => {
        st.finished = await st.lr2!.finish(st.capture!, { waitAppliedMs: o.applyTimeoutMs });
      },
      undo: async () => void (await st.lr2?.unfinish("forward")),
    },
    switchEndpointPhase(s, st),
    after("start the way back", async () => {
      await st.watch?.stop();
      await st.lr2!.startReverse(st.finished!);
    }),
    after("make the old live read-only", async () => void (await st.lr2!.makeReadOnly())),
    after("retire the way forward", async () => void (await st.lr2!.retireForward())),
  ];
}

export interface LogicalPromoteResult extends PromoteResult {
  tag: string;
  clusterDatabases: string[];
  catchUp?: { ms: number; lagBytes: number; applyRate?: number };
  warnings: string[];
}

/** Promote with the logical method: nothing held until the new live has caught up; everything undone on any failure. */
export async function promoteLogical(
  env: CutoverEnv,
  s: CutoverSpec,
  wrap: (p: Array<Phase<LogicalState>>) => Array<Phase<LogicalState>> = (p) => p,
): Promise<LogicalPromoteResult> {
  if (!env.logical) throw new Error("the logical method is not available here; nothing was done");
  const clusterDbs = await env.logical.clusterDatabases();
  const missing = databasesOf(s).filter((d) => !clusterDbs.includes(d));
  if (missing.length) throw new Error(`the endpoint's database(s) ${missing.join(", ")} are not databases of live; nothing was done`);
  const tag = logicalTag(s.owner);
  const lr = env.logical.open(tag, clusterDbs);
  const { st: base, entry } = await preparePromotion(env, s, { method: "logical", logical: { tag, databases: clusterDbs } });
  const st: LogicalState = { ...base, lr, clusterDbs, warnings: [] };
  let run: PhaseRun;
  try {
    run = await runPhases(wrap(logicalPhases(env, st)), st, { hold: holdFor(env, st, databasesOf(s), s.pauseTimeoutMs), log: env.log, holdTimeoutMs: s.switchoverTimeoutMs });
  } catch (e) {
    await st.watch?.stop().catch(() => undefined);
    // Whatever of ours is still on live goes (the new side is gone or stopped by the undo).
    let left: string[];
    try {
      const c = await lr.cleanup({ target: false });
      left = c.remaining;
      if (c.removed.length) env.log(`removed from live after the failed attempt: ${c.removed.join(", ")}`);
    } catch (ce) {
      left = [`(could not check: ${errorMessage(ce)})`];
    }
    if (e instanceof PhaseError && e.undoFailures.length === 0 && left.length === 0) await finishJournal(env, entry, "undone");
    if (left.length && e instanceof Error) e.message += `\nStill on live: ${left.join(", ")} (the next run removes them).`;
    throw e;
  } finally {
    await st.watch?.stop().catch(() => undefined);
  }
  await finishJournal(env, entry, "promoted");
  return {
    finalSnapshot: st.finalSnapshot,
    newLiveVolumes: st.newVolumes,
    newLiveDataDir: st.pg!.newDataDir,
    pauseWindowMs: run.hold?.pauseWindowMs ?? 0,
    ...(st.carried ? { carried: st.carried } : {}),
    tag,
    clusterDatabases: clusterDbs,
    ...(st.catchUp ? { catchUp: st.catchUp } : {}),
    warnings: st.warnings,
    phases: orderTimings(run),
  };
}

function orderTimings(run: PhaseRun): PhaseTiming[] {
  const firstHeld = run.phases.findIndex((p) => p.held);
  if (firstHeld < 0) return run.phases;
  const heldEnd = firstHeld + run.phases.filter((p) => p.held).length;
  return [
    ...run.phases.slice(0, firstHeld),
    { phase: "PAUSE (in-flight transactions finish)", ms: run.hold?.pauseMs ?? 0, held: true, status: "ok" },
    ...run.phases.slice(firstHeld, heldEnd),
    { phase: "RESUME", ms: run.hold?.resumeMs ?? 0, held: true, status: "ok" },
    ...run.phases.slice(heldEnd),
  ];
}

/**
 * Roll back a logical promotion: clients held on every database, the old live receives the
 * last transactions of the new live (bounded wait), its sequences set, its read-only lifted,
 * the endpoint switched back, RESUME; afterwards the way back is removed, everything of ours
 * on both sides, and the new live is stopped (kept: it holds what it served).
 */
export async function rollBackLogical(
  env: CutoverEnv,
  s: CutoverSpec,
  m: { tag: string; clusterDatabases: string[]; newLiveDataDir: string; newVolumes: string[] },
): Promise<{ pauseWindowMs: number; phases: PhaseTiming[]; warnings: string[] }> {
  if (!env.logical) throw new Error("the logical method is not available here; nothing was done");
  const o = { ...LOGICAL_DEFAULTS, ...(s.logical ?? {}) };
  const lr2 = env.logical.open(m.tag, m.clusterDatabases).withTarget(newServerRef(s));
  const entry: JournalEntry = {
    op: "rollback",
    startedAt: new Date().toISOString(),
    liveVolumes: s.liveVolumes,
    newVolumes: m.newVolumes,
    newDataDir: m.newLiveDataDir,
    database: s.database,
    databases: databasesOf(s),
    method: "logical",
    logical: { tag: m.tag, databases: m.clusterDatabases },
    liveTarget: { host: s.source.socketDir, port: s.source.port, dbname: s.database },
    newTarget: { host: s.newLive.socketDir, port: s.newLive.port, dbname: s.database },
    owner: s.owner,
  };
  await env.journal?.save(entry);
  const st: { retarget?: (t: Record<string, DatabaseTarget>) => Promise<unknown>; capture?: Capture; warnings: string[] } = { warnings: [] };
  const after = (name: string, fn: () => Promise<unknown>): Phase<typeof st> => ({
    name: `${name} (after resume)`,
    optional: true,
    run: async () => {
      try {
        await fn();
      } catch (e) {
        st.warnings.push(`${name}: ${errorMessage(e).split("\n")[0]}`);
        throw e;
      }
    },
  });
  const phases: Array<Phase<typeof st>> = [
    {
      name: "the way back has caught up",
      run: async () => void (await lr2.waitCaughtUp({ direction: "back", maxLagBytes: o.maxLagBytes, timeoutMs: o.switchoverTimeoutMs })),
    },
    {
      name: "capture on the new live (markers, sequences)",
      held: true,
      run: async () => {
        st.capture = await lr2.capture("back");
      },
    },
    {
      name: "applied on the old live (bounded), sequences, read-only lifted",
      held: true,
      run: async () => void (await lr2.finish(st.capture!, { waitAppliedMs: o.applyTimeoutMs })),
      undo: async () => void (await lr2.unfinish("back")),
    },
    {
      name: "switch endpoint",
      held: true,
      run: async () => void (await st.retarget!(liveTargets(s))),
      undo: async () => void (await st.retarget?.(newLiveTargets(s))),
    },
    after("remove the way back and everything of ours", async () => {
      const c = await lr2.cleanup();
      if (c.remaining.length) throw new Error(`still there: ${c.remaining.join(", ")}`);
    }),
    after("stop the new live (kept)", async () => env.server.stop(m.newLiveDataDir)),
  ];
  let run: PhaseRun;
  try {
    run = await runPhases(phases, st, { hold: holdFor(env, st, databasesOf(s), s.pauseTimeoutMs), log: env.log, holdTimeoutMs: s.switchoverTimeoutMs });
  } catch (e) {
    if (e instanceof PhaseError && e.undoFailures.length === 0) await finishJournal(env, entry, "undone");
    throw e;
  }
  await finishJournal(env, entry, "rolled-back");
  return { pauseWindowMs: run.hold?.pauseWindowMs ?? 0, phases: orderTimings(run), warnings: st.warnings };
}

/** Remove everything of a logical promotion from live (and the new live, when it runs): on destroy. */
export async function cleanupLogical(env: CutoverEnv, s: CutoverSpec, m: { tag: string; clusterDatabases: string[] }, o: { target: boolean; keepReadOnly: boolean }): Promise<{ removed: string[]; remaining: string[] }> {
  if (!env.logical) throw new Error("the logical method is not available here");
  const lr = env.logical.open(m.tag, m.clusterDatabases);
  return await (o.target ? lr.withTarget(newServerRef(s)) : lr).cleanup({ target: o.target, keepReadOnly: o.keepReadOnly });
}
