import * as pulumi from "@pulumi/pulumi";
import type { ConnectionArgs } from "../providers/host/connection";
import { RehearsalStep, StepKind } from "../providers/rehearsal/step";
import { Preflight } from "../providers/rehearsal/preflight";
import { LogicalRehearsal } from "../providers/rehearsal/logical";
import type { LogicalRehearsalSettings } from "../providers/plan/rehearsal";
import { renderMarkdown, RehearsalReport, StepRecord, type LogicalRehearsalRecord } from "../providers/rehearsal/report";
import { pgPlanFor, rehearsalPorts, resolveRehearsalPlan, UNKNOWN_ID, type RehearsalArgsPlain, type RehearsalPlan } from "../providers/plan";
import { connectionUri, DatabaseClone, PostgresSourceArgs } from "./database-clone";
import type { StorageBackend } from "./storage/types";
import { ZfsStorage } from "./storage/zfs";
import { checked } from "./errors";
import type { SourceLayout } from "../providers/runner/layout";

export { planSteps } from "../providers/plan/steps";
import type { UserStep } from "../providers/plan/steps";
export type { UserStep };

export interface ChecksArgs {
  /**
   * Count rows of every table in every database on both sides.
   * @default "exact"
   */
  rowCounts?: "exact" | "none";
  /** Tables whose content is checksummed on both sides, `schema.table` or `db.schema.table`. @default [] */
  checksumTables?: string[];
  /** SQL returning a single boolean that must be true on the upgraded clone. @default [] */
  assertions?: Array<{ name: string; sql: string; database?: string }>;
  /** Tables larger than this (bytes) are compared by size instead of counted (see `VerifySpec.rowCountLimitBytes`). @default every table counted */
  rowCountLimitBytes?: number;
  /** Checksum this percentage of rows, chosen by primary-key hash (see `VerifySpec.checksumSamplePercent`). @default 100 */
  checksumSamplePercent?: number;
}

export interface UpgradeRehearsalArgs {
  /** Where it runs; omit for this machine, or an SSH connection shaped like `@pulumi/command`'s. Ignored when `storage` is given. */
  connection?: pulumi.Input<ConnectionArgs>;
  /**
   * The storage holding live and the clone.
   * @default `new ZfsStorage({ connection })`
   */
  storage?: StorageBackend;
  /** The live database. Only read (a `CHECKPOINT` before the snapshot). */
  source: PostgresSourceArgs;
  /**
   * `"new"`, `"latest"` or the name of an existing snapshot of the source.
   * @default "new"
   */
  snapshot?: "new" | "latest" | string;
  /** @default `understudy-<stack>-<name>` */
  snapshotName?: string;
  /** The clone the rehearsal runs on. */
  clone: { dataset: pulumi.Input<string>; mountpoint?: pulumi.Input<string> };
  /** Target major version, e.g. 15. */
  to: number;
  /**
   * Bin directory of the target version.
   * @default Debian's `/usr/lib/postgresql/<to>/bin`
   */
  toBinDir?: string;
  /**
   * The upgraded server on the clone: `port` (required); `tempPort` (private servers of the
   * old version; pg_upgrade uses tempPort+1 and +2) @default port+1; `socketDir`
   * @default "/var/run/postgresql"; `listen` @default "" (socket only); `database` for steps
   * and assertions @default "postgres".
   */
  postgres: { port: number; tempPort?: number; socketDir?: string; listen?: string; database?: string };
  /**
   * pg_upgrade transfer mode: seconds whatever the size; the clone's old cluster is then unusable.
   * @default "link"
   */
  mode?: "link" | "clone" | "copy";
  steps?: UserStep[];
  checks?: ChecksArgs;
  /**
   * Where the JSON and Markdown report are written on the machine running Pulumi.
   * @default "./understudy-reports"
   */
  reportDir?: string;
  /**
   * `"logical"`: also rehearse the logical cut-over, after the last step, between the upgraded
   * clone and a stand-in for live (a clone of the snapshot the upgrade started from, driven
   * by a writer at live's measured WAL rate): catch-up rate, apply lag, the held part and
   * the predicted pause go into the report. Live is only read (its WAL position); nothing is
   * created on it. `"replay"` rehearses what it always did.
   * @default "replay"
   */
  method?: "replay" | "logical";
  /** The logical rehearsal's settings (only with `method: "logical"`); defaults in `LOGICAL_REHEARSAL_DEFAULTS`. */
  logical?: Partial<LogicalRehearsalSettings>;
}

/**
 * Rehearse a major-version upgrade of a live PostgreSQL on a copy-on-write clone, step by
 * step, with a snapshot of the clone after each step; verify the result against the source
 * as of the snapshot; report. A failed step fails `pulumi up` at that step; after a fix,
 * `pulumi up` rolls the clone back to the last good snapshot and resumes there.
 * `pulumi destroy` discards the clone and every snapshot made on it. The source is never
 * written to, restarted, rolled back or destroyed.
 *
 * @example
 * ```ts
 * const rehearsal = new UpgradeRehearsal("pg13-to-15", {
 *   source: { dataset: "tank/pg13", pgdata: "main", version: 13, port: 5432 },
 *   clone: { dataset: "tank/rehearsals/pg13-to-15" },
 *   to: 15,
 *   postgres: { port: 55432, database: "app" },
 *   steps: [{ name: "smoke", command: ["/opt/app/bin/smoke-test"] }],
 *   checks: { checksumTables: ["public.orders"], assertions: [{ name: "no orphans", sql: "SELECT NOT EXISTS (...)" }] },
 * });
 * export const report = rehearsal.reportMarkdown;
 * ```
 */
export class UpgradeRehearsal extends pulumi.ComponentResource {
  readonly clone: DatabaseClone;
  /** The report as data (JSON-able): steps, durations, snapshot names, checks, predicted downtime. */
  readonly report: pulumi.Output<RehearsalReport>;
  /** The same report in Markdown. */
  readonly reportMarkdown: pulumi.Output<string>;
  /** With `method: "logical"`: the logical cut-over as rehearsed (catch-up, apply lag, predicted pause); else undefined. */
  readonly logicalCutover: pulumi.Output<LogicalRehearsalRecord | undefined>;
  /** Where the report files were written. */
  readonly reportFiles: pulumi.Output<{ json: string; markdown: string; html: string }>;
  /** Every step's record, in order. */
  readonly steps: pulumi.Output<StepRecord[]>;
  /** The upgraded server on the clone. */
  readonly port: pulumi.Output<number>;
  readonly socketDir: pulumi.Output<string>;
  readonly connectionString: pulumi.Output<string>;
  /** The resolved plan (every default applied): what a Promotion replays. */
  readonly plan: pulumi.Output<RehearsalPlan>;
  /** The plan as known when the program runs (volume ids given as outputs read `<unknown>` here). */
  readonly planNow: RehearsalPlan;
  /** The storage it runs on. */
  readonly storage: StorageBackend;
  /** Live's volumes, the one holding PGDATA first. */
  readonly sourceVolumes: pulumi.Output<string[]>;
  /** Live's layout when it is more than one plain volume (links the clone re-points), else undefined. */
  readonly layout: pulumi.Output<SourceLayout | undefined>;

  constructor(name: string, args: UpgradeRehearsalArgs, opts?: pulumi.ComponentResourceOptions) {
    super("understudy:index:UpgradeRehearsal", name, {}, opts);
    const storage = (this.storage = args.storage ?? new ZfsStorage({ connection: args.connection }));
    const src = args.source;
    // Everything is checked before the first resource (the preflight) is declared. Volume
    // ids that are outputs of other resources are checked by the preflight's check instead.
    const known = (v: pulumi.Input<string> | undefined): v is string => typeof v === "string";
    const plain: RehearsalArgsPlain = {
      ...args,
      source: { ...src, dataset: known(src.dataset) ? src.dataset : UNKNOWN_ID },
      clone: { dataset: known(args.clone?.dataset) ? args.clone.dataset : UNKNOWN_ID, ...(known(args.clone?.mountpoint) ? { mountpoint: args.clone.mountpoint } : {}) },
    };
    const planNow = (this.planNow = checked(name, () =>
      resolveRehearsalPlan(name, plain, { volumeId: (id, field) => (id === UNKNOWN_ID ? id : storage.validateVolumeId(id as string, field)) }),
    ));
    this.plan = pulumi
      .all([pulumi.output(src.dataset), pulumi.output(args.clone.dataset), pulumi.output(args.clone.mountpoint)])
      .apply(([dataset, cloneDataset, mountpoint]) => ({
        ...planNow,
        source: { ...planNow.source, dataset },
        clone: { dataset: cloneDataset, ...(mountpoint !== undefined ? { mountpoint } : {}) },
      }));
    const { postgres, checks } = planNow;
    const cloneName = `${name}-clone`;

    // Checked on the host before anything is snapshotted, cloned or started (everything below depends on it).
    const preflight = new Preflight(
      `${name}-preflight`,
      {
        connection: storage.connection,
        storage: storage.spec,
        label: `${name}/preflight`,
        from: { version: planNow.source.version, binDir: src.binDir },
        to: { version: planNow.to, binDir: args.toBinDir },
        osUser: planNow.source.osUser,
        ports: rehearsalPorts(planNow),
        socketDir: postgres.socketDir,
        source: pulumi.output(src.dataset).apply((dataset) => ({ dataset, pgdata: planNow.source.pgdata, snapshot: planNow.snapshot.mode === "named" ? planNow.snapshot.name : undefined })),
        clone: pulumi.output(args.clone.dataset).apply((dataset) => ({ dataset, owner: storage.cloneOwner(cloneName) })),
      },
      { parent: this },
    );
    this.clone = new DatabaseClone(
      name,
      { storage, source: src, snapshot: args.snapshot, snapshotName: args.snapshotName, clone: args.clone },
      { parent: this, dependsOn: [preflight] },
    );
    const pgPlan = this.clone.mountpoint.apply((mnt) => pgPlanFor(planNow, mnt, postgres));
    this.sourceVolumes = this.clone.sourceVolumes;
    this.layout = this.clone.layout;
    // A clone set of one volume keeps the shape it always had (no mounts): unchanged state, no re-run.
    const cloneInfo = pulumi
      .all([this.clone.dataset, this.clone.mountpoint, this.clone.owner, this.clone.volumes, this.clone.mounts])
      .apply(([dataset, mountpoint, owner, volumes, mounts]) => ({ dataset, mountpoint, owner, volumes, ...(volumes.length > 1 ? { mounts } : {}) }));
    const sourceInfo = pulumi.all([pulumi.output(src.dataset), this.clone.snapshot]).apply(([dataset, snapshot]) => ({ dataset, snapshot }));

    const plan = planNow.steps;
    const made: RehearsalStep[] = [];
    plan.forEach((p, idx) => {
      const index = idx + 1;
      const prevStep = made[made.length - 1];
      const byKind = (k: StepKind) => made[plan.findIndex((x) => x.kind === k)];
      const step = new RehearsalStep(
        `${name}-s${String(index).padStart(2, "0")}-${p.name}`,
        {
          connection: storage.connection,
          storage: storage.spec,
          label: `${name}/${p.name}`,
          rehearsal: name,
          index,
          name: p.name,
          kind: p.kind,
          cutover: p.cutover,
          clone: cloneInfo,
          source: sourceInfo,
          pg: pgPlan,
          sql: p.sql,
          command: p.command,
          database: p.database,
          timeoutMs: p.timeoutMs,
          verify: p.kind === "recover" || p.kind === "verify" ? checks : undefined,
          prev: prevStep
            ? pulumi.all([prevStep.snapshot, prevStep.serverAfter, prevStep.finishedAt]).apply(([snapshot, serverAfter, finishedAt]) => ({
                snapshot,
                serverAfter,
                finishedAt,
                name: plan[idx - 1].name,
              }))
            : undefined,
          history: pulumi.all(made.map((s) => s.record)),
          baseline: p.kind === "verify" ? byKind("recover").baselineOut : undefined,
          updateExtensionsSql: p.kind === "post-upgrade" ? byKind("upgrade").updateExtensionsSqlOut : undefined,
          reportDir: planNow.reportDir,
          layout: this.clone.layout,
          // The source's size (measured by recover) for the report of every later step, also a failed one.
          sourceSize: idx > 0 ? made[0].baselineOut.apply((b) => b?.size) : undefined,
        },
        { parent: this, dependsOn: prevStep ? [prevStep] : [this.clone.cloneResource] },
      );
      made.push(step);
    });
    const last = made[made.length - 1];
    let logical: LogicalRehearsal | undefined;
    if (planNow.method === "logical" && planNow.logical) {
      // The snapshot the upgrade started from: the old version, cleanly stopped (the stand-in for live is cloned from it).
      const before = made[plan.findIndex((x) => x.kind === "upgrade") - 1];
      logical = new LogicalRehearsal(
        `${name}-logical`,
        {
          connection: storage.connection,
          storage: storage.spec,
          label: `${name}/logical`,
          clone: cloneInfo,
          layout: this.clone.layout,
          pg: pgPlan,
          live: { version: planNow.source.version, binDir: planNow.source.binDir, socketDir: planNow.source.socketDir, port: planNow.source.port },
          fromSnapshot: before.snapshot,
          after: last.finishedAt,
          settings: planNow.logical,
          report: last.report.apply((r) => r!),
          reportDir: planNow.reportDir,
        },
        { parent: this, dependsOn: [last] },
      );
    }
    this.logicalCutover = logical ? logical.record : pulumi.output(undefined);
    this.report = logical ? logical.reportOut : last.report.apply((r) => r!);
    this.reportMarkdown = this.report.apply(renderMarkdown);
    this.reportFiles = logical ? logical.reportFiles : last.reportFiles.apply((f) => f!);
    this.steps = pulumi.all(made.map((s) => s.record));
    this.port = pulumi.output(postgres.port);
    this.socketDir = pulumi.output(postgres.socketDir);
    this.connectionString = pulumi.output(connectionUri(planNow.source.osUser, postgres.database, postgres.port, postgres.socketDir, postgres.listen || undefined));
    this.registerOutputs({ report: this.report, reportFiles: this.reportFiles, connectionString: this.connectionString });
  }
}

