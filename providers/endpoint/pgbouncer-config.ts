/**
 * PgBouncer endpoint: input validation, file rendering and admin-console parsing. Pure
 * functions only (no host, no network), so they are unit-tested on their own.
 *
 * Everything that ends up in an ini file goes through a validator with a conservative
 * charset first: a value can never carry a newline, a `;`/`#` comment, a second `key =`,
 * a `[section]` or a `%include`, so no input can add a line to pgbouncer's configuration.
 */
import { z } from "zod";
import { InputError } from "../errors";
import { validateListenPort, validateOsUser as sharedOsUser, validatePath, validatePortNumber } from "../validate";

/** Where instances live unless `configDir` says otherwise: `<baseDir>/<name>/`. */
export const DEFAULT_BASE_DIR = "/var/lib/understudy/pgbouncer";
/** The file that marks a config directory as created by this driver (and for which instance). */
export const MARKER_FILE = ".understudy-pgbouncer";
export const DEFAULT_ADMIN_USER = "understudy_admin";
export const DEFAULT_BINARY = "/usr/sbin/pgbouncer";
/** Longest unix socket path the kernel accepts (sun_path is 108 bytes with the NUL). */
const MAX_SOCKET_PATH = 107;

/** A bad input. Names the field and says why; thrown before anything runs. */
export class PgBouncerConfigError extends InputError {
  constructor(field: string, message: string) {
    super(field, message);
    this.name = "PgBouncerConfigError";
  }
}

/** The shared rule (providers/validate.ts), thrown as this module's error type. */
function bouncer<T>(fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof InputError && !(e instanceof PgBouncerConfigError)) throw new PgBouncerConfigError(e.field, e.reason);
    throw e;
  }
}

function show(v: unknown): string {
  const s = typeof v === "string" ? JSON.stringify(v.length > 80 ? v.slice(0, 80) + "…" : v) : JSON.stringify(v);
  return s ?? String(v);
}

function firstBad(value: string, ok: RegExp): string {
  const ch = [...value].find((c) => !ok.test(c)) ?? "?";
  return JSON.stringify(ch);
}

// ---------------------------------------------------------------------------------------
// Validators. Each returns the value unchanged or throws PgBouncerConfigError(field, ...).
// ---------------------------------------------------------------------------------------

/** Instance name: a directory name and a label, `[a-z0-9][a-z0-9_-]*`, at most 63. */
export function validateInstanceName(value: unknown, field = "name"): string {
  if (typeof value !== "string") throw new PgBouncerConfigError(field, `${show(value)} must be a string`);
  if (!/^[a-z0-9][a-z0-9_-]{0,62}$/.test(value)) {
    throw new PgBouncerConfigError(
      field,
      `${show(value)} is not a valid instance name: use 1-63 of a-z 0-9 _ - (starting with a letter or digit)`,
    );
  }
  return value;
}

/** An absolute path: the shared rule (letters, digits and `_ . -` components), as PostgreSQL's paths. */
export function validateAbsolutePath(value: unknown, field: string): string {
  return bouncer(() => validatePath(value, field));
}

/** A port PgBouncer connects to: an integer 1..65535. */
export function validatePort(value: unknown, field = "port"): number {
  return bouncer(() => validatePortNumber(value, field));
}

/** The port PgBouncer listens on: 1024..65535, the same rule as every server Understudy starts. */
export function validateListenPortNumber(value: unknown, field = "listenPort"): number {
  return bouncer(() => validateListenPort(value, field));
}

const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
const IPV6 = /^[0-9A-Fa-f:.]+$/;
const HOSTNAME = /^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$/;

function isIp(v: string): boolean {
  return IPV4.test(v) || ((v.match(/:/g) ?? []).length >= 2 && IPV6.test(v) && v.length <= 45);
}

/** A host name, an IPv4 or IPv6 address. */
export function validateNetworkHost(value: unknown, field = "host"): string {
  if (typeof value !== "string") throw new PgBouncerConfigError(field, `${show(value)} must be a string`);
  if (isIp(value) || HOSTNAME.test(value)) return value;
  throw new PgBouncerConfigError(field, `${show(value)} is not a valid host name or IP address`);
}

/** Where PgBouncer connects: a host name, an IP address, or an absolute unix-socket directory. */
export function validateTargetHost(value: unknown, field = "host"): string {
  if (typeof value === "string" && value.startsWith("/")) return validateAbsolutePath(value, field);
  return validateNetworkHost(value, field);
}

/**
 * Is `addr` a loopback listen address (only this host's own processes reach it)?
 * `127.0.0.0/8`, `::1` and `localhost`; `*`, `0.0.0.0`, `::`, other addresses and host names are not.
 */
export function isLoopback(addr: string): boolean {
  const parts = addr.split(",").map((a) => a.trim());
  return parts.length > 0 && parts.every((a) => a === "localhost" || a === "::1" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(a));
}

/**
 * `trust` lets anyone who reaches the port in as any listed user (the admin console
 * included): refused unless PgBouncer listens on loopback only. `field` names the listen
 * address the way the caller's user wrote it.
 */
export function assertTrustOnLoopback(authType: string, listenAddr: string, field = "listenAddr"): void {
  if (authType === "trust" && !isLoopback(listenAddr)) {
    throw new PgBouncerConfigError(
      field,
      `${show(listenAddr)} with authType "trust" would let anyone who reaches that address in without a password (as any listed user, the admin console included); use a loopback address (127.0.0.1, ::1) or authType "scram-sha-256"`,
    );
  }
}

/** `listen_addr`: `*` (all addresses), an IP address or a host name. */
export function validateListenAddr(value: unknown, field = "listenAddr"): string {
  if (value === "*") return value;
  return validateNetworkHost(value, field);
}

/**
 * A `[databases]` entry name, i.e. the database name clients ask PgBouncer for. Lower
 * case letters, digits, `_` and `-`, at most 63, not `pgbouncer` (the admin console).
 */
export function validateEntryName(value: unknown, field = "database"): string {
  if (typeof value !== "string") throw new PgBouncerConfigError(field, `${show(value)} must be a string`);
  if (!/^[a-z_][a-z0-9_-]{0,62}$/.test(value)) {
    const why =
      value.length === 0
        ? "it is empty"
        : value.length > 63
          ? "it is longer than 63 characters"
          : /^[a-z_]/.test(value)
            ? `it contains ${firstBad(value, /[a-z0-9_-]/)}`
            : "it must start with a lower-case letter or _";
    throw new PgBouncerConfigError(
      field,
      `${show(value)} is not a database name this driver accepts (${why}; allowed: a-z 0-9 _ -)`,
    );
  }
  if (value === "pgbouncer") throw new PgBouncerConfigError(field, `"pgbouncer" is the admin console's name, not a database entry`);
  return value;
}

/** The database name on the PostgreSQL server: letters, digits, `_ -`, at most 63. */
export function validateServerDbName(value: unknown, field = "dbname"): string {
  if (typeof value !== "string") throw new PgBouncerConfigError(field, `${show(value)} must be a string`);
  if (!/^[A-Za-z_][A-Za-z0-9_-]{0,62}$/.test(value)) {
    throw new PgBouncerConfigError(field, `${show(value)} is not a database name this driver accepts (letters, digits, _ -; at most 63)`);
  }
  return value;
}

/** A PostgreSQL / PgBouncer role name: letters, digits, `_ . -`, at most 63. */
export function validateUserName(value: unknown, field = "user"): string {
  if (typeof value !== "string") throw new PgBouncerConfigError(field, `${show(value)} must be a string`);
  if (!/^[A-Za-z_][A-Za-z0-9_.-]{0,62}$/.test(value)) {
    throw new PgBouncerConfigError(field, `${show(value)} is not a user name this driver accepts (letters, digits, _ . -; at most 63)`);
  }
  return value;
}

/** An OS account name (what `runuser -u` takes): the shared rule. */
export function validateOsUser(value: unknown, field = "osUser"): string {
  return bouncer(() => sharedOsUser(value, field));
}

/**
 * A password (or an `md5…` / `SCRAM-SHA-256$…` secret) for the userlist. Any printable
 * text; the value itself never appears in an error message.
 */
export function validatePassword(value: unknown, field = "password"): string {
  if (typeof value !== "string") throw new PgBouncerConfigError(field, "must be a string");
  if (value.length > 1024) throw new PgBouncerConfigError(field, "is longer than 1024 characters");
   
  if (/[\u0000-\u001f\u007f]/.test(value)) throw new PgBouncerConfigError(field, "contains a control character (newline, tab, NUL…)");
  return value;
}

/** A free-text ini value we let through (e.g. `server_reset_query`): one line, no comment or quote characters. */
export function validateIniText(value: unknown, field: string): string {
  if (typeof value !== "string") throw new PgBouncerConfigError(field, `${show(value)} must be a string`);
  if (value.length > 500) throw new PgBouncerConfigError(field, "is longer than 500 characters");
  if (!/^[A-Za-z0-9_ ,.()*-]*$/.test(value)) {
    throw new PgBouncerConfigError(
      field,
      `${show(value)} contains ${firstBad(value, /[A-Za-z0-9_ ,.()*-]/)}; allowed: letters, digits, space and _ , . ( ) * -`,
    );
  }
  return value.trim();
}

/** A startup parameter name for `ignore_startup_parameters`. */
export function validateParameterName(value: unknown, field = "ignoreStartupParameters"): string {
  if (typeof value !== "string" || !/^[a-z_][a-z0-9_]{0,62}$/.test(value)) {
    throw new PgBouncerConfigError(field, `${show(value)} is not a parameter name (a-z 0-9 _)`);
  }
  return value;
}

// ---------------------------------------------------------------------------------------
// Schemas (zod at the boundary; the validators above do the checking).
// ---------------------------------------------------------------------------------------

function checked<T>(fn: (v: unknown, field: string) => T, field: string) {
  return z.unknown().transform((v, ctx) => {
    try {
      return fn(v, field);
    } catch (e) {
      ctx.addIssue({ code: z.ZodIssueCode.custom, message: (e as Error).message });
      return z.NEVER;
    }
  });
}

/** Where one `[databases]` entry points. */
export interface DatabaseTarget {
  /** Host name, IP address, or an absolute unix-socket directory of the PostgreSQL server. */
  host: string;
  port: number;
  /** Database name on that server. */
  dbname: string;
  /** Optional forced server user (`user=` in the connection string). */
  user?: string;
  /** Optional per-database `pool_size`. */
  poolSize?: number;
}

export interface PgBouncerUser {
  name: string;
  /**
   * Plain-text password, or an already-hashed `md5…` / `SCRAM-SHA-256$…` secret. Written
   * only into the userlist file (mode 0600, owned by the PgBouncer OS user); never logged.
   * With `auth_type = trust` it is optional (PgBouncer still uses it to log into a server
   * that asks for a password).
   */
  password?: string;
}

/** PgBouncer's `pool_mode` values (the one list: the resource, the Promotion's plan and the stack configuration check against it). */
export const POOL_MODES = ["transaction", "session", "statement"] as const;
export type PoolMode = (typeof POOL_MODES)[number];

/** `pool_mode`: one of {@link POOL_MODES}. */
export function validatePoolMode(value: unknown, field = "poolMode"): PoolMode {
  if (typeof value === "string" && (POOL_MODES as readonly string[]).includes(value)) return value as PoolMode;
  throw new PgBouncerConfigError(field, `${show(value)} is not ${POOL_MODES.slice(0, -1).join(", ")} or ${POOL_MODES[POOL_MODES.length - 1]}`);
}
/** PgBouncer's `auth_type` values we offer (the one list: the resource, the Promotion's plan and the stack configuration check against it). */
export const AUTH_TYPES = ["trust", "md5", "scram-sha-256"] as const;
export type AuthType = (typeof AUTH_TYPES)[number];

/** `auth_type`: one of {@link AUTH_TYPES}. */
export function validateAuthType(value: unknown, field = "authType"): AuthType {
  if (typeof value === "string" && (AUTH_TYPES as readonly string[]).includes(value)) return value as AuthType;
  throw new PgBouncerConfigError(field, `${show(value)} is not ${AUTH_TYPES.slice(0, -1).join(", ")} or ${AUTH_TYPES[AUTH_TYPES.length - 1]}`);
}

/** What a {@link PgBouncerEndpoint} instance is. Validated in full before anything runs. */
export interface PgBouncerEndpointConfig {
  /** Instance name; also the config directory's name under `baseDir`. */
  name: string;
  /** Parent of config directories. Default `/var/lib/understudy/pgbouncer`. */
  baseDir?: string;
  /** The config directory itself. Default `<baseDir>/<name>`. */
  configDir?: string;
  /** `listen_addr`. Default `127.0.0.1`; `*` for every address. */
  listenAddr?: string;
  /** `listen_port`: the port clients connect to. */
  listenPort: number;
  /**
   * `unix_socket_dir`. Default: the config directory. `null` disables the unix socket.
   * A directory outside the config directory must exist already.
   */
  unixSocketDir?: string | null;
  /**
   * `pool_mode`. Default `transaction`: `PAUSE` then only waits for the transactions in
   * flight to finish (milliseconds), whereas with `session` it waits for every client
   * *session* to end, which is unbounded (measured 8.1 s with two pgbench clients, forever
   * with a connection pool that never disconnects). A promotion needs a short, bounded
   * pause, so `session` is only for clients that cannot live with transaction pooling
   * (session state: prepared statements in PgBouncer 1.18, advisory locks, `SET`, `LISTEN`).
   */
  poolMode?: PoolMode;
  /** `auth_type`. Default `scram-sha-256`. `trust` is refused unless `listenAddr` is a loopback address. */
  authType?: AuthType;
  /** Users written to the userlist (`auth_file`). The admin user is added automatically. */
  users?: PgBouncerUser[];
  /** The admin-console user (`admin_users`). Default `understudy_admin`. */
  adminUser?: string;
  /**
   * The admin user's password. Never logged. The driver requires it unless `authType` is
   * `trust`; {@link PgBouncerEndpointResource} generates one when it is not given, and
   * {@link PgBouncerEndpoint.open} reads it back from the instance's userlist on the host.
   */
  adminPassword?: string;
  /** The OS user PgBouncer runs as and that owns the config directory. Default `postgres`. */
  osUser?: string;
  /** Path of the pgbouncer binary. Default `/usr/sbin/pgbouncer` (Debian/Ubuntu). */
  binary?: string;
  /** `server_reset_query`. Default `DISCARD ALL` (used in session pooling only). */
  serverResetQuery?: string;
  /** `ignore_startup_parameters`. Default `["extra_float_digits"]` (JDBC sends it). */
  ignoreStartupParameters?: string[];
  /** `max_client_conn`. Default 200. */
  maxClientConn?: number;
  /** `default_pool_size`. Default 20. */
  defaultPoolSize?: number;
  /**
   * `[databases]` entries written when the databases file is first created, and entries
   * added by a later `ensure()` when missing. An entry that exists already keeps its current
   * target: `switchTarget` owns it from then on, and `ensure()` never undoes a promotion.
   */
  databases?: Record<string, DatabaseTarget>;
  /** How long `ensure()` waits for the admin console after starting. Default 15000. */
  startTimeoutMs?: number;
  /**
   * `query_wait_timeout` in milliseconds (written in whole seconds): how long a client's query
   * may wait for a server connection, PAUSE included, before PgBouncer drops the client.
   * Unset: PgBouncer's default (120 s). A Promotion sets it a minute above its switchover timeout.
   */
  queryWaitTimeoutMs?: number;
}

/** The config with every default applied and every path derived. */
export interface ResolvedPgBouncerConfig {
  name: string;
  configDir: string;
  listenAddr: string;
  listenPort: number;
  unixSocketDir: string | null;
  poolMode: PoolMode;
  authType: AuthType;
  users: PgBouncerUser[];
  adminUser: string;
  adminPassword?: string;
  osUser: string;
  binary: string;
  serverResetQuery: string;
  ignoreStartupParameters: string[];
  maxClientConn: number;
  defaultPoolSize: number;
  databases: Record<string, DatabaseTarget>;
  startTimeoutMs: number;
  queryWaitTimeoutMs?: number;
  paths: PgBouncerPaths;
}

export interface PgBouncerPaths {
  configDir: string;
  ini: string;
  databases: string;
  userlist: string;
  logfile: string;
  pidfile: string;
  marker: string;
}

const targetSchema = z
  .object({
    host: checked(validateTargetHost, "host"),
    port: checked(validatePort, "port"),
    dbname: checked(validateServerDbName, "dbname"),
    user: checked(validateUserName, "user").optional(),
    poolSize: z.number().int().min(1).max(10000).optional(),
  })
  .strict();

/** Validate one target; errors name `field.host`, `field.port`, ... */
export function validateTarget(value: unknown, field = "target"): DatabaseTarget {
  const r = targetSchema.safeParse(value);
  if (!r.success) throw new PgBouncerConfigError(field, formatIssues(r.error));
  const t: DatabaseTarget = { host: r.data.host as string, port: r.data.port as number, dbname: r.data.dbname as string };
  if (r.data.user !== undefined) t.user = r.data.user as string;
  if (r.data.poolSize !== undefined) t.poolSize = r.data.poolSize;
  return t;
}

function formatIssues(err: z.ZodError): string {
  return err.issues
    .map((i) => {
      const path = i.path.join(".");
      // Our validators already prefix the field name.
      if (i.code === z.ZodIssueCode.custom) return i.message;
      return path ? `${path}: ${i.message}` : i.message;
    })
    .join("; ");
}

const userSchema = z
  .object({
    name: checked(validateUserName, "users[].name"),
    password: checked(validatePassword, "users[].password").optional(),
  })
  .strict();

const configSchema = z
  .object({
    name: z.unknown(),
    baseDir: z.unknown().optional(),
    configDir: z.unknown().optional(),
    listenAddr: z.unknown().optional(),
    listenPort: z.unknown(),
    unixSocketDir: z.unknown().optional(),
    poolMode: z.enum(POOL_MODES).optional(),
    authType: z.enum(AUTH_TYPES).optional(),
    users: z.array(userSchema).max(1000).optional(),
    adminUser: z.unknown().optional(),
    adminPassword: z.unknown().optional(),
    osUser: z.unknown().optional(),
    binary: z.unknown().optional(),
    serverResetQuery: z.unknown().optional(),
    ignoreStartupParameters: z.array(z.unknown()).max(50).optional(),
    maxClientConn: z.number().int().min(1).max(100000).optional(),
    defaultPoolSize: z.number().int().min(1).max(10000).optional(),
    databases: z.record(z.unknown()).optional(),
    startTimeoutMs: z.number().int().min(100).max(600000).optional(),
    queryWaitTimeoutMs: z.number().int().min(1000).max(86_400_000).optional(),
  })
  .strict();

/** Validate a whole config and apply defaults. Throws {@link PgBouncerConfigError}. */
export function resolveConfig(input: PgBouncerEndpointConfig): ResolvedPgBouncerConfig {
  if (!input || typeof input !== "object") throw new PgBouncerConfigError("config", "must be an object");
  const r = configSchema.safeParse(input);
  if (!r.success) {
    const i = r.error.issues[0];
    const path = i.path.join(".") || "config";
    throw new PgBouncerConfigError(path, i.message);
  }
  const c = r.data;
  const name = validateInstanceName(c.name, "name");
  const baseDir = c.baseDir === undefined ? DEFAULT_BASE_DIR : validateAbsolutePath(c.baseDir, "baseDir");
  const configDir = c.configDir === undefined ? `${baseDir}/${name}` : validateAbsolutePath(c.configDir, "configDir");
  if (configDir.split("/").length < 3) {
    throw new PgBouncerConfigError("configDir", `${show(configDir)} is too close to / (use at least two levels, e.g. /srv/pgbouncer)`);
  }
  const listenAddr = c.listenAddr === undefined ? "127.0.0.1" : validateListenAddr(c.listenAddr, "listenAddr");
  const listenPort = validateListenPortNumber(c.listenPort, "listenPort");
  let unixSocketDir: string | null;
  if (c.unixSocketDir === null) unixSocketDir = null;
  else if (c.unixSocketDir === undefined) unixSocketDir = configDir;
  else unixSocketDir = validateAbsolutePath(c.unixSocketDir, "unixSocketDir");
  if (unixSocketDir !== null && `${unixSocketDir}/.s.PGSQL.${listenPort}`.length > MAX_SOCKET_PATH) {
    throw new PgBouncerConfigError(
      "unixSocketDir",
      `${show(unixSocketDir)} is too long for a unix socket path (${MAX_SOCKET_PATH} bytes with .s.PGSQL.${listenPort}); set a shorter unixSocketDir or null`,
    );
  }
  const poolMode = c.poolMode ?? "transaction";
  const authType = c.authType ?? "scram-sha-256";
  assertTrustOnLoopback(authType, listenAddr, "listenAddr");
  const adminUser = c.adminUser === undefined ? DEFAULT_ADMIN_USER : validateUserName(c.adminUser, "adminUser");
  const adminPassword = c.adminPassword === undefined ? undefined : validatePassword(c.adminPassword, "adminPassword");
  if (authType !== "trust" && !adminPassword) {
    throw new PgBouncerConfigError("adminPassword", `is required with authType "${authType}" (the driver logs into the admin console)`);
  }
  const users: PgBouncerUser[] = [];
  const seen = new Set<string>();
  for (const [i, u] of (c.users ?? []).entries()) {
    const name = u.name as string;
    if (seen.has(name)) throw new PgBouncerConfigError(`users[${i}].name`, `${show(name)} is listed twice`);
    seen.add(name);
    if (name === adminUser) throw new PgBouncerConfigError(`users[${i}].name`, `${show(name)} is the admin user; set adminPassword instead`);
    if (authType !== "trust" && !u.password) {
      throw new PgBouncerConfigError(`users[${i}].password`, `is required for user ${show(name)} with authType "${authType}"`);
    }
    users.push(u.password === undefined ? { name } : { name, password: u.password as string });
  }
  const osUser = c.osUser === undefined ? "postgres" : validateOsUser(c.osUser, "osUser");
  const binary = c.binary === undefined ? DEFAULT_BINARY : validateAbsolutePath(c.binary, "binary");
  const serverResetQuery = c.serverResetQuery === undefined ? "DISCARD ALL" : validateIniText(c.serverResetQuery, "serverResetQuery");
  const ignoreStartupParameters = (c.ignoreStartupParameters ?? ["extra_float_digits"]).map((p, i) =>
    validateParameterName(p, `ignoreStartupParameters[${i}]`),
  );
  const databases: Record<string, DatabaseTarget> = {};
  for (const [k, v] of Object.entries(c.databases ?? {})) {
    validateEntryName(k, `databases key`);
    databases[k] = validateTarget(v, `databases.${k}`);
  }
  return {
    name,
    configDir,
    listenAddr,
    listenPort,
    unixSocketDir,
    poolMode,
    authType,
    users,
    adminUser,
    adminPassword,
    osUser,
    binary,
    serverResetQuery,
    ignoreStartupParameters,
    maxClientConn: c.maxClientConn ?? 200,
    defaultPoolSize: c.defaultPoolSize ?? 20,
    databases,
    startTimeoutMs: c.startTimeoutMs ?? 15000,
    ...(c.queryWaitTimeoutMs !== undefined ? { queryWaitTimeoutMs: c.queryWaitTimeoutMs } : {}),
    paths: pathsFor(configDir),
  };
}

export function pathsFor(configDir: string): PgBouncerPaths {
  return {
    configDir,
    ini: `${configDir}/pgbouncer.ini`,
    databases: `${configDir}/databases.ini`,
    userlist: `${configDir}/userlist.txt`,
    logfile: `${configDir}/pgbouncer.log`,
    pidfile: `${configDir}/pgbouncer.pid`,
    marker: `${configDir}/${MARKER_FILE}`,
  };
}

// ---------------------------------------------------------------------------------------
// Rendering
// ---------------------------------------------------------------------------------------

const HEADER = ";; Written by pulumi-understudy (PgBouncerEndpoint). Edits are overwritten.";

/** `pgbouncer.ini`; `[databases]` lives in a separate file that this one `%include`s. */
export function renderIni(c: ResolvedPgBouncerConfig): string {
  const lines = [
    HEADER,
    `;; instance: ${c.name}`,
    "[pgbouncer]",
    `listen_addr = ${c.listenAddr}`,
    `listen_port = ${c.listenPort}`,
    `unix_socket_dir = ${c.unixSocketDir ?? ""}`,
    `auth_type = ${c.authType}`,
    `auth_file = ${c.paths.userlist}`,
    `admin_users = ${c.adminUser}`,
    `pool_mode = ${c.poolMode}`,
    `max_client_conn = ${c.maxClientConn}`,
    `default_pool_size = ${c.defaultPoolSize}`,
    `ignore_startup_parameters = ${c.ignoreStartupParameters.join(",")}`,
    `server_reset_query = ${c.serverResetQuery}`,
    ...(c.queryWaitTimeoutMs !== undefined ? [`query_wait_timeout = ${Math.ceil(c.queryWaitTimeoutMs / 1000)}`] : []),
    `logfile = ${c.paths.logfile}`,
    `pidfile = ${c.paths.pidfile}`,
    "",
    `%include ${c.paths.databases}`,
    "",
  ];
  return lines.join("\n");
}

/** The settings a RELOAD does not apply: changing them needs a restart. */
export function listenSignature(c: ResolvedPgBouncerConfig): string {
  return `${c.listenAddr}|${c.listenPort}|${c.unixSocketDir ?? ""}|${c.paths.pidfile}|${c.paths.logfile}`;
}

/** One `[databases]` value: `host=... port=... dbname=...`. Inputs are validated here again. */
export function renderTarget(t: DatabaseTarget): string {
  const v = validateTarget(t);
  const parts = [`host=${v.host}`, `port=${v.port}`, `dbname=${v.dbname}`];
  if (v.user) parts.push(`user=${v.user}`);
  if (v.poolSize) parts.push(`pool_size=${v.poolSize}`);
  return parts.join(" ");
}

/** The included databases file, entries sorted by name. */
export function renderDatabases(dbs: Record<string, DatabaseTarget>): string {
  const lines = [HEADER, "[databases]"];
  for (const name of Object.keys(dbs).sort()) {
    validateEntryName(name, "database");
    lines.push(`${name} = ${renderTarget(dbs[name])}`);
  }
  return lines.join("\n") + "\n";
}

/**
 * Parse a databases file this driver wrote (comments and blank lines allowed). Anything
 * else is an error: we never rewrite a file we do not understand.
 */
export function parseDatabases(text: string, where = "databases file"): Record<string, DatabaseTarget> {
  const out: Record<string, DatabaseTarget> = {};
  let inSection = false;
  text.split("\n").forEach((raw, idx) => {
    const line = raw.trim();
    if (line === "" || line.startsWith(";") || line.startsWith("#")) return;
    if (line === "[databases]") {
      inSection = true;
      return;
    }
    const m = /^([^\s=]+)\s*=\s*(.*)$/.exec(line);
    if (!inSection || !m) throw new Error(`${where}, line ${idx + 1}: cannot parse ${JSON.stringify(raw)}`);
    const name = validateEntryName(m[1], `${where}, line ${idx + 1}`);
    const kv: Record<string, string> = {};
    for (const pair of m[2].split(/\s+/).filter(Boolean)) {
      const eq = pair.indexOf("=");
      if (eq <= 0) throw new Error(`${where}, line ${idx + 1}: cannot parse ${JSON.stringify(pair)}`);
      kv[pair.slice(0, eq)] = pair.slice(eq + 1);
    }
    const unknown = Object.keys(kv).filter((k) => !["host", "port", "dbname", "user", "pool_size"].includes(k));
    if (unknown.length) throw new Error(`${where}, line ${idx + 1}: unsupported key(s) ${unknown.join(", ")}`);
    const t: Record<string, unknown> = { host: kv.host, port: Number(kv.port), dbname: kv.dbname ?? name };
    if (kv.user !== undefined) t.user = kv.user;
    if (kv.pool_size !== undefined) t.poolSize = Number(kv.pool_size);
    out[name] = validateTarget(t, `${where}, line ${idx + 1}`);
  });
  return out;
}

function quoteUserlist(s: string): string {
  return `"${s.replace(/"/g, '""')}"`;
}

/** The `auth_file` content. The admin user comes first. */
export function renderUserlist(c: ResolvedPgBouncerConfig): string {
  const lines = [`${quoteUserlist(c.adminUser)} ${quoteUserlist(c.adminPassword ?? "")}`];
  for (const u of c.users) lines.push(`${quoteUserlist(u.name)} ${quoteUserlist(u.password ?? "")}`);
  return lines.join("\n") + "\n";
}

/**
 * A userlist this driver wrote: `"name" "password"` per line (`""` inside quotes is one `"`).
 * Returns name -> password; lines it cannot read are skipped (the file is ours).
 */
export function parseUserlist(text: string): Map<string, string> {
  const out = new Map<string, string>();
  const q = '"((?:[^"]|"")*)"';
  const re = new RegExp(`^\\s*${q}\\s+${q}\\s*$`);
  for (const line of text.split("\n")) {
    const m = re.exec(line);
    if (m) out.set(m[1].replace(/""/g, '"'), m[2].replace(/""/g, '"'));
  }
  return out;
}

/** Stands in for a password that is generated or read from the host later (validation only; never written). */
export const ADMIN_PASSWORD_LATER = "(generated)";

/**
 * Validate a config whose admin password may be absent because it is generated (the
 * resource) or read from the host (the cut-over): every other rule, nothing run.
 */
export function checkConfig(input: PgBouncerEndpointConfig): ResolvedPgBouncerConfig {
  if (!input || typeof input !== "object") return resolveConfig(input);
  return resolveConfig(input.adminPassword === undefined ? { ...input, adminPassword: ADMIN_PASSWORD_LATER } : input);
}

/** Every secret in the config, for `redact`. */
export function secretsOf(c: ResolvedPgBouncerConfig): string[] {
  const s = c.users.map((u) => u.password ?? "");
  if (c.adminPassword) s.push(c.adminPassword);
  return s.filter((x) => x.length > 0);
}

// ---------------------------------------------------------------------------------------
// Admin console
// ---------------------------------------------------------------------------------------

/** One row of `SHOW DATABASES`. */
export interface DatabaseStatus {
  name: string;
  host: string | null;
  port: number | null;
  database: string;
  forceUser: string | null;
  poolSize: number | null;
  poolMode: string | null;
  currentConnections: number;
  paused: boolean;
  disabled: boolean;
}

function toNum(v: unknown): number | null {
  if (v === null || v === undefined || v === "") return null;
  const n = Number(v);
  return Number.isFinite(n) ? n : null;
}

function toStr(v: unknown): string | null {
  return v === null || v === undefined || v === "" ? null : String(v);
}

/** Rows of `SHOW DATABASES` (as objects keyed by column name) -> typed entries, admin db excluded. */
export function parseShowDatabases(rows: ReadonlyArray<Record<string, unknown>>): DatabaseStatus[] {
  return rows
    .filter((r) => String(r.name) !== "pgbouncer")
    .map((r) => ({
      name: String(r.name),
      host: toStr(r.host),
      port: toNum(r.port),
      database: String(r.database ?? r.name),
      forceUser: toStr(r.force_user),
      poolSize: toNum(r.pool_size),
      poolMode: toStr(r.pool_mode),
      currentConnections: toNum(r.current_connections) ?? 0,
      paused: Number(r.paused) === 1,
      disabled: Number(r.disabled) === 1,
    }));
}

/** Does a live entry point at `t`? (host, port and dbname; user when `t` forces one). */
export function statusMatches(s: DatabaseStatus, t: DatabaseTarget): boolean {
  if (s.host !== t.host || s.port !== t.port || s.database !== t.dbname) return false;
  if (t.user !== undefined && s.forceUser !== t.user) return false;
  return true;
}

/** `host:port/dbname` for messages. */
export function describeTarget(t: DatabaseTarget | DatabaseStatus): string {
  if ("dbname" in t) return `${t.host}:${t.port}/${t.dbname}`;
  return `${t.host ?? "?"}:${t.port ?? "?"}/${t.database}`;
}

/** The identifier as the admin console expects it (quoted when it is not `[a-z0-9_]+`). */
export function adminIdent(db: string): string {
  validateEntryName(db);
  return /^[a-z0-9_]+$/.test(db) ? db : `"${db}"`;
}

/** Lines of `ss -Hltn` output whose local address listens on `port`. */
export function listenersOnPort(ssOutput: string, port: number): string[] {
  return ssOutput
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => {
      const cols = l.split(/\s+/);
      // State Recv-Q Send-Q Local Peer [Process]
      const local = cols[3] ?? "";
      return local.endsWith(`:${port}`);
    });
}
