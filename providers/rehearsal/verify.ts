/**
 * What "the upgraded clone matches the source" means, measured: per-table row counts in
 * every database, checksums of chosen tables, sequence positions, extensions, large
 * objects, and user assertions. The same queries run on the recovered clone with the old
 * version (= the source as of the snapshot) and on the upgraded clone.
 */
import type { CheckRecord } from "./report";
import { InputError } from "../errors";

export interface VerifySpec {
  /**
   * `exact` counts the rows of every table (one statement, hence one transaction and one lock,
   * per table: a cluster with 40,000 relations does not exhaust the lock table), `none` skips.
   */
  rowCounts: "exact" | "none";
  /** Tables to checksum, `db.schema.table` or `schema.table` (in `postgres`... the first database). */
  checksumTables: string[];
  /** SQL that must return a single `true` on the upgraded clone. */
  assertions: Array<{ name: string; sql: string; database?: string }>;
  /**
   * Tables whose main fork is larger than this many bytes are not counted: both sides compare
   * the table's size (`pg_relation_size`, the same file on both sides after `pg_upgrade`) and
   * the check record says so (`method`), with the planner's row estimate. Default: count all.
   */
  rowCountLimitBytes?: number;
  /**
   * Checksum only this percentage of each checksummed table's rows (0 < p <= 100), chosen by
   * a hash of the primary key: the same rows on both sides whatever their physical order.
   * A table without a primary key is checksummed whole (the check record says so). Default 100.
   */
  checksumSamplePercent?: number;
}

/** Facts of one cluster; maps are keyed by `db.schema.name`. */
export interface Snapshot {
  databases: string[];
  rowCounts: Record<string, string>;
  checksums: Record<string, string>;
  sequences: Record<string, string>;
  extensions: Record<string, string>;
  largeObjects: Record<string, string>;
  /** How a row count or checksum was taken where it is not the default, keyed `rows <key>` / `checksum <key>`. */
  methods?: Record<string, string>;
  /** The cluster's size, for predictions: bytes on disk of every database and its user relations. */
  size?: ClusterSize;
}

/** Size facts of a cluster, measured with the old version on the recovered clone (the baseline). */
export interface ClusterSize {
  /** Sum of `pg_database_size` over every database that accepts connections. */
  bytes: number;
  /** Relations created by users (`pg_class.oid >= 16384`: tables, indexes, TOAST, sequences, views). */
  relations: number;
  /** Of which tables, partitions and materialized views. */
  tables: number;
  databases: number;
}

export type Query = (sql: string, database: string) => Promise<string[][]>;

const IDENT = /^[A-Za-z_][A-Za-z0-9_$]{0,62}$/;

export function parseTableRef(ref: string, field = "checks.checksumTables"): { db?: string; schema: string; table: string } {
  const parts = ref.split(".");
  if (parts.length < 2 || parts.length > 3 || parts.some((p) => !IDENT.test(p))) {
    throw new InputError(field, `${JSON.stringify(ref)} must be schema.table or database.schema.table (plain identifiers)`);
  }
  return parts.length === 3 ? { db: parts[0], schema: parts[1], table: parts[2] } : { schema: parts[0], table: parts[1] };
}

export function validateVerifySpec(v: VerifySpec): VerifySpec {
  if (!["exact", "none"].includes(v.rowCounts)) throw new InputError("checks.rowCounts", `must be "exact" or "none"`);
  v.checksumTables.forEach((t) => parseTableRef(t));
  for (const a of v.assertions) {
    if (!a.name || typeof a.sql !== "string" || !a.sql.trim()) throw new InputError("checks.assertions", "each needs a name and sql");
    if (a.database !== undefined && !IDENT.test(a.database)) throw new InputError("checks.assertions.database", `${JSON.stringify(a.database)} is not a plain identifier`);
  }
  if (v.rowCountLimitBytes !== undefined && !(Number.isSafeInteger(v.rowCountLimitBytes) && v.rowCountLimitBytes >= 0)) {
    throw new InputError("checks.rowCountLimitBytes", `${JSON.stringify(v.rowCountLimitBytes)} must be a whole number of bytes (>= 0)`);
  }
  const p = v.checksumSamplePercent;
  if (p !== undefined && !(typeof p === "number" && Number.isFinite(p) && p > 0 && p <= 100)) {
    throw new InputError("checks.checksumSamplePercent", `${JSON.stringify(p)} must be a number in (0, 100]`);
  }
  return v;
}

const q = (s: string) => `"${s}"`;

/**
 * Every leaf table and populated materialized view: its name quoted by the server (format %I),
 * its key, its main fork's size and the planner's estimate. Counting happens afterwards, one
 * statement per table.
 */
const TABLES = `
SELECT format('%I.%I', n.nspname, c.relname), n.nspname || '.' || c.relname, pg_relation_size(c.oid)::text, greatest(c.reltuples, 0)::bigint::text
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'
   AND NOT (c.relkind = 'm' AND NOT c.relispopulated)
 ORDER BY 2`;

const SEQUENCES = `SELECT schemaname || '.' || sequencename, coalesce(last_value::text, 'unused') FROM pg_sequences ORDER BY 1`;
const EXTENSIONS = `SELECT extname, extversion FROM pg_extension ORDER BY 1`;
const LARGE_OBJECTS = `SELECT count(*)::text FROM pg_largeobject_metadata`;
const DATABASES = `SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY 1`;
/** Size of the current database, its user relations (oid >= FirstNormalObjectId) and of those its tables. */
const SIZE = `SELECT pg_database_size(current_database())::text,
       (SELECT count(*) FROM pg_class WHERE oid >= 16384)::text,
       (SELECT count(*) FROM pg_class WHERE oid >= 16384 AND relkind IN ('r', 'p', 'm'))::text`;

/**
 * One count per statement: psql runs a script's statements one by one, each in its own
 * transaction, so at most one table is locked at a time (one statement over every table held
 * an AccessShareLock on all of them at once and ran out of lock slots around 6,400 tables
 * with the default max_locks_per_transaction).
 */
export function countScript(quotedTables: string[]): string {
  return quotedTables.map((t) => `SELECT count(*)::text FROM ${t};`).join("\n") + "\n";
}

/**
 * A table's checksum that stays cheap at size: md5 of each row's text, summed (order does not
 * matter, so no sort) within 256 chunks chosen by the hash's first byte, then md5 of the
 * chunks in chunk order ("hash of hashes in ordered chunks"). `count:md5`, as before.
 * With `samplePercent` (and a primary key, server-quoted column list `pk`), only the rows whose
 * primary key hashes below the cut are included: the same rows on both sides.
 */
export function checksumSql(schema: string, table: string, sample?: { pk: string; percent: number }): string {
  const where = sample ? ` WHERE ('x' || substr(md5(ROW(${sample.pk})::text), 1, 7))::bit(28)::int < ${Math.round((sample.percent / 100) * 2 ** 28)}` : "";
  return (
    `WITH r AS (SELECT md5(x::text) AS h FROM ${q(schema)}.${q(table)} x${where}), ` +
    `c AS (SELECT substr(h, 1, 2) AS b, count(*) AS n, sum(('x' || substr(h, 3, 15))::bit(60)::bigint) AS s1, sum(('x' || substr(h, 18, 15))::bit(60)::bigint) AS s2 FROM r GROUP BY 1) ` +
    `SELECT coalesce(sum(n), 0)::text || ':' || coalesce(md5(string_agg(b || '.' || n || '.' || s1 || '.' || s2, ',' ORDER BY b)), '-') FROM c`
  );
}

/** The primary key's columns, quoted by the server, in key order; empty without one. */
export function primaryKeySql(schema: string, table: string): string {
  return (
    `SELECT coalesce(string_agg(quote_ident(a.attname), ',' ORDER BY k.ord), '') FROM pg_index i ` +
    `CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord) ` +
    `JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum ` +
    `WHERE i.indrelid = to_regclass('${q(schema)}.${q(table)}') AND i.indisprimary`
  );
}

export async function collect(query: Query, spec: VerifySpec): Promise<Snapshot> {
  const databases = (await query(DATABASES, "postgres")).map((r) => r[0]);
  const snap: Snapshot = { databases, rowCounts: {}, checksums: {}, sequences: {}, extensions: {}, largeObjects: {} };
  const methods: Record<string, string> = {};
  const size: ClusterSize = { bytes: 0, relations: 0, tables: 0, databases: databases.length };
  const limit = spec.rowCountLimitBytes;
  for (const db of databases) {
    // A database's independent queries are asked at once (each is its own psql); the results
    // are taken in the same order as before, so the snapshot is the same.
    const [sizeRows, tableRows, seqRows, extRows, loRows] = await Promise.all([
      query(SIZE, db),
      spec.rowCounts === "exact" ? query(TABLES, db) : Promise.resolve([]),
      query(SEQUENCES, db),
      query(EXTENSIONS, db),
      query(LARGE_OBJECTS, db),
    ]);
    const [bytes, relations, tables] = sizeRows[0] ?? [];
    size.bytes += Number(bytes ?? 0);
    size.relations += Number(relations ?? 0);
    size.tables += Number(tables ?? 0);
    if (spec.rowCounts === "exact") {
      const all = tableRows.map(([quoted, key, rel, est]) => ({ quoted, key: `${db}.${key}`, bytes: Number(rel), est }));
      const counted = all.filter((t) => limit === undefined || t.bytes <= limit);
      const counts = counted.length ? await query(countScript(counted.map((t) => t.quoted)), db) : [];
      if (counts.length !== counted.length) throw new Error(`row counts in ${db}: ${counted.length} tables but ${counts.length} results`);
      counted.forEach((t, k) => (snap.rowCounts[t.key] = counts[k][0]));
      for (const t of all.filter((x) => !counted.includes(x))) {
        snap.rowCounts[t.key] = `${t.bytes} bytes`;
        methods[`rows ${t.key}`] = `not counted (larger than rowCountLimitBytes ${limit}): main fork size compared; planner estimate ~${t.est} rows`;
      }
    }
    for (const [s, v] of seqRows) snap.sequences[`${db}.${s}`] = v;
    for (const [e, v] of extRows) snap.extensions[`${db}.${e}`] = v;
    snap.largeObjects[db] = loRows[0]?.[0] ?? "0";
  }
  const pct = spec.checksumSamplePercent;
  for (const ref of spec.checksumTables) {
    const t = parseTableRef(ref);
    const db = t.db ?? databases.find((d) => d !== "postgres") ?? "postgres";
    const key = `${db}.${t.schema}.${t.table}`;
    let sample: { pk: string; percent: number } | undefined;
    if (pct !== undefined && pct < 100) {
      const pk = (await query(primaryKeySql(t.schema, t.table), db))[0]?.[0] ?? "";
      if (pk) {
        sample = { pk, percent: pct };
        methods[`checksum ${key}`] = `sampled: ${pct}% of rows, chosen by md5 of the primary key (${pk})`;
      } else {
        methods[`checksum ${key}`] = `every row: no primary key to sample by (checksumSamplePercent ${pct})`;
      }
    }
    snap.checksums[key] = (await query(checksumSql(t.schema, t.table, sample), db))[0]?.[0] ?? "?";
  }
  if (Object.keys(methods).length) snap.methods = methods;
  snap.size = size;
  return snap;
}

/** Compare the baseline (old version, as of the snapshot) with the upgraded clone. */
export function compare(before: Snapshot, after: Snapshot): CheckRecord[] {
  const out: CheckRecord[] = [];
  const both = (kind: CheckRecord["kind"], a: Record<string, string>, b: Record<string, string>, label: (k: string) => string) => {
    for (const k of [...new Set([...Object.keys(a), ...Object.keys(b)])].sort()) {
      const name = label(k);
      const ma = before.methods?.[name];
      const mb = after.methods?.[name];
      const method = ma === mb ? ma : `baseline: ${ma ?? "default"}; upgraded: ${mb ?? "default"}`;
      const status = a[k] === b[k] && ma === mb ? "pass" : "fail";
      out.push({ name, kind, status, expected: a[k] ?? "(missing)", actual: b[k] ?? "(missing)", ...(method ? { method } : {}) });
    }
  };
  both("row-count", before.rowCounts, after.rowCounts, (k) => `rows ${k}`);
  both("checksum", before.checksums, after.checksums, (k) => `checksum ${k}`);
  both("sequence", before.sequences, after.sequences, (k) => `sequence ${k}`);
  // Extension versions may legitimately move with the new server (update_extensions.sql): compare presence.
  const present = (m: Record<string, string>) => Object.fromEntries(Object.keys(m).map((k) => [k, "installed"]));
  both("extension", present(before.extensions), present(after.extensions), (k) => `extension ${k}`);
  both("row-count", before.largeObjects, after.largeObjects, (k) => `large objects in ${k}`);
  return out;
}

/** Run the user's assertions on the upgraded clone. */
export async function assertions(query: Query, spec: VerifySpec, defaultDb: string): Promise<CheckRecord[]> {
  const out: CheckRecord[] = [];
  for (const a of spec.assertions) {
    let actual: string;
    try {
      actual = (await query(a.sql, a.database ?? defaultDb))[0]?.[0] ?? "(no row)";
    } catch (e) {
      actual = `error: ${(e as Error).message.split("\n").slice(-3).join(" ")}`;
    }
    out.push({ name: a.name, kind: "assertion", status: actual === "t" || actual === "true" ? "pass" : "fail", expected: "true", actual });
  }
  return out;
}
