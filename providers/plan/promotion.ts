/**
 * A promotion's arguments resolved once, on top of the rehearsal's plan: the endpoint, the
 * new live, how live is started and stopped. Every field is checked with the rules of
 * every place it will reach (PostgreSQL, PgBouncer, the storage), so that nothing a preview
 * accepts can fail for a malformed value after live is stopped.
 */
import { InputError, InputErrors, collectInputError } from "../errors";
import { validateArgv, validateListenPort, validatePath, validatePgName, validateSocketDir, validateTimeoutMs } from "../validate";
import { validateListen } from "../postgres/validate";
import { assertTrustOnLoopback, validateEntryName, validateInstanceName, validateListenAddr, validateNetworkHost, validateAuthType, validatePoolMode, validateTarget, type AuthType, type PoolMode } from "../endpoint/pgbouncer-config";
import { DEFAULTS } from "./defaults";
import { DNS_LOGICAL_REFUSAL, checkLogicalSettings, checkLogicalTwoHosts, type LogicalSettings } from "./logical";
import { UNKNOWN_ID, type RehearsalPlan, type VolumeIdCheck } from "./rehearsal";

export type { PoolMode };

export interface EndpointPlan {
  /** PgBouncer instance name (its config directory). */
  name: string;
  listenPort: number;
  listenAddr: string;
  /** The database clients use (also its PgBouncer entry name). */
  database: string;
  /**
   * Every database whose PgBouncer entry moves with the cluster (`database` among them), as
   * the user listed them; undefined: every database of live's cluster, read when the program runs.
   */
  databases?: string[];
  poolMode: PoolMode;
  authType: AuthType;
  /** How long PAUSE may wait for transactions in flight. */
  pauseTimeoutMs: number;
  retainOnDelete: boolean;
  /** Where PgBouncer reaches live and the new live over TCP (absent: their unix socket directory). */
  serverHost?: string;
  /** Where PgBouncer reaches the new live when it runs on another machine than live (EBS); default serverHost. */
  newServerHost?: string;
}

export interface PromotionPlan {
  name: string;
  endpoint: EndpointPlan;
  /** How long clients may be held in all; PgBouncer's query_wait_timeout is set above it. */
  switchoverTimeoutMs?: number;
  /** The new live: a clone of live's final snapshot, upgraded; how it is started and stopped as a service (see {@link NewLiveServicePlan}). */
  newLive: { dataset: string; port: number; socketDir: string; listen: string; logFile?: string } & NewLiveServicePlan;
  /** argv that start / stop live (default: pg_ctl with the options live was started with). */
  live: { startCommand?: string[]; stopCommand?: string[] };
  /** How clients move: `replay` (default) or `logical`. */
  method: "replay" | "logical";
  logical?: LogicalSettings;
}

/**
 * How the new live runs as a service of its host. `dataDirLink`: a stable absolute path the
 * cut-over points, as a symlink, at the serving generation's data directory before it starts
 * it; `startCommand`/`stopCommand`: argv that start / stop it through that link (a systemd
 * unit, `pg_ctlcluster 15 main start`). A command needs the link: the data directory's path
 * changes with every generation, so a command could not find it otherwise.
 */
export interface NewLiveServicePlan {
  dataDirLink?: string;
  startCommand?: string[];
  stopCommand?: string[];
}

/** The rules on the new live's service fields (pure: the host is read at check and run time). */
export function checkNewLiveService(n: NewLiveServicePlan): InputError[] {
  const errors: InputError[] = [];
  const check = (fn: () => unknown) => collectInputError(errors, fn);
  if (n.dataDirLink !== undefined) check(() => validatePath(n.dataDirLink, "newLive.dataDirLink", "link path"));
  if (n.startCommand !== undefined) check(() => validateArgv(n.startCommand, "newLive.startCommand"));
  if (n.stopCommand !== undefined) check(() => validateArgv(n.stopCommand, "newLive.stopCommand"));
  if ((n.startCommand !== undefined || n.stopCommand !== undefined) && n.dataDirLink === undefined) {
    errors.push(
      new InputError(
        "newLive.dataDirLink",
        `required with newLive.${n.startCommand !== undefined ? "startCommand" : "stopCommand"}: the new live's data directory changes with every generation (a roll-back and a new promotion make the next one), so your command finds it only through a stable link (e.g. /var/lib/postgresql/15/main, the data_directory of its configuration)`,
      ),
    );
  }
  return errors;
}

/** The service fields as given (only those set). */
function serviceOf(n: NewLiveServicePlan | undefined): NewLiveServicePlan {
  return {
    ...(n?.dataDirLink !== undefined ? { dataDirLink: n.dataDirLink } : {}),
    ...(n?.startCommand !== undefined ? { startCommand: n.startCommand } : {}),
    ...(n?.stopCommand !== undefined ? { stopCommand: n.stopCommand } : {}),
  };
}

export interface PromotionArgsPlain {
  endpoint: {
    name: string;
    listenPort: number;
    listenAddr?: string;
    database: string;
    databases?: string[];
    poolMode?: PoolMode;
    authType?: AuthType;
    pauseTimeoutMs?: number;
    retainOnDelete?: boolean;
    serverHost?: string;
    /** Where PgBouncer reaches the new live when it runs on another machine than live. */
    newServerHost?: string;
    /** Only whether users are given matters here (their values may be secrets, unknown while planning). */
    users?: unknown;
  };
  newLive?: { dataset?: string; port?: number; socketDir?: string; listen?: string; logFile?: string } & NewLiveServicePlan;
  liveStartCommand?: string[];
  liveStopCommand?: string[];
  switchoverTimeoutMs?: number;
  method?: "replay" | "logical";
  logical?: LogicalSettings;
}

/** The switchover timeout: 30 s to 1 h. */
export function validateSwitchoverTimeout(v: unknown, field = "switchoverTimeoutMs"): number {
  return validateTimeoutMs(v, field, { min: 30_000, max: 3_600_000 });
}

/** PgBouncer's query_wait_timeout for a switchover timeout: a minute above it, in whole seconds. */
export function queryWaitTimeoutFor(switchoverTimeoutMs: number): number {
  return Math.ceil(switchoverTimeoutMs / 1000) + 60;
}

/** Refuse a promotion whose rehearsal predicted a longer pause than the switchover timeout allows. */
export function assertPredictedWithin(predictedMs: unknown, switchoverTimeoutMs: number, rehearsal = "the rehearsal"): void {
  if (typeof predictedMs === "number" && predictedMs > switchoverTimeoutMs) {
    throw new InputError(
      "switchoverTimeoutMs",
      `${switchoverTimeoutMs} ms is shorter than the pause ${rehearsal} predicted (${predictedMs} ms): clients would be held past it and the switch given up. Raise switchoverTimeoutMs (at most 3600000), or shorten the cut-over (fewer cut-over steps, the logical method)`,
    );
  }
}

function isNetworkHost(v: unknown): v is string {
  try {
    validateNetworkHost(v);
    return true;
  } catch {
    return false;
  }
}

/** A list of PgBouncer entries / databases that move together: names PgBouncer and psql accept, no repeats, `database` among them. */
export function validateDatabaseList(v: unknown, main: string, field = "endpoint.databases"): string[] {
  if (!Array.isArray(v) || v.length === 0) throw new InputError(field, "must list at least one database");
  const seen = new Set<string>();
  v.forEach((d, i) => {
    validateEntryName(d, `${field}[${i}]`);
    validatePgName(d, `${field}[${i}]`, "database name");
    if (seen.has(d)) throw new InputError(`${field}[${i}]`, `${d} is listed twice`);
    seen.add(d);
  });
  if (!seen.has(main)) throw new InputError(field, `must include endpoint.database (${main})`);
  return v as string[];
}

/** Names a derived volume next to another (the storage's naming rule; injected). */
export type SiblingVolume = (of: string, name: string) => string;

/** Every rule on a promotion plan. `r`: the parts of the rehearsal's plan it must agree with. */
export function checkPromotionPlan(p: PromotionPlan, r: Pick<RehearsalPlan, "source"> & { clone?: { dataset: string } }, volumeId?: VolumeIdCheck): InputError[] {
  const errors: InputError[] = [];
  const check = (fn: () => unknown) => collectInputError(errors, fn);
  const e = p.endpoint;
  check(() => validateInstanceName(e.name, "endpoint.name"));
  check(() => validateListenPort(e.listenPort, "endpoint.listenPort"));
  check(() => validateListenAddr(e.listenAddr, "endpoint.listenAddr"));
  check(() => assertTrustOnLoopback(e.authType, e.listenAddr, "endpoint.listenAddr"));
  if (e.serverHost !== undefined) {
    check(() => {
      validateNetworkHost(e.serverHost, "endpoint.serverHost");
      if (e.newServerHost !== undefined) validateNetworkHost(e.newServerHost, "newLive.serverHost");
      // The new live is reached there too (or on its own machine's address): it must listen on it.
      const at = e.newServerHost ?? e.serverHost;
      const field = e.newServerHost !== undefined ? "newLive.serverHost" : "endpoint.serverHost";
      const listen = p.newLive.listen.split(",").map((x) => x.trim());
      if (!listen.some((x) => x === at || x === "*" || x === "0.0.0.0" || x === "::")) {
        throw new InputError("newLive.listen", `${JSON.stringify(p.newLive.listen)} does not include ${field} ${JSON.stringify(at)}: PgBouncer could not reach the new live (leave newLive.listen unset to listen there)`);
      }
    });
  }
  check(() => validateEntryName(e.database, "endpoint.database"));
  if (e.databases !== undefined) check(() => validateDatabaseList(e.databases, e.database));
  if (p.method !== "replay" && p.method !== "logical") errors.push(new InputError("method", `${JSON.stringify(p.method)} is not replay or logical`));
  errors.push(...checkLogicalSettings(p.logical));
  if (p.logical !== undefined && p.method !== "logical") errors.push(new InputError("logical", 'is for method "logical"'));
  // The cut-over also reads live's sequences in that database with psql.
  check(() => validatePgName(e.database, "endpoint.database", "database name"));
  check(() => validatePoolMode(e.poolMode, "endpoint.poolMode"));
  check(() => validateAuthType(e.authType, "endpoint.authType"));
  check(() => validateTimeoutMs(e.pauseTimeoutMs, "endpoint.pauseTimeoutMs", { min: 1, max: 3_600_000 }));
  if (typeof e.retainOnDelete !== "boolean") errors.push(new InputError("endpoint.retainOnDelete", "must be true or false"));
  if (volumeId) check(() => volumeId(p.newLive.dataset, "newLive.dataset"));
  check(() => validateListenPort(p.newLive.port, "newLive.port"));
  check(() => validateSocketDir(p.newLive.socketDir, "newLive.socketDir"));
  check(() => validateListen(p.newLive.listen, "newLive.listen"));
  if (p.newLive.logFile !== undefined) check(() => validatePath(p.newLive.logFile, "newLive.logFile", "log file"));
  errors.push(...checkNewLiveService(p.newLive));
  // The new live is a PgBouncer target too: its socket directory and port must pass PgBouncer's rules now, not after live is stopped.
  check(() => validateTarget({ host: p.newLive.socketDir, port: p.newLive.port, dbname: e.database }, "newLive"));
  check(() => validateTarget({ host: r.source.socketDir, port: r.source.port, dbname: e.database }, "source"));
  // pg_upgrade's private servers during the replay use newLive.port+2 and +3 (tempPort = port+1).
  // Live's port is busy only on live's machine (a new live on another machine may reuse it).
  const used = new Map<number, string>(e.newServerHost !== undefined ? [] : [
    [r.source.port, "source.port (live)"],
    [e.listenPort, "endpoint.listenPort"],
  ]);
  for (const [field, port] of [
    ["newLive.port", p.newLive.port],
    ["newLive.port+1 (a private server during the replay)", p.newLive.port + 1],
    ["newLive.port+2 (pg_upgrade's old server)", p.newLive.port + 2],
    ["newLive.port+3 (pg_upgrade's new server)", p.newLive.port + 3],
  ] as Array<[string, number]>) {
    check(() => {
      validateListenPort(port, field);
      const other = used.get(port);
      if (other) throw new InputError(field, `port ${port} is also ${other}`);
      used.set(port, field);
    });
  }
  if (p.newLive.dataset !== UNKNOWN_ID && (p.newLive.dataset === r.source.dataset || p.newLive.dataset === r.clone?.dataset)) {
    errors.push(new InputError("newLive.dataset", "must differ from the source and from the rehearsal's clone"));
  }
  if (p.switchoverTimeoutMs !== undefined) check(() => validateSwitchoverTimeout(p.switchoverTimeoutMs));
  if (p.live.startCommand !== undefined) check(() => validateArgv(p.live.startCommand, "liveStartCommand"));
  if (p.live.stopCommand !== undefined) check(() => validateArgv(p.live.stopCommand, "liveStopCommand"));
  return errors;
}

export function resolvePromotionPlan(
  name: string,
  args: PromotionArgsPlain,
  rehearsal: RehearsalPlan,
  opts: { sibling: SiblingVolume; volumeId?: VolumeIdCheck; sanitize: (s: string) => string; liveElsewhere?: boolean },
): PromotionPlan {
  const ep = args.endpoint ?? ({} as PromotionArgsPlain["endpoint"]);
  const plan: PromotionPlan = {
    name,
    endpoint: {
      name: ep.name,
      listenPort: ep.listenPort,
      listenAddr: ep.listenAddr ?? DEFAULTS.endpointListenAddr,
      database: ep.database,
      ...(ep.databases !== undefined ? { databases: ep.databases } : {}),
      poolMode: ep.poolMode ?? DEFAULTS.poolMode,
      authType: ep.authType ?? DEFAULTS.authType,
      pauseTimeoutMs: ep.pauseTimeoutMs ?? DEFAULTS.pauseTimeoutMs,
      retainOnDelete: ep.retainOnDelete ?? DEFAULTS.retainEndpoint,
      ...(ep.serverHost !== undefined ? { serverHost: ep.serverHost } : {}),
      ...(ep.newServerHost !== undefined ? { newServerHost: ep.newServerHost } : {}),
    },
    newLive: {
      dataset: args.newLive?.dataset ?? (typeof rehearsal.clone.dataset === "string" ? opts.sibling(rehearsal.clone.dataset, `${opts.sanitize(name)}-live-pg${rehearsal.to}`) : ""),
      port: args.newLive?.port ?? rehearsal.postgres.port + DEFAULTS.newLivePortOffset,
      socketDir: args.newLive?.socketDir ?? rehearsal.source.socketDir,
      // PgBouncer reaches the new live where it reaches live: on serverHost when given.
      listen: args.newLive?.listen ?? ((h) => (h !== undefined && isNetworkHost(h) ? h : rehearsal.postgres.listen))(ep.newServerHost ?? ep.serverHost),
      ...(args.newLive?.logFile !== undefined ? { logFile: args.newLive.logFile } : {}),
      ...serviceOf(args.newLive),
    },
    switchoverTimeoutMs: args.switchoverTimeoutMs ?? DEFAULTS.switchoverTimeoutMs,
    live: {
      ...(args.liveStartCommand !== undefined ? { startCommand: args.liveStartCommand } : {}),
      ...(args.liveStopCommand !== undefined ? { stopCommand: args.liveStopCommand } : {}),
    },
    method: args.method ?? DEFAULTS.method,
    ...(args.logical !== undefined ? { logical: args.logical } : {}),
  };
  const errors = checkPromotionPlan(plan, rehearsal, opts.volumeId);
  // Live on another machine than the new live (`liveElsewhere`: live has its own connection): the logical method connects them over TCP.
  if (opts.liveElsewhere && plan.method === "logical") errors.push(...checkLogicalTwoHosts(plan.logical).filter((e) => !errors.some((x) => x.field === e.field)));
  // With a password method, PgBouncer has to know every client's password: no users, no client gets in.
  if (plan.endpoint.authType !== "trust" && ep.users === undefined) {
    errors.push(new InputError("endpoint.users", `required with authType ${JSON.stringify(plan.endpoint.authType)}: the users clients log in as, with their passwords (PgBouncer also logs into the server with them); pass them as a secret`));
  }
  if (errors.length) throw new InputErrors(errors, `invalid arguments for ${name} (nothing was run)`);
  return plan;
}

/** A promotion whose endpoint is a DNS record (Route53): what it takes besides the record itself. */
export interface DnsPromotionArgsPlain {
  database: string;
  databases?: string[];
  /** The record's value while live serves / for the new live. */
  liveAddress: string;
  newLiveAddress: string;
  newLive?: { dataset?: string; port?: number; socketDir?: string; listen?: string } & NewLiveServicePlan;
  liveStartCommand?: string[];
  liveStopCommand?: string[];
  switchoverTimeoutMs?: number;
  method?: "replay" | "logical";
}

/**
 * The plan of a promotion through a DNS record. The new live runs on another machine than
 * live and clients keep connecting to `<record>:<live's port>`: the new live listens on live's
 * port (default) on every address (default `*`). Its `endpoint` holds the databases that move
 * and the two addresses (`serverHost`, `newServerHost`); its PgBouncer fields are unused.
 */
export function resolveDnsPromotionPlan(
  name: string,
  args: DnsPromotionArgsPlain,
  rehearsal: RehearsalPlan,
  opts: { sibling: SiblingVolume; volumeId?: VolumeIdCheck; sanitize: (s: string) => string },
): PromotionPlan {
  const errors: InputError[] = [];
  const check = (fn: () => unknown) => collectInputError(errors, fn);
  const plan: PromotionPlan = {
    name,
    endpoint: {
      name: "dns",
      listenPort: 0,
      listenAddr: "",
      database: args.database,
      ...(args.databases !== undefined ? { databases: args.databases } : {}),
      poolMode: "transaction",
      authType: "trust",
      pauseTimeoutMs: DEFAULTS.pauseTimeoutMs,
      retainOnDelete: true,
      serverHost: args.liveAddress,
      newServerHost: args.newLiveAddress,
    },
    newLive: {
      dataset: args.newLive?.dataset ?? (typeof rehearsal.clone.dataset === "string" ? opts.sibling(rehearsal.clone.dataset, `${opts.sanitize(name)}-live-pg${rehearsal.to}`) : ""),
      port: args.newLive?.port ?? rehearsal.source.port,
      socketDir: args.newLive?.socketDir ?? rehearsal.source.socketDir,
      listen: args.newLive?.listen ?? "*",
      ...serviceOf(args.newLive),
    },
    switchoverTimeoutMs: args.switchoverTimeoutMs ?? DEFAULTS.switchoverTimeoutMs,
    live: {
      ...(args.liveStartCommand !== undefined ? { startCommand: args.liveStartCommand } : {}),
      ...(args.liveStopCommand !== undefined ? { stopCommand: args.liveStopCommand } : {}),
    },
    method: args.method ?? DEFAULTS.method,
  };
  check(() => validateEntryName(args.database, "endpoint.database"));
  check(() => validatePgName(args.database, "endpoint.database", "database name"));
  if (args.databases !== undefined) check(() => validateDatabaseList(args.databases, args.database));
  if (plan.method !== "replay") errors.push(new InputError("method", `${JSON.stringify(plan.method)}: ${DNS_LOGICAL_REFUSAL}`));
  if (opts.volumeId) check(() => opts.volumeId!(plan.newLive.dataset, "newLive.dataset"));
  if (plan.newLive.port !== rehearsal.source.port) {
    errors.push(new InputError("newLive.port", `${plan.newLive.port}: clients keep connecting to the record on live's port ${rehearsal.source.port}, so the new live must listen there`));
  }
  for (const off of [0, 1, 2, 3]) check(() => validateListenPort(plan.newLive.port + off, off ? `newLive.port+${off}` : "newLive.port"));
  check(() => validateSocketDir(plan.newLive.socketDir, "newLive.socketDir"));
  check(() => validateListen(plan.newLive.listen, "newLive.listen"));
  errors.push(...checkNewLiveService(plan.newLive));
  if (plan.newLive.dataset !== UNKNOWN_ID && (plan.newLive.dataset === rehearsal.source.dataset || plan.newLive.dataset === rehearsal.clone?.dataset)) {
    errors.push(new InputError("newLive.dataset", "must differ from the source and from the rehearsal's clone"));
  }
  check(() => validateSwitchoverTimeout(plan.switchoverTimeoutMs));
  if (plan.live.startCommand !== undefined) check(() => validateArgv(plan.live.startCommand, "liveStartCommand"));
  if (plan.live.stopCommand !== undefined) check(() => validateArgv(plan.live.stopCommand, "liveStopCommand"));
  if (errors.length) throw new InputErrors(errors, `invalid arguments for ${name} (nothing was run)`);
  return plan;
}
