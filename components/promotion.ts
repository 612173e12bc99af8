import * as pulumi from "@pulumi/pulumi";
import type { PgBouncerUser, PoolMode, AuthType } from "../providers/endpoint/pgbouncer-config";
import { PgBouncerEndpointResource } from "../providers/endpoint/resource";
import { CutOver } from "../providers/promotion/cutover";
import { UpgradeRehearsal } from "./upgrade-rehearsal";
import { ownerId, sanitize } from "../providers/common";

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

  constructor(name: string, args: PromotionArgs, opts?: pulumi.ComponentResourceOptions) {
    super("understudy:index:Promotion", name, {}, opts);
    const plan = args.rehearsal.plan;
    const src = plan.args.source;
    const ep = args.endpoint;
    const liveSocket = src.socketDir ?? "/var/run/postgresql";
    const livePort = src.port ?? 5432;
    const newPort = args.newLive?.port ?? plan.args.postgres.port + 10;
    // PgBouncer's trust still requires the user in its userlist: default to the OS user.
    const defaultUsers = (ep.authType ?? "scram-sha-256") === "trust" ? [{ name: src.osUser ?? "postgres" }] : undefined;
    const config = pulumi.output(ep.users ?? defaultUsers).apply((users) => ({
      name: ep.name,
      listenPort: ep.listenPort,
      listenAddr: ep.listenAddr ?? "127.0.0.1",
      poolMode: ep.poolMode ?? "transaction",
      authType: ep.authType ?? "scram-sha-256",
      ...(users ? { users } : {}),
      databases: { [ep.database]: { host: liveSocket, port: livePort, dbname: ep.database } },
    }));
    const endpoint = new PgBouncerEndpointResource(
      `${name}-endpoint`,
      { connection: plan.args.connection, config },
      { parent: this, retainOnDelete: ep.retainOnDelete ?? true },
    );
    const newLiveDataset =
      args.newLive?.dataset ??
      pulumi.output(plan.args.clone.dataset).apply((d) => `${d.split("/").slice(0, -1).join("/")}/${sanitize(name)}-live-pg${plan.args.to}`);
    const cut = new CutOver(
      `${name}-cutover`,
      {
        connection: plan.args.connection,
        label: name,
        owner: ownerId("Promotion", name),
        stack: sanitize(pulumi.getStack()),
        promote: args.promote,
        endpoint: config,
        database: ep.database,
        pauseTimeoutMs: ep.pauseTimeoutMs ?? 10_000,
        live: pulumi.output(src.dataset).apply((dataset) => ({
          dataset,
          pgdata: src.pgdata ?? "main",
          version: src.version,
          binDir: src.binDir,
          osUser: src.osUser ?? "postgres",
          port: livePort,
          socketDir: liveSocket,
          startCommand: args.liveStartCommand,
          stopCommand: args.liveStopCommand,
        })),
        newLive: pulumi.output(newLiveDataset).apply((dataset) => ({
          dataset,
          port: newPort,
          socketDir: args.newLive?.socketDir ?? liveSocket,
          listen: args.newLive?.listen ?? plan.args.postgres.listen ?? "",
        })),
        to: plan.args.to,
        toBinDir: plan.args.toBinDir,
        mode: plan.args.mode ?? "link",
        steps: plan.steps,
        assertions: plan.args.checks?.assertions ?? [],
        rehearsal: args.rehearsal.report.apply((r) => ({ name: r.rehearsal, status: r.status, predictedCutoverMs: r.predictedCutover.totalMs })),
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
    this.registerOutputs({ state: this.state, target: this.target, pauseWindowMs: this.pauseWindowMs, endpointAddress: this.endpointAddress });
  }
}
