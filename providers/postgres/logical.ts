/**
 * The PostgreSQL machinery of the `logical` cut-over: an upgraded clone that catches up with
 * live by logical replication, so that clients wait only for the last transactions.
 *
 * It follows PostgreSQL 17's `pg_createsubscriber` (publication and slot on the primary ->
 * the copy recovers to the slot's LSN and is promoted -> subscription on that slot without
 * copying -> replication origin advanced to the LSN -> enable), built by hand for a
 * storage snapshot and two majors: the clone is converted at the OLD major, then upgraded
 * with pg_upgrade, then subscribed. Order (see docs/logical-section.md):
 *
 * 1. {@link LogicalReplication.readiness} on live (nothing changes).
 * 2. {@link LogicalReplication.createWalKeeper}: a physical slot on live, BEFORE the storage
 *    snapshot: it keeps the WAL from the snapshot on.
 * 3. (caller) CHECKPOINT, storage snapshot, clone.
 * 4. {@link LogicalReplication.createSlots}: per database a publication of the tables that
 *    exist now (refused while a table lacks a replica identity) and a logical slot; their
 *    LSNs lie past the snapshot's WAL. The start point is the greatest of them.
 * 5. {@link LogicalReplication.convertClone}: the clone at the old major recovers as a standby
 *    of live over the physical slot, stops exactly before the start point, is promoted,
 *    keeps nothing of live's replication, and is stopped cleanly.
 * 6. {@link LogicalReplication.dropWalKeeper}.
 * 7. (caller) pg_upgrade; start the new side with {@link requiredTargetSettings}.
 * 8. {@link LogicalReplication.subscribe}: per database a subscription on the existing slot,
 *    origin advanced to the start point, enabled.
 * 9. Catch-up: {@link LogicalReplication.lag}, {@link LogicalReplication.waitCaughtUp},
 *    {@link LogicalReplication.watchRetainedWal}, {@link LogicalReplication.checkSchema};
 *    then {@link LogicalReplication.prepareReverse} (publication and slots of the way back).
 * 10. Cut-over, clients held, two psql processes: {@link LogicalReplication.capture} on live
 *    (markers, sequences, schema) -> {@link LogicalReplication.finish} with `waitAppliedMs`
 *    on the new side (the bounded wait for the markers, sequences, subscriptions disabled,
 *    the point the way back starts at) -> endpoint swapped -> resume.
 * 11. After: {@link LogicalReplication.startReverse}, {@link LogicalReplication.makeReadOnly},
 *    {@link LogicalReplication.retireForward}.
 * Roll-back runs 10 in the other direction ({@link Direction} `back`; its finish also lifts
 * the old live's read-only setting), then {@link LogicalReplication.retireReverse}.
 * {@link LogicalReplication.cleanup} removes everything of ours from both sides (idempotent).
 *
 * Everything runs as SQL through the driver's `adminQuery` (psql on the host, as the OS user,
 * over the unix socket): it works locally and over SSH alike. Nothing here restarts live, and
 * nothing here writes user data on live: it creates publications, slots, a subscription (on
 * the way back), logical-message markers and per-database settings, all named after the tag,
 * and removes them again.
 *
 * No Pulumi here.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { InputError } from "../errors";
import type { PostgresDriver, PgInstall } from "./driver";
import { PostgresError } from "./errors";
import { tail } from "../host/types";
import { parseLsn } from "./parse";
import {
  acceptFindings,
  checkRecoveryStop,
  ClusterFacts,
  clusterFactsSql,
  conninfo,
  createLogicalSlotSql,
  createPhysicalSlotSql,
  createPublicationSql,
  createSubscriptionSql,
  DatabaseFacts,
  databaseFactsSql,
  describeDiff,
  diffFingerprints,
  disableSubscriptionSql,
  dropPublicationSql,
  dropSlotsSql,
  dropSubscriptionSql,
  enableSubscriptionSql,
  evaluateReadiness,
  evaluateTarget,
  catalogStampSql,
  fingerprintSql,
  flushSql,
  leftoversSql,
  LogicalNames,
  logicalNames,
  makeFingerprint,
  markersSql,
  markerSql,
  maxLsn,
  parseTagged,
  parseTaggedByDatabase,
  quoteIdent,
  quoteLiteral,
  ReadinessItem,
  readOnlySql,
  ReplicationSource,
  SchemaDiff,
  SchemaFingerprint,
  CatalogStamps,
  scriptAcross,
  SequenceValue,
  sequencesSql,
  setvalSql,
  slotStateSql,
  subscriptionStateSql,
  taggedValue,
  undoReadOnlySql,
  validateDatabase,
  validateDatabases,
  validateLsn,
  validateSource,
  validateTag,
  waitReceivedSql,
  waitWorkersGoneSql,
  WRITABLE,
} from "./logical-sql";
import { validateDataDir, validatePath, validatePort, validateSocketDir, validateVersion } from "./validate";

export * from "./logical-sql";

// ------------------------------------------------------------------ types

/** A running server, as psql on the host reaches it (unix socket, as the driver's superuser). */
export interface ServerRef {
  version: number;
  binDir?: string;
  socketDir: string;
  port: number;
}

/** Which way data flows: `forward` live -> new side; `back` new side -> (old) live, after a promotion. */
export type Direction = "forward" | "back";

/** One logical cut-over of one cluster, every database in it. Plain data: store it, rebuild the object anywhere. */
export interface LogicalPlan {
  /** Names everything we create (see {@link logicalNames}). One per promotion. */
  tag: string;
  /** Every database of live (readiness refuses a list that leaves one out). */
  databases: string[];
  /** Live: the server clients use now. */
  live: ServerRef;
  /** The new side (the upgraded clone), once it runs. Needed from {@link LogicalReplication.subscribe} on. */
  target?: ServerRef;
  /** How the clone and the new side reach live. Default: live's socket and port, as the driver's superuser. */
  liveSource?: ReplicationSource;
  /** How live reaches the new side for the way back. Default: the target's socket and port, as the driver's superuser. */
  targetSource?: ReplicationSource;
}

export interface ReadinessReport {
  /** Every finding; `problems` are those with severity `error`. */
  items: ReadinessItem[];
  problems: ReadinessItem[];
  ok: boolean;
  cluster: ClusterFacts;
  databases: DatabaseFacts[];
  /** Current schema of each database (compare with the clone's at cut-over). */
  fingerprints?: SchemaFingerprint[];
}

export interface SlotAt {
  database: string;
  slot: string;
  /** The slot's consistent point. */
  lsn: string;
}

/** Where replication starts: the clone recovers to just before `lsn`, every subscription starts at it. */
export interface StartPoint {
  lsn: string;
  slots: SlotAt[];
}

/** The clone, at the old major, stopped: where it is and the temporary port for its private server. */
export interface CloneSpec {
  dataDir: string;
  version: number;
  binDir?: string;
  /** Temporary port for the private server (no TCP listen address; socket in a fresh 0700 directory). */
  port: number;
}

export interface ConvertResult {
  /** Where recovery stopped (equal to the start point). */
  stoppedAt: string;
  /** Timeline after promotion. */
  timeline: number;
  /** Start until ready (consistent), ms. */
  readyMs: number;
  /** Ready until promoted, ms (streaming from live up to the start point). */
  catchUpMs: number;
  durationMs: number;
  /** Replication slots that came with the snapshot and were dropped on the clone. */
  droppedSlots: string[];
  /** Live's own subscriptions that came with the snapshot: disabled and detached from their slots on the clone. */
  detachedSubscriptions: string[];
  /** Each database's schema at the start point: the baseline DDL is detected against. */
  fingerprints: SchemaFingerprint[];
}

export interface DatabaseLag {
  database: string;
  slot: string;
  /** A WAL sender serves the slot (its subscriber is connected). */
  active: boolean;
  /** Live's WAL position minus what the subscriber confirmed, bytes. */
  lagBytes: number;
  /** WAL the slot keeps on live, bytes. */
  retainedBytes: number;
  /** Time lag the subscriber reports (pg_stat_replication.replay_lag), seconds; null when idle or unknown. */
  replayLagSeconds: number | null;
  /** The subscriber's apply worker (null: not running). */
  workerPid: number | null;
  /** Last WAL position the subscriber received. */
  receivedLsn: string | null;
  /** Errors the apply worker had (PostgreSQL 15+ subscribers). */
  applyErrors: number | null;
}

export interface LagReport {
  direction: Direction;
  at: string;
  currentLsn: string;
  databases: DatabaseLag[];
  maxLagBytes: number;
  /** Bytes per second the subscribers confirm, over the samples of a wait (undefined from a single sample). */
  applyRate?: number;
  /** Seconds until caught up at the measured net rate (undefined when not measurable or not converging). */
  etaSeconds?: number;
}

export interface RetainedSample {
  at: string;
  server: "live" | "target";
  slots: Array<{ slot: string; retainedBytes: number; walStatus: string | null }>;
  maxRetainedBytes: number;
}

/** A running watch over the WAL our slots retain. */
export interface RetainedWalWatch {
  /** The last sample. */
  readonly last?: RetainedSample;
  /** The error once tripped (after which our slots were dropped, if so configured). */
  readonly tripped?: RetainedWalError;
  /** Sample now (also trips). */
  check(): Promise<RetainedSample>;
  /** Throw {@link RetainedWalError} if the watch has tripped: call between long steps. */
  throwIfTripped(): void;
  /** Stop polling (idempotent). */
  stop(): Promise<void>;
}

/** What was read on the side clients leave, after they were held. */
export interface Capture {
  direction: Direction;
  databases: Array<{
    database: string;
    /** End of our marker (a transactional logical message): the subscriber must receive past it. */
    markerLsn: string;
    sequences: SequenceValue[];
    fingerprint?: SchemaFingerprint;
  }>;
  durationMs: number;
}

export interface FinishResult {
  direction: Direction;
  /** WAL position of the side clients go to, read after its last commit of ours and before any client's: where replication back to the other side must start. */
  resumeLsn: string;
  sequencesSet: number;
  durationMs: number;
}

export interface CleanupResult {
  /** What was removed, e.g. `live: slot understudy_x_wal`, `live/app: publication understudy_x_pub`. */
  removed: string[];
  /** What of ours is still there afterwards (should be empty). */
  remaining: string[];
}

// ------------------------------------------------------------------ errors

/** Readiness found problems (severity `error`); nothing was changed. */
export class NotReadyError extends Error {
  constructor(readonly problems: ReadinessItem[]) {
    super(`the logical method cannot run:\n${problems.map((p) => `  - [${p.code}] ${p.message}`).join("\n")}\nNothing was changed.`);
    this.name = "NotReadyError";
  }
}

/** DDL ran on the publisher since the snapshot: logical replication does not carry it. */
export class SchemaChangedError extends Error {
  constructor(readonly diffs: SchemaDiff[]) {
    super(
      `the schema changed on live since the snapshot (logical replication does not carry DDL): ${diffs.map((d) => `${d.database}: ${describeDiff(d)}`).join("; ")}. ` +
        "Prepare again from a new snapshot (or undo the DDL)",
    );
    this.name = "SchemaChangedError";
  }
}

/** Our slots retain (or would soon retain) more WAL than the user's limit. */
export class RetainedWalError extends Error {
  constructor(
    readonly server: "live" | "target",
    readonly slots: Array<{ slot: string; retainedBytes: number; walStatus: string | null }>,
    readonly limitBytes: number,
    readonly dropped: string[],
  ) {
    super(
      `replication slot(s) on ${server === "live" ? "live" : "the new live"} retain WAL up to the limit of ${mb(limitBytes)}: ${slots.map((s) => `${s.slot} ${mb(s.retainedBytes)}${s.walStatus ? ` (${s.walStatus})` : ""}`).join(", ")}. ` +
        (dropped.length ? `Dropped ${dropped.join(", ")} so that the WAL is released; the preparation must start again.` : "The slots were kept (dropOnTrip is off): drop them or let the subscriber catch up."),
    );
    this.name = "RetainedWalError";
  }
}

/** A bounded wait for replication ran out. */
export class ReplicationTimeoutError extends Error {
  constructor(
    message: string,
    readonly behind: Array<{ database: string; detail: string }>,
  ) {
    super(message);
    this.name = "ReplicationTimeoutError";
  }
}

/** The WAL insert position, read in the same session right after the synchronous commit of {@link flushSql}. */
const RESUME_POINT_SQL = "SELECT 'resume_point', to_jsonb(pg_current_wal_insert_lsn()::text)::text;";

const mb = (b: number): string => `${(b / (1024 * 1024)).toFixed(1)} MB`;

// ------------------------------------------------------------------ the class

/**
 * The `logical` method's operations for one plan. Constructing it validates the plan and
 * runs nothing (bad input: {@link InputError} naming the field). Every method is one step
 * with a clear undo (named in its TSDoc); all are safe to call again after a failure.
 *
 * @example
 * ```ts
 * const lr = new LogicalReplication(pg, { tag: "prod1", databases: ["app", "billing"], live });
 * const ready = await lr.readiness();
 * if (!ready.ok) throw new NotReadyError(ready.problems);
 * await lr.createWalKeeper();
 * // ... CHECKPOINT, snapshot and clone live's storage ...
 * const start = await lr.createSlots();
 * const conv = await lr.convertClone({ dataDir: "/srv/pool/clone/main", version: 13, port: 29310 }, start);
 * await lr.dropWalKeeper();
 * // ... pg_upgrade the clone, start it with requiredTargetSettings(2) ...
 * const lr2 = lr.withTarget(newServer);
 * await lr2.subscribe(start);
 * await lr2.waitCaughtUp({ maxLagBytes: 1 << 20, timeoutMs: 600_000 });
 * ```
 */
export class LogicalReplication {
  readonly plan: Readonly<LogicalPlan>;
  readonly names: LogicalNames;

  /**
   * `pg`: the driver on live's host. `targetPg`: the driver on the new side's host (where the
   * clone is converted and the new live runs) when that is another machine; absent: `pg` for
   * both sides. Every statement runs through the driver of the server it names.
   */
  constructor(
    readonly pg: PostgresDriver,
    plan: LogicalPlan,
    readonly targetPg?: PostgresDriver,
  ) {
    this.plan = validatePlan(plan, pg.superuser, { twoHosts: targetPg !== undefined && targetPg !== pg });
    this.names = logicalNames(this.plan.tag);
  }

  /** The same plan with the new side known (from {@link subscribe} on). */
  withTarget(target: ServerRef, targetSource?: ReplicationSource): LogicalReplication {
    return new LogicalReplication(this.pg, { ...this.plan, target, ...(targetSource ? { targetSource } : {}) }, this.targetPg);
  }

  /** The driver on the new side's host (the clone's and the new live's). */
  private get sidePg(): PostgresDriver {
    return this.targetPg ?? this.pg;
  }

  /** The driver that reaches `server`: live's host for live, the new side's host for anything else (the new live, the clone's private server). */
  private pgFor(server: ServerRef): PostgresDriver {
    return server === this.plan.live ? this.pg : this.sidePg;
  }

  private get host(): string {
    return this.sidePg.host.description;
  }

  private get target(): ServerRef {
    if (!this.plan.target) throw new InputError("logical.target", "the new side is not known yet (LogicalReplication.withTarget)");
    return this.plan.target;
  }

  /** Run a script of tagged statements on `server`, in `database`. */
  private async run(server: ServerRef, database: string, sql: string, timeoutMs = 120_000): Promise<Map<string, unknown>> {
    return parseTagged(await this.pgFor(server).adminQuery(server, sql, { database, timeoutMs }));
  }

  /** One psql process over several databases (see {@link scriptAcross}): database -> tag -> JSON. */
  private async runEach(server: ServerRef, databases: string[], sqlFor: (db: string) => string, timeoutMs = 120_000): Promise<Map<string, Map<string, unknown>>> {
    const rows = await this.pgFor(server).adminQuery(server, scriptAcross(databases, sqlFor, databases[0]), { database: databases[0], timeoutMs });
    const m = parseTaggedByDatabase(rows);
    for (const db of databases) if (!m.has(db)) throw new Error(`the script returned nothing for database ${db}`);
    return m;
  }

  private sideOf(d: Direction): { publisher: ServerRef; subscriber: ServerRef; publication: string; subscription: string; slot: (db: string) => string; where: string } {
    return d === "forward"
      ? { publisher: this.plan.live, subscriber: this.target, publication: this.names.publication, subscription: this.names.subscription, slot: this.names.slot, where: "live" }
      : {
          publisher: this.target,
          subscriber: this.plan.live,
          publication: this.names.reversePublication,
          subscription: this.names.reverseSubscription,
          slot: this.names.reverseSlot,
          where: "the new live",
        };
  }

  // ---------------------------------------------------------------- readiness

  /**
   * Check live for the method (nothing changes): wal_level, free slots and WAL senders,
   * every listed database exists and none is left out, replica identities, REPLICA IDENTITY
   * FULL tables the subscriber cannot match, unlogged tables, large objects, sequences,
   * materialized views, live's own subscriptions, synchronous standbys, and whether the way
   * back (roll-back keeping the new live's writes) fits. With `fingerprints`, also each
   * database's current schema. `accept` turns the named findings of {@link ACCEPTABLE}
   * (e.g. `large-objects` the user knows do not change) into warnings.
   */
  async readiness(opts: { fingerprints?: boolean; accept?: readonly string[] } = {}): Promise<ReadinessReport> {
    const live = this.plan.live;
    const cluster = taggedValue<ClusterFacts>(await this.run(live, "postgres", clusterFactsSql(live.version), 60_000), "cluster");
    const present = this.plan.databases.filter((d) => cluster.databases.includes(d));
    const all = present.length ? await this.runEach(live, present, () => databaseFactsSql() + (opts.fingerprints ? `\n${fingerprintSql()}` : ""), 10 * 60_000) : new Map();
    const per = present.map((db) => {
      const m = all.get(db) as Map<string, unknown>;
      return { facts: taggedValue<DatabaseFacts>(m, "database"), fp: opts.fingerprints ? makeFingerprint(db, taggedValue<Record<string, string>>(m, "fingerprint")) : undefined };
    });
    const databases = per.map((p) => p.facts);
    const items = acceptFindings(evaluateReadiness(cluster, databases, this.plan.databases, this.names), opts.accept);
    const problems = items.filter((i) => i.severity === "error");
    return {
      items,
      problems,
      ok: problems.length === 0,
      cluster,
      databases,
      ...(opts.fingerprints ? { fingerprints: per.map((p) => p.fp as SchemaFingerprint) } : {}),
    };
  }

  /** {@link readiness}, throwing {@link NotReadyError} when it found problems. */
  async assertReady(opts: { accept?: readonly string[] } = {}): Promise<ReadinessReport> {
    const r = await this.readiness(opts);
    if (!r.ok) throw new NotReadyError(r.problems);
    return r;
  }

  /** Check the running new side can subscribe (and serve the way back): settings of {@link requiredTargetSettings}. */
  async targetReadiness(): Promise<ReadinessItem[]> {
    const cluster = taggedValue<ClusterFacts>(await this.run(this.target, "postgres", clusterFactsSql(this.target.version), 60_000), "cluster");
    const items = evaluateTarget(cluster, this.plan.databases.length);
    const missing = this.plan.databases.filter((d) => !cluster.databases.includes(d));
    if (missing.length) {
      items.push({ code: "unknown-database", severity: "error", objects: missing, message: `the new side has no database ${missing.join(", ")}` });
    }
    return items;
  }

  // ---------------------------------------------------------------- preparation

  /**
   * Create the physical slot on live that keeps WAL from now on (`pg_create_physical_replication_slot(name, true)`).
   * Call it BEFORE the storage snapshot: the clone streams the WAL between the snapshot and
   * the logical slots through it. An existing one of ours is kept (its WAL starts earlier).
   * Undo: {@link dropWalKeeper}.
   */
  async createWalKeeper(): Promise<{ slot: string; restartLsn: string }> {
    const m = await this.run(this.plan.live, this.plan.databases[0], createPhysicalSlotSql(this.names.physicalSlot), 60_000);
    return { slot: this.names.physicalSlot, restartLsn: validateLsn(taggedValue<string>(m, "slot"), "slot") };
  }

  /** Drop the physical slot (idempotent). Undo of {@link createWalKeeper}; due once the clone is converted. */
  async dropWalKeeper(): Promise<string[]> {
    const m = await this.run(this.plan.live, this.plan.databases[0], dropSlotsSql([this.names.physicalSlot]), 60_000);
    return taggedValue<string[]>(m, "dropped");
  }

  /**
   * AFTER the storage snapshot: in every database on live a publication of the tables that
   * exist now (see {@link createPublicationSql}: it refuses tables without a replica identity)
   * and a logical slot (an existing slot of ours is replaced: its start would precede the new
   * snapshot), then a synchronously committed marker so that the WAL past the last slot is
   * on disk (an idle live would otherwise keep the clone waiting). Returns the start point:
   * the greatest slot LSN.
   * Undo: {@link dropForward}.
   */
  async createSlots(): Promise<StartPoint> {
    const dbs = this.plan.databases;
    const last = dbs[dbs.length - 1];
    const comment = `Understudy logical cut-over ${this.names.tag}: removed by the cut-over's cleanup`;
    // One database after the other (one psql): each slot's creation waits for the transactions running at that moment.
    const m = await this.runEach(
      this.plan.live,
      dbs,
      (db) => `${createPublicationSql(this.names.publication, comment)}\n${createLogicalSlotSql(this.names.slot(db))}${db === last ? `\n${markerSql(this.names.messagePrefix, `start ${this.names.tag}`)}` : ""}`,
      10 * 60_000,
    );
    const slots: SlotAt[] = dbs.map((db) => ({ database: db, slot: this.names.slot(db), lsn: validateLsn(taggedValue<string>(m.get(db) as Map<string, unknown>, "slot"), "slot") }));
    return { lsn: maxLsn(slots.map((s) => s.lsn)), slots };
  }

  /** Drop the publications and logical slots of the way forward on live (idempotent). Undo of {@link createSlots}. */
  async dropForward(): Promise<string[]> {
    const m = await this.runEach(this.plan.live, this.plan.databases, (db) => `${dropSlotsSql([this.names.slot(db)])}\n${dropPublicationSql(this.names.publication)}`, 120_000);
    return [...m.values()].flatMap((x) => taggedValue<string[]>(x, "dropped").map((s) => `live: slot ${s}`));
  }

  /**
   * Turn the clone (at the OLD major, stopped, a crash-consistent copy of live taken after
   * {@link createWalKeeper} and before {@link createSlots}) into a copy of live exactly at the
   * start point: it recovers its own WAL, then streams the rest from live as a standby over
   * the physical slot, stops BEFORE the record at the start point (`recovery_target_lsn`,
   * `recovery_target_inclusive = off`: everything committed before it is in the clone,
   * everything from it on comes through the slots — nothing twice), is promoted, and then:
   * the replication slots that came with the snapshot are dropped, our publication's copy is
   * dropped, live's own subscriptions (if live is a subscriber) are disabled and detached
   * from their slots, each database's schema is fingerprinted; finally it is stopped cleanly.
   *
   * The private server is isolated from live except for the one WAL stream: no archiving,
   * no restore_command, no logical replication workers, socket only in a fresh 0700
   * directory with trust for the OS user, no TCP listen address.
   * Undo: nothing on live; on failure the private server is stopped and its log kept.
   */
  async convertClone(clone: CloneSpec, start: StartPoint, opts: { timeoutMs?: number; onProgress?: (m: string) => void } = {}): Promise<ConvertResult> {
    // The clone is on the new side's host.
    const pg = this.sidePg;
    const dataDir = validateDataDir(clone?.dataDir, "clone.dataDir");
    const port = wrap(() => validatePort(clone.port, "clone.port"));
    const target = validateLsn(start?.lsn, "start.lsn");
    const timeoutMs = opts.timeoutMs ?? 60 * 60_000;
    const t0 = Date.now();
    const inst: PgInstall = await pg.resolveInstall({ version: clone.version, binDir: clone.binDir, field: "clone" }, ["pg_ctl", "pg_isready", "pg_controldata", "psql"]);
    if (inst.major !== this.plan.live.version) throw new InputError("clone.version", `${inst.major} is not live's major (${this.plan.live.version}): convert the clone before pg_upgrade`);
    const v = await pg.dataDirVersion(dataDir, "clone.dataDir");
    if (v !== inst.major) throw new InputError("clone.dataDir", `${dataDir} on ${this.host} ${v === undefined ? "is not a data directory" : `holds PostgreSQL ${v}`}`);
    if ((await pg.status(dataDir, inst)).running) throw new InputError("clone.dataDir", `a server is running on ${dataDir} on ${this.host}; the clone must be stopped`);
    for (const f of ["standby.signal", "recovery.signal", "recovery.conf"]) {
      if (await this.fileExists(`${dataDir}/${f}`)) {
        throw new InputError("clone.dataDir", `${dataDir}/${f} exists: the clone is a copy of a standby or of a cluster in recovery; convert a copy of the primary. Nothing was started`);
      }
    }
    await pg.assertPortFree(port, "clone.port");
    // The WAL from the clone's redo point on must still be on live (kept by the physical slot).
    const control = await pg.controlData(dataDir, inst);
    const redo = control.redoLocation;
    if (parseLsn(target) <= parseLsn(redo)) {
      throw new InputError("start.lsn", `${target} does not lie after the clone's redo point ${redo}: the logical slots were created before the snapshot; create them after it`);
    }
    const keeper = await this.run(this.plan.live, this.plan.databases[0], `SELECT 'slot', coalesce((SELECT to_jsonb(restart_lsn::text) FROM pg_replication_slots WHERE slot_name = ${quoteLiteral(this.names.physicalSlot)})::text, 'null');`, 60_000);
    const keptFrom = taggedValue<string | null>(keeper, "slot");
    if (!keptFrom) throw new InputError("start", `the physical slot ${this.names.physicalSlot} is not on live: nothing keeps the WAL between the snapshot and the start point (createWalKeeper before the snapshot)`);
    if (parseLsn(keptFrom) > parseLsn(redo)) {
      throw new InputError("start", `the physical slot ${this.names.physicalSlot} keeps WAL from ${keptFrom}, after the clone's redo point ${redo}: it was created after the snapshot; create it before`);
    }

    opts.onProgress?.(`converting ${dataDir}: recovery to ${target} streaming from live over ${this.names.physicalSlot}`);
    await pg.removeStalePid(dataDir);
    const tmp = (await pg.host.runAs(pg.osUser, ["mktemp", "-d", "/tmp/understudy-logical.XXXXXXXX"], { cwd: "/", timeoutMs: 30_000 })).stdout.trim();
    validateSocketDir(tmp, "mktemp");
    const hba = `${tmp}/hba.conf`;
    const logFile = `${tmp}/server.log`;
    const signal = `${dataDir}/standby.signal`;
    await pg.host.runAs(pg.osUser, ["tee", "--", hba], { input: "# Understudy: private server, socket directory is 0700\nlocal all all trust\n", cwd: "/", timeoutMs: 30_000 });
    await pg.host.runAs(pg.osUser, ["touch", "--", signal], { cwd: "/", timeoutMs: 30_000 });
    const server: ServerRef = { version: inst.major, binDir: inst.binDir, socketDir: tmp, port };
    let started = false;
    try {
      const settings: Record<string, string> = {
        hba_file: hba,
        primary_conninfo: conninfo(this.plan.liveSource as ReplicationSource, { application_name: `${this.names.prefix}clone` }),
        primary_slot_name: this.names.physicalSlot,
        restore_command: "",
        recovery_target: "",
        recovery_target_name: "",
        recovery_target_time: "",
        recovery_target_xid: "",
        recovery_target_lsn: target,
        recovery_target_inclusive: "off",
        recovery_target_timeline: "current",
        recovery_target_action: "promote",
        hot_standby: "on",
        max_logical_replication_workers: "0",
      };
      const t1 = Date.now();
      started = true;
      await pg.start(dataDir, inst, { port, socketDir: tmp, listen: "", logFile, isolate: true, settings, timeoutMs, onProgress: opts.onProgress });
      const readyMs = Date.now() - t1;
      // Wait for the promotion at the target.
      const t2 = Date.now();
      let last = 0;
      let lastLogCheck = Date.now();
      for (;;) {
        const st = await this.run(
          server,
          "postgres",
          `SELECT 'state', jsonb_build_array(pg_is_in_recovery(), pg_last_wal_receive_lsn()::text, pg_last_wal_replay_lsn()::text)::text;`,
          60_000,
        ).catch(() => undefined);
        const s = st ? taggedValue<[boolean, string | null, string | null]>(st, "state") : undefined;
        if (s && s[0] === false) break;
        if (!st && !(await pg.status(dataDir, inst)).running) throw new Error("the server stopped during recovery");
        // Live refusing the clone's WAL stream does not pass: stop now, not at the timeout (an hour by default).
        if (Date.now() - lastLogCheck > 5000) {
          lastLogCheck = Date.now();
          const refused = REFUSED_BY_LIVE.exec(await this.readFile(logFile));
          if (refused) throw new Error(`live refuses the clone's replication connection (${refused[0].trim()})`);
        }
        if (Date.now() - t2 > timeoutMs) throw new Error(`not promoted after ${Math.round((Date.now() - t2) / 1000)} s (received ${s?.[1] ?? "?"}, replayed ${s?.[2] ?? "?"}, target ${target})`);
        if (opts.onProgress && Date.now() - last > 5000) {
          last = Date.now();
          opts.onProgress(`clone recovering: received ${s?.[1] ?? "-"}, replayed ${s?.[2] ?? "-"}, target ${target}`);
        }
        await sleep(100);
      }
      const catchUpMs = Date.now() - t2;
      checkRecoveryStop(await this.readFile(logFile), target);
      // Nothing of live's replication stays on the clone.
      const found = await this.run(
        server,
        "postgres",
        `SELECT 'slots', coalesce(jsonb_agg(jsonb_build_array(slot_name::text, coalesce(database::text, ''))), '[]')::text FROM pg_replication_slots;
SELECT 'subs', coalesce(jsonb_agg(jsonb_build_array(d.datname::text, s.subname::text)), '[]')::text FROM pg_subscription s JOIN pg_database d ON d.oid = s.subdbid;`,
      );
      const copied = taggedValue<Array<[string, string]>>(found, "slots");
      const subsAll = taggedValue<Array<[string, string]>>(found, "subs");
      const droppedSlots: string[] = [];
      for (const [slot, db] of copied) {
        const inDb = db && /^[A-Za-z_][A-Za-z0-9_]{0,62}$/.test(db) ? db : "postgres";
        const m = await this.run(server, inDb, `SELECT 'dropped', to_jsonb(count(pg_drop_replication_slot(slot_name)))::text FROM pg_replication_slots WHERE slot_name = ${quoteLiteral(slot)};`);
        if (taggedValue<number>(m, "dropped") > 0) droppedSlots.push(slot);
      }
      const detachedSubscriptions: string[] = [];
      for (const [db, sub] of subsAll) {
        const d = validateDatabase(db, "clone subscription database");
        await this.run(
          server,
          d,
          `ALTER SUBSCRIPTION ${quoteIdent(sub)} DISABLE;\nALTER SUBSCRIPTION ${quoteIdent(sub)} SET (slot_name = NONE);\nSELECT 'ok', 'true';`,
        );
        detachedSubscriptions.push(`${db}.${sub}`);
      }
      const fingerprints: SchemaFingerprint[] = [];
      for (const db of this.plan.databases) {
        const m = await this.run(server, db, `${dropPublicationSql(this.names.publication)}\n${fingerprintSql()}`, 10 * 60_000);
        fingerprints.push(makeFingerprint(db, taggedValue<Record<string, string>>(m, "fingerprint")));
      }
      await pg.stop(dataDir, inst, { mode: "fast" });
      started = false;
      const after = await pg.controlData(dataDir, inst);
      if (!after.cleanShutdown) throw new Error(`after the clean stop pg_controldata says "${after.state}"`);
      await pg.host.runAs(pg.osUser, ["rm", "-rf", "--", tmp], { cwd: "/", timeoutMs: 30_000 }).catch(() => undefined);
      return {
        stoppedAt: target,
        timeline: after.checkpointTimeline,
        readyMs,
        catchUpMs,
        durationMs: Date.now() - t0,
        droppedSlots,
        detachedSubscriptions,
        fingerprints,
      };
    } catch (e) {
      let left = `${tmp} (server log)`;
      if (started) {
        try {
          const s = await pg.stop(dataDir, inst, { mode: "fast", timeoutMs: 120_000 });
          if (s.wasRunning) left += "; the private server was stopped";
        } catch {
          left += `; a server may still run on ${dataDir} (socket ${tmp}, port ${port})`;
        }
      }
      await pg.host.runAs(pg.osUser, ["rm", "-f", "--", signal], { cwd: "/", timeoutMs: 30_000 }).catch(() => undefined);
      const log = await this.readFile(logFile);
      const hint = /requested recovery stop point is before consistent recovery point/.test(log)
        ? "the start point lies inside the snapshot's own WAL: the logical slots must be created after the snapshot. "
        : /could not connect to the primary server|FATAL:.*(password|authentication|pg_hba)/.test(log)
          ? "the clone could not connect to live for the WAL: check liveSource and live's pg_hba.conf (a replication connection). "
          : /requested WAL segment .* has already been removed|replication slot .* does not exist/.test(log)
            ? "live no longer has the WAL the clone needs (was the physical slot dropped?). "
            : "";
      throw new PostgresError({
        step: "convert clone",
        host: this.host,
        dataDir,
        message: `${hint}${(e as Error).message}`,
        detail: log ? `last lines of ${logFile}:\n${tail(log, 2500)}` : undefined,
        leftBehind: `${left}; the clone's data directory (roll it back or destroy it before trying again); on live: the slots and publications of this cut-over (dropForward / cleanup removes them)`,
        cause: e,
      });
    }
  }

  /**
   * On the running new side, in every database: a subscription to live's publication on the
   * existing slot (`create_slot = false, copy_data = false, enabled = false`), its replication
   * origin advanced to the start point (every database: the clone holds everything before
   * it), then enabled. Also the publication for the way back (it must exist before the slots
   * Our copies of live's subscriptions were detached at the conversion; these subscriptions
   * are ours.
   * Undo: {@link unsubscribe}.
   */
  async subscribe(start: StartPoint): Promise<void> {
    const lsn = validateLsn(start?.lsn, "start.lsn");
    const problems = (await this.targetReadiness()).filter((i) => i.severity === "error");
    if (problems.length) throw new NotReadyError(problems);
    const src = this.plan.liveSource as ReplicationSource;
    const m = await this.runEach(
      this.target,
      this.plan.databases,
      (db) =>
        createSubscriptionSql({ subscription: this.names.subscription, publication: this.names.publication, slot: this.names.slot(db), conninfo: conninfo(src, { dbname: db, application_name: this.names.slot(db) }), startLsn: lsn }),
      10 * 60_000,
    );
    for (const [db, x] of m) {
      const origin = taggedValue<string>(x, "origin");
      if (parseLsn(origin) !== parseLsn(lsn)) throw new Error(`${db}: the subscription's origin is at ${origin}, not ${lsn}`);
    }
  }

  /** Drop the subscriptions of the way forward on the new side (idempotent; live's slots stay: {@link dropForward}). Undo of {@link subscribe}. */
  async unsubscribe(): Promise<void> {
    await this.runEach(this.target, this.plan.databases, () => dropSubscriptionSql(this.names.subscription), 120_000);
  }

  /**
   * Shortly before the cut-over (after {@link waitCaughtUp}), on the new side, in every
   * database: the publication and the logical slot of the way back. The slot also sees what
   * the way forward applies; that is skipped because the subscription of the way back starts
   * at the point {@link finish} reads while clients are held (its origin is advanced there),
   * exactly as the way forward starts at the start point. Creating the slots here keeps them
   * out of the pause (a slot waits for every transaction running when it is created, e.g.
   * autovacuum's ANALYZE on a freshly upgraded cluster). The later, the less WAL they keep.
   * Undo: {@link dropReverse}.
   */
  async prepareReverse(): Promise<SlotAt[]> {
    const comment = `Understudy logical cut-over ${this.names.tag}: the way back to the old live (roll-back)`;
    const m = await this.runEach(this.target, this.plan.databases, (db) => `${createPublicationSql(this.names.reversePublication, comment)}\n${createLogicalSlotSql(this.names.reverseSlot(db))}`, 10 * 60_000);
    return this.plan.databases.map((db) => ({ database: db, slot: this.names.reverseSlot(db), lsn: validateLsn(taggedValue<string>(m.get(db) as Map<string, unknown>, "slot"), "slot") }));
  }

  /** Drop the slots and the publication of the way back on the new side (idempotent). Undo of {@link prepareReverse}. */
  async dropReverse(): Promise<string[]> {
    const m = await this.runEach(this.target, this.plan.databases, (db) => `${dropSlotsSql([this.names.reverseSlot(db)])}\n${dropPublicationSql(this.names.reversePublication)}`, 120_000);
    return [...m.values()].flatMap((x) => taggedValue<string[]>(x, "dropped").map((s) => `new live: slot ${s}`));
  }

  // ---------------------------------------------------------------- catch-up

  /** Lag of every database in one direction: from the publisher's slots and the subscriber's workers. */
  async lag(direction: Direction = "forward"): Promise<LagReport> {
    const s = this.sideOf(direction);
    const [pub, sub] = await Promise.all([
      this.run(s.publisher, "postgres", slotStateSql(this.names.prefix, s.publisher.version), 60_000),
      this.run(s.subscriber, "postgres", subscriptionStateSql(s.subscription, s.subscriber.version), 60_000),
    ]);
    const p = taggedValue<{ currentLsn: string; slots: Array<[string, string, string, boolean, string | null, string | null, string | null, string | null]> }>(pub, "slots");
    const workers = taggedValue<Array<[string, boolean, number | null, string | null, number | null]>>(sub, "subscriptions");
    const databases = this.plan.databases.map((db): DatabaseLag => {
      const slot = s.slot(db);
      const row = p.slots.find((r) => r[0] === slot);
      const w = workers.find((r) => r[0] === db);
      return {
        database: db,
        slot,
        active: !!row?.[3],
        lagBytes: row?.[5] != null ? Number(row[5]) : Number.NaN,
        retainedBytes: row?.[4] != null ? Number(row[4]) : 0,
        replayLagSeconds: row?.[6] != null ? Number(row[6]) : null,
        workerPid: w?.[2] ?? null,
        receivedLsn: w?.[3] ?? null,
        applyErrors: w?.[4] ?? null,
      };
    });
    const lags = databases.map((d) => d.lagBytes).filter((x) => Number.isFinite(x));
    return { direction, at: new Date().toISOString(), currentLsn: p.currentLsn, databases, maxLagBytes: lags.length === databases.length ? Math.max(0, ...lags) : Number.POSITIVE_INFINITY };
  }

  /**
   * Wait until every database's lag is at most `maxLagBytes` (the guard before holding
   * clients). Throws {@link ReplicationTimeoutError} after `timeoutMs` with each database's
   * lag, worker and an estimate; checks `watch` (if given) on every round.
   */
  async waitCaughtUp(o: { maxLagBytes: number; timeoutMs: number; direction?: Direction; pollMs?: number; watch?: RetainedWalWatch; onProgress?: (r: LagReport) => void }): Promise<LagReport> {
    if (!Number.isFinite(o.maxLagBytes) || o.maxLagBytes < 0) throw new InputError("maxLagBytes", `${o.maxLagBytes} is not a byte count`);
    const t0 = Date.now();
    const samples: Array<{ t: number; lag: number }> = [];
    let last = 0;
    for (;;) {
      o.watch?.throwIfTripped();
      const r = await this.lag(o.direction ?? "forward");
      samples.push({ t: Date.now(), lag: r.maxLagBytes });
      if (samples.length > 40) samples.shift();
      const first = samples[0];
      if (samples.length >= 3 && Number.isFinite(first.lag) && Number.isFinite(r.maxLagBytes)) {
        const dt = (Date.now() - first.t) / 1000;
        const shrink = (first.lag - r.maxLagBytes) / dt;
        r.applyRate = shrink;
        if (shrink > 0) r.etaSeconds = Math.max(0, (r.maxLagBytes - o.maxLagBytes) / shrink);
      }
      if (r.maxLagBytes <= o.maxLagBytes && r.databases.every((d) => d.workerPid !== null)) return r;
      if (o.onProgress && Date.now() - last > 5000) {
        last = Date.now();
        o.onProgress(r);
      }
      if (Date.now() - t0 > o.timeoutMs) {
        const behind = r.databases
          .filter((d) => !(d.lagBytes <= o.maxLagBytes) || d.workerPid === null)
          .map((d) => ({
            database: d.database,
            detail: `${Number.isFinite(d.lagBytes) ? mb(d.lagBytes) : "unknown lag"} behind${d.workerPid === null ? ", apply worker not running (see the subscriber's log)" : ""}${d.applyErrors ? `, ${d.applyErrors} apply error(s)` : ""}`,
          }));
        throw new ReplicationTimeoutError(
          `replication did not catch up to ${mb(o.maxLagBytes)} within ${Math.round(o.timeoutMs / 1000)} s: ${behind.map((b) => `${b.database}: ${b.detail}`).join("; ")}` +
            (r.etaSeconds !== undefined ? `; at the measured rate about ${Math.round(r.etaSeconds)} s more` : "; the lag is not shrinking"),
          behind,
        );
      }
      await sleep(o.pollMs ?? 500);
    }
  }

  /**
   * Watch the WAL our slots retain on `server` (live by default) every `intervalMs`, against
   * `limitBytes`: it trips when a slot has reached 95% of the limit, or would pass it within
   * two intervals at the rate seen, or when PostgreSQL has invalidated it (`wal_status` lost).
   * On tripping it drops our slots there (unless `dropOnTrip` is false: a slot nobody
   * consumes fills the disk) and keeps the {@link RetainedWalError} for
   * {@link RetainedWalWatch.throwIfTripped}; `onTrip` is called once.
   */
  watchRetainedWal(o: { limitBytes: number; intervalMs?: number; server?: "live" | "target"; dropOnTrip?: boolean; onTrip?: (e: RetainedWalError) => void }): RetainedWalWatch {
    if (!Number.isFinite(o.limitBytes) || o.limitBytes < 16 * 1024 * 1024) throw new InputError("retainedWalLimit", `${o.limitBytes} is not a limit in bytes (at least one 16 MB segment)`);
    const which = o.server ?? "live";
    const server = which === "live" ? this.plan.live : this.target;
    const interval = o.intervalMs ?? 5000;
    let prev: { t: number; max: number } | undefined;
    let timer: NodeJS.Timeout | undefined;
    let stopped = false;
    let running: Promise<unknown> | undefined;
    const run = (sql: string) => this.run(server, "postgres", sql, 60_000);
    const prefix = this.names.prefix;
    const dropOurSlots = () => this.dropOurSlots(server);
    const watch = {
      last: undefined as RetainedSample | undefined,
      tripped: undefined as RetainedWalError | undefined,
      async check(): Promise<RetainedSample> {
        const m = await run(slotStateSql(prefix, server.version));
        const p = taggedValue<{ slots: Array<[string, string, string, boolean, string | null, string | null, string | null, string | null]> }>(m, "slots");
        const slots = p.slots.map((r) => ({ slot: r[0], retainedBytes: Number(r[4] ?? 0), walStatus: r[7] }));
        const sample: RetainedSample = { at: new Date().toISOString(), server: which, slots, maxRetainedBytes: Math.max(0, ...slots.map((s) => s.retainedBytes)) };
        watch.last = sample;
        const now = Date.now();
        const rate = prev && now > prev.t ? Math.max(0, (sample.maxRetainedBytes - prev.max) / (now - prev.t)) : 0;
        prev = { t: now, max: sample.maxRetainedBytes };
        const over = slots.filter((s) => s.walStatus === "lost" || s.retainedBytes >= 0.95 * o.limitBytes || s.retainedBytes + 2 * interval * rate >= o.limitBytes);
        if (over.length && !watch.tripped) {
          let dropped: string[] = [];
          if (o.dropOnTrip ?? true) dropped = await dropOurSlots().catch(() => []);
          watch.tripped = new RetainedWalError(which, over, o.limitBytes, dropped);
          o.onTrip?.(watch.tripped);
        }
        return sample;
      },
      throwIfTripped(): void {
        if (watch.tripped) throw watch.tripped;
      },
      async stop(): Promise<void> {
        stopped = true;
        if (timer) clearTimeout(timer);
        await running?.catch(() => undefined);
      },
    };
    const tick = () => {
      if (stopped || watch.tripped) return;
      running = watch.check().catch(() => undefined);
      void running.then(() => {
        if (!stopped && !watch.tripped) timer = setTimeout(tick, interval);
      });
    };
    timer = setTimeout(tick, 0);
    timer.unref?.();
    return watch;
  }

  /** Every slot of ours on `server`, dropped in its own database (terminating its WAL sender first). */
  private async dropOurSlots(server: ServerRef): Promise<string[]> {
    const m = await this.run(server, "postgres", leftoversSql(this.names), 60_000);
    const slots = taggedValue<{ slots: Array<[string, string]> }>(m, "leftovers").slots;
    const byDb = new Map<string, string[]>();
    for (const [slot, db] of slots) {
      const d = db && /^[A-Za-z_][A-Za-z0-9_]{0,62}$/.test(db) ? db : "postgres";
      byDb.set(d, [...(byDb.get(d) ?? []), slot]);
    }
    const out: string[] = [];
    for (const [db, list] of byDb) out.push(...taggedValue<string[]>(await this.run(server, db, dropSlotsSql(list), 60_000), "dropped"));
    return out;
  }

  /**
   * Compare each database's schema on live now with `baseline` (the clone's, from
   * {@link convertClone}); throws {@link SchemaChangedError} naming what DDL added, removed or
   * changed. Nothing changes anywhere.
   */
  /**
   * Live's schema compared with `baseline` (throws {@link SchemaChangedError}). Returns each
   * database's catalog stamp, taken just before the fingerprint: {@link capture} with these
   * stamps fingerprints again only a database whose catalogs changed since.
   */
  async checkSchema(baseline: SchemaFingerprint[]): Promise<CatalogStamps> {
    for (const db of this.plan.databases) if (!baseline?.some((f) => f.database === db)) throw new InputError("baseline", `has no fingerprint for database ${db}`);
    const m = await this.runEach(this.plan.live, this.plan.databases, () => `${catalogStampSql()}\n${fingerprintSql()}`, 10 * 60_000);
    const diffs = this.plan.databases
      .map((db) => diffFingerprints(baseline.find((f) => f.database === db) as SchemaFingerprint, makeFingerprint(db, taggedValue<Record<string, string>>(m.get(db) as Map<string, unknown>, "fingerprint"))))
      .filter((d) => d.added.length + d.removed.length + d.changed.length > 0);
    if (diffs.length) throw new SchemaChangedError(diffs);
    return Object.fromEntries(this.plan.databases.map((db) => [db, JSON.stringify(taggedValue<unknown>(m.get(db) as Map<string, unknown>, "stamp"))]));
  }

  // ---------------------------------------------------------------- cut-over (clients held)

  /**
   * While clients are held, on the side they leave (live for `forward`), in every database
   * at once: a synchronously committed marker (see {@link markerSql}), the sequences' values,
   * and with `baseline` the schema, compared (throws {@link SchemaChangedError}; nothing was
   * changed but the marker, an empty transaction). No undo needed.
   */
  async capture(direction: Direction, o: { baseline?: SchemaFingerprint[]; stamps?: CatalogStamps; timeoutMs?: number } = {}): Promise<Capture> {
    const s = this.sideOf(direction);
    const t0 = Date.now();
    // Only the last marker is committed synchronously: flushing it flushes the ones before.
    const lastDb = this.plan.databases[this.plan.databases.length - 1];
    // With the stamps of the last check, the catalogs' stamp first; the full fingerprint only where it changed.
    const stamped = !!(o.baseline && o.stamps && this.plan.databases.every((db) => o.stamps![db] !== undefined));
    const all = await this.runEach(
      s.publisher,
      this.plan.databases,
      (db) => [markerSql(this.names.messagePrefix, `${direction} ${this.names.tag}`, db === lastDb), sequencesSql(), o.baseline ? (stamped ? catalogStampSql() : fingerprintSql()) : ""].join("\n"),
      o.timeoutMs ?? 30_000,
    );
    const changed = stamped ? this.plan.databases.filter((db) => JSON.stringify(taggedValue<unknown>(all.get(db) as Map<string, unknown>, "stamp")) !== o.stamps![db]) : [];
    const again = changed.length ? await this.runEach(s.publisher, changed, () => fingerprintSql(), o.timeoutMs ?? 30_000) : new Map<string, unknown>();
    const databases = this.plan.databases.map((db) => {
      const m = all.get(db) as Map<string, unknown>;
      const out: Capture["databases"][number] = {
        database: db,
        markerLsn: validateLsn(taggedValue<string>(m, "marker"), "marker"),
        sequences: taggedValue<SequenceValue[]>(m, "sequences"),
      };
      if (o.baseline && !stamped) out.fingerprint = makeFingerprint(db, taggedValue<Record<string, string>>(m, "fingerprint"));
      else if (o.baseline && changed.includes(db)) out.fingerprint = makeFingerprint(db, taggedValue<Record<string, string>>(again.get(db) as Map<string, unknown>, "fingerprint"));
      // An unchanged stamp: the schema is the one checkSchema compared with the baseline.
      else if (o.baseline) out.fingerprint = o.baseline.find((f) => f.database === db);
      return out;
    });
    if (o.baseline) {
      const diffs = databases
        .map((d) => {
          const b = o.baseline?.find((f) => f.database === d.database);
          if (!b) throw new InputError("baseline", `has no fingerprint for database ${d.database}`);
          return diffFingerprints(b, d.fingerprint as SchemaFingerprint);
        })
        .filter((d) => d.added.length + d.removed.length + d.changed.length > 0);
      if (diffs.length) throw new SchemaChangedError(diffs);
    }
    return { direction, databases, durationMs: Date.now() - t0 };
  }

  /**
   * Bounded wait until every subscriber has received past its database's marker — it has
   * then applied every transaction committed before the marker (an apply worker applies in
   * order). Throws {@link ReplicationTimeoutError} naming the databases behind.
   */
  async waitApplied(c: Capture, o: { timeoutMs: number; pollMs?: number }): Promise<{ waitedMs: number; polls: number }> {
    const s = this.sideOf(c.direction);
    const t0 = Date.now();
    for (let polls = 1; ; polls++) {
      const rows = taggedValue<Array<[string, boolean, number | null, string | null, number | null]>>(
        await this.run(s.subscriber, "postgres", subscriptionStateSql(s.subscription, s.subscriber.version), 30_000),
        "subscriptions",
      );
      const behind = c.databases
        .map((d) => {
          const r = rows.find((x) => x[0] === d.database);
          if (!r) return { database: d.database, detail: "no subscription" };
          if (r[3] !== null && parseLsn(r[3]) >= parseLsn(d.markerLsn)) return undefined;
          return {
            database: d.database,
            detail: `received ${r[3] ?? "nothing"}, needs ${d.markerLsn}${r[2] === null ? "; apply worker not running" : ""}${r[4] ? `; ${r[4]} apply error(s)` : ""}`,
          };
        })
        .filter((x): x is { database: string; detail: string } => !!x);
      if (behind.length === 0) return { waitedMs: Date.now() - t0, polls };
      if (Date.now() - t0 >= o.timeoutMs) {
        throw new ReplicationTimeoutError(
          `${s.where === "live" ? "the new live" : "live"} did not apply everything within ${o.timeoutMs} ms: ${behind.map((b) => `${b.database}: ${b.detail}`).join("; ")}`,
          behind,
        );
      }
      if (o.pollMs) await sleep(o.pollMs);
    }
  }

  /**
   * While clients are held, on the side they go to, in one psql over every database:
   * with `waitAppliedMs`, first {@link waitApplied}'s wait, server-side (no extra round trip;
   * on timeout {@link ReplicationTimeoutError} and nothing else ran); then sequences set from
   * the capture, the subscription disabled (its worker stopped), then one synchronous commit
   * (what the workers applied asynchronously is on disk) and the WAL position right after
   * it: the side holds exactly the data of the side clients leave, and no client has written
   * to it yet — the way back starts there ({@link startReverse}). For `back` (a roll-back),
   * also the old live's read-only setting is undone ({@link undoReadOnly}), in the same script.
   * Undo: {@link unfinish}.
   */
  async finish(c: Capture, o: { waitAppliedMs?: number; timeoutMs?: number } = {}): Promise<FinishResult> {
    const s = this.sideOf(c.direction);
    const t0 = Date.now();
    const dbs = c.databases.map((d) => d.database);
    const last = dbs[dbs.length - 1];
    const seqs = new Map(c.databases.map((d) => [d.database, d.sequences]));
    const wait = o.waitAppliedMs === undefined ? "" : `${waitReceivedSql(s.subscription, c.databases.map((d) => ({ database: d.database, lsn: d.markerLsn })), o.waitAppliedMs)}\n`;
    const script =
      wait +
      scriptAcross(
        dbs,
        (db) =>
          [
            WRITABLE,
            setvalSql(seqs.get(db) ?? []),
            disableSubscriptionSql(s.subscription),
            // Back to the old live: clients will write there again.
            c.direction === "back" ? undoReadOnlySql(db, this.names.readOnlyMarker) : "",
            db === last ? `${waitWorkersGoneSql(s.subscription)}\n${flushSql()}\n${RESUME_POINT_SQL}` : "",
          ].join("\n"),
        dbs[0],
      );
    let rows: string[][];
    try {
      rows = await this.pgFor(s.subscriber).adminQuery(s.subscriber, script, { database: dbs[0], timeoutMs: (o.timeoutMs ?? 30_000) + (o.waitAppliedMs ?? 0) });
    } catch (e) {
      const why = /understudy: not applied within \d+ ms: ([^\n]*)/.exec(`${(e as PostgresError).detail ?? ""}\n${(e as Error).message}`);
      if (why) {
        throw new ReplicationTimeoutError(
          `${s.where === "live" ? "the new live" : "live"} did not apply everything within ${o.waitAppliedMs} ms (nothing was finished): ${why[1]}`,
          why[1].split("; ").map((b) => ({ database: b.split(":")[0], detail: b.slice(b.indexOf(":") + 2) })),
        );
      }
      throw e;
    }
    const m = parseTaggedByDatabase(rows);
    let sequencesSet = 0;
    for (const db of dbs) {
      const x = m.get(db);
      if (!x) throw new Error(`the script returned nothing for database ${db}`);
      sequencesSet += taggedValue<number>(x, "setval");
    }
    const resumeLsn = validateLsn(taggedValue<string>(m.get(last) as Map<string, unknown>, "resume_point"), "resume_point");
    return { direction: c.direction, resumeLsn, sequencesSet, durationMs: Date.now() - t0 };
  }

  /**
   * Undo of {@link finish}: enable the subscriptions again (they continue from their
   * origins); for `back`, make the old live read-only again. Sequences stay set (harmless:
   * set again next time).
   */
  async unfinish(direction: Direction): Promise<void> {
    const s = this.sideOf(direction);
    await this.runEach(
      s.subscriber,
      this.plan.databases,
      (db) => [WRITABLE, enableSubscriptionSql(s.subscription), direction === "back" ? readOnlySql(db, this.names.readOnlyMarker) : ""].join("\n"),
      60_000,
    );
  }

  // ---------------------------------------------------------------- after the swap

  /**
   * After a promotion: on the old live, in every database, a subscription to the new live's
   * publication on the slot of {@link prepareReverse}, its origin advanced to the point
   * {@link finish} read while clients were held (what the way forward applied lies before
   * it and is not sent back; every client write lies after it), then enabled — so that a
   * roll-back keeps every write made on the new live.
   * Undo: {@link stopReverse}.
   */
  async startReverse(f: FinishResult): Promise<void> {
    if (f?.direction !== "forward") throw new InputError("finish", "must be the result of finish() of the way forward");
    const lsn = validateLsn(f.resumeLsn, "finish.resumeLsn");
    const src = this.plan.targetSource as ReplicationSource;
    const m = await this.runEach(
      this.plan.live,
      this.plan.databases,
      (db) =>
        createSubscriptionSql({
          subscription: this.names.reverseSubscription,
          publication: this.names.reversePublication,
          slot: this.names.reverseSlot(db),
          conninfo: conninfo(src, { dbname: db, application_name: this.names.reverseSlot(db) }),
          startLsn: lsn,
        }),
      10 * 60_000,
    );
    for (const [db, x] of m) {
      const origin = taggedValue<string>(x, "origin");
      if (parseLsn(origin) !== parseLsn(lsn)) throw new Error(`${db}: the subscription of the way back has its origin at ${origin}, not ${lsn}`);
    }
  }

  /** Drop the subscriptions of the way back on the old live (idempotent; their slots stay on the new live: {@link retireReverse}). */
  async stopReverse(): Promise<void> {
    await this.runEach(this.plan.live, this.plan.databases, () => `${WRITABLE}\n${dropSubscriptionSql(this.names.reverseSubscription)}`, 120_000);
  }

  /**
   * Make every database of the old live read-only for new sessions
   * (`ALTER DATABASE ... SET default_transaction_read_only = on`), recording the previous
   * per-database value in a setting of ours (`understudy.read_only_<tag>`) so that
   * {@link undoReadOnly} restores exactly it. A per-database setting, not ALTER SYSTEM: it
   * needs no reload, touches no file, and the subscription of the way back still applies
   * (apply workers do not check it). Sessions already open keep their mode: the result
   * counts them per database. Idempotent. Undo: {@link undoReadOnly}.
   */
  async makeReadOnly(): Promise<Array<{ database: string; openSessions: number }>> {
    const m = await this.runEach(this.plan.live, this.plan.databases, (db) => readOnlySql(db, this.names.readOnlyMarker), 60_000);
    return this.plan.databases.map((db) => ({ database: db, openSessions: taggedValue<number>(m.get(db) as Map<string, unknown>, "sessions") }));
  }

  /** Restore each database's previous default_transaction_read_only where our marker says we set it (idempotent). */
  async undoReadOnly(): Promise<void> {
    await this.runEach(this.plan.live, this.plan.databases, (db) => undoReadOnlySql(db, this.names.readOnlyMarker), 60_000);
  }

  /** After a promotion: the way forward is over. Drop its subscriptions on the new live, then its slots and publications (and the physical slot, if still there) on the old live. Idempotent. */
  async retireForward(): Promise<string[]> {
    const removed: string[] = [];
    await this.runEach(this.target, this.plan.databases, () => dropSubscriptionSql(this.names.subscription), 120_000);
    removed.push(...(await this.dropForward()));
    removed.push(...(await this.dropWalKeeper()).map((s) => `live: slot ${s}`));
    return removed;
  }

  /** After a roll-back: drop the subscriptions of the way back on live, then their slots and publication on the new live. Idempotent. */
  async retireReverse(): Promise<string[]> {
    await this.stopReverse();
    return await this.dropReverse();
  }

  // ---------------------------------------------------------------- cleanup

  /**
   * Remove everything of this cut-over, in an order that leaves no consumer reconnecting:
   * the new side's subscriptions (if `target` is known and reachable), live's subscriptions
   * of the way back, live's publications, slots (ours by name prefix, in whatever database)
   * and read-only settings (unless `keepReadOnly`), then the new side's publication and slots.
   * Idempotent; returns what it removed and what of ours remains (empty when done).
   * Due on destroy, on roll-back and after a failed attempt.
   */
  async cleanup(o: { target?: boolean; keepReadOnly?: boolean } = {}): Promise<CleanupResult> {
    const removed: string[] = [];
    const useTarget = (o.target ?? true) && !!this.plan.target;
    if (useTarget) {
      // First the consumers of live's slots, so that none reconnects while they are dropped.
      const m = await this.runEach(this.target, this.plan.databases, () => `${leftoversSql(this.names)}\n${dropSubscriptionSql(this.names.subscription)}`, 120_000);
      for (const [db, x] of m) {
        const l = taggedValue<{ subscriptions: string[] }>(x, "leftovers");
        removed.push(...l.subscriptions.filter((s) => s === this.names.subscription).map((s) => `new live/${db}: subscription ${s}`));
      }
    }
    removed.push(...(await this.cleanupServer(this.plan.live, "live", o.keepReadOnly ?? false)));
    if (useTarget) removed.push(...(await this.cleanupServer(this.target, "new live", false)));
    const remaining = [...(await this.leftovers(this.plan.live)).map((x) => `live: ${x}`), ...(useTarget ? (await this.leftovers(this.target)).map((x) => `new live: ${x}`) : [])];
    return { removed, remaining: o.keepReadOnly ? remaining.filter((r) => !r.includes(this.names.readOnlyMarker)) : remaining };
  }

  private async leftoversIn(server: ServerRef, db: string): Promise<{ slots: Array<[string, string]>; publications: string[]; subscriptions: string[] }> {
    return taggedValue(await this.run(server, db, leftoversSql(this.names), 60_000), "leftovers");
  }

  private async cleanupServer(server: ServerRef, label: string, keepReadOnly: boolean): Promise<string[]> {
    const removed: string[] = [];
    const cluster = taggedValue<ClusterFacts>(await this.run(server, "postgres", clusterFactsSql(server.version), 60_000), "cluster");
    const dbs = this.plan.databases.filter((d) => cluster.databases.includes(d));
    if (dbs.length) {
      const m = await this.runEach(
        server,
        dbs,
        (db) =>
          [
            leftoversSql(this.names),
            markersSql(this.names.readOnlyMarker),
            WRITABLE,
            dropSubscriptionSql(this.names.reverseSubscription),
            dropSubscriptionSql(this.names.subscription),
            dropPublicationSql(this.names.publication),
            dropPublicationSql(this.names.reversePublication),
            keepReadOnly ? "" : undoReadOnlySql(db, this.names.readOnlyMarker),
          ].join("\n"),
        120_000,
      );
      for (const [db, x] of m) {
        const l = taggedValue<{ publications: string[]; subscriptions: string[] }>(x, "leftovers");
        removed.push(...l.subscriptions.map((s) => `${label}/${db}: subscription ${s}`), ...l.publications.map((p) => `${label}/${db}: publication ${p}`));
        if (!keepReadOnly && taggedValue<string[]>(x, "markers").includes(db)) removed.push(`${label}/${db}: default_transaction_read_only (restored)`);
      }
    }
    removed.push(...(await this.dropOurSlots(server)).map((s) => `${label}: slot ${s}`));
    return removed;
  }

  /** What of this cut-over is on `server` (slots by prefix, publications, subscriptions and read-only markers in the plan's databases). For previews and proofs. */
  async leftovers(server: ServerRef = this.plan.live): Promise<string[]> {
    const cluster = taggedValue<ClusterFacts>(await this.run(server, "postgres", clusterFactsSql(server.version), 60_000), "cluster");
    const out: string[] = [];
    const first = await this.leftoversIn(server, "postgres");
    out.push(...first.slots.map(([s, db]) => `slot ${s}${db ? ` (${db})` : ""}`));
    const markers = taggedValue<string[]>(await this.run(server, "postgres", markersSql(this.names.readOnlyMarker), 60_000), "markers");
    out.push(...markers.map((db) => `${db}: ${this.names.readOnlyMarker}`));
    const dbs = this.plan.databases.filter((d) => cluster.databases.includes(d));
    if (dbs.length) {
      for (const [db, x] of await this.runEach(server, dbs, () => leftoversSql(this.names), 60_000)) {
        const l = taggedValue<{ publications: string[]; subscriptions: string[] }>(x, "leftovers");
        out.push(...l.publications.map((p) => `${db}: publication ${p}`), ...l.subscriptions.map((s) => `${db}: subscription ${s}`));
      }
    }
    return out;
  }

  // ---------------------------------------------------------------- helpers

  private async fileExists(path: string): Promise<boolean> {
    const r = await this.sidePg.host.runAs(this.sidePg.osUser, ["test", "-e", path], { okExitCodes: [0, 1], cwd: "/", timeoutMs: 30_000 });
    return r.exitCode === 0;
  }

  private async readFile(path: string): Promise<string> {
    const r = await this.sidePg.host.runAs(this.sidePg.osUser, ["tail", "-c", "64000", "--", path], { okExitCodes: [0, 1], cwd: "/", timeoutMs: 30_000 }).catch(() => undefined);
    return r && r.exitCode === 0 ? r.stdout : "";
  }
}

/** A clone's server log line saying live refused its replication connection for good (rules, password, role), not for a moment. */
const REFUSED_BY_LIVE = /could not connect to the primary server:.*FATAL:\s+(pg_hba\.conf rejects[^\n]*|no pg_hba\.conf entry[^\n]*|password authentication failed[^\n]*|role "[^"]*" does not exist[^\n]*|[^\n]*is not permitted to log in[^\n]*|must be superuser or replication role[^\n]*)/;

// ------------------------------------------------------------------ validation

function wrap<T>(fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    const x = e as { field?: unknown; message?: string };
    if (typeof x?.field === "string" && !(e instanceof InputError)) throw new InputError(x.field, (x.message ?? "").replace(`${x.field}: `, ""));
    throw e;
  }
}

function validateServer(v: unknown, field: string): ServerRef {
  if (!v || typeof v !== "object") throw new InputError(field, "must be { version, socketDir, port, binDir? }");
  const o = v as ServerRef;
  return wrap(() => ({
    version: validateVersion(o.version, `${field}.version`),
    socketDir: validateSocketDir(o.socketDir, `${field}.socketDir`),
    port: validatePort(o.port, `${field}.port`),
    ...(o.binDir !== undefined ? { binDir: validatePath(o.binDir, `${field}.binDir`, "bin directory") } : {}),
  }));
}

/** Check a plan and fill the defaults (the replication sources). Throws {@link InputError} naming the field. */
export function validatePlan(p: LogicalPlan, superuser: string, o: { twoHosts?: boolean } = {}): LogicalPlan {
  if (!p || typeof p !== "object") throw new InputError("logical", "must be an object");
  const tag = validateTag(p.tag);
  const databases = validateDatabases(p.databases);
  const live = validateServer(p.live, "logical.live");
  if (live.version < 10) throw new InputError("logical.live.version", "logical replication needs PostgreSQL 10 or newer");
  const target = p.target === undefined ? undefined : validateServer(p.target, "logical.target");
  if (target && target.version < live.version) throw new InputError("logical.target.version", `${target.version} is older than live's ${live.version}`);
  // On two hosts the same port and socket directory are two servers.
  if (target && !o.twoHosts && target.port === live.port && target.socketDir === live.socketDir) throw new InputError("logical.target", "is the same server as live");
  const liveSource = validateSource(p.liveSource ?? { host: live.socketDir, port: live.port, user: superuser }, "logical.liveSource");
  // A targetSource given before the target is known (two hosts: the new live's address) is kept for withTarget.
  const targetSource = target
    ? validateSource(p.targetSource ?? { host: target.socketDir, port: target.port, user: superuser }, "logical.targetSource")
    : p.targetSource !== undefined
      ? validateSource(p.targetSource, "logical.targetSource")
      : undefined;
  return { tag, databases, live, ...(target ? { target } : {}), liveSource, ...(targetSource ? { targetSource } : {}) };
}

