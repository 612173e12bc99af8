import * as pulumi from "@pulumi/pulumi";
import * as fs from "node:fs";
import * as path from "node:path";
import type { ConnectionArgs } from "../providers/host/connection";
import { RehearsalStep, StepKind, PgPlan, PlannedStep } from "../providers/rehearsal/step";
import { Preflight } from "../providers/rehearsal/preflight";
import { ownerId, sanitize } from "../providers/common";
import { renderMarkdown, RehearsalReport, StepRecord } from "../providers/rehearsal/report";
import { VerifySpec, validateVerifySpec } from "../providers/rehearsal/verify";
import { checkSourceArgs, connectionUri, DatabaseClone, PostgresSourceArgs } from "./database-clone";
import { isArgv } from "../providers/host/types";

/** A step of your own, run on the clone. Exactly one of `sql`, `sqlFile`, `command`. */
export interface UserStep {
  /** Letters, digits, `-` and `_`; becomes part of the step's snapshot name. */
  name: string;
  /** SQL run with psql (ON_ERROR_STOP) on the clone. */
  sql?: string;
  /** A file with SQL, read when the program runs. */
  sqlFile?: string;
  /** argv run on the host as the OS user, with PGHOST/PGPORT/PGDATABASE/PGUSER pointing at the clone (e.g. an application smoke test). */
  command?: string[];
  /** `before-upgrade` runs on the old version (fixes that pg_upgrade needs); default `after-upgrade`. */
  phase?: "before-upgrade" | "after-upgrade";
  /** Replayed while clients wait during a promotion (default: true before the upgrade, false after). */
  cutover?: boolean;
  /** Database to run in (default: `postgres.database`). */
  database?: string;
  timeoutMs?: number;
}

export interface ChecksArgs {
  /** Count rows of every table in every database on both sides (default `exact`). */
  rowCounts?: "exact" | "none";
  /** Tables whose content is checksummed on both sides, `schema.table` or `db.schema.table`. */
  checksumTables?: string[];
  /** SQL returning a single boolean that must be true on the upgraded clone. */
  assertions?: Array<{ name: string; sql: string; database?: string }>;
  /** Tables larger than this (bytes) are compared by size instead of counted (see {@link VerifySpec.rowCountLimitBytes}). */
  rowCountLimitBytes?: number;
  /** Checksum this percentage of rows, chosen by primary-key hash (see {@link VerifySpec.checksumSamplePercent}). */
  checksumSamplePercent?: number;
}

export interface UpgradeRehearsalArgs {
  /** Where it runs; omit for this machine, or an SSH connection shaped like `@pulumi/command`'s. */
  connection?: pulumi.Input<ConnectionArgs>;
  /** The live database. Only read (a `CHECKPOINT` before the snapshot). */
  source: PostgresSourceArgs;
  /** `"new"` (default), `"latest"` or the name of an existing snapshot of the source. */
  snapshot?: "new" | "latest" | string;
  snapshotName?: string;
  /** The clone the rehearsal runs on. */
  clone: { dataset: pulumi.Input<string>; mountpoint?: pulumi.Input<string> };
  /** Target major version, e.g. 15. */
  to: number;
  /** Bin directory of the target version (default Debian's). */
  toBinDir?: string;
  /** The upgraded server on the clone: port (required), socket directory, listen address, database for checks and steps. */
  postgres: { port: number; tempPort?: number; socketDir?: string; listen?: string; database?: string };
  /** pg_upgrade transfer mode (default `link`: seconds, whatever the size; the clone's old cluster is then unusable). */
  mode?: "link" | "clone" | "copy";
  steps?: UserStep[];
  checks?: ChecksArgs;
  /** Where the JSON and Markdown report are written on the machine running Pulumi (default `./understudy-reports`). */
  reportDir?: string;
}

const BUILTIN = ["recover", "check", "upgrade", "start", "post-upgrade", "analyze", "verify"];


/** Turn user steps into the ordered plan, validating everything (throws naming the step and field). */
export function planSteps(steps: UserStep[] = []): PlannedStep[] {
  const seen = new Set<string>();
  const user = steps.map((s, i): PlannedStep & { phase: string } => {
    const where = `steps[${i}]${s?.name ? ` (${s.name})` : ""}`;
    if (!s || typeof s.name !== "string" || !/^[A-Za-z0-9_-]{1,40}$/.test(s.name)) {
      throw new Error(`${where}.name: must be 1-40 letters, digits, - or _`);
    }
    if (BUILTIN.includes(s.name)) throw new Error(`${where}.name: "${s.name}" is a built-in step name`);
    if (seen.has(s.name)) throw new Error(`${where}.name: "${s.name}" is used twice`);
    seen.add(s.name);
    const given = [s.sql !== undefined, s.sqlFile !== undefined, s.command !== undefined].filter(Boolean).length;
    if (given !== 1) throw new Error(`${where}: give exactly one of sql, sqlFile, command`);
    let sql = s.sql;
    if (s.sqlFile !== undefined) {
      try {
        sql = fs.readFileSync(path.resolve(s.sqlFile), "utf8");
      } catch (e) {
        throw new Error(`${where}.sqlFile: cannot read ${s.sqlFile}: ${(e as Error).message}`);
      }
    }
    if (sql !== undefined && !sql.trim()) throw new Error(`${where}.sql: is empty`);
    if (s.command !== undefined && !isArgv(s.command)) {
      throw new Error(`${where}.command: must be a non-empty argv array of single-line strings`);
    }
    const phase = s.phase ?? "after-upgrade";
    if (phase !== "before-upgrade" && phase !== "after-upgrade") throw new Error(`${where}.phase: must be before-upgrade or after-upgrade`);
    return {
      name: s.name,
      kind: s.command ? "command" : "sql",
      cutover: s.cutover ?? phase === "before-upgrade",
      sql,
      command: s.command,
      database: s.database,
      timeoutMs: s.timeoutMs,
      phase,
    };
  });
  const strip = ({ phase: _p, ...x }: PlannedStep & { phase: string }): PlannedStep => x;
  return [
    { name: "recover", kind: "recover", cutover: false },
    ...user.filter((s) => s.phase === "before-upgrade").map(strip),
    // pg_upgrade runs the same checks first: the replay during a promotion skips this step.
    { name: "check", kind: "check", cutover: false },
    { name: "upgrade", kind: "upgrade", cutover: true },
    { name: "start", kind: "start", cutover: true },
    { name: "post-upgrade", kind: "post-upgrade", cutover: true },
    { name: "analyze", kind: "analyze", cutover: false },
    ...user.filter((s) => s.phase === "after-upgrade").map(strip),
    { name: "verify", kind: "verify", cutover: false },
  ];
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
  /** Where the report files were written. */
  readonly reportFiles: pulumi.Output<{ json: string; markdown: string }>;
  /** Every step's record, in order. */
  readonly steps: pulumi.Output<StepRecord[]>;
  /** The upgraded server on the clone. */
  readonly port: pulumi.Output<number>;
  readonly socketDir: pulumi.Output<string>;
  readonly connectionString: pulumi.Output<string>;
  /** What a Promotion replays: the plan and the PostgreSQL settings. */
  readonly plan: { steps: ReturnType<typeof planSteps>; args: UpgradeRehearsalArgs };

  constructor(name: string, args: UpgradeRehearsalArgs, opts?: pulumi.ComponentResourceOptions) {
    super("understudy:index:UpgradeRehearsal", name, {}, opts);
    const src = args.source;
    // Everything is checked before the first resource (the preflight) is declared.
    const pgdata = checkSourceArgs(name, src);
    if (!Number.isInteger(args.to) || args.to <= src.version) {
      throw new Error(`${name}: to: ${JSON.stringify(args.to)} must be a major version newer than source.version (${src.version})`);
    }
    const mode = args.mode ?? "link";
    if (!["link", "clone", "copy"].includes(mode)) throw new Error(`${name}: mode: must be link, clone or copy`);
    const verify: VerifySpec = validateVerifySpec({
      rowCounts: args.checks?.rowCounts ?? "exact",
      checksumTables: args.checks?.checksumTables ?? [],
      assertions: args.checks?.assertions ?? [],
      ...(args.checks?.rowCountLimitBytes !== undefined ? { rowCountLimitBytes: args.checks.rowCountLimitBytes } : {}),
      ...(args.checks?.checksumSamplePercent !== undefined ? { checksumSamplePercent: args.checks.checksumSamplePercent } : {}),
    });
    const plan = planSteps(args.steps);
    this.plan = { steps: plan, args };
    const port = args.postgres.port;
    const tempPort = args.postgres.tempPort ?? port + 1;
    const socketDir = args.postgres.socketDir ?? "/var/run/postgresql";
    const database = args.postgres.database ?? "postgres";
    const reportDir = path.resolve(args.reportDir ?? "understudy-reports");

    const osUser = src.osUser ?? "postgres";
    const snapMode = args.snapshot ?? "new";
    // Checked on the host before anything is snapshotted, cloned or started (everything below depends on it).
    const preflight = new Preflight(
      `${name}-preflight`,
      {
        connection: args.connection,
        label: `${name}/preflight`,
        from: { version: src.version, binDir: src.binDir },
        to: { version: args.to, binDir: args.toBinDir },
        osUser,
        ports: [
          { field: "postgres.port", port },
          { field: "postgres.tempPort", port: tempPort },
          { field: "postgres.tempPort+1 (pg_upgrade's old server)", port: tempPort + 1 },
          { field: "postgres.tempPort+2 (pg_upgrade's new server)", port: tempPort + 2 },
        ],
        socketDir,
        source: pulumi.output(src.dataset).apply((dataset) => ({ dataset, pgdata, snapshot: snapMode === "new" || snapMode === "latest" ? undefined : snapMode })),
        clone: pulumi.output(args.clone.dataset).apply((dataset) => ({ dataset, owner: ownerId("ZfsClone", `${name}-clone`) })),
      },
      { parent: this },
    );
    this.clone = new DatabaseClone(
      name,
      { connection: args.connection, source: src, snapshot: args.snapshot, snapshotName: args.snapshotName, clone: args.clone },
      { parent: this, dependsOn: [preflight] },
    );
    const pgPlan: pulumi.Output<PgPlan> = this.clone.mountpoint.apply((mnt) => ({
      from: src.version,
      to: args.to,
      fromBinDir: src.binDir,
      toBinDir: args.toBinDir,
      osUser,
      oldDataDir: `${mnt}/${pgdata}`,
      newDataDir: `${mnt}/${sanitize(pgdata)}.pg${args.to}`,
      port,
      tempPort,
      socketDir,
      listen: args.postgres.listen ?? "",
      mode,
      database,
    }));
    const cloneInfo = pulumi.all([this.clone.dataset, this.clone.mountpoint, this.clone.owner]).apply(([dataset, mountpoint, owner]) => ({ dataset, mountpoint, owner }));
    const sourceInfo = pulumi.all([pulumi.output(src.dataset), this.clone.snapshot]).apply(([dataset, snapshot]) => ({ dataset, snapshot }));

    const made: RehearsalStep[] = [];
    plan.forEach((p, idx) => {
      const index = idx + 1;
      const prevStep = made[made.length - 1];
      const byKind = (k: StepKind) => made[plan.findIndex((x) => x.kind === k)];
      const step = new RehearsalStep(
        `${name}-s${String(index).padStart(2, "0")}-${p.name}`,
        {
          connection: args.connection,
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
          verify: p.kind === "recover" || p.kind === "verify" ? verify : undefined,
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
          reportDir,
        },
        { parent: this, dependsOn: prevStep ? [prevStep] : [this.clone.cloneResource] },
      );
      made.push(step);
    });
    const last = made[made.length - 1];
    this.report = last.report.apply((r) => r!);
    this.reportMarkdown = this.report.apply(renderMarkdown);
    this.reportFiles = last.reportFiles.apply((f) => f!);
    this.steps = pulumi.all(made.map((s) => s.record));
    this.port = pulumi.output(port);
    this.socketDir = pulumi.output(socketDir);
    const listen = args.postgres.listen;
    this.connectionString = pulumi.output(connectionUri(osUser, database, port, socketDir, listen));
    this.registerOutputs({ report: this.report, reportFiles: this.reportFiles, connectionString: this.connectionString });
  }
}
