/**
 * One rehearsal step as a Pulumi resource: a thin shell around the runner
 * (providers/runner/steps.ts). Its inputs are a slice of the rehearsal's plan; it runs the
 * step on the clone set through the Storage interface, snapshots the set, and writes the
 * report when it is the last step (or when it fails).
 */
import * as pulumi from "@pulumi/pulumi";
import type { ConnectionArgs } from "../host/connection";
import { withHost } from "../host";
import { PostgresDriver } from "../postgres/driver";
import { checkConnection, errorMessage, failure, hostIdentity, isUnknown, progress } from "../common";
import { InputError } from "../errors";
import { validatePgName } from "../validate";
import { UnderstudyResource } from "../shim";
import { declaredDiff, type DiffSpec } from "../diff";
import { openStorage, validateStorageSpec, type StorageSpec } from "../storage";
import { debianBinDir } from "../plan/defaults";
import type { PgPlan } from "../plan/rehearsal";
import { validatePlannedSteps, type StepKind } from "../plan/steps";
import { CLONED_SNAPSHOT, executeStep, stopAll, VerificationError, type CloneSet, type RunnerEnv, type ServerState } from "../runner/steps";
import { predictCutover, withSourceSize, RehearsalReport, StepRecord, CheckRecord } from "./report";
import { writeReportFiles, type ReportFiles } from "./report-files";
import { validateVerifySpec, type ClusterSize, type Snapshot, type VerifySpec } from "./verify";
import type { UnderstudyProvider } from "../dispatch";
import type { SourceLayout } from "../runner/layout";

export type { PlannedStep, StepKind } from "../plan/steps";
export type { ServerState } from "../runner/steps";
export type { PgPlan } from "../plan/rehearsal";

export interface StepInputs {
  connection?: ConnectionArgs;
  label: string;
  rehearsal: string;
  index: number;
  name: string;
  kind: StepKind;
  cutover: boolean;
  /** The storage backend (absent in state written by 0.1.0: ZFS). */
  storage: StorageSpec;
  /** `dataset`: the clone's primary volume; `volumes`: every volume of the clone set, the primary first; `mounts`: where each is mounted (when more than one). */
  clone: { dataset: string; mountpoint: string; owner: string; volumes: string[]; mounts?: string[] };
  /** Live's layout when it is more than one plain volume: links the clone re-points before anything starts. */
  layout?: SourceLayout;
  source: { dataset: string; snapshot: string; snapshotAt?: string };
  pg: PgPlan;
  sql?: string;
  command?: string[];
  database?: string;
  timeoutMs?: number;
  verify?: VerifySpec;
  /** The previous step: where to roll back to (`<primary>@<snapshot set>`), and whether the new server ran after it. */
  prev?: { snapshot: string; serverAfter: ServerState; finishedAt: string; name: string };
  history: StepRecord[];
  baseline?: Snapshot;
  updateExtensionsSql?: string;
  reportDir: string;
  /** The source's size as the recover step measured it (for the report's growth prediction). */
  sourceSize?: ClusterSize;
}

export interface StepOutputs extends StepInputs {
  record: StepRecord;
  /** `<primary volume>@<snapshot set name>` taken after the step. */
  snapshot: string;
  serverAfter: ServerState;
  finishedAt: string;
  baselineOut?: Snapshot;
  updateExtensionsSqlOut?: string;
  checks?: CheckRecord[];
  report?: RehearsalReport;
  reportFiles?: ReportFiles;
}

/** `tank/r@s03-upgrade` -> `s03-upgrade`. */
export function setName(snapshot: string): string {
  const at = snapshot.lastIndexOf("@");
  return at >= 0 ? snapshot.slice(at + 1) : snapshot;
}

/** State written by 0.1.0 -> this shape: ZFS storage, one-volume clone sets, resolved bin directories. */
export function migrateStep(p: Record<string, unknown>): Record<string, unknown> {
  const o = { ...p } as unknown as StepOutputs;
  if (!o.storage) o.storage = { kind: "zfs" };
  if (o.clone && !o.clone.volumes) o.clone = { ...o.clone, volumes: [o.clone.dataset] };
  if (o.pg) {
    o.pg = {
      ...o.pg,
      fromBinDir: o.pg.fromBinDir ?? debianBinDir(o.pg.from),
      toBinDir: o.pg.toBinDir ?? debianBinDir(o.pg.to),
    };
  }
  return o as unknown as Record<string, unknown>;
}

/** What re-runs a step, what changes in place. */
export const STEP_DIFF: DiffSpec = {
  replace: ["rehearsal", "index", "name", "kind", "storage", "clone", "layout", "source", "pg", "sql", "command", "database", "timeoutMs", "verify", "prev", "baseline", "updateExtensionsSql"],
  // For the report only: changing them rewrites the report, the step does not run again.
  update: ["label", "history", "cutover", "reportDir", "sourceSize"],
};

function buildReport(i: StepInputs, records: StepRecord[], checks: CheckRecord[], status: RehearsalReport["status"], failure?: RehearsalReport["failure"], size?: ClusterSize): RehearsalReport {
  return withSourceSize(buildBare(i, records, checks, status, failure), size ?? i.sourceSize ?? i.baseline?.size);
}

function buildBare(i: StepInputs, records: StepRecord[], checks: CheckRecord[], status: RehearsalReport["status"], failure?: RehearsalReport["failure"]): RehearsalReport {
  return {
    rehearsal: i.rehearsal,
    status,
    host: hostIdentity(i.connection),
    source: { dataset: i.source.dataset, snapshot: i.source.snapshot, snapshotAt: i.source.snapshotAt, version: i.pg.from },
    clone: { dataset: i.clone.dataset, mountpoint: i.clone.mountpoint },
    target: { version: i.pg.to, port: i.pg.port, dataDir: i.pg.newDataDir },
    steps: records,
    checks,
    ...(failure ? { failure } : {}),
    predictedCutover: predictCutover(records, []),
    generatedAt: new Date().toISOString(),
  };
}

const writeReport = writeReportFiles;

const diff = declaredDiff(STEP_DIFF);

export const rehearsalStepProvider: UnderstudyProvider = {
  migrate: migrateStep,

  async check(_olds: StepInputs, news: StepInputs) {
    const failures: pulumi.dynamic.CheckFailure[] = [...checkConnection(news.connection)];
    if (!isUnknown(news.storage)) failures.push(...failure("storage", () => validateStorageSpec(news.storage, "storage")));
    const step = { name: news.name, kind: news.kind, sql: news.sql, command: news.command, database: news.database, timeoutMs: news.timeoutMs, cutover: news.cutover };
    if (!isUnknown(step)) failures.push(...failure("name", () => validatePlannedSteps([step], `steps[${news.index}]`)));
    if (!isUnknown(news.index) && (!Number.isInteger(news.index) || news.index < 1 || news.index > 99)) {
      failures.push({ property: "index", reason: new InputError("index", "must be 1..99").message });
    }
    if (news.verify && !isUnknown(news.verify)) failures.push(...failure("verify", () => validateVerifySpec(news.verify!)));
    if (news.pg && !isUnknown(news.pg) && news.pg.superuser !== undefined) failures.push(...failure("pg", () => validatePgName(news.pg.superuser, "source.superuser", "role name")));
    return { inputs: news, failures };
  },

  async diff(_id: string, olds: StepOutputs, news: StepInputs) {
    return diff(olds as unknown as Record<string, unknown>, news as unknown as Record<string, unknown>);
  },

  async create(i: StepInputs) {
    return await withHost(i.connection, async (host) => {
      const storage = openStorage(i.storage, host);
      // One look at each installation per deployment, not per step (each step opens its own connection).
      const pg = new PostgresDriver(host, { osUser: i.pg.osUser }, PostgresDriver.sharedInstallChecks(hostIdentity(i.connection)));
      const log = (m: string) => progress(i.label, m);
      const env: RunnerEnv = { host, storage, pg, log };
      const clone: CloneSet = { volumes: i.clone.volumes, mountpoint: i.clone.mountpoint, owner: i.clone.owner, mounts: i.clone.mounts, layout: i.layout };
      const startedAt = new Date();
      const prevSnapshot = i.prev ? i.prev.snapshot : `${i.clone.dataset}@${CLONED_SNAPSHOT}`;
      try {
        const r = await executeStep(
          env,
          clone,
          {
            step: { name: i.name, kind: i.kind, cutover: i.cutover, sql: i.sql, command: i.command, database: i.database, timeoutMs: i.timeoutMs },
            index: i.index,
            pg: i.pg,
            prevServer: i.prev?.serverAfter ?? "none",
            verify: i.verify,
            baseline: i.baseline,
            updateExtensionsSql: i.updateExtensionsSql,
          },
          i.prev ? { snapshot: setName(i.prev.snapshot), serverAfter: i.prev.serverAfter } : undefined,
        );
        const snapshot = `${i.clone.dataset}@${r.snapshot}`;
        const finishedAt = new Date();
        const record: StepRecord = {
          index: i.index,
          name: i.name,
          kind: i.kind,
          status: "ok",
          startedAt: startedAt.toISOString(),
          finishedAt: finishedAt.toISOString(),
          durationMs: finishedAt.getTime() - startedAt.getTime(),
          snapshot,
          cutover: i.cutover,
          detail: r.detail.join("; "),
          ...(r.cleanStopMs !== undefined ? { cleanStopMs: r.cleanStopMs } : {}),
          ...(r.placeMs !== undefined ? { placeMs: r.placeMs } : {}),
        };
        log(`step ${i.index} done in ${record.durationMs} ms; snapshot ${snapshot}`);
        const outs: StepOutputs = {
          ...i,
          record,
          snapshot,
          serverAfter: r.serverAfter,
          finishedAt: record.finishedAt,
          ...(r.baseline ? { baselineOut: r.baseline } : {}),
          ...(r.updateExtensionsSql ? { updateExtensionsSqlOut: r.updateExtensionsSql } : {}),
          ...(r.checks ? { checks: r.checks } : {}),
        };
        if (i.kind === "verify") {
          outs.report = buildReport(i, [...i.history, record], r.checks ?? [], "passed");
          outs.reportFiles = writeReport(i.reportDir, outs.report);
          log(`report: ${outs.reportFiles.markdown}`);
        }
        return { id: snapshot, outs };
      } catch (e) {
        const finishedAt = new Date();
        const reason = errorMessage(e);
        const record: StepRecord = {
          index: i.index,
          name: i.name,
          kind: i.kind,
          status: "failed",
          startedAt: startedAt.toISOString(),
          finishedAt: finishedAt.toISOString(),
          durationMs: finishedAt.getTime() - startedAt.getTime(),
          cutover: i.cutover,
          detail: reason.split("\n")[0],
          logTail: reason.split("\n").slice(-30).join("\n"),
        };
        const lastGood = i.history[i.history.length - 1];
        const report = buildReport(i, [...i.history, record], e instanceof VerificationError ? e.checks : [], "failed", {
          step: i.name,
          at: record.startedAt,
          reason: reason.split("\n")[0],
          lastGoodStep: lastGood?.name ?? "clone",
          lastGoodSnapshot: prevSnapshot,
          lastGoodAt: i.prev?.finishedAt ?? lastGood?.finishedAt,
        });
        let files: ReportFiles | undefined;
        try {
          files = writeReport(i.reportDir, report);
        } catch {
          /* the error below still says everything */
        }
        throw new Error(
          `rehearsal step ${i.index} "${i.name}" failed on ${hostIdentity(i.connection)} after ${record.durationMs} ms:\n${reason}\n` +
            `Last good state: snapshot ${prevSnapshot}${i.prev ? ` after step "${i.prev.name}" (${i.prev.finishedAt})` : ""}. ` +
            `Left behind: clone ${i.clone.volumes.join(", ")} in the failed state (the source was not touched). ` +
            `Fix the cause and run \`pulumi up\` again to resume from that snapshot, or \`pulumi destroy\` to discard the clone.` +
            (files ? `\nReport: ${files.markdown}` : ""),
          { cause: e },
        );
      }
    });
  },

  async read(id: string, props: StepOutputs) {
    return await withHost(props.connection, async (host) => {
      const storage = openStorage(props.storage, host);
      const set = await storage.findSnapshotSet(props.clone.volumes, setName(id)).catch(() => undefined);
      if (!set) return { id: undefined as unknown as string, props: {} };
      return { id, props };
    });
  },

  async update(_id: string, olds: StepOutputs, news: StepInputs) {
    // Credentials and report metadata change in place; the step does not run again.
    const record: StepRecord = { ...olds.record, cutover: news.cutover };
    const outs: StepOutputs = { ...olds, connection: news.connection, label: news.label, history: news.history, cutover: news.cutover, reportDir: news.reportDir, sourceSize: news.sourceSize, record };
    if (olds.kind === "verify" && olds.report) {
      outs.report = buildReport(news, [...news.history, record], olds.checks ?? [], "passed");
      outs.reportFiles = writeReport(news.reportDir, outs.report);
    }
    return { outs };
  },

  async delete(id: string, props: StepOutputs) {
    await withHost(props.connection, async (host) => {
      const storage = openStorage(props.storage, host);
      const pg = new PostgresDriver(host, { osUser: props.pg.osUser });
      const log = (m: string) => progress(props.label, m);
      if (props.kind === "start") {
        const r = await pg.stopIfPresent(props.pg.newDataDir, { version: props.pg.to, binDir: props.pg.toBinDir, field: "to" }, { mode: "fast" });
        if (r?.wasRunning) log(`stopped PostgreSQL ${props.pg.to} on the clone`);
      }
      if (props.kind === "recover") {
        // The first step goes last, right before the clone: stop whatever still runs on the clone
        // (e.g. a server a killed or timed-out pg_upgrade left behind), or the clone is "busy".
        try {
          await stopAll({ host, storage, pg, log }, props.pg);
        } catch (e) {
          log(`warning: could not stop the servers on the clone: ${errorMessage(e)}`);
        }
      }
      const r = await storage.destroySnapshotSet(props.clone.volumes, setName(id), props.clone.owner);
      log(r.every((x) => x === "missing") ? `${id} was already gone` : `destroyed ${id}`);
      if (props.kind === "recover" && !props.prev) await storage.destroySnapshotSet(props.clone.volumes, CLONED_SNAPSHOT, props.clone.owner);
    });
  },
};

export type RehearsalStepArgs = { [K in keyof StepInputs]: pulumi.Input<StepInputs[K]> };

/** One step of an {@link UpgradeRehearsal}; it snapshots the clone set when it succeeds. */
export class RehearsalStep extends UnderstudyResource {
  declare readonly record: pulumi.Output<StepRecord>;
  declare readonly snapshot: pulumi.Output<string>;
  declare readonly serverAfter: pulumi.Output<ServerState>;
  declare readonly finishedAt: pulumi.Output<string>;
  declare readonly baselineOut: pulumi.Output<Snapshot | undefined>;
  declare readonly updateExtensionsSqlOut: pulumi.Output<string | undefined>;
  declare readonly checks: pulumi.Output<CheckRecord[] | undefined>;
  declare readonly report: pulumi.Output<RehearsalReport | undefined>;
  declare readonly reportFiles: pulumi.Output<ReportFiles | undefined>;

  constructor(name: string, args: RehearsalStepArgs, opts?: pulumi.CustomResourceOptions) {
    super(
      "RehearsalStep",
      name,
      {
        ...args,
        record: undefined,
        snapshot: undefined,
        serverAfter: undefined,
        finishedAt: undefined,
        baselineOut: undefined,
        updateExtensionsSqlOut: undefined,
        checks: undefined,
        report: undefined,
        reportFiles: undefined,
      },
      opts,
    );
  }
}
