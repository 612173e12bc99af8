/**
 * The logical cut-over's rehearsal as a Pulumi resource: a thin shell around the runner
 * (providers/runner/logical-rehearsal.ts). It runs after the rehearsal's last step, on the
 * upgraded clone and a stand-in for live it makes and destroys itself; it adds the section
 * "Predicted logical cut-over" to the report and writes the report files again. Live is only
 * read (its WAL position).
 */
import * as pulumi from "@pulumi/pulumi";
import type { ConnectionArgs } from "../host/connection";
import { withHost } from "../host";
import { PostgresDriver } from "../postgres/driver";
import { checkConnection, errorMessage, failure, isUnknown, progress } from "../common";
import { UnderstudyResource } from "../shim";
import { declaredDiff, type DiffSpec } from "../diff";
import { openStorage, validateStorageSpec, type StorageSpec } from "../storage";
import { checkLogicalRehearsal, type LogicalRehearsalSettings, type PgPlan } from "../plan/rehearsal";
import { rehearseLogical } from "../runner/logical-rehearsal";
import type { ServerRef } from "../postgres/logical";
import type { UnderstudyProvider } from "../dispatch";
import type { SourceLayout } from "../runner/layout";
import type { LogicalRehearsalRecord, RehearsalReport } from "./report";
import { writeReportFiles, type ReportFiles } from "./report-files";

export interface LogicalRehearsalInputs {
  connection?: ConnectionArgs;
  storage: StorageSpec;
  label: string;
  /** The rehearsal's clone set (as its steps have it). */
  clone: { dataset: string; mountpoint: string; owner: string; volumes: string[]; mounts?: string[] };
  layout?: SourceLayout;
  pg: PgPlan;
  /** Live, read only: its WAL position, twice. */
  live: ServerRef;
  /** `<primary>@<set>` of the step the upgrade started from (the old version, cleanly stopped). */
  fromSnapshot: string;
  settings: LogicalRehearsalSettings;
  /** When the rehearsal's last step finished: a new run of the steps (a new upgraded clone) rehearses the logical cut-over again. */
  after: string;
  /** The report of the rehearsal's last step: the logical section is added to it. */
  report: RehearsalReport;
  reportDir: string;
}

export interface LogicalRehearsalOutputs extends LogicalRehearsalInputs {
  record: LogicalRehearsalRecord;
  reportOut: RehearsalReport;
  reportFiles: ReportFiles;
}

/** What re-runs the rehearsal of the logical cut-over, what only rewrites the report. */
export const LOGICAL_REHEARSAL_DIFF: DiffSpec = {
  replace: ["storage", "clone", "layout", "pg", "live", "fromSnapshot", "settings", "after"],
  update: ["label", "report", "reportDir"],
};

const diff = declaredDiff(LOGICAL_REHEARSAL_DIFF);
const setName = (snapshot: string) => snapshot.slice(snapshot.lastIndexOf("@") + 1);

function withLogical(r: RehearsalReport, l: LogicalRehearsalRecord): RehearsalReport {
  return { ...r, logicalCutover: l, generatedAt: new Date().toISOString() };
}

export const logicalRehearsalProvider: UnderstudyProvider = {
  async check(_olds: LogicalRehearsalInputs, news: LogicalRehearsalInputs) {
    const failures: pulumi.dynamic.CheckFailure[] = [...checkConnection(news.connection)];
    if (!isUnknown(news.storage)) failures.push(...failure("storage", () => validateStorageSpec(news.storage, "storage")));
    if (!isUnknown(news.settings)) for (const e of checkLogicalRehearsal(news.settings)) failures.push({ property: "settings", reason: e.message });
    return { inputs: news, failures };
  },

  async diff(_id: string, olds: LogicalRehearsalOutputs, news: LogicalRehearsalInputs) {
    return diff(olds as unknown as Record<string, unknown>, news as unknown as Record<string, unknown>);
  },

  async create(i: LogicalRehearsalInputs) {
    return await withHost(i.connection, async (host) => {
      const storage = openStorage(i.storage, host);
      const pg = new PostgresDriver(host, { osUser: i.pg.osUser });
      const log = (m: string) => progress(i.label, m);
      const at = new Date().toISOString();
      try {
        const record = await rehearseLogical(
          { host, storage, pg, log },
          {
            pg: i.pg,
            live: i.live,
            clone: { volumes: i.clone.volumes, mountpoint: i.clone.mountpoint, owner: i.clone.owner, mounts: i.clone.mounts, layout: i.layout },
            fromSnapshot: setName(i.fromSnapshot),
            settings: i.settings,
            owner: i.clone.owner,
          },
        );
        log(`predicted logical pause ${record.predicted?.totalMs} ms (catch-up ${record.catchUp?.bytesPerSecond} bytes/s, apply lag max ${record.applyLag?.maxBytes} bytes)`);
        const reportOut = withLogical(i.report, record);
        const reportFiles = writeReportFiles(i.reportDir, reportOut);
        const outs: LogicalRehearsalOutputs = { ...i, record, reportOut, reportFiles };
        return { id: `${i.clone.dataset}/logical-rehearsal`, outs };
      } catch (e) {
        const reason = errorMessage(e);
        let files: ReportFiles | undefined;
        try {
          files = writeReportFiles(i.reportDir, withLogical(i.report, { status: "failed", at, failure: reason.split("\n")[0] }));
        } catch {
          /* the error below says everything */
        }
        throw new Error(`${reason}${files ? `\nReport: ${files.markdown}` : ""}`, { cause: e });
      }
    });
  },

  async update(_id: string, olds: LogicalRehearsalOutputs, news: LogicalRehearsalInputs) {
    // The rehearsal's report changed (a later run of its steps): the measured section is carried over.
    const reportOut = withLogical(news.report, olds.record);
    const reportFiles = writeReportFiles(news.reportDir, reportOut);
    return { outs: { ...olds, connection: news.connection, label: news.label, report: news.report, reportDir: news.reportDir, reportOut, reportFiles } };
  },

  async read(id: string, props: LogicalRehearsalOutputs) {
    return { id, props };
  },

  async delete(_id: string, props: LogicalRehearsalOutputs) {
    // The stand-in is destroyed by create itself; one a killed run left behind goes here
    // (before the clone's snapshots, which it would otherwise keep from being destroyed).
    await withHost(props.connection, async (host) => {
      const storage = openStorage(props.storage, host);
      const primary = props.clone.volumes[0];
      const id = storage.siblingVolume(primary, `${primary.split("/").pop()}-standin`);
      const v = await storage.volume(id).catch(() => undefined);
      if (!v) return;
      const pg = new PostgresDriver(host, { osUser: props.pg.osUser });
      if (v.mountpoint) {
        await pg
          .stopIfPresent(`${v.mountpoint}${props.pg.oldDataDir.slice(props.clone.mountpoint.length)}`, { version: props.pg.from, binDir: props.pg.fromBinDir, field: "from" }, { mode: "fast" })
          .catch(() => undefined);
      }
      const r = await storage.destroyVolume(id, props.clone.owner);
      progress(props.label, `stand-in ${id}: ${r}`);
    });
  },
};

export type LogicalRehearsalArgs = { [K in keyof LogicalRehearsalInputs]: pulumi.Input<LogicalRehearsalInputs[K]> };

/** The rehearsal of the logical cut-over (see {@link UpgradeRehearsal}'s `method`). */
export class LogicalRehearsal extends UnderstudyResource {
  declare readonly record: pulumi.Output<LogicalRehearsalRecord>;
  declare readonly reportOut: pulumi.Output<RehearsalReport>;
  declare readonly reportFiles: pulumi.Output<ReportFiles>;

  constructor(name: string, args: LogicalRehearsalArgs, opts?: pulumi.CustomResourceOptions) {
    super("LogicalRehearsal", name, { ...args, record: undefined, reportOut: undefined, reportFiles: undefined }, opts);
  }
}
