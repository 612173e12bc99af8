/**
 * What "the upgraded clone matches the source" means, measured: per-table row counts in
 * every database, checksums of chosen tables, sequence positions, extensions, large
 * objects, and user assertions. The same queries run on the recovered clone with the old
 * version (= the source as of the snapshot) and on the upgraded clone.
 */
import type { CheckRecord } from "./report";
import { InputError } from "../errors";

export interface VerifySpec {
  /** `exact` counts every row (slow on huge tables), `none` skips. */
  rowCounts: "exact" | "none";
  /** Tables to checksum, `db.schema.table` or `schema.table` (in `postgres`... the first database). */
  checksumTables: string[];
  /** SQL that must return a single `true` on the upgraded clone. */
  assertions: Array<{ name: string; sql: string; database?: string }>;
}

/** Facts of one cluster; maps are keyed by `db.schema.name`. */
export interface Snapshot {
  databases: string[];
  rowCounts: Record<string, string>;
  checksums: Record<string, string>;
  sequences: Record<string, string>;
  extensions: Record<string, string>;
  largeObjects: Record<string, string>;
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
  if (!["exact", "none"].includes(v.rowCounts)) throw new InputError("checks.rowCounts", 'must be "exact" or "none"');
  v.checksumTables.forEach((t) => parseTableRef(t));
  for (const a of v.assertions) {
    if (!a.name || typeof a.sql !== "string" || !a.sql.trim()) throw new InputError("checks.assertions", "each needs a name and sql");
    if (a.database !== undefined && !IDENT.test(a.database)) throw new InputError("checks.assertions.database", `${JSON.stringify(a.database)} is not a plain identifier`);
  }
  return v;
}

const q = (s: string) => `"${s}"`;

/** Count every leaf table and materialized view in one round trip (query_to_xml). */
const COUNTS = `
SELECT n.nspname || '.' || c.relname,
       (xpath('/row/c/text()', query_to_xml(format('SELECT count(*) AS c FROM %I.%I', n.nspname, c.relname), false, true, '')))[1]::text
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'
   AND NOT (c.relkind = 'm' AND NOT c.relispopulated)
 ORDER BY 1`;

const SEQUENCES = `SELECT schemaname || '.' || sequencename, coalesce(last_value::text, 'unused') FROM pg_sequences ORDER BY 1`;
const EXTENSIONS = `SELECT extname, extversion FROM pg_extension ORDER BY 1`;
const LARGE_OBJECTS = `SELECT count(*)::text FROM pg_largeobject_metadata`;
const DATABASES = `SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY 1`;

export async function collect(query: Query, spec: VerifySpec): Promise<Snapshot> {
  const databases = (await query(DATABASES, "postgres")).map((r) => r[0]);
  const snap: Snapshot = { databases, rowCounts: {}, checksums: {}, sequences: {}, extensions: {}, largeObjects: {} };
  for (const db of databases) {
    if (spec.rowCounts === "exact") for (const [t, n] of await query(COUNTS, db)) snap.rowCounts[`${db}.${t}`] = n;
    for (const [s, v] of await query(SEQUENCES, db)) snap.sequences[`${db}.${s}`] = v;
    for (const [e, v] of await query(EXTENSIONS, db)) snap.extensions[`${db}.${e}`] = v;
    snap.largeObjects[db] = (await query(LARGE_OBJECTS, db))[0]?.[0] ?? "0";
  }
  for (const ref of spec.checksumTables) {
    const t = parseTableRef(ref);
    const db = t.db ?? databases.find((d) => d !== "postgres") ?? "postgres";
    const sql = `SELECT count(*)::text || ':' || coalesce(md5(string_agg(h, '' ORDER BY h)), '-') FROM (SELECT md5(x::text) AS h FROM ${q(t.schema)}.${q(t.table)} x) s`;
    snap.checksums[`${db}.${t.schema}.${t.table}`] = (await query(sql, db))[0]?.[0] ?? "?";
  }
  return snap;
}

/** Compare the baseline (old version, as of the snapshot) with the upgraded clone. */
export function compare(before: Snapshot, after: Snapshot): CheckRecord[] {
  const out: CheckRecord[] = [];
  const both = (kind: CheckRecord["kind"], a: Record<string, string>, b: Record<string, string>, label: (k: string) => string) => {
    for (const k of [...new Set([...Object.keys(a), ...Object.keys(b)])].sort()) {
      out.push({ name: label(k), kind, status: a[k] === b[k] ? "pass" : "fail", expected: a[k] ?? "(missing)", actual: b[k] ?? "(missing)" });
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
