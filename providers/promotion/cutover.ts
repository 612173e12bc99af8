/**
 * The promotion itself as a Pulumi resource: a thin shell around the cut-over phases
 * (providers/runner/cutover.ts). `promote: false -> true` promotes, `true -> false` rolls
 * back, delete hands over (never stops or destroys anything).
 */
import * as pulumi from "@pulumi/pulumi";
import type { ConnectionArgs } from "../host/connection";
import { withHost } from "../host";
import type { Host } from "../host/types";
import { PostgresDriver } from "../postgres/driver";
import { LogicalReplication, PUBLISHABLE_TABLES_SQL, logicalNames, publicationTablesSql, requiredTargetSettings } from "../postgres/logical";
import { PgBouncerEndpoint } from "../endpoint/pgbouncer";
import type { DatabaseTarget, PgBouncerEndpointConfig } from "../endpoint/pgbouncer-config";
import { checkConnection, errorMessage, hostIdentity, isUnknown, progress } from "../common";
import { InputError, collectInputError } from "../errors";
import { UnderstudyResource } from "../shim";
import { declaredDiff, type DiffSpec } from "../diff";
import type { UnderstudyProvider } from "../dispatch";
import { openStorage, validateStorageSpec, type Storage, type StorageSpec } from "../storage";
import { debianBinDir } from "../plan/defaults";
import { validatePlannedSteps, type PlannedStep } from "../plan/steps";
import type { UpgradeMode } from "../plan/rehearsal";
import { assertPredictedWithin, checkPromotionPlan, queryWaitTimeoutFor, validateSwitchoverTimeout, type PromotionPlan } from "../plan/promotion";
import { checkConfig, validateNetworkHost } from "../endpoint/pgbouncer-config";
import { isRoute53Spec, route53SwitchOf, validateRecordValue, validateRoute53Spec, type Route53EndpointSpec } from "../endpoint/route53";
import { dnsEndpointSwitch } from "../runner/dns-switch";
import { validateArgv, validateListenPort, validateOsUser, validatePath, validateRelativePath, validateSocketDir, validateVersion } from "../validate";
import { PgLiveServer } from "../runner/live";
import { linkPointsAt, linkProblem, pointLink, recordLink, restoreLink, type NewLiveService } from "../runner/newlive-service";
import { isCleanShutdown } from "../postgres/parse";
import { checkNewLiveService } from "../plan/promotion";
import { databasesOf, type EndpointSwitch, liveTarget, newLiveTarget, promote, type PromoteResult, recoverInterrupted, rollBack, type CutoverEnv, type CutoverSpec, type NewServer, type Recovery, type Replay } from "../runner/cutover";
import { runStep } from "../runner/steps";
import { HostJournal, journalPath } from "../runner/journal";
import { prepareClone, type SourceLayout } from "../runner/layout";
import type { PhaseTiming } from "../runner/phases";
import { DNS_LOGICAL_REFUSAL, checkLogicalTwoHosts } from "../plan/logical";
import { checkLogicalSettings, cleanupLogical, logicalTag, promoteLogical, rollBackLogical, type LogicalEnv, type LogicalPromoteResult, type LogicalSettings } from "../runner/logical-cutover";
import { validateDatabaseList } from "../plan/promotion";

export type { PlannedStep };

/** The live server that a promotion stops cleanly and keeps, intact, for roll-back. */
export interface LiveSpec {
  dataset: string;
  pgdata: string;
  version: number;
  binDir?: string;
  osUser: string;
  port: number;
  socketDir: string;
  /** argv that starts / stops live (e.g. `["systemctl", "start", "postgresql@13-main"]`); default: pg_ctl with the options live was started with (postmaster.opts). */
  startCommand?: string[];
  stopCommand?: string[];
  /** Every volume of live's cluster, the one holding PGDATA first (absent in 0.1.0 state: `[dataset]`). */
  volumes?: string[];
  /** Live's layout when it is more than one plain volume: what the new live's clone re-points. */
  layout?: SourceLayout;
}

export interface CutOverInputs {
  /** The storage's host: where the new live's volumes are mounted and it runs; on ZFS also live's host. */
  connection?: ConnectionArgs;
  /** Live's host when it is another machine (EBS: live's instance); absent: `connection`. Used to stop and start live and read it, and for live's side of the logical method (slots, publications, capture, read-only). */
  liveConnection?: ConnectionArgs;
  /** PgBouncer's host when it is another machine; absent: `connection`. */
  endpointConnection?: ConnectionArgs;
  label: string;
  owner: string;
  stack: string;
  promote: boolean;
  /** The storage backend (absent in 0.1.0 state: ZFS). */
  storage?: StorageSpec;
  /**
   * PgBouncer's config (its admin password is read from the instance's userlist on the host:
   * one copy of the secret in state, the endpoint's), or a Route53 record (`kind: "route53"`).
   */
  endpoint: PgBouncerEndpointConfig | Route53EndpointSpec;
  database: string;
  pauseTimeoutMs: number;
  /** Where PgBouncer reaches live and the new live over TCP (absent: their unix socket directory, as in 0.1.0). */
  serverHost?: string;
  /** Where the endpoint reaches the new live when it runs on another machine (see CutoverSpec.newServerHost). */
  newServerHost?: string;
  /** How long clients may be held in all (absent in 0.1.0 state: unbounded). Read at the next switch; changing it alone changes nothing now. */
  switchoverTimeoutMs?: number;
  live: LiveSpec;
  /** The new live; `dataDirLink`/`startCommand`/`stopCommand` absent in older state (pg_ctl, no link). */
  newLive: { dataset: string; port: number; socketDir: string; listen: string; logFile?: string } & NewLiveService;
  to: number;
  toBinDir?: string;
  mode: UpgradeMode;
  steps: PlannedStep[];
  assertions: Array<{ name: string; sql: string; database?: string }>;
  /** The rehearsal that proved the plan: its status must be `passed`. */
  rehearsal: { name: string; status: string; predictedCutoverMs: number };
  /** `replay` (default; absent in 0.2.0 state) or `logical`. */
  method?: "replay" | "logical";
  /** Every PgBouncer entry that moves with the cluster, `database` among them (absent in 0.2.0 state: `[database]`). */
  databases?: string[];
  /** The logical method's settings. */
  logical?: LogicalSettings;
}

export interface CutOverOutputs extends CutOverInputs {
  state: "serving-old" | "promoted" | "rolled-back";
  target: DatabaseTarget;
  promotedAt?: string;
  rolledBackAt?: string;
  finalSnapshot?: string;
  newLiveDataset?: string;
  newLiveVolumes?: string[];
  newLiveDataDir?: string;
  /** Where the new live logs (absent: in its data directory, or state written before 0.2.0). */
  newLiveLogFile?: string;
  /** Live's own log file, read before the promotion stopped it: a roll-back starts live logging there. */
  liveLogFile?: string;
  pauseWindowMs?: number;
  /** Each phase of the last switch; `held`: clients were paused during it (absent in 0.1.0 state). */
  phases?: Array<{ phase: string; ms: number; held?: boolean }>;
  events: Array<{ at: string; what: string }>;
  /** Live's settings carried into the new live, and those left out with the reason. */
  configuration?: { carried: string[]; dropped: Array<{ name: string; why: string }> };
  /** A logical promotion's names (what cleanup removes) and what it measured. */
  logicalState?: { tag: string; clusterDatabases: string[]; catchUpMs?: number; lagBytesAtPause?: number; warnings?: string[] };
}

/** Nothing here is ever replaced: promote flips are updates (promote / roll back); the rest is remembered for the next flip. */
export const CUTOVER_DIFF: DiffSpec = {
  replace: [],
  // Used by the next switch (from the new inputs); no update of its own, so state written by 0.1.0 shows no change.
  ignore: ["switchoverTimeoutMs"],
  update: ["label", "owner", "stack", "promote", "storage", "endpoint", "database", "pauseTimeoutMs", "serverHost", "newServerHost", "liveConnection", "endpointConnection", "live", "newLive", "to", "toBinDir", "mode", "steps", "assertions", "rehearsal", "method", "databases", "logical"],
};

/** 0.1.0 state -> this shape. */
export function migrateCutOver(p: Record<string, unknown>): Record<string, unknown> {
  const o = { ...p } as unknown as CutOverOutputs;
  if (o.live && !o.live.volumes) o.live = { ...o.live, volumes: [o.live.dataset] };
  // 0.1.0 stored the bin directories as given (absent: Debian's); they are resolved now.
  if (o.live && !o.live.binDir) o.live = { ...o.live, binDir: debianBinDir(o.live.version) };
  if (o.to && !o.toBinDir) o.toBinDir = debianBinDir(o.to);
  if (!o.storage) o.storage = { kind: "zfs" };
  if (o.newLiveDataset && !o.newLiveVolumes) o.newLiveVolumes = [o.newLiveDataset];
  // 0.2.0: one method, one database.
  if (!o.method) o.method = "replay";
  if (!o.databases && typeof o.database === "string") o.databases = [o.database];
  return o as unknown as Record<string, unknown>;
}

export function specOf(i: CutOverInputs, prior?: CutOverOutputs): CutoverSpec {
  return {
    owner: i.owner,
    stack: i.stack,
    rehearsal: { name: i.rehearsal.name, status: i.rehearsal.status },
    source: {
      dataset: i.live.dataset,
      pgdata: i.live.pgdata,
      version: i.live.version,
      binDir: i.live.binDir ?? debianBinDir(i.live.version),
      port: i.live.port,
      socketDir: i.live.socketDir,
      osUser: i.live.osUser,
      checkpoint: true,
    },
    liveVolumes: i.live.volumes ?? [i.live.dataset],
    to: i.to,
    toBinDir: i.toBinDir ?? debianBinDir(i.to),
    mode: i.mode,
    steps: i.steps,
    assertions: i.assertions,
    database: i.database,
    databases: i.databases ?? [i.database],
    method: i.method ?? "replay",
    ...(i.logical ? { logical: i.logical } : {}),
    pauseTimeoutMs: i.pauseTimeoutMs,
    // A later start of the new live (roll-back's undo, recovery) logs where the promotion put it.
    newLive: { ...i.newLive, ...(i.newLive.logFile === undefined && prior?.newLiveLogFile ? { logFile: prior.newLiveLogFile } : {}) },
    ...(i.serverHost !== undefined ? { serverHost: i.serverHost } : {}),
    ...(i.newServerHost !== undefined ? { newServerHost: i.newServerHost } : {}),
    ...(i.switchoverTimeoutMs !== undefined ? { switchoverTimeoutMs: i.switchoverTimeoutMs } : {}),
    ...(prior ? { prior: { state: prior.state } } : {}),
  };
}

/**
 * Every rule on the inputs, the same as the Promotion component applies, so that nothing a
 * preview accepts fails later for its form. `known(x)` tells whether a value is known yet
 * (in a preview, outputs of other resources are not): unknown parts are checked at `up`.
 */
export function checkCutOver(n: CutOverInputs, known: (v: unknown) => boolean = () => true): InputError[] {
  const errors: InputError[] = [];
  const check = (v: unknown, fn: () => unknown) => {
    if (known(v)) collectInputError(errors, fn);
  };
  check(n.promote, () => {
    if (typeof n.promote !== "boolean") throw new InputError("promote", "must be true or false");
  });
  if (n.storage !== undefined) check(n.storage, () => validateStorageSpec(n.storage, "storage"));
  check(n.live, () => validateRelativePath(n.live.pgdata, "source.pgdata"));
  check(n.live, () => validateVersion(n.live.version, "source.version"));
  if (n.live?.binDir !== undefined) check(n.live, () => validatePath(n.live.binDir, "source.binDir", "bin directory"));
  check(n.live, () => validateOsUser(n.live.osUser, "source.osUser"));
  check(n.live, () => validateListenPort(n.live.port, "source.port"));
  check(n.live, () => validateSocketDir(n.live.socketDir, "source.socketDir"));
  check(n.to, () => validateVersion(n.to, "to"));
  if (n.toBinDir !== undefined) check(n.toBinDir, () => validatePath(n.toBinDir, "toBinDir", "bin directory"));
  check(n.steps, () => validatePlannedSteps(n.steps, "steps"));
  const r53 = isRoute53Spec(n.endpoint) ? n.endpoint : undefined;
  check(n.endpoint, () => (r53 ? validateRoute53Spec(r53) : checkConfig(n.endpoint as PgBouncerEndpointConfig)));
  if (n.newServerHost !== undefined) check(n.newServerHost, () => validateNetworkHost(n.newServerHost, "newLive.serverHost"));
  if (n.switchoverTimeoutMs !== undefined) {
    check(n.switchoverTimeoutMs, () => validateSwitchoverTimeout(n.switchoverTimeoutMs, "switchoverTimeoutMs"));
    // Refused in preview: a switch the rehearsal says would hold clients longer than allowed.
    if (n.promote === true && known(n.rehearsal) && n.rehearsal && typeof n.switchoverTimeoutMs === "number") {
      check(n.rehearsal, () => assertPredictedWithin(n.rehearsal.predictedCutoverMs, n.switchoverTimeoutMs!, `the rehearsal ${n.rehearsal.name}`));
    }
  }
  check(n.method, () => {
    if (n.method !== undefined && n.method !== "replay" && n.method !== "logical") throw new InputError("method", `${JSON.stringify(n.method)} is not replay or logical`);
  });
  if (n.logical !== undefined && known(n.logical)) errors.push(...checkLogicalSettings(n.logical));
  // The logical method with live on its own machine: the two connect over TCP, at addresses the user gives.
  if (!r53 && n.liveConnection !== undefined && n.method === "logical" && known(n.logical)) errors.push(...checkLogicalTwoHosts(n.logical).filter((e) => !errors.some((x) => x.field === e.field)));
  if (n.databases !== undefined) check(n.databases, () => validateDatabaseList(n.databases, n.database));
  if (!known(n.live) || !known(n.newLive) || !known(n.endpoint) || !known(n.database) || !known(n.pauseTimeoutMs) || !known(n.serverHost) || !known(n.newServerHost)) return errors;
  if (r53) return [...errors, ...checkDnsSwap(n, r53)];
  const ep = n.endpoint as PgBouncerEndpointConfig;
  const plan: PromotionPlan = {
    name: n.label,
    endpoint: {
      name: ep.name,
      listenPort: ep.listenPort,
      listenAddr: ep.listenAddr ?? "127.0.0.1",
      database: n.database,
      poolMode: ep.poolMode ?? "transaction",
      authType: ep.authType ?? "scram-sha-256",
      pauseTimeoutMs: n.pauseTimeoutMs,
      retainOnDelete: true,
      ...(n.serverHost !== undefined ? { serverHost: n.serverHost } : {}),
      ...(n.newServerHost !== undefined ? { newServerHost: n.newServerHost } : {}),
    },
    newLive: n.newLive,
    method: n.method ?? "replay",
    ...(n.logical !== undefined ? { logical: n.logical } : {}),
    live: { ...(n.live.startCommand !== undefined ? { startCommand: n.live.startCommand } : {}), ...(n.live.stopCommand !== undefined ? { stopCommand: n.live.stopCommand } : {}) },
  };
  // (The plan's rules repeat some above, e.g. the logical settings: each error once.)
  errors.push(...checkPromotionPlan(plan, { source: specOf(n).source }).filter((e) => !errors.some((x) => x.field === e.field && x.message === e.message)));
  return errors;
}

/**
 * A DNS record as the endpoint: its value for live (`serverHost`) and for the new live
 * (`newServerHost`) are addresses of the record's type, on two machines; clients keep
 * connecting to the same port, so the new live listens on live's port.
 */
function checkDnsSwap(n: CutOverInputs, e: Route53EndpointSpec): InputError[] {
  const errors: InputError[] = [];
  const check = (fn: () => unknown) => collectInputError(errors, fn);
  const type = e.type ?? "CNAME";
  check(() => {
    if (n.serverHost === undefined) throw new InputError("endpoint.liveAddress", "required with a Route53 endpoint: the record's value while live serves");
    validateRecordValue(type, n.serverHost, "endpoint.liveAddress");
  });
  check(() => {
    if (n.newServerHost === undefined) throw new InputError("endpoint.newLiveAddress", "required with a Route53 endpoint: the record's value for the new live (its instance's address)");
    validateRecordValue(type, n.newServerHost, "endpoint.newLiveAddress");
  });
  if (n.serverHost !== undefined && n.serverHost === n.newServerHost) errors.push(new InputError("endpoint.newLiveAddress", "is live's address too: the swap would change nothing"));
  if (n.method === "logical") errors.push(new InputError("method", `"logical": ${DNS_LOGICAL_REFUSAL}`));
  check(() => validateListenPort(n.newLive.port, "newLive.port"));
  if (n.newLive.port !== n.live.port) {
    errors.push(new InputError("newLive.port", `${n.newLive.port}: clients keep connecting to ${e.name}:${n.live.port} after the swap, so the new live must listen on live's port ${n.live.port}`));
  }
  check(() => validateSocketDir(n.newLive.socketDir, "newLive.socketDir"));
  if (type !== "CNAME" && n.newServerHost !== undefined) {
    const listen = n.newLive.listen.split(",").map((x) => x.trim());
    if (!listen.some((x) => x.toLowerCase() === n.newServerHost!.toLowerCase() || x === "*" || x === "0.0.0.0" || x === "::")) {
      errors.push(new InputError("newLive.listen", `${JSON.stringify(n.newLive.listen)} does not include ${n.newServerHost} (endpoint.newLiveAddress): clients could not reach the new live`));
    }
  }
  for (const off of [1, 2, 3]) check(() => validateListenPort(n.newLive.port + off, `newLive.port+${off}`));
  errors.push(...checkNewLiveService(n.newLive));
  if (n.live.startCommand !== undefined) check(() => validateArgv(n.live.startCommand, "liveStartCommand"));
  if (n.live.stopCommand !== undefined) check(() => validateArgv(n.live.stopCommand, "liveStopCommand"));
  return errors;
}

/** How the new live is started outside the replay: on its port and socket, without rehearsal isolation, logging where the promotion put its log. */
function newLiveStart(s: CutoverSpec) {
  return { port: s.newLive.port, socketDir: s.newLive.socketDir, listen: s.newLive.listen, isolate: false, ...(s.newLive.logFile ? { logFile: s.newLive.logFile } : {}) };
}

/**
 * Start the new live on `dir`: with `newLive.startCommand`, `newLive.dataDirLink` is pointed at
 * `dir` first, the user's command runs, and the server must answer `SELECT 1` on the new live's
 * port and socket with its postmaster on `dir`; else `pg_ctl` on `dir` (the link, when there is
 * one, is pointed at `dir` all the same).
 */
export async function startNewLive(host: Host, pg: PostgresDriver, s: CutoverSpec, dir: string, log: (m: string) => void, opts: { onProgress?: (m: string) => void } = {}): Promise<void> {
  const inst = { version: s.to, binDir: s.toBinDir, field: "to" };
  const link = s.newLive.dataDirLink;
  if (link) await pointLink(host, link, dir, s.source.osUser, log);
  if (!s.newLive.startCommand) {
    await pg.start(dir, inst, { ...newLiveStart(s), ...(opts.onProgress ? { onProgress: opts.onProgress } : {}) });
    return;
  }
  log(`starting the new live with ${JSON.stringify(s.newLive.startCommand)}`);
  await host.run(s.newLive.startCommand, { timeoutMs: 60 * 60_000, cwd: "/" });
  const server = { version: s.to, binDir: s.toBinDir, socketDir: s.newLive.socketDir, port: s.newLive.port };
  const t0 = Date.now();
  for (;;) {
    try {
      await pg.adminQuery(server, "SELECT 1", { timeoutMs: 10_000 });
      break;
    } catch (e) {
      if (Date.now() - t0 > 10 * 60_000) {
        throw new Error(`newLive.startCommand ${JSON.stringify(s.newLive.startCommand)} exited 0, but nothing answers on port ${s.newLive.port} (socket ${s.newLive.socketDir}) after ${Math.round((Date.now() - t0) / 1000)} s: ${errorMessage(e).split("\n")[0]}. Its configuration must set port = ${s.newLive.port} and data_directory = '${link}'`, { cause: e });
      }
      await new Promise((r) => setTimeout(r, 500));
    }
  }
  const st = await pg.status(dir, inst).catch(() => ({ running: false }));
  if (!st.running) {
    // What the user's command started is not this generation: their stop command undoes it (best effort), then this fails.
    if (s.newLive.stopCommand) await host.run(s.newLive.stopCommand, { timeoutMs: 60 * 60_000, cwd: "/" }).catch((e: unknown) => log(`warning: ${JSON.stringify(s.newLive.stopCommand)} failed: ${errorMessage(e).split("\n")[0]}`));
    throw new Error(`newLive.startCommand ${JSON.stringify(s.newLive.startCommand)} started a server on port ${s.newLive.port}, but not on ${dir} (the generation ${link} points at): its configuration's data_directory must be ${link}`);
  }
  log(`the new live runs on ${dir} (started by ${s.newLive.startCommand.join(" ")})`);
}

/**
 * Stop the new live on `dir` cleanly: with `newLive.stopCommand` while `newLive.dataDirLink`
 * points at `dir` (else the command would stop another generation: `pg_ctl` stops this one),
 * checked with pg_controldata (`shut down`).
 */
export async function stopNewLive(host: Host, pg: PostgresDriver, s: CutoverSpec, dir: string, log: (m: string) => void): Promise<void> {
  const inst = { version: s.to, binDir: s.toBinDir, field: "to" };
  const link = s.newLive.dataDirLink;
  if (!s.newLive.stopCommand || !link || !(await linkPointsAt(host, link, dir))) {
    if (s.newLive.stopCommand) log(`${link} does not point at ${dir}: stopped with pg_ctl, not ${JSON.stringify(s.newLive.stopCommand)} (it would stop another server)`);
    await pg.stop(dir, inst, { mode: "fast" });
    return;
  }
  if (!(await pg.status(dir, inst).catch(() => ({ running: false }))).running) return;
  log(`stopping the new live with ${JSON.stringify(s.newLive.stopCommand)}`);
  await host.run(s.newLive.stopCommand, { timeoutMs: 60 * 60_000, cwd: "/" });
  const state = (await pg.controlData(dir, inst)).state;
  if (!isCleanShutdown(state)) throw new Error(`newLive.stopCommand ${JSON.stringify(s.newLive.stopCommand)} exited 0 but the new live on ${dir} did not shut down cleanly (pg_controldata: ${state})`);
}

/**
 * The upgraded server on the new live, through the PostgreSQL driver. `superuser()`: the role
 * the replayed steps connected as (the cluster's bootstrap superuser), once they ran.
 */
function newServerOf(host: Host, pg: PostgresDriver, s: CutoverSpec, log: (m: string) => void, liveDirs: () => Promise<string[]>, superuser: () => string | undefined = () => undefined): NewServer {
  const inst = { version: s.to, binDir: s.toBinDir, field: "to" };
  const server = { version: s.to, binDir: s.toBinDir, socketDir: s.newLive.socketDir, port: s.newLive.port };
  const srv = {
    ...server,
    get user() {
      return superuser();
    },
  };
  return {
    async checkReady() {
      // Every port the replay listens on, before anyone is held: newLive.port, a private
      // server on +1, pg_upgrade's on +2 and +3.
      for (const [off, field] of [[0, "newLive.port"], [1, "newLive.port+1"], [2, "newLive.port+2 (pg_upgrade)"], [3, "newLive.port+3 (pg_upgrade)"]] as const) {
        await pg.assertPortFree(s.newLive.port + off, field);
      }
      await pg.resolveInstall(inst, ["pg_ctl", "pg_upgrade", "initdb", "psql", "vacuumdb"]);
      await pg.resolveInstall({ version: s.source.version, binDir: s.source.binDir, field: "source" }, ["pg_ctl", "psql", "pg_controldata"]);
      // The stable link, checked again before anyone is held (the preview checked it too).
      if (s.newLive.dataDirLink) {
        const problem = await linkProblem(host, s.newLive.dataDirLink, await liveDirs());
        if (problem) throw problem;
      }
    },
    running: async (dir) => (await pg.status(dir, inst).catch(() => ({ running: false }))).running,
    stop: async (dir) => await stopNewLive(host, pg, s, dir, log),
    start: async (dir) => await startNewLive(host, pg, s, dir, log),
    sequences: async (db) => pg.adminQuery(srv, "SELECT schemaname || '.' || sequencename, coalesce(last_value::text, 'unused') FROM pg_sequences ORDER BY 1", { database: db }),
    value: async (sql, db) => (await pg.adminQuery(srv, sql, { database: db }))[0]?.[0],
    checkpoint: async () => void (await pg.adminQuery(srv, "CHECKPOINT", { database: s.database })),
    analyze: async (dir) => {
      const su = superuser();
      await (su ? pg.as(su) : pg).postUpgrade(dir, inst, { server: { port: s.newLive.port, socketDir: s.newLive.socketDir }, analyze: "in-stages" });
    },
    revokeOwnerAccess: async (dir) => await pg.revokeOwnerAccess(dir, inst),
    stage: async (settings) => await pg.stageCluster(inst, settings),
    unstage: async (dir) => await pg.removeStagedCluster(dir),
    readLink: async () => (s.newLive.dataDirLink ? await recordLink(host, s.newLive.dataDirLink) : undefined),
    restoreLink: async (rec) => void (await restoreLink(host, rec, s.source.osUser, log)),
  };
}

const CLUSTER_DATABASES_SQL = "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY datname";

/**
 * The logical method's machinery: live's side through the driver on live's host (`livePg`),
 * the new side (the clone's conversion, the new live) through the driver on the storage's
 * host (`pg`); one driver when they are one machine. With `logical.liveHost`/`newLiveHost`
 * the two sides replicate over TCP at those addresses, else through the unix sockets.
 */
function logicalEnvOf(livePg: PostgresDriver, pg: PostgresDriver, s: CutoverSpec, l: LogicalSettings | undefined, host: Host = pg.host, log: (m: string) => void = () => undefined): LogicalEnv {
  const live = { version: s.source.version, binDir: s.source.binDir, socketDir: s.source.socketDir, port: s.source.port };
  const newSrv = { version: s.to, binDir: s.toBinDir, socketDir: s.newLive.socketDir, port: s.newLive.port };
  const over = { user: l?.replicationUser ?? livePg.superuser, ...(l?.passfile !== undefined ? { passfile: l.passfile } : {}), ...(l?.sslmode !== undefined ? { sslmode: l.sslmode } : {}) };
  const sources = {
    ...(l?.liveHost !== undefined ? { liveSource: { host: l.liveHost, port: s.source.port, ...over } } : {}),
    ...(l?.newLiveHost !== undefined ? { targetSource: { host: l.newLiveHost, port: s.newLive.port, ...over } } : {}),
  };
  return {
    clusterDatabases: async () => (await livePg.adminQuery(live, CLUSTER_DATABASES_SQL, { database: "postgres" })).map((r) => r[0]),
    open: (tag, databases) => new LogicalReplication(livePg, { tag, databases, live, ...sources }, livePg === pg ? undefined : pg),
    checkpoint: async () => void (await livePg.adminQuery(live, "CHECKPOINT", { database: "postgres" })),
    unpublishedTables: async (tag, databases) => {
      const pub = logicalNames(tag).publication;
      const out: Array<{ database: string; tables: string[] }> = [];
      for (const db of databases) {
        const published = new Set((await livePg.adminQuery(live, publicationTablesSql(pub), { database: db })).map((r) => r[0]));
        const have = (await pg.adminQuery(newSrv, PUBLISHABLE_TABLES_SQL, { database: db })).map((r) => r[0]);
        out.push({ database: db, tables: have.filter((t) => !published.has(t)) });
      }
      return out;
    },
    ensureTargetSettings: async (dataDir, n) => {
      const want = requiredTargetSettings(n);
      const have = new Map((await pg.adminQuery(newSrv, `SELECT name, setting FROM pg_settings WHERE name IN (${Object.keys(want).map((k) => `'${k}'`).join(", ")})`, { database: "postgres" })).map((r) => [r[0], r[1]]));
      const short = Object.entries(want).filter(([k, v]) => (typeof v === "number" ? Number(have.get(k)) < v : have.get(k) !== v));
      if (!short.length) return [];
      // Values are constants of requiredTargetSettings (numbers and "logical"): safe in SQL.
      await pg.adminQuery(newSrv, short.map(([k, v]) => `ALTER SYSTEM SET ${k} = '${v}';`).join("\n"), { database: "postgres" });
      await stopNewLive(host, pg, s, dataDir, log);
      await startNewLive(host, pg, s, dataDir, log);
      return short.map(([k, v]) => `${k} = ${v}`);
    },
  };
}

/** What is wrong with newLive.dataDirLink on the new live's host now, read-only (also in preview). */
async function newLiveLinkProblem(i: CutOverInputs): Promise<InputError | undefined> {
  return await withHost(i.connection, async (host) => {
    const storage = openStorage(i.storage, host);
    const mounts: string[] = [];
    for (const v of i.live.volumes ?? [i.live.dataset]) {
      const m = (await storage.volume(v).catch(() => undefined))?.mountpoint;
      if (m) mounts.push(m);
    }
    const dirs = mounts.length ? [`${mounts[0].replace(/\/$/, "")}/${i.live.pgdata}`, ...mounts] : [];
    return await linkProblem(host, i.newLive.dataDirLink!, dirs);
  });
}

/** Readiness of live for the logical method, read-only (also in preview): the problems, each naming its objects. */
async function logicalReadiness(i: CutOverInputs): Promise<string[]> {
  // Live is read where it runs: its own connection when it has one.
  return await withHost(i.liveConnection ?? i.connection, async (host) => {
    const pg = new PostgresDriver(host, { osUser: i.live.osUser });
    const spec = specOf(i);
    const env = logicalEnvOf(pg, pg, spec, i.logical);
    const dbs = await env.clusterDatabases();
    const r = await env.open(logicalTag(i.owner), dbs).readiness({ accept: i.logical?.accept ?? [] });
    const out = r.problems.map((p) => `[${p.code}] ${p.message}`);
    const missing = (i.databases ?? [i.database]).filter((d) => !dbs.includes(d));
    if (missing.length) out.push(`the endpoint's database(s) ${missing.join(", ")} are not databases of live`);
    return out;
  });
}

/** The hosts a cut-over works on: the storage's (the new live's), live's, the endpoint's (one machine on ZFS). */
export interface CutoverHosts {
  host: Host;
  liveHost: Host;
  endpointHost: Host;
}

/** Opens the hosts the inputs name (the same connection once), runs `fn`, closes them. */
async function withHosts<T>(i: CutOverInputs, fn: (h: CutoverHosts) => Promise<T>): Promise<T> {
  return await withHost(i.connection, async (host) => {
    const other = async (c: ConnectionArgs | undefined, f: (h: Host) => Promise<T>) => (c === undefined ? f(host) : withHost(c, f));
    return await other(i.liveConnection, (liveHost) => other(i.endpointConnection, (endpointHost) => fn({ host, liveHost, endpointHost })));
  });
}

/** The endpoint the inputs name: PgBouncer on its host, or a DNS record (Route53). */
async function openEndpoint(i: CutOverInputs, h: CutoverHosts, spec: CutoverSpec, log: (m: string) => void, switching: boolean): Promise<EndpointSwitch> {
  if (isRoute53Spec(i.endpoint)) {
    const sw = dnsEndpointSwitch(route53SwitchOf(i.endpoint, log), spec, log);
    if (switching) {
      log(
        `${sw.description}: DNS cannot hold clients. They see live stop and reconnect to the new address once their cached answer expires: ` +
          `the rehearsal predicts ${i.rehearsal.predictedCutoverMs} ms with live stopped, plus up to ${i.endpoint.ttl ?? 30} s of TTL`,
      );
    }
    return sw;
  }
  const ep = i.endpoint;
  // The admin password from the endpoint's userlist on the host (0600), not from an input.
  const bouncer = await PgBouncerEndpoint.open(h.endpointHost, ep);
  if (switching && i.switchoverTimeoutMs !== undefined) {
    // Clients held up to the switchover timeout must not be dropped by PgBouncer first
    // (an endpoint made by 0.1.0 still has PgBouncer's default of 120 s).
    const need = queryWaitTimeoutFor(i.switchoverTimeoutMs);
    const was = await bouncer.raiseQueryWaitTimeout(need);
    if (was !== undefined) log(`PgBouncer ${ep.name}: query_wait_timeout raised from ${was} s to ${need} s (above switchoverTimeoutMs ${i.switchoverTimeoutMs} ms)`);
  }
  return {
    description: `PgBouncer ${ep.name} on ${h.endpointHost.description}`,
    current: (db) => bouncer.target(db),
    hold: async (dbs, f, o) => await bouncer.holdAll(dbs, (ctx) => f({ retarget: (t) => ctx.retarget(t) }), o),
    paused: async (db) => (await bouncer.databases()).find((d) => d.name === db)?.paused ?? false,
    resume: async (db) => void (await bouncer.resume(db)),
  };
}

async function withEnv<T>(i: CutOverInputs, fn: (env: CutoverEnv, spec: CutoverSpec) => Promise<T>, prior?: CutOverOutputs, switching = false): Promise<T> {
  return await withHosts(i, async (h) => fn(...(await cutoverEnv(i, h, { prior, switching }))));
}

/**
 * The cut-over's environment on its hosts: live stopped and started on live's host, the final
 * snapshot and the new live's volumes through the storage (opened on the storage's host), the
 * replay and the new live on that host, the swap through the endpoint. `opts.storage`: an
 * already opened storage (tests: test-only device lookups).
 */
export async function cutoverEnv(
  i: CutOverInputs,
  h: CutoverHosts,
  opts: { prior?: CutOverOutputs; switching?: boolean; storage?: Storage } = {},
): Promise<[CutoverEnv, CutoverSpec]> {
  const { host, liveHost } = h;
  const prior = opts.prior;
  const pg = new PostgresDriver(host, { osUser: i.live.osUser });
  const livePg = liveHost === host ? pg : new PostgresDriver(liveHost, { osUser: i.live.osUser });
  const storage = opts.storage ?? openStorage(i.storage, host);
  const spec = specOf(i, prior);
  const log = (m: string) => progress(i.label, m);
  const primary = await storage.volume(spec.liveVolumes[0]);
  if (!primary?.mountpoint) throw new Error(`live's volume ${spec.liveVolumes[0]} does not exist or is not mounted on ${liveHost.description}; nothing was done`);
  const live = new PgLiveServer(liveHost, livePg, {
    source: spec.source,
    dataDir: `${primary.mountpoint}/${i.live.pgdata}`,
    startCommand: i.live.startCommand,
    stopCommand: i.live.stopCommand,
    logFile: `/var/log/understudy/live-${i.stack}.log`,
    ...(prior?.liveLogFile ? { ownLogFile: prior.liveLogFile } : {}),
  });
  const endpoint = await openEndpoint(i, h, spec, log, opts.switching ?? false);
  // The role the replayed steps connect as (read from the new live's clone by the first of them).
  let superuser: string | undefined;
  // Live's volumes' mountpoints and its data directory: the new live's link never goes there.
  const liveDirs = async () => [
    `${primary.mountpoint}/${i.live.pgdata}`,
    ...(await Promise.all(spec.liveVolumes.map(async (v) => (await storage.volume(v).catch(() => undefined))?.mountpoint))).filter((m): m is string => !!m),
  ];
  // With newLive.dataDirLink and/or startCommand the replayed `start` step starts the final server
  // as every later start does: the link pointed at this generation first, then the user's command
  // (no second start) or pg_ctl.
  const startServer = spec.newLive.startCommand || spec.newLive.dataDirLink ? async (p: { newDataDir: string }) => startNewLive(host, pg, spec, p.newDataDir, log) : undefined;
  const replay: Replay = async (step, pgPlan, state) => {
    const r = await runStep(
      { host, storage, pg, log, ...(startServer ? { startServer } : {}) },
      { step, index: 0, pg: pgPlan, prevServer: state.server, updateExtensionsSql: state.updateExtensionsSql, liveSettings: state.liveSettings, ...(state.staged ? { staged: state.staged } : {}) },
    );
    superuser = r.superuser ?? superuser;
    return { updateExtensionsSql: r.updateExtensionsSql, carried: r.carriedConfig };
  };
  const env: CutoverEnv = {
    prepareClone: (dataDir, mounts) => prepareClone(host, i.live.osUser, dataDir, mounts, i.live.layout, log),
    storage,
    live,
    server: newServerOf(host, pg, spec, log, liveDirs, () => superuser),
    endpoint,
    journal: new HostJournal(host, journalPath(i.owner)),
    replay,
    log,
    // Live's side on live's host, the new live's on the storage's host (one machine on ZFS).
    logical: logicalEnvOf(livePg, pg, spec, i.logical, host, log),
  };
  return [env, spec];
}

const diff = declaredDiff(CUTOVER_DIFF);

/** For ids and messages: PgBouncer's instance name, or the record's name. */
function endpointName(e: CutOverInputs["endpoint"]): string {
  return isRoute53Spec(e) ? `route53:${e.name}` : e.name;
}

function timings(p: PhaseTiming[]): Array<{ phase: string; ms: number; held: boolean }> {
  return p.map((x) => ({ phase: x.phase, ms: x.ms, held: x.held }));
}

/** Outputs for a promotion an earlier, interrupted run finished (found by the journal on the host). */
function adopted(i: CutOverInputs, spec: CutoverSpec, rec: Recovery, prior: CutOverOutputs | undefined): CutOverOutputs {
  const at = new Date().toISOString();
  return {
    ...i,
    state: "promoted",
    target: newLiveTarget(spec),
    promotedAt: rec.entry.startedAt,
    finalSnapshot: rec.entry.finalSnapshot ? `${rec.entry.liveVolumes[0]}@${rec.entry.finalSnapshot}` : prior?.finalSnapshot,
    newLiveDataset: rec.entry.newVolumes[0],
    newLiveVolumes: rec.entry.newVolumes,
    newLiveDataDir: rec.newLiveDataDir,
    events: [...(prior?.events ?? []), { at, what: `the ${rec.entry.op} started ${rec.entry.startedAt} was interrupted; found promoted on the host and kept` }],
  };
}

async function doPromote(i: CutOverInputs, prior: CutOverOutputs | undefined): Promise<CutOverOutputs> {
  return await withEnv(
    i,
    async (env, spec) => {
      // An attempt that died with the engine first: finished or undone from what the host shows.
      const rec = await recoverInterrupted(env, spec);
      if (rec?.outcome === "promoted") return adopted(i, spec, rec, prior);
      const logical = spec.method === "logical";
      const r: PromoteResult & Partial<LogicalPromoteResult> = logical ? await promoteLogical(env, spec) : await promote(env, spec);
      const at = new Date().toISOString();
      env.log(`promoted (${spec.method}): clients resumed on PostgreSQL ${i.to} (${r.newLiveVolumes[0]}, port ${i.newLive.port}); pause window ${r.pauseWindowMs} ms`);
      const lres = r.tag !== undefined ? (r as LogicalPromoteResult) : undefined;
      for (const w of lres?.warnings ?? []) env.log(`warning: ${w}`);
      return {
        ...i,
        state: "promoted",
        target: newLiveTarget(spec),
        promotedAt: at,
        finalSnapshot: `${spec.liveVolumes[0]}@${r.finalSnapshot}`,
        newLiveDataset: r.newLiveVolumes[0],
        newLiveVolumes: r.newLiveVolumes,
        newLiveDataDir: r.newLiveDataDir,
        ...(r.newLiveLogFile ? { newLiveLogFile: r.newLiveLogFile } : {}),
        ...(r.liveLogFile ? { liveLogFile: r.liveLogFile } : {}),
        pauseWindowMs: r.pauseWindowMs,
        phases: timings(r.phases),
        ...(r.carried ? { configuration: r.carried } : {}),
        ...(lres
          ? {
              logicalState: {
                tag: lres.tag,
                clusterDatabases: lres.clusterDatabases,
                ...(lres.catchUp ? { catchUpMs: lres.catchUp.ms, lagBytesAtPause: lres.catchUp.lagBytes } : {}),
                warnings: lres.warnings,
              },
            }
          : {}),
        events: [
          ...(prior?.events ?? []),
          { at, what: `promoted (${spec.method}): ${databasesOf(spec).join(", ")} now served by PostgreSQL ${i.to} on ${r.newLiveVolumes[0]}` },
          ...(lres?.warnings ?? []).map((w) => ({ at, what: `warning: ${w}` })),
        ],
      };
    },
    prior,
    true,
  );
}

async function doRollBack(i: CutOverInputs, prior: CutOverOutputs): Promise<CutOverOutputs> {
  return await withEnv(
    i,
    async (env, spec) => {
      const rec = await recoverInterrupted(env, spec);
      if (rec?.outcome === "rolled-back" || rec?.outcome === "restored") {
        const at = new Date().toISOString();
        return {
          ...prior,
          ...i,
          state: "rolled-back",
          target: liveTarget(spec),
          rolledBackAt: at,
          events: [...prior.events, { at, what: `an interrupted ${rec.entry.op} was found on the host; clients are on PostgreSQL ${i.live.version}` }],
        };
      }
      const newVolumes = prior.newLiveVolumes ?? (prior.newLiveDataset ? [prior.newLiveDataset] : []);
      const ls = prior.method === "logical" ? prior.logicalState : undefined;
      if (prior.method === "logical" && !ls) throw new Error("this promotion was made with the logical method but its names are not in the state; nothing was done");
      const r = ls
        ? await rollBackLogical(env, spec, { tag: ls.tag, clusterDatabases: ls.clusterDatabases, newLiveDataDir: prior.newLiveDataDir!, newVolumes })
        : await rollBack(env, spec, prior.newLiveDataDir!, newVolumes);
      const at = new Date().toISOString();
      env.log(
        `rolled back: clients resumed on PostgreSQL ${i.live.version} (${i.live.dataset}); pause window ${r.pauseWindowMs} ms. ` +
          (ls
            ? `Every write made on the new live since ${prior.promotedAt} was replicated back; the new live ${prior.newLiveDataset} is stopped and kept.`
            : `Writes made on the new live since ${prior.promotedAt} stay in ${prior.newLiveDataset} (stopped), they were not copied back.`),
      );
      return {
        ...i,
        state: "rolled-back",
        target: liveTarget(spec),
        promotedAt: prior.promotedAt,
        rolledBackAt: at,
        finalSnapshot: prior.finalSnapshot,
        newLiveDataset: prior.newLiveDataset,
        newLiveVolumes: prior.newLiveVolumes,
        newLiveDataDir: prior.newLiveDataDir,
        ...(prior.newLiveLogFile ? { newLiveLogFile: prior.newLiveLogFile } : {}),
        ...(prior.liveLogFile ? { liveLogFile: prior.liveLogFile } : {}),
        pauseWindowMs: r.pauseWindowMs,
        phases: timings(r.phases),
        ...(prior.logicalState ? { logicalState: prior.logicalState } : {}),
        events: [
          ...prior.events,
          { at, what: `rolled back to PostgreSQL ${i.live.version}${ls ? " with every write of the new live" : ""}; ${prior.newLiveDataset} kept, stopped` },
          ...((r as { warnings?: string[] }).warnings ?? []).map((w) => ({ at, what: `warning: ${w}` })),
        ],
      };
    },
    prior,
    true,
  );
}

export const cutOverProvider: UnderstudyProvider = {
  migrate: migrateCutOver,

  async check(o: CutOverInputs | undefined, n: CutOverInputs) {
    const failures: pulumi.dynamic.CheckFailure[] = [...checkConnection(n.connection)];
    // Everything it will use, checked now (also in preview): after live is stopped is too late.
    for (const e of checkCutOver(n, (v) => !isUnknown(v))) failures.push({ property: e.field.split(/[.[]/)[0], reason: e.message });
    // The new live's stable link (read-only, also in preview): never a real directory, never into live.
    if (!failures.length && n.promote === true && n.newLive?.dataDirLink !== undefined && [n.connection, n.live, n.newLive, n.storage].every((v) => !isUnknown(v))) {
      const problem = await newLiveLinkProblem(n).catch((e: unknown) => {
        progress(n.label, `warning: newLive.dataDirLink could not be read now (${errorMessage(e).split("\n")[0]}); it is checked again before anything runs`);
        return undefined;
      });
      if (problem) failures.push({ property: "newLive", reason: problem.message });
    }
    // The logical method about to promote: live's readiness (read-only, also in preview), every problem named.
    const known = [n.connection, n.live, n.databases, n.database, n.owner, n.logical, n.promote].every((v) => !isUnknown(v));
    if (!failures.length && known && n.method === "logical" && n.promote === true && o?.promote !== true) {
      const problems = await logicalReadiness(n).catch((e: unknown) => {
        progress(n.label, `warning: live's readiness for the logical method could not be read now (${errorMessage(e).split("\n")[0]}); it is checked again before anything runs`);
        return [] as string[];
      });
      if (problems.length) failures.push({ property: "method", reason: `live is not ready for the logical method (nothing was changed):\n${problems.map((p) => `  - ${p}`).join("\n")}` });
    }
    return { inputs: n, failures };
  },
  async diff(_id: string, o: CutOverOutputs, n: CutOverInputs) {
    // State written before queryWaitTimeoutMs existed (0.1.0): gaining it is not a change by itself (the next switch reads the new inputs).
    let news = n;
    const oe = o.endpoint as PgBouncerEndpointConfig | undefined;
    const ne = n.endpoint as PgBouncerEndpointConfig | undefined;
    if (oe && !isRoute53Spec(oe) && oe.queryWaitTimeoutMs === undefined && ne && !isUnknown(ne) && !isRoute53Spec(ne) && ne.queryWaitTimeoutMs !== undefined) {
      const { queryWaitTimeoutMs: _added, ...rest } = ne;
      news = { ...n, endpoint: rest };
    }
    const d = diff(o as unknown as Record<string, unknown>, news as unknown as Record<string, unknown>);
    if (d.changes || isUnknown(n.connection)) return d;
    // An attempt that died with the engine left its journal open on the host: `up` must run
    // the update, which recovers it (read-only here, also in a preview).
    const open = await withHost(n.connection, async (h) => {
      const e = await new HostJournal(h, journalPath(n.owner)).load();
      return !!e && !e.finished;
    }).catch(() => false);
    return open ? { ...d, changes: true } : d;
  },
  async create(i: CutOverInputs) {
    const outs: CutOverOutputs = i.promote ? await doPromote(i, undefined) : { ...i, state: "serving-old", target: liveTarget(specOf(i)), events: [] };
    return { id: `${hostIdentity(i.connection)}:cutover:${endpointName(i.endpoint)}:${i.database}`, outs };
  },
  async read(id: string, p: CutOverOutputs) {
    return { id, props: p };
  },
  async update(_id: string, o: CutOverOutputs, n: CutOverInputs) {
    if (n.promote && o.state !== "promoted") return { outs: await doPromote(n, o) };
    if (!n.promote && o.state === "promoted") return { outs: await doRollBack(n, o) };
    // Nothing to switch, but an interrupted attempt may be open on the host: recovered now.
    const rec = await withEnv(n, (env, spec) => recoverInterrupted(env, spec), o);
    if (n.method !== o.method && o.state === "promoted") throw new Error(`method: this promotion was made with ${o.method}; roll back (promote: false) before changing the method`);
    if (rec?.outcome === "promoted") return { outs: await withEnv(n, async (_env, spec) => adopted(n, spec, rec, o), o) };
    return { outs: { ...o, ...n, state: o.state, target: o.target } };
  },
  async delete(_id: string, p: CutOverOutputs) {
    // An attempt that died with the engine is recovered first: never leave live stopped or clients held.
    await withEnv(p, async (env, spec) => {
      const rec = await recoverInterrupted(env, spec);
      if (rec) progress(p.label, `recovered an interrupted ${rec.entry.op}: ${rec.outcome}`);
    }, p).catch((e) => progress(p.label, `warning: could not check for an interrupted cut-over: ${errorMessage(e)}`));
    // Logical: nothing of ours stays on live (slots, publications, subscriptions, settings).
    // A promoted old live keeps its read-only setting: its data is stale, writes there would be lost.
    if (p.method === "logical") {
      const ls = p.logicalState;
      await withEnv(p, async (env, spec) => {
        const dbs = ls?.clusterDatabases ?? (await env.logical!.clusterDatabases());
        const newUp = !!p.newLiveDataDir && (await env.server.running(p.newLiveDataDir).catch(() => false));
        const c = await cleanupLogical(env, spec, { tag: ls?.tag ?? logicalTag(p.owner), clusterDatabases: dbs }, { target: newUp, keepReadOnly: p.state === "promoted" });
        if (c.removed.length) progress(p.label, `removed: ${c.removed.join(", ")}`);
        if (c.remaining.length) throw new Error(`still there after cleanup: ${c.remaining.join(", ")}`);
      }, p);
    }
    // Hand-over: never stop, move or destroy anything on delete. A promoted new live keeps serving.
    if (p.state === "promoted") {
      progress(p.label, `hand-over: ${p.database} stays on PostgreSQL ${p.to} (${p.newLiveDataset}, port ${p.newLive.port}); the old live ${p.live.dataset} stays stopped and intact. Nothing was changed.`);
    }
  },
};

export type CutOverArgs = { [K in keyof CutOverInputs]: pulumi.Input<CutOverInputs[K]> };

/** The promotion itself (see {@link Promotion}). */
export class CutOver extends UnderstudyResource {
  declare readonly state: pulumi.Output<CutOverOutputs["state"]>;
  declare readonly target: pulumi.Output<DatabaseTarget>;
  declare readonly promotedAt: pulumi.Output<string | undefined>;
  declare readonly rolledBackAt: pulumi.Output<string | undefined>;
  declare readonly finalSnapshot: pulumi.Output<string | undefined>;
  declare readonly newLiveDataset: pulumi.Output<string | undefined>;
  declare readonly pauseWindowMs: pulumi.Output<number | undefined>;
  declare readonly phases: pulumi.Output<Array<{ phase: string; ms: number; held?: boolean }> | undefined>;
  declare readonly events: pulumi.Output<Array<{ at: string; what: string }>>;

  constructor(name: string, args: CutOverArgs, opts?: pulumi.CustomResourceOptions) {
    super(
      "CutOver",
      name,
      {
        ...args,
        state: undefined,
        target: undefined,
        promotedAt: undefined,
        rolledBackAt: undefined,
        finalSnapshot: undefined,
        newLiveDataset: undefined,
        newLiveVolumes: undefined,
        newLiveDataDir: undefined,
        configuration: undefined,
        pauseWindowMs: undefined,
        phases: undefined,
        events: undefined,
      },
      opts,
      ["endpoint"], // it can carry user passwords
    );
  }
}
