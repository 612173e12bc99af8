/**
 * The pure half of the `logical` cut-over (see ./logical.ts): names of everything it creates,
 * quoting, connection strings, the SQL text it sends, the parsers of what comes back, and the
 * readiness rules. Nothing here runs a command; everything is unit-tested.
 *
 * Rules:
 * - Every name we create is derived from a validated {@link validateTag tag} (`[a-z][a-z0-9_]*`)
 *   and, per database, from a hash of the database name, so it is a plain lower-case
 *   identifier; it is still always written through {@link quoteIdent} / {@link quoteLiteral}.
 * - Names read back from a server (schemas, sequences) are quoted with {@link quoteIdent}
 *   before they go into SQL; numbers read back are checked to be integers.
 * - Database names are limited to what the driver's `adminQuery` accepts (letters, digits, `_`).
 * - Every statement that returns something returns ONE row of two fields: a tag and a JSON
 *   document (`jsonb` text is single-line, and JSON escapes tabs and newlines), so the output
 *   of a multi-statement psql script is parsed without ambiguity by {@link parseTagged}.
 */
import { createHash } from "node:crypto";
import { InputError } from "../errors";
import { parseLsn } from "./parse";
import { validateConnHost, validatePath, validatePort } from "./validate";

// ------------------------------------------------------------------ identifiers and literals

/** `"name"` with embedded double quotes doubled. Refuses empty names, NUL and names over 63 bytes (PostgreSQL would truncate them silently). */
export function quoteIdent(name: string): string {
  if (typeof name !== "string" || name.length === 0) throw new InputError("identifier", "is empty");
  if (name.includes("\0")) throw new InputError("identifier", `${JSON.stringify(name)} contains NUL`);
  if (Buffer.byteLength(name, "utf8") > 63) throw new InputError("identifier", `${JSON.stringify(name)} is longer than 63 bytes`);
  return `"${name.replace(/"/g, '""')}"`;
}

/** An SQL string literal, as PostgreSQL's `quote_literal` writes it: `'it''s'`, or `E'a\\b'` when it holds a backslash. */
export function quoteLiteral(value: string): string {
  if (typeof value !== "string") throw new InputError("literal", "must be a string");
  if (value.includes("\0")) throw new InputError("literal", "contains NUL");
  const body = value.replace(/'/g, "''");
  return value.includes("\\") ? `E'${body.replace(/\\/g, "\\\\")}'` : `'${body}'`;
}

/** `schema.name`, each part quoted. */
export const qualified = (schema: string, name: string): string => `${quoteIdent(schema)}.${quoteIdent(name)}`;

/**
 * The tag that names everything one logical cut-over creates (publications, slots,
 * subscriptions, settings): 1-20 characters, lower-case letters, digits and `_`, starting with
 * a letter. Use one per promotion (e.g. derived from the stack name).
 */
export function validateTag(value: unknown, field = "logical.tag"): string {
  if (typeof value !== "string" || !/^[a-z][a-z0-9_]{0,19}$/.test(value)) {
    throw new InputError(field, `${JSON.stringify(value)} is not a tag (1-20 characters: lower-case letters, digits and _, starting with a letter)`);
  }
  return value;
}

/** A database name the driver can reach with psql (letters, digits and `_`, at most 63). */
export function validateDatabase(value: unknown, field: string): string {
  if (typeof value !== "string" || !/^[A-Za-z_][A-Za-z0-9_]{0,62}$/.test(value)) {
    throw new InputError(field, `${JSON.stringify(value)} is not a supported database name (letters, digits and _, starting with a letter or _, at most 63 characters)`);
  }
  return value;
}

/** A non-empty list of distinct database names. */
export function validateDatabases(value: unknown, field = "logical.databases"): string[] {
  if (!Array.isArray(value) || value.length === 0) throw new InputError(field, "must be a non-empty list of database names");
  const out = value.map((d, i) => validateDatabase(d, `${field}[${i}]`));
  const dup = out.find((d, i) => out.indexOf(d) !== i);
  if (dup) throw new InputError(field, `lists ${dup} twice`);
  return out;
}

// ------------------------------------------------------------------ LSNs

/** `0/3000060` (upper case) from a bigint. */
export function formatLsn(n: bigint): string {
  if (n < 0n || n > 0xffffffffffffffffn) throw new RangeError(`not an LSN: ${n}`);
  return `${(n >> 32n).toString(16).toUpperCase()}/${(n & 0xffffffffn).toString(16).toUpperCase()}`;
}

/** A normalized LSN (`0/3000060`), or an {@link InputError} naming the field. */
export function validateLsn(value: unknown, field: string): string {
  try {
    if (typeof value !== "string") throw new Error();
    return formatLsn(parseLsn(value));
  } catch {
    throw new InputError(field, `${JSON.stringify(value)} is not an LSN (like 0/3000060)`);
  }
}

/** a - b in bytes. */
export const lsnDiff = (a: string, b: string): bigint => parseLsn(a) - parseLsn(b);
/** The greatest of several LSNs. */
export const maxLsn = (lsns: string[]): string => formatLsn(lsns.map(parseLsn).reduce((m, x) => (x > m ? x : m), 0n));

// ------------------------------------------------------------------ names

/** Everything one logical cut-over creates, by name. */
export interface LogicalNames {
  tag: string;
  /** Every name below starts with this (`understudy_<tag>_`); cleanup matches it. */
  prefix: string;
  /** Physical slot on live that keeps the WAL between the storage snapshot and the logical slots. */
  physicalSlot: string;
  /** Publication (FOR ALL TABLES) in every database on live; the same name in each. */
  publication: string;
  /** Subscription in every database on the new side; the same name in each. */
  subscription: string;
  /** Logical slot on live for one database (slots are cluster-wide: one per database). */
  slot(database: string): string;
  /** Publication on the NEW live, for the way back (roll-back keeps the new live's writes). */
  reversePublication: string;
  /** Subscription on the OLD live, for the way back. */
  reverseSubscription: string;
  /** Logical slot on the new live for one database, for the way back. */
  reverseSlot(database: string): string;
  /** Custom setting on a database of the old live that records that we made it read-only, and what it was before. */
  readOnlyMarker: string;
  /** Prefix of the logical messages we write as markers. */
  messagePrefix: string;
}

/** 8 hex characters that tell database names apart in slot names (slots are cluster-wide and lower-case). */
export const databaseKey = (database: string): string => createHash("sha256").update(database, "utf8").digest("hex").slice(0, 8);

/** The names for `tag` ({@link validateTag}). All are at most 41 characters. */
export function logicalNames(tag: string): LogicalNames {
  const t = validateTag(tag);
  const prefix = `understudy_${t}_`;
  return {
    tag: t,
    prefix,
    physicalSlot: `${prefix}wal`,
    publication: `${prefix}pub`,
    subscription: `${prefix}sub`,
    slot: (db) => `${prefix}d${databaseKey(db)}`,
    reversePublication: `${prefix}back`,
    reverseSubscription: `${prefix}back`,
    reverseSlot: (db) => `${prefix}b${databaseKey(db)}`,
    readOnlyMarker: `understudy.read_only_${t}`,
    messagePrefix: "understudy",
  };
}

// ------------------------------------------------------------------ connection strings

/**
 * How a subscriber (or the clone while it streams WAL) reaches a publisher. It is written
 * into `primary_conninfo` and into `pg_subscription.subconninfo` on the subscriber, so it has
 * no password field: put the password in a pgpass file readable by the PostgreSQL OS user and
 * name it in `passfile` (or use peer/trust on a unix socket, or certificates).
 */
export interface ReplicationSource {
  /** Unix socket directory (absolute path) or host name / IP address, as seen from the subscriber's host. */
  host: string;
  port: number;
  /** A role with REPLICATION (the publications are FOR ALL TABLES, so in practice a superuser). */
  user: string;
  /** A pgpass file on the subscriber's host. */
  passfile?: string;
  sslmode?: "disable" | "allow" | "prefer" | "require" | "verify-ca" | "verify-full";
}

const SSLMODES = ["disable", "allow", "prefer", "require", "verify-ca", "verify-full"];

export function validateSource(value: unknown, field: string): ReplicationSource {
  if (!value || typeof value !== "object") throw new InputError(field, "must be an object { host, port, user, passfile?, sslmode? }");
  const o = value as Record<string, unknown>;
  if ("password" in o) {
    throw new InputError(`${field}.password`, "is not accepted: it would be stored in plain text in pg_subscription and in the server's command line; use passfile (a pgpass file readable by the PostgreSQL OS user)");
  }
  const out: ReplicationSource = {
    host: wrapInput(() => validateConnHost(o.host, `${field}.host`)),
    port: wrapInput(() => validatePort(o.port, `${field}.port`)),
    user: validateRole(o.user, `${field}.user`),
  };
  if (o.passfile !== undefined) out.passfile = wrapInput(() => validatePath(o.passfile, `${field}.passfile`, "file"));
  if (o.sslmode !== undefined) {
    if (typeof o.sslmode !== "string" || !SSLMODES.includes(o.sslmode)) throw new InputError(`${field}.sslmode`, `${JSON.stringify(o.sslmode)} is not one of ${SSLMODES.join(", ")}`);
    out.sslmode = o.sslmode as ReplicationSource["sslmode"];
  }
  return out;
}

/** A role name: letters, digits and `_` (as the driver accepts). */
export function validateRole(value: unknown, field: string): string {
  if (typeof value !== "string" || !/^[A-Za-z_][A-Za-z0-9_]{0,62}$/.test(value)) {
    throw new InputError(field, `${JSON.stringify(value)} is not an accepted role name (letters, digits and _, starting with a letter or _, at most 63 characters)`);
  }
  return value;
}

/** The driver's validators throw PostgresInputError; turn it into the one InputError type. */
function wrapInput<T>(fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    const x = e as { field?: unknown; message?: string };
    if (typeof x?.field === "string") throw new InputError(x.field, (x.message ?? "").replace(`${x.field}: `, ""));
    throw e;
  }
}

const CONNINFO_VALUE = /^[A-Za-z0-9_./:@+-]+$/;

/**
 * `host=... port=... user=... dbname=... application_name=...`: every value is checked to be
 * made of `[A-Za-z0-9_./:@+-]` only, so no value needs quoting — the string is safe inside a
 * `-c primary_conninfo=...` option (which pg_ctl passes through a shell) and inside an SQL literal.
 */
export function conninfo(src: ReplicationSource, extra: { dbname?: string; application_name?: string } = {}): string {
  const pairs: Array<[string, string | number | undefined]> = [
    ["host", src.host],
    ["port", src.port],
    ["user", src.user],
    ["dbname", extra.dbname],
    ["passfile", src.passfile],
    ["sslmode", src.sslmode],
    ["application_name", extra.application_name],
  ];
  return pairs
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => {
      const s = String(v);
      if (!CONNINFO_VALUE.test(s)) throw new InputError(`conninfo.${k}`, `${JSON.stringify(s)} contains a character that would need quoting`);
      return `${k}=${s}`;
    })
    .join(" ");
}

// ------------------------------------------------------------------ tagged output

/**
 * Parse psql `-A -t -F '\t'` rows of tagged statements (`SELECT 'tag', <json>::text`) into
 * tag -> parsed JSON. A row that is not `tag<TAB>json` is an error (it means a statement we
 * did not write printed something). A tag seen twice keeps the last value.
 */
export function parseTagged(rows: string[][]): Map<string, unknown> {
  return new Map(parseTaggedRows(rows));
}

/**
 * One psql script over several databases of a server: per database a `\connect` and a
 * `db` row naming it, then that database's statements. {@link parseTaggedByDatabase} splits
 * the output again. One psql process instead of one per database: while clients are held
 * that saves a process start (tens of ms) per database, and the statements run one after
 * the other (a slot created in one database does not wait for a transaction in another).
 */
export function scriptAcross(databases: string[], sqlFor: (db: string) => string, connectedTo?: string): string {
  return databases
    .map((db, i) => `${i === 0 && db === connectedTo ? "" : `\\connect ${validateDatabase(db, "database")}\n`}${tagged("db", `to_jsonb(current_database()::text)`)}\n${sqlFor(db)}`)
    .join("\n");
}

/** Rows of a {@link scriptAcross} script: database -> tag -> JSON. */
export function parseTaggedByDatabase(rows: string[][]): Map<string, Map<string, unknown>> {
  const out = new Map<string, Map<string, unknown>>();
  let cur: Map<string, unknown> | undefined;
  for (const [tag, value] of parseTaggedRows(rows)) {
    if (tag === "db") {
      cur = out.get(String(value)) ?? new Map<string, unknown>();
      out.set(String(value), cur);
    } else if (!cur) throw new Error(`psql output row ${tag} comes before any database`);
    else cur.set(tag, value);
  }
  return out;
}

function parseTaggedRows(rows: string[][]): Array<[string, unknown]> {
  return rows.map((r) => {
    if (r.length !== 2 || !/^[a-z_][a-z0-9_:.-]*$/.test(r[0])) throw new Error(`unexpected psql output row: ${JSON.stringify(r).slice(0, 200)}`);
    try {
      return [r[0], JSON.parse(r[1])] as [string, unknown];
    } catch {
      throw new Error(`psql output for ${r[0]} is not JSON: ${r[1].slice(0, 200)}`);
    }
  });
}

/** The JSON of `tag`, or an error naming the tag when the script did not return it. */
export function taggedValue<T>(m: Map<string, unknown>, tag: string): T {
  if (!m.has(tag)) throw new Error(`the script returned no ${tag}`);
  return m.get(tag) as T;
}

/** `SELECT '<tag>', coalesce((<jsonExpr>)::text, 'null');` */
export const tagged = (tag: string, jsonExpr: string, from = ""): string => `SELECT '${tag}', coalesce((${jsonExpr})::text, 'null')${from ? ` ${from}` : ""};`;

/** Sessions that write on a server we made read-only must say so first. */
export const WRITABLE = "SET default_transaction_read_only = off;";

// ------------------------------------------------------------------ readiness: SQL

/** Schemas that are not the user's. */
const USER_NS = "n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp_)'";

/** Cluster-wide facts (run once, in any database). `prefix` counts our own slots apart. */
export function clusterFactsSql(major: number): string {
  const slotStatus = major >= 13 ? "s.wal_status" : "NULL::text";
  const keep = major >= 13 ? "(SELECT setting FROM pg_settings WHERE name = 'max_slot_wal_keep_size')" : "NULL";
  return tagged(
    "cluster",
    `jsonb_build_object(
      'version', current_setting('server_version_num')::int,
      'walLevel', current_setting('wal_level'),
      'inRecovery', pg_is_in_recovery(),
      'maxReplicationSlots', current_setting('max_replication_slots')::int,
      'maxWalSenders', current_setting('max_wal_senders')::int,
      'maxWorkerProcesses', current_setting('max_worker_processes')::int,
      'maxLogicalWorkers', current_setting('max_logical_replication_workers')::int,
      'maxSlotWalKeepSizeMb', ${keep},
      'slots', (SELECT coalesce(jsonb_agg(jsonb_build_array(s.slot_name, s.slot_type, coalesce(s.database, ''), s.active, ${slotStatus}) ORDER BY s.slot_name), '[]') FROM pg_replication_slots s),
      'walSenders', (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'walsender'),
      'logicalWorkers', (SELECT count(*) FROM pg_stat_activity WHERE backend_type LIKE 'logical replication%'),
      'origins', (SELECT count(*) FROM pg_replication_origin),
      'databases', (SELECT coalesce(jsonb_agg(datname::text ORDER BY datname), '[]') FROM pg_database WHERE datallowconn AND NOT datistemplate),
      'subscriptions', (SELECT coalesce(jsonb_agg(jsonb_build_array(d.datname, s.subname, s.subenabled) ORDER BY d.datname, s.subname), '[]') FROM pg_subscription s JOIN pg_database d ON d.oid = s.subdbid),
      'synchronousStandbyNames', current_setting('synchronous_standby_names'),
      'currentLsn', CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn()::text END
    )`,
  );
}

/** Types without an equality operator: a table with REPLICA IDENTITY FULL and such a column cannot be updated or deleted from by a subscriber. */
export const NO_EQUALITY_TYPES = ["json", "xml", "point", "lseg", "line", "box", "path", "polygon", "circle"];

/** Per-database facts (run in each database). */
export function databaseFactsSql(): string {
  const rel = (where: string) =>
    `(SELECT coalesce(jsonb_agg(format('%I.%I', n.nspname, c.relname) ORDER BY 1), '[]') FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE ${USER_NS} AND ${where})`;
  const noEq = NO_EQUALITY_TYPES.map((t) => quoteLiteral(t)).join(", ");
  return tagged(
    "database",
    `jsonb_build_object(
      'name', current_database(),
      'tables', (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE ${USER_NS} AND c.relkind = 'r' AND c.relpersistence = 'p'),
      'noIdentity', ${rel(`c.relkind = 'r' AND c.relpersistence = 'p' AND (
          c.relreplident = 'n'
          OR (c.relreplident = 'd' AND NOT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary))
          OR (c.relreplident = 'i' AND NOT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisreplident)))`)},
      'fullIdentity', ${rel(`c.relkind = 'r' AND c.relpersistence = 'p' AND c.relreplident = 'f'`)},
      'fullNoEquality', ${rel(`c.relkind = 'r' AND c.relpersistence = 'p' AND c.relreplident = 'f' AND EXISTS (
          SELECT 1 FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
            LEFT JOIN pg_type b ON b.oid = t.typbasetype
            LEFT JOIN pg_type e ON e.oid = coalesce(nullif(b.typelem, 0), nullif(t.typelem, 0)) AND coalesce(b.typcategory, t.typcategory) = 'A'
          WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
            AND coalesce(e.typname, b.typname, t.typname) IN (${noEq}))`)},
      'unlogged', ${rel(`c.relkind IN ('r', 'p') AND c.relpersistence = 'u'`)},
      'materializedViews', ${rel(`c.relkind = 'm'`)},
      'foreignTables', ${rel(`c.relkind = 'f'`)},
      'largeObjects', (SELECT count(*) FROM pg_largeobject_metadata),
      'sequences', (SELECT coalesce(jsonb_agg(format('%I.%I', schemaname, sequencename) ORDER BY 1), '[]') FROM pg_sequences)
    )`,
  );
}

/**
 * The schema of the current database, as object -> md5 of its definition: schemas, tables
 * (columns, types, NOT NULL, defaults, persistence, replica identity), views and
 * materialized views (definition), sequences, indexes, constraints, functions, user types,
 * triggers, extensions. Comparing two of them (taken on the SAME major version) tells which
 * objects DDL added, removed or changed; statistics, data and sequence values do not count.
 */
/** The catalogs a schema change writes to (what {@link fingerprintSql} reads, and more). */
const STAMPED_CATALOGS = ["pg_namespace", "pg_class", "pg_attribute", "pg_attrdef", "pg_index", "pg_constraint", "pg_proc", "pg_type", "pg_enum", "pg_trigger", "pg_extension", "pg_rewrite", "pg_inherits"];

/**
 * A cheap stamp of the database's catalogs: per catalog the row count, the sum and the
 * greatest `xmin`. Any committed DDL inserts or updates a catalog row with its own (newer)
 * transaction id, so the stamp changes; in-place updates (ANALYZE's statistics, frozen xids)
 * do not. Taken right before {@link fingerprintSql} in the same script, an equal stamp later
 * means the fingerprint is still true, without computing it again while clients wait (the
 * fingerprint costs about a second at 5,000 tables, the stamp tens of milliseconds). A
 * differing stamp (a temporary table, a TRUNCATE) only means: fingerprint again.
 */
export function catalogStampSql(): string {
  const parts = STAMPED_CATALOGS.map((c) => `SELECT '${c}' AS t, count(*)::text || ':' || coalesce(sum(xmin::text::bigint), 0)::text || ':' || coalesce(max(xmin::text::bigint), 0)::text AS s FROM pg_catalog.${c}`);
  return tagged("stamp", "jsonb_object_agg(t, s)", `FROM (${parts.join(" UNION ALL ")}) x`);
}

export function fingerprintSql(): string {
  const relKind = `CASE c.relkind WHEN 'r' THEN 'table' WHEN 'p' THEN 'table' WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view' WHEN 'S' THEN 'sequence' WHEN 'f' THEN 'foreign table' END`;
  return tagged(
    "fingerprint",
    "coalesce(jsonb_object_agg(k, v), '{}')",
    `FROM (
      SELECT 'schema ' || quote_ident(n.nspname) AS k, md5(pg_get_userbyid(n.nspowner)) AS v FROM pg_namespace n WHERE ${USER_NS}
      UNION ALL
      SELECT ${relKind} || ' ' || format('%I.%I', n.nspname, c.relname),
        md5(concat_ws('|', c.relkind, c.relpersistence, c.relreplident,
          (SELECT string_agg(format('%I %s%s%s', a.attname, format_type(a.atttypid, a.atttypmod), CASE WHEN a.attnotnull THEN ' not null' ELSE '' END,
                  coalesce(' default ' || pg_get_expr(ad.adbin, ad.adrelid), '')), ', ' ORDER BY a.attnum)
             FROM pg_attribute a LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
            WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped),
          CASE WHEN c.relkind IN ('v', 'm') THEN pg_get_viewdef(c.oid) END))
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE ${USER_NS} AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
      UNION ALL
      SELECT 'index ' || format('%I.%I', n.nspname, c.relname), md5(pg_get_indexdef(c.oid))
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE ${USER_NS} AND c.relkind IN ('i', 'I')
      UNION ALL
      SELECT 'constraint ' || format('%I.%I', n.nspname, r.relname) || ' ' || quote_ident(con.conname), md5(pg_get_constraintdef(con.oid))
        FROM pg_constraint con JOIN pg_class r ON r.oid = con.conrelid JOIN pg_namespace n ON n.oid = r.relnamespace WHERE ${USER_NS}
      UNION ALL
      SELECT 'function ' || format('%I.%I', n.nspname, p.proname) || '(' || pg_get_function_identity_arguments(p.oid) || ')',
        md5(concat_ws('|', p.prokind, p.prorettype::regtype::text, p.prosrc))
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE ${USER_NS}
      UNION ALL
      SELECT 'type ' || format('%I.%I', n.nspname, t.typname),
        md5(concat_ws('|', t.typtype, format_type(t.typbasetype, t.typtypmod), (SELECT string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder) FROM pg_enum e WHERE e.enumtypid = t.oid)))
        FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
       WHERE ${USER_NS} AND t.typtype IN ('e', 'd', 'r', 'c') AND NOT (t.typtype = 'c' AND EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = t.typrelid AND c.relkind <> 'c'))
      UNION ALL
      SELECT 'trigger ' || format('%I.%I', n.nspname, r.relname) || ' ' || quote_ident(tg.tgname), md5(pg_get_triggerdef(tg.oid))
        FROM pg_trigger tg JOIN pg_class r ON r.oid = tg.tgrelid JOIN pg_namespace n ON n.oid = r.relnamespace WHERE NOT tg.tgisinternal AND ${USER_NS}
      UNION ALL
      SELECT 'extension ' || quote_ident(x.extname), md5(x.extversion) FROM pg_extension x
    ) f`,
  );
}

// ------------------------------------------------------------------ readiness: evaluation

export interface ClusterFacts {
  version: number;
  walLevel: string;
  inRecovery: boolean;
  maxReplicationSlots: number;
  maxWalSenders: number;
  maxWorkerProcesses: number;
  maxLogicalWorkers: number;
  /** `max_slot_wal_keep_size` in MB (-1: unlimited); null before PostgreSQL 13. */
  maxSlotWalKeepSizeMb: string | null;
  /** [name, type, database, active, wal_status] */
  slots: Array<[string, string, string, boolean, string | null]>;
  walSenders: number;
  logicalWorkers: number;
  origins: number;
  databases: string[];
  /** [database, name, enabled] */
  subscriptions: Array<[string, string, boolean]>;
  synchronousStandbyNames: string;
  currentLsn: string | null;
}

export interface DatabaseFacts {
  name: string;
  tables: number;
  noIdentity: string[];
  fullIdentity: string[];
  fullNoEquality: string[];
  unlogged: string[];
  materializedViews: string[];
  foreignTables: string[];
  largeObjects: number;
  sequences: string[];
}

export type Severity = "error" | "warning" | "info";

/** One finding. `error`s block the method; `warning`s and `info`s are shown (e.g. in preview). */
export interface ReadinessItem {
  code:
    | "wal-level"
    | "in-recovery"
    | "replication-slots"
    | "wal-senders"
    | "unknown-database"
    | "database-not-listed"
    | "replica-identity"
    | "full-identity-equality"
    | "unlogged-tables"
    | "large-objects"
    | "sequences"
    | "materialized-views"
    | "foreign-tables"
    | "live-subscriptions"
    | "slot-wal-limit"
    | "leftover-slots"
    | "rollback-workers"
    | "rollback-origins"
    | "synchronous-standbys"
    | "target-settings";
  severity: Severity;
  /** The database it concerns, when it concerns one. */
  database?: string;
  /** The objects it names (tables, sequences, slots, settings...). */
  objects: string[];
  message: string;
}

const list = (xs: string[], max = 20): string => (xs.length <= max ? xs.join(", ") : `${xs.slice(0, max).join(", ")} and ${xs.length - max} more`);

/**
 * The readiness rules of the `logical` method for a cluster (`cluster`) and its databases
 * (`dbs`, one per listed database that exists), given the databases the user listed.
 * `ours` are the names of our own slots already on live (a retry): they do not count as
 * used capacity.
 */
export function evaluateReadiness(cluster: ClusterFacts, dbs: DatabaseFacts[], listed: string[], names: LogicalNames): ReadinessItem[] {
  const out: ReadinessItem[] = [];
  const n = listed.length;
  if (cluster.walLevel !== "logical") {
    out.push({
      code: "wal-level",
      severity: "error",
      objects: ["wal_level"],
      message:
        `live has wal_level = ${cluster.walLevel}; the logical method needs wal_level = logical. ` +
        "Changing it takes a restart of live: that is your change, at a time you choose (ALTER SYSTEM SET wal_level = logical, then restart) — Understudy never restarts live. Or use method \"replay\".",
    });
  }
  if (/(^|[\s,(])\*($|[\s,)])/.test(cluster.synchronousStandbyNames)) {
    out.push({
      code: "synchronous-standbys",
      severity: "error",
      objects: ["synchronous_standby_names"],
      message: `live has synchronous_standby_names = '${cluster.synchronousStandbyNames}': with "*" the clone streaming WAL and the subscriptions would count as synchronous standbys, and live's commits would wait for them (and hang once they go). Name your standbys explicitly`,
    });
  }
  if (cluster.inRecovery) {
    out.push({ code: "in-recovery", severity: "error", objects: [], message: "live is a standby (in recovery): publications and logical slots need the primary" });
  }
  const ours = cluster.slots.filter((s) => s[0].startsWith(names.prefix));
  const others = cluster.slots.length - ours.length;
  const needSlots = n + 1; // one logical slot per database + the physical one while the clone streams
  if (cluster.maxReplicationSlots - others < needSlots) {
    out.push({
      code: "replication-slots",
      severity: "error",
      objects: ["max_replication_slots"],
      message: `live has max_replication_slots = ${cluster.maxReplicationSlots} with ${others} in use by others; the logical method needs ${needSlots} free (one logical slot per database and one physical slot). Raising it takes a restart of live: your change`,
    });
  }
  const ourSenders = ours.filter((s) => s[3]).length;
  if (cluster.maxWalSenders - (cluster.walSenders - ourSenders) < n) {
    out.push({
      code: "wal-senders",
      severity: "error",
      objects: ["max_wal_senders"],
      message: `live has max_wal_senders = ${cluster.maxWalSenders} with ${cluster.walSenders - ourSenders} in use by others; the logical method needs ${n} free (one per database). Raising it takes a restart of live: your change`,
    });
  }
  if (ours.length > 0) {
    out.push({
      code: "leftover-slots",
      severity: "info",
      objects: ours.map((s) => s[0]),
      message: `live holds ${ours.length} slot(s) of this cut-over (${list(ours.map((s) => s[0]))}); they are ours and are replaced or removed by the next step or the cleanup`,
    });
  }
  if (cluster.maxSlotWalKeepSizeMb === "-1") {
    out.push({
      code: "slot-wal-limit",
      severity: "info",
      objects: ["max_slot_wal_keep_size"],
      message: "live has max_slot_wal_keep_size = -1 (slots may retain WAL without limit); Understudy watches the WAL its own slots retain and stops at the limit you set",
    });
  }
  for (const d of listed.filter((x) => !cluster.databases.includes(x))) {
    out.push({ code: "unknown-database", severity: "error", database: d, objects: [d], message: `database ${d} does not exist on live (or does not allow connections)` });
  }
  const missing = cluster.databases.filter((d) => !listed.includes(d));
  if (missing.length) {
    out.push({
      code: "database-not-listed",
      severity: "error",
      objects: missing,
      message: `live has database(s) ${list(missing)} that are not in the list: the whole cluster moves, and their writes after the snapshot would be lost. List every database`,
    });
  }
  if (cluster.subscriptions.length) {
    out.push({
      code: "live-subscriptions",
      severity: "warning",
      objects: cluster.subscriptions.map(([d, s]) => `${d}.${s}`),
      message: `live is itself a subscriber (${list(cluster.subscriptions.map(([d, s]) => `${d}.${s}`))}): the copies of these subscriptions on the new live are disabled and detached from their slots; re-create them there after the cut-over`,
    });
  }
  const freeWorkers = cluster.maxLogicalWorkers - cluster.logicalWorkers;
  const freeOrigins = cluster.maxReplicationSlots - cluster.origins;
  for (const db of dbs) {
    const d = db.name;
    if (db.noIdentity.length) {
      out.push({
        code: "replica-identity",
        severity: "error",
        database: d,
        objects: db.noIdentity,
        message: `${d}: ${db.noIdentity.length} table(s) have neither a primary key nor a replica identity, so their UPDATEs and DELETEs cannot be replicated: ${list(db.noIdentity)}. Add a primary key, or ALTER TABLE ... REPLICA IDENTITY FULL (slower: every change is matched on all columns)`,
      });
    }
    if (db.fullNoEquality.length) {
      out.push({
        code: "full-identity-equality",
        severity: "error",
        database: d,
        objects: db.fullNoEquality,
        message: `${d}: table(s) with REPLICA IDENTITY FULL have a column of a type without an equality operator (${NO_EQUALITY_TYPES.join(", ")}), so the subscriber cannot find the rows to update or delete: ${list(db.fullNoEquality)}. Give them a primary key or a replica identity index`,
      });
    }
    if (db.unlogged.length) {
      out.push({
        code: "unlogged-tables",
        severity: "error",
        database: d,
        objects: db.unlogged,
        message: `${d}: unlogged table(s) are not replicated and are empty on the new live (a snapshot holds no unlogged data): ${list(db.unlogged)}`,
      });
    }
    if (db.largeObjects > 0) {
      out.push({
        code: "large-objects",
        severity: "error",
        database: d,
        objects: ["pg_largeobject"],
        message: `${d}: ${db.largeObjects} large object(s): logical replication does not carry large objects; the new live has them as of the snapshot, and changes made since are lost`,
      });
    }
    if (db.sequences.length) {
      out.push({
        code: "sequences",
        severity: "info",
        database: d,
        objects: db.sequences,
        message: `${d}: ${db.sequences.length} sequence(s) are not replicated; they are set from live while clients are held: ${list(db.sequences)}`,
      });
    }
    if (db.materializedViews.length) {
      out.push({
        code: "materialized-views",
        severity: "warning",
        database: d,
        objects: db.materializedViews,
        message: `${d}: materialized view(s) hold their content as of the snapshot (REFRESH is not replicated): ${list(db.materializedViews)}`,
      });
    }
    if (db.foreignTables.length) {
      out.push({ code: "foreign-tables", severity: "info", database: d, objects: db.foreignTables, message: `${d}: foreign table(s) are not replicated (their data lives elsewhere): ${list(db.foreignTables)}` });
    }
  }
  // The way back: live becomes the subscriber of the new live, one worker and one origin per database.
  if (freeWorkers < n) {
    out.push({
      code: "rollback-workers",
      severity: "warning",
      objects: ["max_logical_replication_workers"].concat(listed.slice(Math.max(0, freeWorkers))),
      message: `roll-back cannot keep the new live's writes for ${list(listed.slice(Math.max(0, freeWorkers)))}: live has max_logical_replication_workers = ${cluster.maxLogicalWorkers} with ${cluster.logicalWorkers} in use, and the way back needs one per database (${n}). Raising it takes a restart of live: your change`,
    });
  }
  if (freeOrigins < n) {
    out.push({
      code: "rollback-origins",
      severity: "warning",
      objects: ["max_replication_slots"].concat(listed.slice(Math.max(0, freeOrigins))),
      message: `roll-back cannot keep the new live's writes for ${list(listed.slice(Math.max(0, freeOrigins)))}: a subscriber needs one replication origin per subscription (max_replication_slots = ${cluster.maxReplicationSlots}, ${cluster.origins} origins in use)`,
    });
  }
  return out;
}

/** Findings a user may accept (then shown as warnings): data they know does not change, or does not need to move. Never replica identity, wal_level or capacity. */
export const ACCEPTABLE: ReadonlyArray<ReadinessItem["code"]> = ["large-objects", "unlogged-tables", "live-subscriptions", "materialized-views", "foreign-tables"];

/** Downgrade the `accept`ed codes to warnings (see {@link ACCEPTABLE}); refuses a code that cannot be accepted, naming it. */
export function acceptFindings(items: ReadinessItem[], accept: readonly string[] = [], field = "logical.accept"): ReadinessItem[] {
  accept.forEach((c, i) => {
    if (!(ACCEPTABLE as readonly string[]).includes(c)) throw new InputError(`${field}[${i}]`, `${JSON.stringify(c)} cannot be accepted (acceptable: ${ACCEPTABLE.join(", ")})`);
  });
  return items.map((it) => (it.severity === "error" && accept.includes(it.code) ? { ...it, severity: "warning" as const, message: `${it.message} (accepted)` } : it));
}

/**
 * Settings the NEW side needs, to pass when starting it (`start(..., { settings })`):
 * one apply worker, one replication origin per database for the way forward; wal_level =
 * logical, one slot and one WAL sender per database for the way back.
 */
export function requiredTargetSettings(databases: number): Record<string, string | number> {
  if (!Number.isInteger(databases) || databases < 1 || databases > 1000) throw new InputError("databases", `${databases} is not a database count in 1..1000`);
  return {
    wal_level: "logical",
    max_replication_slots: Math.max(10, 2 * databases + 2),
    max_wal_senders: Math.max(10, databases + 2),
    max_logical_replication_workers: Math.max(4, databases + 2),
    max_worker_processes: Math.max(8, databases + 8),
  };
}

/** What a cluster that will subscribe needs, checked on the new side before subscribing (same shape as readiness findings). */
export function evaluateTarget(cluster: ClusterFacts, n: number): ReadinessItem[] {
  const out: ReadinessItem[] = [];
  const need = requiredTargetSettings(n);
  const have: Record<string, number | string> = {
    wal_level: cluster.walLevel,
    max_replication_slots: cluster.maxReplicationSlots,
    max_wal_senders: cluster.maxWalSenders,
    max_logical_replication_workers: cluster.maxLogicalWorkers,
    max_worker_processes: cluster.maxWorkerProcesses,
  };
  const short = Object.entries(need).filter(([k, v]) => (typeof v === "number" ? Number(have[k]) < v : have[k] !== v));
  if (short.length) {
    out.push({
      code: "target-settings",
      severity: "error",
      objects: short.map(([k]) => k),
      message: `the new side must be started with ${short.map(([k, v]) => `${k} = ${v}`).join(", ")} (it has ${short.map(([k]) => `${k} = ${have[k]}`).join(", ")}): see requiredTargetSettings`,
    });
  }
  return out;
}

// ------------------------------------------------------------------ conversion

/**
 * Where the server log says recovery stopped for a `recovery_target_lsn` target, and whether
 * it stopped BEFORE the record at the target (what `recovery_target_inclusive = off` does):
 * `undefined` when the log says nothing about it. The conversion accepts the clone only when
 * it stopped before exactly the start point.
 */
export function recoveryStop(log: string): { lsn: string; before: boolean } | undefined {
  const all = [...log.matchAll(/recovery stopping (before|after) WAL location \(LSN\) "([0-9A-F]+\/[0-9A-F]+)"/g)];
  const m = all[all.length - 1];
  return m ? { lsn: m[2], before: m[1] === "before" } : undefined;
}

/** Throws unless {@link recoveryStop} says the clone stopped right before `target`. */
export function checkRecoveryStop(log: string, target: string): void {
  const stop = recoveryStop(log);
  if (!stop) throw new Error(`the clone was promoted, but its log does not show recovery stopping at ${target}`);
  if (!stop.before || parseLsn(stop.lsn) !== parseLsn(target)) {
    throw new Error(
      `the clone's recovery stopped ${stop.before ? "before" : "after"} ${stop.lsn}, not before ${target}: transactions at the start point would be applied twice or lost`,
    );
  }
}

// ------------------------------------------------------------------ fingerprints

/** A database's schema at one moment: md5 per object (see {@link fingerprintSql}) and a digest of them all. */
/** Per database, its catalog stamp ({@link catalogStampSql}) as JSON text. */
export type CatalogStamps = Record<string, string>;

export interface SchemaFingerprint {
  database: string;
  /** md5 over the sorted entries: equal digests, equal schemas. */
  digest: string;
  objects: number;
  /** object -> md5 of its definition; may be left out when stored (then a difference cannot name objects). */
  entries?: Record<string, string>;
}

export function makeFingerprint(database: string, entries: Record<string, string>): SchemaFingerprint {
  const keys = Object.keys(entries).sort();
  const digest = createHash("md5")
    .update(keys.map((k) => `${k}=${entries[k]}`).join("\n"))
    .digest("hex");
  return { database, digest, objects: keys.length, entries };
}

export interface SchemaDiff {
  database: string;
  added: string[];
  removed: string[];
  changed: string[];
}

/** What changed between two fingerprints of one database (empty lists when they are equal). */
export function diffFingerprints(before: SchemaFingerprint, after: SchemaFingerprint): SchemaDiff {
  const d: SchemaDiff = { database: after.database, added: [], removed: [], changed: [] };
  if (before.digest === after.digest) return d;
  if (!before.entries || !after.entries) {
    d.changed.push(`the schema (${before.objects} -> ${after.objects} objects; details were not kept)`);
    return d;
  }
  for (const [k, v] of Object.entries(after.entries)) {
    if (!(k in before.entries)) d.added.push(k);
    else if (before.entries[k] !== v) d.changed.push(k);
  }
  for (const k of Object.keys(before.entries)) if (!(k in after.entries)) d.removed.push(k);
  for (const l of [d.added, d.removed, d.changed]) l.sort();
  return d;
}

export const describeDiff = (d: SchemaDiff): string =>
  [d.added.length ? `added ${list(d.added, 10)}` : "", d.removed.length ? `removed ${list(d.removed, 10)}` : "", d.changed.length ? `changed ${list(d.changed, 10)}` : ""]
    .filter(Boolean)
    .join("; ");

// ------------------------------------------------------------------ sequences

/** A sequence's value on the side clients leave: `[schema, name, last_value]` (sequences never used are left out). */
export type SequenceValue = [string, string, string];

export function sequencesSql(): string {
  return tagged(
    "sequences",
    "coalesce(jsonb_agg(jsonb_build_array(schemaname, sequencename, last_value::text) ORDER BY schemaname, sequencename), '[]')",
    "FROM pg_sequences WHERE last_value IS NOT NULL",
  );
}

/** `setval` of every sequence to the value read on the other side (names quoted, values checked to be integers). */
export function setvalSql(values: SequenceValue[]): string {
  if (values.length === 0) return tagged("setval", "to_jsonb(0)");
  const rows = values.map(([schema, name, v]) => {
    if (typeof v !== "string" || !/^-?\d{1,19}$/.test(v)) throw new Error(`sequence ${schema}.${name}: ${JSON.stringify(v)} is not an integer`);
    return `(${quoteLiteral(qualified(schema, name))}, ${v}::bigint)`;
  });
  return tagged("setval", "to_jsonb(count(setval(v.s::regclass, v.n, true)))", `FROM (VALUES ${rows.join(", ")}) v(s, n)`);
}

// ------------------------------------------------------------------ statements

/** The oid of a subscription of the current database, by name. */
const subOid = (sub: string) => `(SELECT s.oid FROM pg_subscription s WHERE s.subname = ${quoteLiteral(sub)} AND s.subdbid = (SELECT oid FROM pg_database WHERE datname = current_database()))`;

/** Tables a publication carries: every permanent plain table (partitions included, partitioned parents not) outside the system schemas. */
const PUBLISHED = `FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE ${USER_NS} AND c.relkind = 'r' AND c.relpersistence = 'p'`;

/** The tables a publication of ours must list (the same rule as {@link createPublicationSql}), one per row. */
export const PUBLISHABLE_TABLES_SQL = `SELECT format('%I.%I', n.nspname, c.relname) ${PUBLISHED} ORDER BY 1`;

/** The tables publication `pub` lists, one per row. */
export const publicationTablesSql = (pub: string): string =>
  `SELECT format('%I.%I', n.nspname, c.relname) FROM pg_publication_rel pr JOIN pg_publication p ON p.oid = pr.prpubid JOIN pg_class c ON c.oid = pr.prrelid JOIN pg_namespace n ON n.oid = c.relnamespace WHERE p.pubname = ${quoteLiteral(pub)} ORDER BY 1`;

/**
 * Create the publication unless it exists, listing the tables that exist NOW (not FOR ALL
 * TABLES: with FOR ALL TABLES, every table created later joins it, and UPDATE/DELETE on a
 * new table without a replica identity would then fail on live for as long as the
 * publication exists). Refuses, naming them, when a table has no replica identity (the same
 * consequence). A table created later is not replicated: the schema check at the cut-over
 * sees it. Commented so that a DBA knows whose it is.
 */
export function createPublicationSql(pub: string, comment: string): string {
  return [
    WRITABLE,
    `DO $understudy$ DECLARE missing text; tables text; BEGIN
       IF EXISTS (SELECT 1 FROM pg_publication WHERE pubname = ${quoteLiteral(pub)}) THEN RETURN; END IF;
       SELECT string_agg(format('%I.%I', n.nspname, c.relname), ', ' ORDER BY 1) INTO missing ${PUBLISHED}
          AND (c.relreplident = 'n'
               OR (c.relreplident = 'd' AND NOT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary))
               OR (c.relreplident = 'i' AND NOT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisreplident)));
       IF missing IS NOT NULL THEN
         RAISE EXCEPTION 'understudy: table(s) without a primary key or replica identity in database %: % (a publication would make their UPDATEs and DELETEs fail on this server)', current_database(), missing;
       END IF;
       SELECT string_agg(format('%I.%I', n.nspname, c.relname), ', ' ORDER BY 1) INTO tables ${PUBLISHED};
       EXECUTE format('CREATE PUBLICATION %I', ${quoteLiteral(pub)}) || coalesce(' FOR TABLE ' || tables, '');
     END $understudy$;`,
    `COMMENT ON PUBLICATION ${quoteIdent(pub)} IS ${quoteLiteral(comment)};`,
  ].join("\n");
}

export const dropPublicationSql = (pub: string): string => `${WRITABLE}\nDROP PUBLICATION IF EXISTS ${quoteIdent(pub)};`;

/**
 * Drop our slots (by exact name) on the server, in the database the script runs in:
 * terminate the WAL senders that hold them (ours: a subscriber of this cut-over), wait until
 * they are released, drop. Idempotent.
 */
export function dropSlotsSql(slots: string[]): string {
  if (slots.length === 0) return tagged("dropped", "'[]'::jsonb");
  const arr = `ARRAY[${slots.map(quoteLiteral).join(", ")}]::text[]`;
  return [
    `SELECT 'terminated', to_jsonb(count(pg_terminate_backend(active_pid)))::text FROM pg_replication_slots WHERE slot_name = ANY(${arr}) AND active_pid IS NOT NULL;`,
    `DO $understudy$ BEGIN
       FOR i IN 1..500 LOOP
         EXIT WHEN NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = ANY(${arr}) AND active);
         PERFORM pg_sleep(0.01);
       END LOOP;
     END $understudy$;`,
    tagged("dropped", "coalesce(jsonb_agg(slot_name::text), '[]')", `FROM (SELECT slot_name, pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = ANY(${arr}) AND (database IS NULL OR database = current_database())) x`),
  ].join("\n");
}

/** Create the physical slot that keeps WAL from now on (reserving it at once); returns its restart LSN. Keeps an existing one (its WAL starts earlier still). */
export function createPhysicalSlotSql(slot: string): string {
  return [
    `DO $understudy$ BEGIN
       IF NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = ${quoteLiteral(slot)}) THEN
         PERFORM pg_create_physical_replication_slot(${quoteLiteral(slot)}, true);
       END IF;
     END $understudy$;`,
    tagged("slot", "to_jsonb(restart_lsn::text)", `FROM pg_replication_slots WHERE slot_name = ${quoteLiteral(slot)}`),
  ].join("\n");
}

/**
 * In one database: (re)create the logical slot (an existing one of ours is dropped first: its
 * start would lie before a newer snapshot). Returns the slot's consistent point.
 */
export function createLogicalSlotSql(slot: string): string {
  return [
    dropSlotsSql([slot]),
    tagged("slot", "to_jsonb(lsn::text)", `FROM pg_create_logical_replication_slot(${quoteLiteral(slot)}, 'pgoutput')`),
  ].join("\n");
}

/**
 * A transactional logical message: everything committed before it is ahead of it in the
 * WAL, and its LSN (the end of the message record) is the point a subscriber must have
 * received past to have applied all of it. It changes no data. `sync` commits it
 * synchronously, which puts it and everything before it on disk — where WAL senders can
 * read it; of several markers in a row only the last needs it.
 */
export function markerSql(prefix: string, content: string, sync = true): string {
  return [WRITABLE, `SET synchronous_commit = ${sync ? "on" : "off"};`, tagged("marker", `to_jsonb(pg_logical_emit_message(true, ${quoteLiteral(prefix)}, ${quoteLiteral(content)})::text)`)].join("\n");
}

/**
 * The subscription of the current database with `create_slot = false, copy_data = false,
 * enabled = false` on an existing slot; then its replication origin advanced to `startLsn`;
 * then enabled. An existing subscription of that name (ours, from a failed attempt) is
 * dropped first without touching its slot.
 */
export function createSubscriptionSql(a: { subscription: string; publication: string; slot: string; conninfo: string; startLsn?: string; enabled?: boolean }): string {
  const s = quoteIdent(a.subscription);
  const lines = [
    WRITABLE,
    dropSubscriptionSql(a.subscription),
    `CREATE SUBSCRIPTION ${s} CONNECTION ${quoteLiteral(a.conninfo)} PUBLICATION ${quoteIdent(a.publication)} WITH (create_slot = false, copy_data = false, enabled = false, slot_name = ${quoteLiteral(a.slot)});`,
  ];
  if (a.startLsn !== undefined) {
    const lsn = validateLsn(a.startLsn, "startLsn");
    lines.push(tagged("origin", `to_jsonb(pg_replication_origin_progress('pg_' || ${subOid(a.subscription)}, false)::text)`, `FROM pg_replication_origin_advance('pg_' || ${subOid(a.subscription)}, ${quoteLiteral(lsn)}::pg_lsn)`));
  }
  if (a.enabled ?? true) lines.push(`ALTER SUBSCRIPTION ${s} ENABLE;`);
  return lines.join("\n");
}

/** Drop the subscription of the current database without dropping its slot on the publisher (we drop our slots ourselves). Idempotent. */
export function dropSubscriptionSql(sub: string): string {
  const s = quoteIdent(sub);
  return [
    `DO $understudy$ BEGIN
       IF ${subOid(sub)} IS NOT NULL THEN
         EXECUTE ${quoteLiteral(`ALTER SUBSCRIPTION ${s} DISABLE`)};
         EXECUTE ${quoteLiteral(`ALTER SUBSCRIPTION ${s} SET (slot_name = NONE)`)};
       END IF;
     END $understudy$;`,
    `DROP SUBSCRIPTION IF EXISTS ${s};`,
  ].join("\n");
}

/**
 * Disable the subscription of the current database and terminate its apply worker: the
 * worker only notices a DISABLE at its next loop (up to a second when idle). It has applied
 * what we waited for; a transaction it may be in is rolled back and replayed from its origin
 * if the subscription is enabled again. Follow with {@link waitWorkersGoneSql}.
 */
export function disableSubscriptionSql(sub: string): string {
  return [
    `ALTER SUBSCRIPTION ${quoteIdent(sub)} DISABLE;`,
    `SELECT 'terminated', to_jsonb(count(pg_terminate_backend(st.pid)))::text FROM pg_stat_subscription st WHERE st.subid = ${subOid(sub)} AND st.pid IS NOT NULL;`,
  ].join("\n");
}

/**
 * Wait (bounded, server-side, polling every 2 ms) until the subscription named `sub` of each
 * database has received past that database's marker LSN; on timeout RAISE an error that
 * starts with `understudy: not applied` and names each database behind. Run first in a
 * script, it makes everything after it conditional on the data having arrived.
 */
export function waitReceivedSql(sub: string, markers: Array<{ database: string; lsn: string }>, waitMs: number): string {
  if (markers.length === 0) return "";
  const rows = markers.map((m) => `(${quoteLiteral(validateDatabase(m.database, "database"))}, ${quoteLiteral(validateLsn(m.lsn, "marker"))}::pg_lsn)`).join(", ");
  const n = Math.max(1, Math.ceil(waitMs / 2));
  return `DO $understudy$ DECLARE behind text; BEGIN
       FOR i IN 1..${n} LOOP
         SELECT string_agg(format('%s: received %s, needs %s%s', m.db, coalesce(st.received_lsn::text, 'nothing'), m.lsn,
                  CASE WHEN st.pid IS NULL THEN ' (apply worker not running)' ELSE '' END), '; ' ORDER BY m.db)
           INTO behind
           FROM (VALUES ${rows}) m(db, lsn)
           LEFT JOIN pg_database d ON d.datname = m.db
           LEFT JOIN pg_subscription s ON s.subdbid = d.oid AND s.subname = ${quoteLiteral(sub)}
           LEFT JOIN pg_stat_subscription st ON st.subid = s.oid AND st.relid IS NULL
          WHERE st.received_lsn IS NULL OR st.received_lsn < m.lsn;
         EXIT WHEN behind IS NULL;
         PERFORM pg_sleep(0.002);
       END LOOP;
       IF behind IS NOT NULL THEN
         RAISE EXCEPTION 'understudy: not applied within % ms: %', ${waitMs}, behind;
       END IF;
     END $understudy$;`;
}

/** Wait (bounded, server-side) until no apply worker of a subscription named `sub` runs, in any database. */
export function waitWorkersGoneSql(sub: string, waitMs = 5000): string {
  const workers = `SELECT 1 FROM pg_stat_subscription st JOIN pg_subscription s ON s.oid = st.subid WHERE s.subname = ${quoteLiteral(sub)} AND st.pid IS NOT NULL`;
  return `DO $understudy$ BEGIN
       FOR i IN 1..${Math.max(1, Math.ceil(waitMs / 2))} LOOP
         EXIT WHEN NOT EXISTS (${workers});
         PERFORM pg_sleep(0.002);
       END LOOP;
       IF EXISTS (${workers}) THEN
         RAISE EXCEPTION 'an apply worker of subscription % is still running % ms after DISABLE', ${quoteLiteral(sub)}, ${waitMs};
       END IF;
     END $understudy$;`;
}

export const enableSubscriptionSql = (sub: string): string => `ALTER SUBSCRIPTION ${quoteIdent(sub)} ENABLE;`;

/** Commit one transaction synchronously: every asynchronous commit before it (an apply worker's) is then on disk. */
export const flushSql = (): string => ["SET synchronous_commit = on;", tagged("flushed", "to_jsonb(txid_current()::text)")].join("\n");

/** The subscriptions named `sub` in every database of the server, with their apply workers. */
export function subscriptionStateSql(sub: string, major: number): string {
  const errors = major >= 15 ? "(SELECT apply_error_count FROM pg_stat_subscription_stats x WHERE x.subid = s.oid)" : "NULL::bigint";
  return tagged(
    "subscriptions",
    `coalesce(jsonb_agg(jsonb_build_array(d.datname, s.subenabled, st.pid, st.received_lsn::text, ${errors}) ORDER BY d.datname), '[]')`,
    `FROM pg_subscription s JOIN pg_database d ON d.oid = s.subdbid LEFT JOIN pg_stat_subscription st ON st.subid = s.oid AND st.relid IS NULL WHERE s.subname = ${quoteLiteral(sub)}`,
  );
}

/** Our slots on a server (name starts with `prefix`): WAL they retain, how far their consumer has confirmed, the apply lag it reports. */
export function slotStateSql(prefix: string, major: number): string {
  const status = major >= 13 ? "s.wal_status" : "NULL::text";
  return tagged(
    "slots",
    `jsonb_build_object('currentLsn', pg_current_wal_lsn()::text, 'slots', coalesce(jsonb_agg(jsonb_build_array(
        s.slot_name, s.slot_type, coalesce(s.database, ''), s.active,
        pg_wal_lsn_diff(pg_current_wal_lsn(), s.restart_lsn)::text,
        pg_wal_lsn_diff(pg_current_wal_lsn(), s.confirmed_flush_lsn)::text,
        extract(epoch FROM r.replay_lag)::text, ${status}) ORDER BY s.slot_name) FILTER (WHERE s.slot_name IS NOT NULL), '[]'))`,
    `FROM (SELECT 1) one LEFT JOIN pg_replication_slots s ON left(s.slot_name, ${prefix.length}) = ${quoteLiteral(prefix)} LEFT JOIN pg_stat_replication r ON r.pid = s.active_pid`,
  );
}

/**
 * Make a database read-only for new sessions (`ALTER DATABASE ... SET
 * default_transaction_read_only = on`), remembering the value it had in a custom setting
 * `marker` on the same database, so that {@link undoReadOnlySql} restores exactly that.
 * Idempotent: a second call keeps the first prior value.
 */
export function readOnlySql(database: string, marker: string): string {
  const db = quoteLiteral(validateDatabase(database, "database"));
  const m = quoteLiteral(marker);
  return [
    WRITABLE,
    `DO $understudy$ DECLARE prior text; BEGIN
       IF EXISTS (SELECT 1 FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase, unnest(s.setconfig) c
                   WHERE d.datname = ${db} AND s.setrole = 0 AND split_part(c, '=', 1) = ${m}) THEN
         RETURN;
       END IF;
       SELECT substr(c, length('default_transaction_read_only=') + 1) INTO prior
         FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase, unnest(s.setconfig) c
        WHERE d.datname = ${db} AND s.setrole = 0 AND split_part(c, '=', 1) = 'default_transaction_read_only';
       EXECUTE format('ALTER DATABASE %I SET %s = %L', ${db}, ${m}, coalesce(prior, 'unset'));
       EXECUTE format('ALTER DATABASE %I SET default_transaction_read_only = on', ${db});
     END $understudy$;`,
    tagged(
      "sessions",
      "to_jsonb(count(*))",
      `FROM pg_stat_activity WHERE datname = ${db} AND backend_type = 'client backend' AND pid <> pg_backend_pid()`,
    ),
  ].join("\n");
}

/** Undo {@link readOnlySql} where its marker is present (and only there). Idempotent. */
export function undoReadOnlySql(database: string, marker: string): string {
  const db = quoteLiteral(validateDatabase(database, "database"));
  const m = quoteLiteral(marker);
  return [
    WRITABLE,
    `DO $understudy$ DECLARE prior text; BEGIN
       SELECT substr(c, length(${m}) + 2) INTO prior
         FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase, unnest(s.setconfig) c
        WHERE d.datname = ${db} AND s.setrole = 0 AND split_part(c, '=', 1) = ${m};
       IF prior IS NULL THEN RETURN; END IF;
       IF prior = 'unset' THEN
         EXECUTE format('ALTER DATABASE %I RESET default_transaction_read_only', ${db});
       ELSE
         EXECUTE format('ALTER DATABASE %I SET default_transaction_read_only = %L', ${db}, prior);
       END IF;
       EXECUTE format('ALTER DATABASE %I RESET %s', ${db}, ${m});
     END $understudy$;`,
  ].join("\n");
}

/** Settings of ours on a server's databases: [database, setting] where the setting is our marker. */
export function markersSql(marker: string): string {
  return tagged(
    "markers",
    "coalesce(jsonb_agg(d.datname::text ORDER BY d.datname), '[]')",
    `FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase, unnest(s.setconfig) c WHERE s.setrole = 0 AND split_part(c, '=', 1) = ${quoteLiteral(marker)}`,
  );
}

/** What of ours is on a server, for cleanup and its proof: slots (by prefix), publications and subscriptions (by name, in the current database). */
export function leftoversSql(names: LogicalNames): string {
  return tagged(
    "leftovers",
    `jsonb_build_object(
      'slots', (SELECT coalesce(jsonb_agg(jsonb_build_array(slot_name::text, coalesce(database::text, '')) ORDER BY slot_name), '[]') FROM pg_replication_slots WHERE left(slot_name, ${names.prefix.length}) = ${quoteLiteral(names.prefix)}),
      'publications', (SELECT coalesce(jsonb_agg(pubname::text ORDER BY pubname), '[]') FROM pg_publication WHERE pubname IN (${quoteLiteral(names.publication)}, ${quoteLiteral(names.reversePublication)})),
      'subscriptions', (SELECT coalesce(jsonb_agg(subname::text ORDER BY subname), '[]') FROM pg_subscription WHERE subdbid = (SELECT oid FROM pg_database WHERE datname = current_database()) AND subname IN (${quoteLiteral(names.subscription)}, ${quoteLiteral(names.reverseSubscription)}))
    )`,
  );
}
