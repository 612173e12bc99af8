import * as pulumi from "@pulumi/pulumi";
import type { PgBouncerUser, PoolMode, AuthType } from "../providers/endpoint/pgbouncer-config";
import { PgBouncerEndpointResource } from "../providers/endpoint/resource";
import { CutOver } from "../providers/promotion/cutover";
import { UpgradeRehearsal } from "./upgrade-rehearsal";
import { ownerId, sanitize } from "../providers/common";
import { queryWaitTimeoutFor, resolveDnsPromotionPlan, resolvePromotionPlan } from "../providers/plan/promotion";
import { validateRecordValue, validateRoute53Spec, type Route53EndpointSpec } from "../providers/endpoint/route53";
import type { ConnectionArgs } from "../providers/host/connection";
import type { StorageBackend } from "./storage/types";
import { UNKNOWN_ID } from "../providers/plan/rehearsal";
import { checked } from "./errors";
import { discoverDatabases } from "./discover";
import type { LogicalSettings } from "../providers/plan/logical";
import type { CutoverRecord, RehearsalReport } from "../providers/rehearsal/report";
import { writeReportFiles } from "../providers/rehearsal/report-files";
import { PostgresDriver } from "../providers/postgres/driver";
import { readReplication, replicationRefusal, unacknowledged, type ReplicationItem } from "../providers/runner/replication";
import { errorMessage } from "../providers/errors";

/**
 * A Route53 record as the promotion's endpoint (declare the record itself with
 * `route53Endpoint`). The swap is an UPSERT of its value, waited for until INSYNC. DNS cannot
 * hold clients: they see live stop, and reach the new live after the TTL; the pause is the
 * whole cut-over (the rehearsal predicts it).
 */
export interface Route53PromotionEndpoint {
  route53: Omit<Route53EndpointSpec, "kind">;
  /** The record's value while live serves (live's instance's name or address). */
  liveAddress: string;
  /** The record's value for the new live (the address of the instance its volumes are attached to). */
  newLiveAddress: string;
  /** The database clients use (its sequences are compared after the replay). */
  database: string;
  /** Every database whose sequences are compared (default: every database of live's cluster). */
  databases?: string[];
}

export interface PromotionArgs {
  /** The rehearsal whose plan is replayed. Promotion only proceeds when it passed. */
  rehearsal: UpgradeRehearsal;
  /** `true` promotes (a reviewed change: `pulumi preview` shows `promote: false => true`); `false` again rolls back. */
  promote: pulumi.Input<boolean>;
  /** What clients connect to: a PgBouncer instance (on the database host unless `connection` names one), or a Route53 record. */
  endpoint: PgBouncerPromotionEndpoint | Route53PromotionEndpoint;
  /** The new live: a clone of the final snapshot, upgraded. `storage`: where its volumes are made (default the rehearsal's: EBS, the rehearsal instance). */
  newLive?: {
    dataset?: pulumi.Input<string>;
    port?: number;
    socketDir?: string;
    listen?: string;
    storage?: StorageBackend;
    /**
     * Where the new live's server log goes (`pg_ctl -l`). Default: like live's own log (its
     * postmaster's stderr, read before live stops): a log on one of live's volumes goes to the
     * same place on the new live's volume, a log elsewhere (`/var/log/postgresql/...`) stays in
     * its directory, and live's major in the name becomes the new one
     * (`postgresql-13-main.log` -> `postgresql-15-main.log`). When live's log is not a file
     * (journald), the new live logs to `understudy-server.log` in its data directory. Must not
     * be on live's volumes.
     */
    logFile?: string;
    /**
     * A stable absolute path (e.g. `/var/lib/postgresql/15/main`) that the cut-over makes a
     * symlink to the serving generation's data directory (`…-live-pg15`, then `…-live-pg15-2`
     * after a roll-back and a new promotion), atomically, before it starts the new live. Point
     * your unit's or cluster's `data_directory` at it. Refused (in preview, and again before
     * live is stopped) when something other than a symlink is there, when its directory does
     * not exist, or when it is inside live's volumes or points into them. A roll-back leaves
     * it (the new live stopped); the next promotion re-points it. Required with
     * `startCommand`/`stopCommand`.
     */
    dataDirLink?: string;
    /**
     * argv that starts the new live as a production service, e.g.
     * `["pg_ctlcluster", "15", "main", "start"]` or `["systemctl", "start", "postgresql@15-main"]`:
     * used wherever the promotion, roll-back or recovery starts the new live (the replayed
     * `start` step too), after `dataDirLink` points at it. It must start the server on
     * `newLive.port` and `newLive.socketDir` (checked: `SELECT 1` there, and its postmaster
     * on this generation's data directory). Default: `pg_ctl` with those options.
     */
    startCommand?: string[];
    /**
     * argv that stops the new live (e.g. `["pg_ctlcluster", "15", "main", "stop"]`); the stop
     * is checked with `pg_controldata` (`shut down`). Used only while `dataDirLink` points at
     * the generation being stopped (otherwise `pg_ctl` stops it: the command would stop
     * another). Default: `pg_ctl stop -m fast`.
     */
    stopCommand?: string[];
  };
  /**
   * Live's replication slots, standbys and subscriptions that the promotion drops
   * (pg_upgrade carries none), acknowledged one by one by id: `slot:<name>`,
   * `standby:<application_name>`, `subscription:<database>.<name>`. The `replication`
   * output and `pulumi preview` list them. A promotion with one not listed here is refused.
   * @default []
   */
  acknowledgeReplicationLoss?: string[];
  /**
   * How long a promotion (or roll-back) may hold clients in all, in ms: default 300000, from
   * 30000 to 3600000. No held phase starts after it (what ran is undone, clients resume on
   * live); PgBouncer's `query_wait_timeout` is set a minute above it, so held clients are not
   * dropped first; a promotion whose rehearsal predicted a longer pause is refused in preview.
   */
  switchoverTimeoutMs?: number;
  /** How live is started and stopped, as argv (default: pg_ctl, with the options live was started with). */
  liveStartCommand?: string[];
  liveStopCommand?: string[];
  /**
   * How clients move to the upgraded cluster.
   * - `replay` (default): clients held, live stopped, final snapshot, the rehearsed cut-over
   *   steps (pg_upgrade) replayed on its clone, switch. The pause grows with pg_upgrade's time.
   * - `logical`: while live keeps serving, a clone is converted, upgraded and catches up by
   *   logical replication; clients are held only for the last transactions (under a second).
   *   Needs `wal_level = logical` and a replica identity on every table (checked in preview).
   *   Roll-back keeps the new live's writes (replicated back). With live on its own machine
   *   (EBS: `storage.liveConnection`) the two replicate over TCP: give `logical.liveHost` and
   *   `logical.newLiveHost`; the endpoint must be PgBouncer (a DNS record cannot hold clients).
   * @default "replay"
   */
  method?: "replay" | "logical";
  /** The logical method's thresholds and timeouts (see {@link LogicalSettings}). */
  logical?: LogicalSettings;
}

/** PgBouncer as the promotion's endpoint: clients are held (PAUSE) while live is stopped and the new live made. */
export interface PgBouncerPromotionEndpoint {
  name: string;
  listenPort: number;
  listenAddr?: string;
  /** The database clients use (also the PgBouncer entry name). */
  database: string;
  /**
   * Every database whose PgBouncer entry moves with the cluster (`database` among them): all
   * are held, switched and resumed together. Default: every database of live's cluster
   * (templates left out), read when the program runs.
   */
  databases?: string[];
  /** `transaction` (default): PAUSE then waits only for in-flight transactions. */
  poolMode?: PoolMode;
  /**
   * `scram-sha-256` (default) or `md5`: clients log in with the `users` passwords. `trust`
   * (no password) is refused unless `listenAddr` is a loopback address.
   */
  authType?: AuthType;
  /** Required unless `authType` is `trust`: the users clients log in as, with their passwords (pass them as a secret). */
  users?: pulumi.Input<PgBouncerUser[]>;
  /**
   * Where PgBouncer reaches live and the new live over TCP, e.g. `127.0.0.1` (default: their
   * unix socket directory). Use it when the server's `local` pg_hba lines are `peer` (Debian's
   * default), so that the users' passwords are checked on a `host` line instead. Live must
   * listen there; the new live listens there unless `newLive.listen` says otherwise.
   */
  serverHost?: string;
  /** Give up holding clients if in-flight transactions do not finish in time (default 10 s): nothing changes, clients resume on live. */
  pauseTimeoutMs?: number;
  /** Keep PgBouncer running when this stack is destroyed (default true: clients depend on it). */
  retainOnDelete?: boolean;
  /** PgBouncer's host when it is not the storage's (e.g. on AWS, an instance in front of live and the new live). */
  connection?: pulumi.Input<ConnectionArgs>;
  /** Where PgBouncer reaches the new live when it runs on another machine than live (default `serverHost`). */
  newLiveServerHost?: string;
}

/**
 * Cut-over without lost writes: hold clients (PgBouncer PAUSE), stop live cleanly, take
 * the final snapshot, replay the rehearsed cut-over steps on a clone of it, verify, point
 * the endpoint at the upgraded clone, resume. If anything fails, live is restarted and
 * clients resume on it. The old live is kept stopped and intact for roll-back (`promote:
 * false`). On `pulumi destroy` of this stack a promoted new live keeps serving: the
 * promotion is handed over, nothing is stopped or destroyed.
 *
 * The same on EBS storage: live is stopped on live's instance (`storage.liveConnection`), the
 * new live's volumes are made from the final snapshot set on the rehearsal instance (or
 * `newLive.storage`). The endpoint may be a Route53 record instead of PgBouncer: DNS holds no
 * clients, they see live stop and reach the new live after the TTL. With `method: "logical"`
 * (PgBouncer only) live keeps running on its instance: its side of the replication runs there,
 * the new side on the new live's instance, connected over TCP (`logical.liveHost` / `newLiveHost`).
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
  /** `host:port` of PgBouncer, or `<record name>:<port>` with a Route53 endpoint. */
  readonly endpointAddress: pulumi.Output<string>;
  /** The password of PgBouncer's admin console (user `understudy_admin`), generated once; a secret. Undefined with a Route53 endpoint. */
  readonly endpointAdminPassword: pulumi.Output<string | undefined>;
  readonly events: pulumi.Output<Array<{ at: string; what: string }>>;
  /**
   * The rehearsal's report with the cut-over as it happened (phases, clients held); rewritten
   * to the rehearsal's report files (JSON, Markdown, the timeline page) after each switch.
   */
  readonly report: pulumi.Output<RehearsalReport>;
  /** Live's replication that a promotion drops, read while the program runs (empty when live cannot be read, e.g. after the promotion stopped it). */
  readonly replication: pulumi.Output<ReplicationItem[]>;

  constructor(name: string, args: PromotionArgs, opts?: pulumi.ComponentResourceOptions) {
    // Where live is stopped: the storage says (its own host on ZFS, live's instance on EBS);
    // refused before anything is declared when the storage lacks what it needs.
    const liveConnection = checked(name, () => args.rehearsal.storage.promotionLiveConnection());
    super("understudy:index:Promotion", name, {}, opts);
    const r = args.rehearsal;
    const storage = r.storage;
    // Where the new live's volumes are made and it runs: the rehearsal's storage unless named.
    const target = args.newLive?.storage ?? storage;
    const rp = r.planNow;
    // The promotion's own arguments, resolved and checked with every rule they will meet
    // (PostgreSQL, PgBouncer or DNS, storage) before anything is declared.
    const known = (v: unknown): v is string => typeof v === "string";
    const syntax = {
      sibling: (of: string, n: string) => (of === UNKNOWN_ID ? of : target.siblingVolume(of, n)),
      volumeId: (id: unknown, field: string) => (id === UNKNOWN_ID ? (id as string) : target.validateVolumeId(id as string, field)),
      sanitize,
      // Live on its own machine (its own connection): the logical method connects the two over TCP.
      liveElsewhere: liveConnection !== undefined,
    };
    const newLiveArgs = { ...args.newLive, storage: undefined, dataset: known(args.newLive?.dataset) ? args.newLive.dataset : undefined };
    const dns = "route53" in (args.endpoint ?? {}) ? (args.endpoint as Route53PromotionEndpoint) : undefined;
    const dnsSpec: Route53EndpointSpec | undefined = dns
      ? checked(name, () => {
          const e: Route53EndpointSpec = { kind: "route53", ...dns.route53 };
          const v = validateRoute53Spec(e, "endpoint.route53");
          validateRecordValue(v.type, dns.liveAddress, "endpoint.liveAddress");
          validateRecordValue(v.type, dns.newLiveAddress, "endpoint.newLiveAddress");
          return e;
        })
      : undefined;
    const bouncerArgs = dns ? undefined : (args.endpoint as PgBouncerPromotionEndpoint);
    const plan = dns
      ? checked(name, () =>
          resolveDnsPromotionPlan(
            name,
            { ...dns, newLive: newLiveArgs, liveStartCommand: args.liveStartCommand, liveStopCommand: args.liveStopCommand, switchoverTimeoutMs: args.switchoverTimeoutMs, method: args.method },
            rp,
            syntax,
          ),
        )
      : checked(name, () =>
      resolvePromotionPlan(
        name,
        {
          endpoint: { ...bouncerArgs!, users: bouncerArgs?.users, ...(bouncerArgs?.newLiveServerHost !== undefined ? { newServerHost: bouncerArgs.newLiveServerHost } : {}) },
          newLive: newLiveArgs,
          liveStartCommand: args.liveStartCommand,
          liveStopCommand: args.liveStopCommand,
          switchoverTimeoutMs: args.switchoverTimeoutMs,
          method: args.method,
          logical: args.logical,
        },
        rp,
        syntax,
      ),
    );
    const ep = plan.endpoint;
    // PgBouncer's trust still requires the user in its userlist: default to the OS user.
    const defaultUsers = ep.authType === "trust" ? [{ name: rp.source.osUser }] : undefined;
    // Every database of the cluster moves (or the user's list): each gets its PgBouncer entry.
    const newLiveServer = { version: rp.to, binDir: rp.toBinDir, socketDir: plan.newLive.socketDir, port: plan.newLive.port, osUser: rp.source.osUser };
    const databases = ep.databases ? pulumi.output(ep.databases) : discoverDatabases(name, storage, [rp.source, newLiveServer], ep.database);
    const config = pulumi.all([pulumi.output(bouncerArgs?.users ?? defaultUsers), databases]).apply(([users, dbs]) => ({
      name: ep.name,
      listenPort: ep.listenPort,
      listenAddr: ep.listenAddr,
      poolMode: ep.poolMode,
      authType: ep.authType,
      queryWaitTimeoutMs: queryWaitTimeoutFor(plan.switchoverTimeoutMs!) * 1000,
      ...(users ? { users } : {}),
      databases: Object.fromEntries(dbs.map((d) => [d, { host: ep.serverHost ?? rp.source.socketDir, port: rp.source.port, dbname: d }])),
    }));
    // PgBouncer on the host the user names, by default live's (the storage's host on ZFS); a
    // DNS record is declared by the user (route53Endpoint) and only swapped by the cut-over.
    const endpointConnection = bouncerArgs?.connection ?? liveConnection;
    const endpoint = dnsSpec
      ? undefined
      : new PgBouncerEndpointResource(`${name}-endpoint`, { connection: endpointConnection ?? storage.connection, config }, { parent: this, retainOnDelete: ep.retainOnDelete });
    // Replication that pg_upgrade does not carry: read on live while the program runs (also
    // in preview), listed, and a promotion refused until each item is acknowledged by id.
    const acknowledged = args.acknowledgeReplicationLoss ?? [];
    if (!Array.isArray(acknowledged) || acknowledged.some((a) => typeof a !== "string")) {
      throw new pulumi.InputPropertyError({ propertyPath: "acknowledgeReplicationLoss", reason: `${name}: must be a list of ids such as "slot:<name>"` });
    }
    const replication = storage.withStorage(async (_s, host): Promise<ReplicationItem[]> => {
      try {
        return await readReplication(new PostgresDriver(host, { osUser: rp.source.osUser }), rp.source);
      } catch (e) {
        // Live is not running (after a promotion stopped it) or cannot be reached: nothing to list.
        // A promotion then fails on its own, before clients are held, when it cannot reach live.
        await pulumi.log.info(`${name}: live's replication could not be read (${errorMessage(e).split("\n")[0]})`, this);
        return [];
      }
    });
    const promote = pulumi.all([args.promote, replication]).apply(async ([p, items]) => {
      const missing = unacknowledged(items, acknowledged);
      if (missing.length && p) throw new pulumi.InputPropertyError({ propertyPath: "acknowledgeReplicationLoss", reason: `${name}: ${replicationRefusal(missing)}` });
      if (missing.length) await pulumi.log.warn(`${name}: a promotion would drop: ${missing.map((i) => `${i.id} (${i.detail})`).join("; ")}`, this);
      return p;
    });
    const newLiveDataset =
      args.newLive?.dataset ?? r.plan.apply((p) => target.siblingVolume(p.clone.dataset, `${sanitize(name)}-live-pg${rp.to}`));
    const cut = new CutOver(
      `${name}-cutover`,
      {
        connection: target.connection,
        storage: target.spec,
        ...(liveConnection !== undefined ? { liveConnection } : {}),
        ...(endpointConnection !== undefined && !dnsSpec ? { endpointConnection } : {}),
        label: name,
        owner: ownerId("Promotion", name),
        stack: sanitize(pulumi.getStack()),
        promote,
        endpoint: dnsSpec ?? config,
        database: ep.database,
        databases,
        method: plan.method,
        ...(plan.logical ? { logical: plan.logical } : {}),
        pauseTimeoutMs: ep.pauseTimeoutMs,
        ...(ep.serverHost !== undefined ? { serverHost: ep.serverHost } : {}),
        ...(ep.newServerHost !== undefined ? { newServerHost: ep.newServerHost } : {}),
        switchoverTimeoutMs: plan.switchoverTimeoutMs,
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
        // The logical method is checked against the rehearsal's logical prediction when it rehearsed that method.
        rehearsal: r.report.apply((x) => ({ name: x.rehearsal, status: x.status, predictedCutoverMs: predictedPauseFor(plan.method, x) })),
      },
      { parent: this, dependsOn: endpoint ? [endpoint] : [] },
    );
    this.state = cut.state;
    this.target = cut.target;
    this.pauseWindowMs = cut.pauseWindowMs;
    this.phases = cut.phases;
    this.finalSnapshot = cut.finalSnapshot;
    this.events = cut.events;
    this.endpointAddress = endpoint ? endpoint.address : pulumi.output(`${dnsSpec!.name}:${plan.newLive.port}`);
    this.replication = replication;
    this.endpointAdminPassword = endpoint ? endpoint.adminPassword : pulumi.output(undefined);
    this.report = pulumi
      .all([r.report, cut.state, cut.phases, cut.pauseWindowMs, cut.promotedAt, cut.rolledBackAt])
      .apply(([rep, state, phases, pause, promotedAt, rolledBackAt]) => {
        if (!phases || state === "serving-old" || !rep) return rep;
        const cutover: CutoverRecord = {
          method: plan.method,
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

/** The pause the rehearsal predicts for a method: the logical prediction when it rehearsed `logical`, else the replay's. */
export function predictedPauseFor(method: string | undefined, r: Pick<RehearsalReport, "predictedCutover" | "logicalCutover">): number {
  if (method === "logical" && r.logicalCutover?.status === "ok" && r.logicalCutover.predicted) return r.logicalCutover.predicted.totalMs;
  return r.predictedCutover.totalMs;
}
