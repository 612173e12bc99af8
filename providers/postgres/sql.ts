/**
 * SQL through the `pg` driver. Locally `pg` connects to a unix socket directory or a TCP
 * address directly; on an SSH host the TCP connection is tunnelled with
 * `SshHost.forward` (a unix socket on a remote host cannot be reached this way: give the
 * server a TCP listen address, or use {@link PostgresDriver.adminQuery}, which runs psql
 * on the host). `pg` is `require`d inside the functions: this module is loaded in Pulumi
 * dynamic-provider processes where captured native modules do not serialize.
 */
import type { Duplex } from "node:stream";
import type { Client, QueryResultRow } from "pg";
import type { Host } from "../host/types";
import { canForward, redactText } from "../host/types";
import { PostgresError, PostgresInputError } from "./errors";
import { validateConnHost, validateName, validatePort, validateTimeout } from "./validate";

/** Where and as whom `pg` connects. `password` is never printed. */
export interface PgConnection {
  /** A unix socket directory (absolute path) or a host name / IP address as seen from the host. */
  host: string;
  port: number;
  user: string;
  /** Default `postgres`. */
  database?: string;
  password?: string;
  /** TLS on TCP connections (`true`: require TLS, do not verify the certificate). */
  ssl?: boolean;
  /** Default 10 s. */
  connectTimeoutMs?: number;
  /** Default: none. */
  statementTimeoutMs?: number;
}

/** Checks a connection's fields; returns a normalized copy. */
export function validateConnection(c: unknown, field = "connection"): PgConnection {
  if (!c || typeof c !== "object") throw new PostgresInputError(field, "must be an object { host, port, user, database?, password? }");
  const o = c as Record<string, unknown>;
  const out: PgConnection = {
    host: validateConnHost(o.host, `${field}.host`),
    port: validatePort(o.port, `${field}.port`),
    user: validateName(o.user, `${field}.user`, "role name"),
    database: validateName(o.database ?? "postgres", `${field}.database`, "database name"),
  };
  if (o.password !== undefined && o.password !== null) {
    if (typeof o.password !== "string") throw new PostgresInputError(`${field}.password`, "must be a string");
    out.password = o.password;
  }
  if (o.ssl !== undefined) out.ssl = !!o.ssl;
  if (o.connectTimeoutMs !== undefined) out.connectTimeoutMs = validateTimeout(o.connectTimeoutMs, `${field}.connectTimeoutMs`);
  if (o.statementTimeoutMs !== undefined) out.statementTimeoutMs = validateTimeout(o.statementTimeoutMs, `${field}.statementTimeoutMs`);
  return out;
}

/** `postgres@/run/x:5433/postgres`: for messages; never includes the password. */
export function describeConnection(c: PgConnection): string {
  return `${c.user}@${c.host}:${c.port}/${c.database ?? "postgres"}`;
}

/**
 * `pg` calls `setNoDelay`, `connect`, `setKeepAlive`, `ref`/`unref` on its stream: an
 * SSH channel has none of them. The channel is connected already, so `connect` only
 * announces it.
 */
function asPgStream(ch: Duplex): Duplex {
  const s = ch as Duplex & Record<string, unknown>;
  s.setNoDelay = () => s;
  s.setKeepAlive = () => s;
  s.ref = () => s;
  s.unref = () => s;
  s.connect = () => {
    process.nextTick(() => s.emit("connect"));
    return s;
  };
  return s;
}

/** Open a client, run `fn`, always close. Errors name the target and never the password. */
export async function withClient<T>(host: Host, conn: PgConnection, fn: (c: Client) => Promise<T>, step = "sql"): Promise<T> {
  const c = validateConnection(conn);
  const secrets = c.password ? [c.password] : [];
  const where = describeConnection(c);
   
  const pg = require("pg") as typeof import("pg");
  let stream: Duplex | undefined;
  if (canForward(host)) {
    if (c.host.startsWith("/")) {
      throw new PostgresInputError(
        "connection.host",
        `${c.host} is a unix socket directory on ${host.description}: pg cannot reach it through SSH; listen on 127.0.0.1 and connect to that, or use adminQuery (psql on the host)`,
      );
    }
    try {
      stream = asPgStream(await host.forward(c.host, c.port));
    } catch (e) {
      throw new PostgresError({
        step,
        host: host.description,
        message: `could not open an SSH tunnel to ${c.host}:${c.port}: ${redactText((e as Error).message, secrets)}`,
        leftBehind: "nothing",
      });
    }
  }
  const client = new pg.Client({
    host: c.host,
    port: c.port,
    user: c.user,
    database: c.database,
    password: c.password,
    ssl: c.ssl ? { rejectUnauthorized: false } : undefined,
    connectionTimeoutMillis: c.connectTimeoutMs ?? 10_000,
    statement_timeout: c.statementTimeoutMs,
    application_name: "understudy",
    ...(stream ? { stream: () => stream as Duplex } : {}),
  });
  client.on("error", () => undefined); // reported through the awaited calls
  try {
    try {
      await client.connect();
    } catch (e) {
      throw new PostgresError({
        step,
        host: host.description,
        message: `could not connect to ${where}: ${redactText(pgMessage(e), secrets)}`,
        leftBehind: "nothing",
      });
    }
    try {
      return await fn(client);
    } catch (e) {
      if (e instanceof PostgresError || e instanceof PostgresInputError) throw e;
      throw new PostgresError({
        step,
        host: host.description,
        message: `${where}: ${redactText(pgMessage(e), secrets)}`,
        leftBehind: "no change from the failed statement (it ran in its own transaction unless the caller opened one)",
      });
    }
  } finally {
    await client.end().catch(() => undefined);
    stream?.destroy();
  }
}

function pgMessage(e: unknown): string {
  const x = e as { message?: string; code?: string; detail?: string; hint?: string };
  let m = x?.message ?? String(e);
  if (x?.code) m += ` (SQLSTATE ${x.code})`;
  if (x?.detail) m += `; ${x.detail}`;
  if (x?.hint) m += `; hint: ${x.hint}`;
  return m;
}

/** Rows of one statement. */
export async function queryRows<R extends QueryResultRow = Record<string, unknown>>(
  host: Host,
  conn: PgConnection,
  text: string,
  params: unknown[] = [],
): Promise<R[]> {
  return await withClient(host, conn, async (c) => (await c.query<R>(text, params)).rows);
}
