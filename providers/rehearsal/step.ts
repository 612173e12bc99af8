import * as pulumi from "@pulumi/pulumi";
import * as fs from "node:fs";
import * as path from "node:path";
import type { ConnectionArgs } from "../host/connection";
import { withHost } from "../host";
import type { Host } from "../host/types";
import { OWNER_PROPERTY, ZfsDriver } from "../zfs/driver";
import { validateSnapshotShortName } from "../zfs/names";
import { PostgresDriver, UpgradeMode } from "../postgres/driver";
import { errorMessage, hostIdentity, isUnknown, progress } from "../common";
import { UnderstudyResource } from "../shim";
import { predictCutover, renderMarkdown, RehearsalReport, StepRecord, CheckRecord } from "./report";
import { assertions, collect, compare, Snapshot, VerifySpec, validateVerifySpec } from "./verify";
import { isArgv } from "../host/types";

/** Built-in steps, in order, and user steps (`sql`, `command`). */
export type StepKind = "recover" | "check" | "upgrade" | "start" | "post-upgrade" | "analyze" | "sql" | "command" | "verify";
export type ServerState = "none" | "new";

/** One step of a rehearsal plan, as the component plans it and a promotion replays it. */
export interface PlannedStep {
  name: string;
  kind: StepKind;
  cutover: boolean;
  sql?: string;
  command?: string[];
  database?: string;
  timeoutMs?: number;
}


export interface PgPlan {
  from: number;
  to: number;
  fromBinDir?: string;
  toBinDir?: string;
  osUser: string;
  oldDataDir: string;
  newDataDir: string;
  /** Port of the upgraded server on the clone. */
  port: number;
  /** Port for private servers (old version) during the rehearsal; pg_upgrade uses tempPort+1 and +2. */
  tempPort: number;
  socketDir: string;
  listen: string;
  mode: UpgradeMode;
  database: string;
}

export interface StepInputs {
  connection?: ConnectionArgs;
  label: string;
  rehearsal: string;
  index: number;
  name: string;
  kind: StepKind;
  cutover: boolean;
  clone: { dataset: string; mountpoint: string; owner: string };
  source: { dataset: string; snapshot: string; snapshotAt?: string };
  pg: PgPlan;
  sql?: string;
  command?: string[];
  database?: string;
  timeoutMs?: number;
  verify?: VerifySpec;
  /** The previous step: where to roll back to, and whether the new server was running after it. */
  prev?: { snapshot: string; serverAfter: ServerState; finishedAt: string; name: string };
  history: StepRecord[];
  baseline?: Snapshot;
  updateExtensionsSql?: string;
  reportDir: string;
}

export interface StepOutputs extends StepInputs {
  record: StepRecord;
  snapshot: string;
  serverAfter: ServerState;
  finishedAt: string;
  baselineOut?: Snapshot;
  updateExtensionsSqlOut?: string;
  checks?: CheckRecord[];
  report?: RehearsalReport;
  reportFiles?: { json: string; markdown: string };
}

export function serverAfter(kind: StepKind, prev: ServerState): ServerState {
  if (kind === "start") return "new";
  if (kind === "recover" || kind === "check" || kind === "upgrade") return "none";
  return prev;
}

const pad = (n: number) => String(n).padStart(2, "0");
export function stepSnapshotName(index: number, name: string): string {
  return validateSnapshotShortName(`s${pad(index)}-${name}`, "steps.name");
}

const MARKER = ".understudy-step-in-progress";
/** ZFS user property on the clone: the step snapshot the clone's content corresponds to. */
export const HEAD_PROPERTY = "understudy:head";

export interface Ctx {
  host: Host;
  z: ZfsDriver;
  pg: PostgresDriver;
  i: StepInputs;
  log: (m: string) => void;
  detail: string[];
}

const oldInstall = (i: StepInputs) => ({ version: i.pg.from, binDir: i.pg.fromBinDir, field: "from" });
const newInstall = (i: StepInputs) => ({ version: i.pg.to, binDir: i.pg.toBinDir, field: "to" });
const newServer = (i: StepInputs) => ({ version: i.pg.to, binDir: i.pg.toBinDir, socketDir: i.pg.socketDir, port: i.pg.port });

export async function stopAll(c: Ctx): Promise<void> {
  for (const [dir, inst] of [[c.i.pg.newDataDir, newInstall(c.i)], [c.i.pg.oldDataDir, oldInstall(c.i)]] as const) {
    const r = await c.pg.stopIfPresent(dir, inst, { mode: "fast" });
    if (r?.wasRunning) c.log(`stopped the server on ${dir}`);
  }
}

export async function startNew(c: Ctx): Promise<void> {
  const st = await c.pg.status(c.i.pg.newDataDir, newInstall(c.i));
  if (st.running) return;
  await c.pg.start(c.i.pg.newDataDir, newInstall(c.i), {
    port: c.i.pg.port,
    socketDir: c.i.pg.socketDir,
    listen: c.i.pg.listen,
    onProgress: c.log,
  });
}

/** pg_upgrade's private servers use tempPort+1 (old) and tempPort+2 (new): the same for --check and the upgrade. */
const upgradeOptions = (c: Ctx) => ({ mode: c.i.pg.mode, oldPort: c.i.pg.tempPort + 1, newPort: c.i.pg.tempPort + 2, onProgress: c.log });

export async function runStep(c: Ctx): Promise<Partial<StepOutputs>> {
  const { i, pg } = c;
  const extra: Partial<StepOutputs> = {};
  switch (i.kind) {
    case "recover": {
      const r = await pg.recoverCrashConsistent(i.pg.oldDataDir, oldInstall(i), i.pg.tempPort, { onProgress: c.log });
      c.detail.push(`crash recovery ${r.recoveryMs} ms, clean stop ${r.stopMs} ms (state: ${r.stateBefore} -> ${r.stateAfter})`);
      if (r.removedStalePid) c.detail.push(`removed the postmaster.pid copied from the source (pid ${r.removedStalePid.pid})`);
      if (i.verify) {
        c.log("measuring the baseline (the source as of the snapshot) with the old version");
        const inst = await pg.resolveInstall(oldInstall(i), ["pg_ctl", "psql"]);
        const run = await pg.withPrivateServer("baseline", i.pg.oldDataDir, inst, i.pg.tempPort, { onProgress: c.log }, async (srv) =>
          collect((sql, db) => pg.adminQuery(srv, sql, { database: db }), i.verify!),
        );
        extra.baselineOut = run.result;
        c.detail.push(`baseline: ${Object.keys(run.result.rowCounts).length} tables, ${Object.keys(run.result.sequences).length} sequences in ${run.result.databases.length} databases`);
      }
      return extra;
    }
    case "check": {
      const r = await pg.upgradeCheck(i.pg.oldDataDir, i.pg.newDataDir, oldInstall(i), newInstall(i), upgradeOptions(c));
      c.detail.push(`pg_upgrade --check passed${r.initializedNew ? " (new cluster initialized)" : ""}`);
      return extra;
    }
    case "upgrade": {
      const r = await pg.upgrade(i.pg.oldDataDir, i.pg.newDataDir, oldInstall(i), newInstall(i), upgradeOptions(c));
      c.detail.push(`pg_upgrade --${r.mode}: ${r.durationMs} ms`);
      extra.updateExtensionsSqlOut = r.updateExtensionsSql;
      return extra;
    }
    case "start": {
      await startNew(c);
      c.detail.push(`PostgreSQL ${i.pg.to} running on port ${i.pg.port} (socket ${i.pg.socketDir}${i.pg.listen ? `, listen ${i.pg.listen}` : ""})`);
      return extra;
    }
    case "post-upgrade": {
      const r = await pg.postUpgrade(i.pg.newDataDir, newInstall(i), {
        server: { port: i.pg.port, socketDir: i.pg.socketDir },
        updateExtensionsSql: i.updateExtensionsSql,
        analyze: "none",
        onProgress: c.log,
      });
      c.detail.push(r.extensionsUpdated ? `extensions updated in ${r.extensionsMs} ms` : "no extension needed an update");
      return extra;
    }
    case "analyze": {
      const r = await pg.postUpgrade(i.pg.newDataDir, newInstall(i), {
        server: { port: i.pg.port, socketDir: i.pg.socketDir },
        analyze: "in-stages",
        onProgress: c.log,
      });
      c.detail.push(`vacuumdb --analyze-in-stages: ${r.analyzeMs} ms`);
      return extra;
    }
    case "sql":
    case "command": {
      const db = i.database ?? i.pg.database;
      const exec = async (srv: { version: number; binDir?: string; socketDir: string; port: number }) => {
        if (i.kind === "sql") {
          const rows = await pg.adminQuery(srv, i.sql!, { database: db, timeoutMs: i.timeoutMs });
          c.detail.push(`SQL ran on ${db}${rows.length ? `; last row: ${rows[rows.length - 1].join(" | ")}` : ""}`);
        } else {
          const r = await c.host.runAs(i.pg.osUser, i.command!, {
            env: { PGHOST: srv.socketDir, PGPORT: String(srv.port), PGDATABASE: db, PGUSER: pg.superuser },
            timeoutMs: i.timeoutMs ?? 30 * 60_000,
          });
          const out = (r.stdout + r.stderr).trim().split("\n").slice(-5).join("\n");
          c.detail.push(`command exited 0${out ? `: ${out}` : ""}`);
        }
      };
      if ((i.prev?.serverAfter ?? "none") === "new") {
        await exec(newServer(i));
      } else {
        // Before the upgrade: on the old version, privately, stopped cleanly afterwards.
        const inst = await pg.resolveInstall(oldInstall(i), ["pg_ctl", "psql"]);
        await pg.withPrivateServer(i.name, i.pg.oldDataDir, inst, i.pg.tempPort, { onProgress: c.log }, async (srv) =>
          exec({ version: i.pg.from, binDir: i.pg.fromBinDir, socketDir: srv.socketDir, port: srv.port }),
        );
      }
      return extra;
    }
    case "verify": {
      if (!i.baseline || !i.verify) throw new Error("no baseline to verify against (the recover step measures it)");
      const srv = newServer(i);
      const after = await collect((sql, db) => pg.adminQuery(srv, sql, { database: db }), i.verify);
      const checks = [
        ...compare(i.baseline, after),
        ...(await assertions((sql, db) => pg.adminQuery(srv, sql, { database: db }), i.verify, i.pg.database)),
      ];
      extra.checks = checks;
      const failed = checks.filter((x) => x.status === "fail");
      c.detail.push(`${checks.length - failed.length} of ${checks.length} checks passed`);
      if (failed.length) {
        const list = failed.slice(0, 10).map((x) => `${x.name}: expected ${x.expected}, got ${x.actual}`).join("; ");
        const err = new Error(`${failed.length} verification check(s) failed: ${list}`);
        (err as Error & { checks?: CheckRecord[] }).checks = checks;
        throw err;
      }
      return extra;
    }
  }
}

function buildReport(i: StepInputs, records: StepRecord[], checks: CheckRecord[], status: RehearsalReport["status"], failure?: RehearsalReport["failure"]): RehearsalReport {
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

function writeReport(dir: string, r: RehearsalReport): { json: string; markdown: string } {
  fs.mkdirSync(dir, { recursive: true });
  const base = path.join(dir, r.rehearsal.replace(/[^A-Za-z0-9_.-]+/g, "_"));
  const files = { json: `${base}.json`, markdown: `${base}.md` };
  fs.writeFileSync(files.json, JSON.stringify(r, null, 2) + "\n");
  fs.writeFileSync(files.markdown, renderMarkdown(r));
  return files;
}

export const rehearsalStepProvider: pulumi.dynamic.ResourceProvider = {
  async check(_olds: StepInputs, news: StepInputs) {
    const failures: pulumi.dynamic.CheckFailure[] = [];
    if (!isUnknown(news.name) && !isUnknown(news.index)) {
      try {
        stepSnapshotName(news.index, news.name);
      } catch (e) {
        failures.push({ property: "name", reason: `steps[${news.index}].name: ${errorMessage(e)}` });
      }
    }
    if (news.kind === "sql" && !isUnknown(news.sql) && (typeof news.sql !== "string" || !news.sql.trim())) {
      failures.push({ property: "sql", reason: `steps.${news.name}.sql: must be non-empty SQL` });
    }
    if (news.kind === "command" && !isUnknown(news.command)) {
      if (!isArgv(news.command)) {
        failures.push({ property: "command", reason: `steps.${news.name}.command: must be a non-empty argv array of single-line strings` });
      }
    }
    if (news.verify && !isUnknown(news.verify)) {
      try {
        validateVerifySpec(news.verify);
      } catch (e) {
        failures.push({ property: "verify", reason: errorMessage(e) });
      }
    }
    return { inputs: news, failures };
  },

  async diff(_id: string, olds: StepOutputs, news: StepInputs) {
    // A step is an execution: any change to what it does, or to anything before it, re-runs it.
    // history (for the report), cutover (for the prediction), label and reportDir are metadata:
    // they change in place. A re-run of an earlier step reaches this one through `prev`.
    const strip = (x: StepInputs) => {
      const { connection, label: _l, history: _h, cutover: _c, reportDir: _r, ...rest } = x;
      return JSON.stringify({ ...rest, host: hostIdentity(connection) });
    };
    const meta = (x: StepInputs) => JSON.stringify([x.label, x.history, x.cutover, x.reportDir]);
    const pick = (x: StepInputs): StepInputs => ({
      connection: x.connection, label: x.label, rehearsal: x.rehearsal, index: x.index, name: x.name, kind: x.kind, cutover: x.cutover,
      clone: x.clone, source: x.source, pg: x.pg, sql: x.sql, command: x.command, database: x.database, timeoutMs: x.timeoutMs,
      verify: x.verify, prev: x.prev, history: x.history, baseline: x.baseline, updateExtensionsSql: x.updateExtensionsSql, reportDir: x.reportDir,
    });
    const replace = strip(pick(olds)) !== strip(pick(news));
    const creds = JSON.stringify(olds.connection ?? null) !== JSON.stringify(news.connection ?? null);
    const metaChanged = meta(pick(olds)) !== meta(pick(news));
    return { changes: replace || creds || metaChanged, replaces: replace ? ["step"] : [], deleteBeforeReplace: true };
  },

  async create(i: StepInputs) {
    return await withHost(i.connection, async (host) => {
      const z = new ZfsDriver(host);
      const pg = new PostgresDriver(host, { osUser: i.pg.osUser });
      const label = i.label;
      const log = (m: string) => progress(label, m);
      const c: Ctx = { host, z, pg, i, log, detail: [] };
      const snapName = `${i.clone.dataset}@${stepSnapshotName(i.index, i.name)}`;
      const marker = `${i.clone.mountpoint}/${MARKER}`;
      const startedAt = new Date();
      let prevSnapshot = i.prev?.snapshot;
      try {
        // Where this step starts from: the previous step's snapshot (or, for the first step, one taken now).
        if (!prevSnapshot) {
          prevSnapshot = `${i.clone.dataset}@s00-cloned`;
          if (!(await z.exists(prevSnapshot))) await z.snapshot(prevSnapshot, { [OWNER_PROPERTY]: i.clone.owner });
        }
        // The clone must be exactly at the previous step's snapshot. `understudy:head` on the clone
        // names the last step snapshot reached; a marker file means a step was cut off mid-way.
        const interrupted = (await host.run(["test", "-e", marker], { okExitCodes: [0, 1] })).exitCode === 0;
        const leftover = await z.exists(snapName);
        const head = (await z.getProperty(i.clone.dataset, HEAD_PROPERTY)) ?? "-";
        const atPrev = head === prevSnapshot || (head === "-" && !i.prev);
        if (interrupted || leftover || !atPrev) {
          log(
            `${interrupted ? "an earlier attempt of this step did not finish" : `the clone is at ${head === "-" ? "an unknown state" : head}`}: ` +
              `rolling ${i.clone.dataset} back to ${prevSnapshot}`,
          );
          await stopAll(c);
          await z.rollback(prevSnapshot, i.clone.owner);
          if (i.prev?.serverAfter === "new") await startNew(c);
        }
        await host.writeFile(marker, `${label} started ${startedAt.toISOString()}\n`, "0644");
        log(`step ${i.index} (${i.kind}) started`);
        const extra = await runStep(c);
        const after = serverAfter(i.kind, i.prev?.serverAfter ?? "none");
        if (after === "new") await pg.adminQuery(newServer(i), "CHECKPOINT");
        await host.run(["rm", "-f", marker]);
        await z.snapshot(snapName, { [OWNER_PROPERTY]: i.clone.owner });
        await z.set(i.clone.dataset, { [HEAD_PROPERTY]: snapName });
        const finishedAt = new Date();
        const record: StepRecord = {
          index: i.index,
          name: i.name,
          kind: i.kind,
          status: "ok",
          startedAt: startedAt.toISOString(),
          finishedAt: finishedAt.toISOString(),
          durationMs: finishedAt.getTime() - startedAt.getTime(),
          snapshot: snapName,
          cutover: i.cutover,
          detail: c.detail.join("; "),
        };
        log(`step ${i.index} done in ${record.durationMs} ms; snapshot ${snapName}`);
        const outs: StepOutputs = { ...i, ...extra, record, snapshot: snapName, serverAfter: after, finishedAt: record.finishedAt };
        if (i.kind === "verify") {
          const report = buildReport(i, [...i.history, record], extra.checks ?? [], "passed");
          outs.report = report;
          outs.reportFiles = writeReport(i.reportDir, report);
          log(`report: ${outs.reportFiles.markdown}`);
        }
        return { id: snapName, outs };
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
        const report = buildReport(i, [...i.history, record], (e as { checks?: CheckRecord[] }).checks ?? [], "failed", {
          step: i.name,
          at: record.startedAt,
          reason: reason.split("\n")[0],
          lastGoodStep: lastGood?.name ?? "clone",
          lastGoodSnapshot: prevSnapshot,
          lastGoodAt: i.prev?.finishedAt ?? lastGood?.finishedAt,
        });
        let files: { json: string; markdown: string } | undefined;
        try {
          files = writeReport(i.reportDir, report);
        } catch {
          /* the error below still says everything */
        }
        throw new Error(
          `rehearsal step ${i.index} "${i.name}" failed on ${hostIdentity(i.connection)} after ${record.durationMs} ms:\n${reason}\n` +
            `Last good state: snapshot ${prevSnapshot ?? "(none)"}${i.prev ? ` after step "${i.prev.name}" (${i.prev.finishedAt})` : ""}. ` +
            `Left behind: clone ${i.clone.dataset} in the failed state (the source was not touched). ` +
            `Fix the cause and run \`pulumi up\` again to resume from that snapshot, or \`pulumi destroy\` to discard the clone.` +
            (files ? `\nReport: ${files.markdown}` : ""),
        );
      }
    });
  },

  async read(id: string, props: StepOutputs) {
    return await withHost(props.connection, async (host) => {
      const exists = await new ZfsDriver(host).exists(id);
      if (!exists) return { id: undefined as unknown as string, props: {} };
      return { id, props };
    });
  },

  async update(_id: string, olds: StepOutputs, news: StepInputs) {
    // Credentials and metadata change in place; the step does not run again.
    const record: StepRecord = { ...olds.record, cutover: news.cutover };
    const outs: StepOutputs = { ...olds, connection: news.connection, label: news.label, history: news.history, cutover: news.cutover, reportDir: news.reportDir, record };
    if (olds.kind === "verify" && olds.report) {
      outs.report = buildReport(news, [...news.history, record], olds.checks ?? [], "passed");
      outs.reportFiles = writeReport(news.reportDir, outs.report);
    }
    return { outs };
  },

  async delete(id: string, props: StepOutputs) {
    await withHost(props.connection, async (host) => {
      const z = new ZfsDriver(host);
      if (props.kind === "start") {
        const pg = new PostgresDriver(host, { osUser: props.pg.osUser });
        const r = await pg.stopIfPresent(props.pg.newDataDir, newInstall(props), { mode: "fast" });
        if (r?.wasRunning) progress(props.label, `stopped PostgreSQL ${props.pg.to} on the clone`);
      }
      if (props.kind === "recover") {
        // The first step goes last, right before the clone: stop whatever still runs on the clone
        // (e.g. a server a killed or timed-out pg_upgrade left behind), or the clone is "busy".
        const pg = new PostgresDriver(host, { osUser: props.pg.osUser });
        try {
          await stopAll({ host, z, pg, i: props, log: (m) => progress(props.label, m), detail: [] });
        } catch (e) {
          progress(props.label, `warning: could not stop the servers on the clone: ${errorMessage(e)}`);
        }
      }
      const r = await z.destroy(id, props.clone.owner);
      progress(props.label, r === "destroyed" ? `destroyed ${id}` : `${id} was already gone`);
      if (props.kind === "recover" && !props.prev) await z.destroy(`${props.clone.dataset}@s00-cloned`, props.clone.owner);
    });
  },
};

export type RehearsalStepArgs = { [K in keyof StepInputs]: pulumi.Input<StepInputs[K]> };

/** One step of an {@link UpgradeRehearsal}; it snapshots the clone when it succeeds. */
export class RehearsalStep extends UnderstudyResource {
  declare readonly record: pulumi.Output<StepRecord>;
  declare readonly snapshot: pulumi.Output<string>;
  declare readonly serverAfter: pulumi.Output<ServerState>;
  declare readonly finishedAt: pulumi.Output<string>;
  declare readonly baselineOut: pulumi.Output<Snapshot | undefined>;
  declare readonly updateExtensionsSqlOut: pulumi.Output<string | undefined>;
  declare readonly checks: pulumi.Output<CheckRecord[] | undefined>;
  declare readonly report: pulumi.Output<RehearsalReport | undefined>;
  declare readonly reportFiles: pulumi.Output<{ json: string; markdown: string } | undefined>;

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
