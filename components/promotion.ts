import * as pulumi from "@pulumi/pulumi";
import type { PgBouncerUser, PoolMode, AuthType } from "../providers/endpoint/pgbouncer-config";
import { PgBouncerEndpointResource } from "../providers/endpoint/resource";
import { CutOver } from "../providers/promotion/cutover";
import { UpgradeRehearsal } from "./upgrade-rehearsal";
import { ownerId, sanitize } from "../providers/common";
import { resolvePromotionPlan } from "../providers/plan/promotion";
import { UNKNOWN_ID } from "../providers/plan/rehearsal";
import { checked } from "./errors";
import type { CutoverRecord, RehearsalReport } from "../providers/rehearsal/report";
import { writeReportFiles } from "../providers/rehearsal/report-files";

export interface PromotionArgs {
  /** The rehearsal whose plan is replayed. Promotion only proceeds when it passed. */
  rehearsal: UpgradeRehearsal;
  /** `true` promotes (a reviewed change: `pulumi preview` shows `promote: false => true`); `false` again rolls back. */
  promote: pulumi.Input<boolean>;
  /** What clients connect to: a PgBouncer instance on the database host. */
  endpoint: {
    name: string;
    listenPort: number;
    listenAddr?: string;
    /** The database clients use (also the PgBouncer entry name). */
    database: string;
    /** `transaction` (default): PAUSE then waits only for in-flight transactions. */
    poolMode?: PoolMode;
    authType?: AuthType;
    users?: pulumi.Input<PgBouncerUser[]>;
    /** Give up holding clients if in-flight transactions do not finish in time (default 10 s): nothing changes, clients resume on live. */
    pauseTimeoutMs?: number;
    /** Keep PgBouncer running when this stack is destroyed (default true: clients depend on it). */
    retainOnDelete?: boolean;
  };
  /** The new live: a clone of the final snapshot, upgraded. */
  newLive?: { dataset?: pulumi.Input<string>; port?: number; socketDir?: string; listen?: string };
  /** How live is started and stopped, as argv (default: pg_ctl, with the options live was started with). */
  liveStartCommand?: string[];
  liveStopCommand?: string[];
}

/**
 * Cut-over without lost writes: hold clients (PgBouncer PAUSE), stop live cleanly, take
 * the final snapshot, replay the rehearsed cut-over steps on a clone of it, verify, point
 * the endpoint at the upgraded clone, resume. If anything fails, live is restarted and
 * clients resume on it. The old live is kept stopped and intact for roll-back (`promote:
 * false`). On `pulumi destroy` of this stack a promoted new live keeps serving: the
 * promotion is handed over, nothing is stopped or destroyed.
 *
 * @example
 * ```ts
 * const promotion = new Promotion("go-live", {
 *   rehearsal,
 *   promote: config.getBoolean("promote") ?? false,
 *   endpoint: { name: "app", listenPort: 6432, database: "app" },
 * });
 * export const servedBy = promotion.target;
 * ```
 */
export class Promotion extends pulumi.ComponentResource {
  /** `serving-old`, `promoted` or `rolled-back`. */
  readonly state: pulumi.Output<string>;
  /** Where the endpoint points now. */
  readonly target: pulumi.Output<{ host: string; port: number; dbname: string }>;
  /** How long clients were held during the last switch, and the phases of it. */
  readonly pauseWindowMs: pulumi.Output<number | undefined>;
  readonly phases: pulumi.Output<Array<{ phase: string; ms: number }> | undefined>;
  readonly finalSnapshot: pulumi.Output<string | undefined>;
  /** `host:port` of PgBouncer. */
  readonly endpointAddress: pulumi.Output<string>;
  readonly events: pulumi.Output<Array<{ at: string; what: string }>>;
  /**
   * The rehearsal's report with the cut-over as it happened (phases, clients held); rewritten
   * to the rehearsal's report files (JSON, Markdown, the timeline page) after each switch.
   */
  readonly report: pulumi.Output<RehearsalReport>;

  constructor(name: string, args: PromotionArgs, opts?: pulumi.ComponentResourceOptions) {
    // The cut-over stops, snapshots and restarts live through the storage's host and swaps
    // a PgBouncer on that host: on ZFS that is live's own host. On EBS live runs on another
    // instance than the clones, which the cut-over does not reach yet: refused here rather
    // than discovered after clients are held.
    if (args.rehearsal.storage.kind !== "zfs") {
      throw new pulumi.InputPropertyError({
        propertyPath: "rehearsal",
        reason:
          `${name}: a Promotion runs on ZFS storage only for now; this rehearsal's storage is ${args.rehearsal.storage.kind}. ` +
          "On EBS, promote by hand with route53Endpoint and Route53Switch (README: On AWS). Nothing was declared.",
      });
    }
    super("understudy:index:Promotion", name, {}, opts);
    const r = args.rehearsal;
    const storage = r.storage;
    const rp = r.planNow;
    // The promotion's own arguments, resolved and checked with every rule they will meet
    // (PostgreSQL, PgBouncer, storage) before anything is declared.
    const known = (v: unknown): v is string => typeof v === "string";
    const plan = checked(name, () =>
      resolvePromotionPlan(
        name,
        {
          endpoint: args.endpoint,
          newLive: { ...args.newLive, dataset: known(args.newLive?.dataset) ? args.newLive.dataset : undefined },
          liveStartCommand: args.liveStartCommand,
          liveStopCommand: args.liveStopCommand,
        },
        rp,
        {
          sibling: (of, n) => (of === UNKNOWN_ID ? of : storage.siblingVolume(of, n)),
          volumeId: (id, field) => (id === UNKNOWN_ID ? (id as string) : storage.validateVolumeId(id as string, field)),
          sanitize,
        },
      ),
    );
    const ep = plan.endpoint;
    // PgBouncer's trust still requires the user in its userlist: default to the OS user.
    const defaultUsers = ep.authType === "trust" ? [{ name: rp.source.osUser }] : undefined;
    const config = pulumi.output(args.endpoint.users ?? defaultUsers).apply((users) => ({
      name: ep.name,
      listenPort: ep.listenPort,
      listenAddr: ep.listenAddr,
      poolMode: ep.poolMode,
      authType: ep.authType,
      ...(users ? { users } : {}),
      databases: { [ep.database]: { host: rp.source.socketDir, port: rp.source.port, dbname: ep.database } },
    }));
    const endpoint = new PgBouncerEndpointResource(`${name}-endpoint`, { connection: storage.connection, config }, { parent: this, retainOnDelete: ep.retainOnDelete });
    const newLiveDataset =
      args.newLive?.dataset ?? r.plan.apply((p) => storage.siblingVolume(p.clone.dataset, `${sanitize(name)}-live-pg${rp.to}`));
    const cut = new CutOver(
      `${name}-cutover`,
      {
        connection: storage.connection,
        storage: storage.spec,
        label: name,
        owner: ownerId("Promotion", name),
        stack: sanitize(pulumi.getStack()),
        promote: args.promote,
        endpoint: config,
        database: ep.database,
        pauseTimeoutMs: ep.pauseTimeoutMs,
        live: pulumi.all([r.plan, r.sourceVolumes, r.layout]).apply(([p, volumes, layout]) => ({
          dataset: p.source.dataset,
          pgdata: p.source.pgdata,
          version: p.source.version,
          binDir: p.source.binDir,
          osUser: p.source.osUser,
          port: p.source.port,
          socketDir: p.source.socketDir,
          ...(plan.live.startCommand ? { startCommand: plan.live.startCommand } : {}),
          ...(plan.live.stopCommand ? { stopCommand: plan.live.stopCommand } : {}),
          volumes,
          ...(layout ? { layout } : {}),
        })),
        newLive: pulumi.output(newLiveDataset).apply((dataset) => ({ ...plan.newLive, dataset })),
        to: rp.to,
        toBinDir: rp.toBinDir,
        mode: rp.mode,
        steps: rp.steps,
        assertions: rp.checks.assertions,
        rehearsal: r.report.apply((x) => ({ name: x.rehearsal, status: x.status, predictedCutoverMs: x.predictedCutover.totalMs })),
      },
      { parent: this, dependsOn: [endpoint] },
    );
    this.state = cut.state;
    this.target = cut.target;
    this.pauseWindowMs = cut.pauseWindowMs;
    this.phases = cut.phases;
    this.finalSnapshot = cut.finalSnapshot;
    this.events = cut.events;
    this.endpointAddress = endpoint.address;
    this.report = pulumi
      .all([r.report, cut.state, cut.phases, cut.pauseWindowMs, cut.promotedAt, cut.rolledBackAt])
      .apply(([rep, state, phases, pause, promotedAt, rolledBackAt]) => {
        if (!phases || state === "serving-old" || !rep) return rep;
        const cutover: CutoverRecord = {
          method: "replay",
          at: (state === "rolled-back" ? rolledBackAt : promotedAt) ?? "",
          status: state === "promoted" ? "promoted" : "rolled-back",
          pauseWindowMs: pause ?? 0,
          phases: phases.map((p) => ({ phase: p.phase, ms: p.ms, held: p.held ?? !/after resume/.test(p.phase) })),
        };
        const withCutover = { ...rep, cutover };
        // The files next to the rehearsal's (not while previewing: nothing has happened then).
        if (!pulumi.runtime.isDryRun()) writeReportFiles(rp.reportDir, withCutover);
        return withCutover;
      });
    this.registerOutputs({ state: this.state, target: this.target, pauseWindowMs: this.pauseWindowMs, endpointAddress: this.endpointAddress });
  }
}
