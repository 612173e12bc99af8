/**
 * Verification logic (providers/rehearsal/verify.ts): what counts as "the upgraded clone
 * matches the source as of the snapshot", on hand-made cluster facts. The queries
 * themselves run against real PostgreSQL 13 and 15 in test/integration/rehearsal.test.ts;
 * here a recording function stands in for the server.
 */
import { describe, expect, it } from "vitest";
import { InputError } from "../../providers/errors";
import { assertions, checksumSql, collect, compare, countScript, parseTableRef, Snapshot, validateVerifySpec, VerifySpec } from "../../providers/rehearsal/verify";

const snap = (over: Partial<Snapshot> = {}): Snapshot => ({
  databases: ["app", "postgres"],
  rowCounts: { "app.public.orders_2025": "26215", "app.public.customers": "5000", "app.public.revenue_by_month": "24" },
  checksums: { "app.public.orders_2025": "26215:777ce497cbcb2c3c374198f8db04afaa" },
  sequences: { "app.public.invoice_numbers": "1041", "app.public.unused_seq": "unused" },
  extensions: { "app.hstore": "1.7", "app.plpgsql": "1.0" },
  largeObjects: { app: "20", postgres: "0" },
  ...over,
});

describe("compare", () => {
  it("passes every check when both sides hold the same facts, expected and actual side by side", () => {
    const checks = compare(snap(), snap());
    expect(checks.every((c) => c.status === "pass")).toBe(true);
    expect(checks.map((c) => c.name)).toEqual([
      "rows app.public.customers",
      "rows app.public.orders_2025",
      "rows app.public.revenue_by_month",
      "checksum app.public.orders_2025",
      "sequence app.public.invoice_numbers",
      "sequence app.public.unused_seq",
      "extension app.hstore",
      "extension app.plpgsql",
      "large objects in app",
      "large objects in postgres",
    ]);
    expect(checks.find((c) => c.name === "rows app.public.customers")).toEqual({ name: "rows app.public.customers", kind: "row-count", status: "pass", expected: "5000", actual: "5000" });
  });

  it("fails a differing row count, checksum, sequence or large-object count, and says both values", () => {
    const after = snap({
      rowCounts: { ...snap().rowCounts, "app.public.customers": "4999" },
      checksums: { "app.public.orders_2025": "26215:00000000000000000000000000000000" },
      sequences: { ...snap().sequences, "app.public.invoice_numbers": "1000" },
      largeObjects: { app: "19", postgres: "0" },
    });
    const failed = compare(snap(), after).filter((c) => c.status === "fail");
    expect(failed).toEqual([
      { name: "rows app.public.customers", kind: "row-count", status: "fail", expected: "5000", actual: "4999" },
      { name: "checksum app.public.orders_2025", kind: "checksum", status: "fail", expected: "26215:777ce497cbcb2c3c374198f8db04afaa", actual: "26215:00000000000000000000000000000000" },
      { name: "sequence app.public.invoice_numbers", kind: "sequence", status: "fail", expected: "1041", actual: "1000" },
      { name: "large objects in app", kind: "row-count", status: "fail", expected: "20", actual: "19" },
    ]);
  });

  it("fails a table that is missing on either side", () => {
    const lost = snap({ rowCounts: { "app.public.orders_2025": "26215", "app.public.customers": "5000" } });
    const extra = snap({ rowCounts: { ...snap().rowCounts, "app.public.surprise": "1" } });
    expect(compare(snap(), lost).filter((c) => c.status === "fail")).toEqual([
      { name: "rows app.public.revenue_by_month", kind: "row-count", status: "fail", expected: "24", actual: "(missing)" },
    ]);
    expect(compare(snap(), extra).filter((c) => c.status === "fail")).toEqual([
      { name: "rows app.public.surprise", kind: "row-count", status: "fail", expected: "(missing)", actual: "1" },
    ]);
  });

  it("lets an extension's version move with the new server but fails a missing extension", () => {
    const updated = snap({ extensions: { "app.hstore": "1.8", "app.plpgsql": "1.0" } });
    expect(compare(snap(), updated).every((c) => c.status === "pass")).toBe(true);
    const dropped = snap({ extensions: { "app.plpgsql": "1.0" } });
    expect(compare(snap(), dropped).filter((c) => c.status === "fail")).toEqual([
      { name: "extension app.hstore", kind: "extension", status: "fail", expected: "installed", actual: "(missing)" },
    ]);
  });
});

describe("collect", () => {
  /** A stand-in server: answers by query shape and records which database each query went to. */
  function fakeServer() {
    const log: Array<{ db: string; sql: string }> = [];
    const query = async (sql: string, db: string): Promise<string[][]> => {
      log.push({ db, sql });
      if (sql.includes("FROM pg_database")) return [["app"], ["postgres"]];
      if (sql.includes("pg_database_size")) return db === "app" ? [["9000000", "40", "12"]] : [["7000000", "0", "0"]];
      if (sql.includes("pg_relation_size(c.oid)")) {
        return db === "app" ? [['public."Customers"', "public.Customers", "8192", "5000"], ["public.orders_2025", "public.orders_2025", "2000000", "26215"]] : [];
      }
      if (sql.startsWith("SELECT count(*)::text FROM ") && !sql.includes("pg_largeobject")) {
        const counts: Record<string, string> = { 'public."Customers"': "5000", "public.orders_2025": "26215" };
        return sql.trim().split("\n").map((l) => [counts[l.replace("SELECT count(*)::text FROM ", "").replace(/;$/, "")]]);
      }
      if (sql.includes("indisprimary")) return [[sql.includes('"public"."nopk"') ? "" : "id,\"Region\""]];
      if (sql.includes("pg_sequences")) return db === "app" ? [["public.invoice_numbers", "1041"]] : [];
      if (sql.includes("pg_extension")) return [["plpgsql", "1.0"]];
      if (sql.includes("pg_largeobject_metadata")) return [[db === "app" ? "20" : "0"]];
      if (sql.includes("md5(string_agg")) return [["2:80e8fc0a6413f88dcc18401202da8928"]];
      throw new Error(`unexpected query ${sql}`);
    };
    return { log, query };
  }

  it("gathers counts, sequences, extensions and large objects of every database, keyed by db.schema.name", async () => {
    const { query } = fakeServer();
    const s = await collect(query, { rowCounts: "exact", checksumTables: [], assertions: [] });
    expect(s).toEqual({
      databases: ["app", "postgres"],
      rowCounts: { "app.public.Customers": "5000", "app.public.orders_2025": "26215" },
      checksums: {},
      sequences: { "app.public.invoice_numbers": "1041" },
      extensions: { "app.plpgsql": "1.0", "postgres.plpgsql": "1.0" },
      largeObjects: { app: "20", postgres: "0" },
      size: { bytes: 16_000_000, relations: 40, tables: 12, databases: 2 },
    });
  });

  it("counts one table per statement (each its own transaction, one lock at a time), names quoted by the server", async () => {
    const { query, log } = fakeServer();
    await collect(query, { rowCounts: "exact", checksumTables: [], assertions: [] });
    const scripts = log.filter((l) => l.sql.startsWith("SELECT count(*)") && !l.sql.includes("pg_largeobject"));
    expect(scripts).toEqual([{ db: "app", sql: 'SELECT count(*)::text FROM public."Customers";\nSELECT count(*)::text FROM public.orders_2025;\n' }]);
    expect(countScript(["a.b", "c.d"]).split(";").length - 1).toBe(2);
  });

  it("with rowCountLimitBytes, compares a larger table's size instead of counting it, and says so", async () => {
    const { query, log } = fakeServer();
    const s = await collect(query, { rowCounts: "exact", checksumTables: [], assertions: [], rowCountLimitBytes: 1_000_000 });
    expect(s.rowCounts).toEqual({ "app.public.Customers": "5000", "app.public.orders_2025": "2000000 bytes" });
    expect(s.methods).toEqual({
      "rows app.public.orders_2025": "not counted (larger than rowCountLimitBytes 1000000): main fork size compared; planner estimate ~26215 rows",
    });
    expect(log.find((l) => l.sql.startsWith("SELECT count(*)"))!.sql).not.toContain("orders_2025");
    const checks = compare(s, s).filter((c) => c.method);
    expect(checks).toEqual([
      {
        name: "rows app.public.orders_2025",
        kind: "row-count",
        status: "pass",
        expected: "2000000 bytes",
        actual: "2000000 bytes",
        method: "not counted (larger than rowCountLimitBytes 1000000): main fork size compared; planner estimate ~26215 rows",
      },
    ]);
  });

  it("fails a check whose two sides were taken by different methods, naming both", () => {
    const a = snap({ methods: { "rows app.public.customers": "not counted" } });
    const failed = compare(a, snap()).filter((c) => c.status === "fail");
    expect(failed).toEqual([
      { name: "rows app.public.customers", kind: "row-count", status: "fail", expected: "5000", actual: "5000", method: "baseline: not counted; upgraded: default" },
    ]);
  });

  it("skips row counts with rowCounts: none", async () => {
    const { query, log } = fakeServer();
    const s = await collect(query, { rowCounts: "none", checksumTables: [], assertions: [] });
    expect(s.rowCounts).toEqual({});
    expect(log.some((l) => l.sql.includes("pg_relation_size(c.oid)") || l.sql.startsWith("SELECT count(*)::text FROM public"))).toBe(false);
  });

  it("checksums schema.table in the first non-postgres database, db.schema.table where it says, identifiers quoted", async () => {
    const { query, log } = fakeServer();
    const s = await collect(query, { rowCounts: "none", checksumTables: ["public.pgbench_branches", "postgres.public.t"], assertions: [] });
    expect(Object.keys(s.checksums)).toEqual(["app.public.pgbench_branches", "postgres.public.t"]);
    const sums = log.filter((l) => l.sql.includes("md5(string_agg"));
    expect(sums.map((l) => l.db)).toEqual(["app", "postgres"]);
    expect(sums[0].sql).toContain(`FROM "public"."pgbench_branches" x)`);
    expect(s.methods).toBeUndefined(); // every row, the default
  });

  it("checksums in 256 ordered chunks of summed row hashes: no sort of every row, no aggregate string of every row", () => {
    const sql = checksumSql("public", "t");
    expect(sql).toContain("GROUP BY 1");
    expect(sql).toContain("string_agg(b || '.' || n || '.' || s1 || '.' || s2, ',' ORDER BY b)");
    expect(sql).not.toMatch(/ORDER BY h/);
  });

  it("samples by a hash of the primary key when asked, and says how; a table without one is checksummed whole", async () => {
    const { query, log } = fakeServer();
    const s = await collect(query, { rowCounts: "none", checksumTables: ["public.orders", "public.nopk"], assertions: [], checksumSamplePercent: 1 });
    const sums = log.filter((l) => l.sql.includes("md5(string_agg"));
    expect(sums[0].sql).toContain(`WHERE ('x' || substr(md5(ROW(id,"Region")::text), 1, 7))::bit(28)::int < 2684355`);
    expect(sums[1].sql).not.toContain("WHERE");
    expect(s.methods).toEqual({
      "checksum app.public.orders": 'sampled: 1% of rows, chosen by md5 of the primary key (id,"Region")',
      "checksum app.public.nopk": "every row: no primary key to sample by (checksumSamplePercent 1)",
    });
  });
});

describe("table references and the verification spec", () => {
  it("parses schema.table and db.schema.table", () => {
    expect(parseTableRef("public.orders_2025")).toEqual({ schema: "public", table: "orders_2025" });
    expect(parseTableRef("app.public.orders")).toEqual({ db: "app", schema: "public", table: "orders" });
  });

  for (const bad of ["orders", "a.b.c.d", 'public."Orders"', "public.orders; DROP TABLE x", "public.", "1x.y"]) {
    it(`refuses ${JSON.stringify(bad)} with the field named`, () => {
      expect(() => parseTableRef(bad)).toThrow(/^checks\.checksumTables: .* must be schema\.table or database\.schema\.table \(plain identifiers\)$/);
    });
  }

  it("validates the whole spec", () => {
    const ok: VerifySpec = { rowCounts: "exact", checksumTables: ["public.t"], assertions: [{ name: "a", sql: "SELECT true", database: "app" }] };
    expect(validateVerifySpec(ok)).toBe(ok);
    expect(() => validateVerifySpec({ ...ok, rowCounts: "some" as never })).toThrow(/^checks\.rowCounts: must be "exact" or "none"$/);
    expect(() => validateVerifySpec({ ...ok, assertions: [{ name: "", sql: "SELECT 1" }] })).toThrow(/^checks\.assertions: each needs a name and sql$/);
    expect(() => validateVerifySpec({ ...ok, assertions: [{ name: "a", sql: "SELECT 1", database: "app; x" }] })).toThrow(/^checks\.assertions\.database: "app; x" is not a plain identifier$/);
    expect(validateVerifySpec({ ...ok, rowCountLimitBytes: 0, checksumSamplePercent: 100 }).checksumSamplePercent).toBe(100);
    for (const bad of [-1, 1.5, "1" as never]) {
      expect(() => validateVerifySpec({ ...ok, rowCountLimitBytes: bad })).toThrow(/^checks\.rowCountLimitBytes: .* must be a whole number of bytes \(>= 0\)$/);
    }
    for (const bad of [0, -3, 101, Number.NaN]) {
      expect(() => validateVerifySpec({ ...ok, checksumSamplePercent: bad })).toThrow(/^checks\.checksumSamplePercent: .* must be a number in \(0, 100\]$/);
    }
    try {
      validateVerifySpec({ ...ok, checksumSamplePercent: 0 });
    } catch (e) {
      expect(e).toBeInstanceOf(InputError);
      expect((e as InputError).field).toBe("checks.checksumSamplePercent");
    }
  });
});

describe("assertions", () => {
  it("passes on true, fails on anything else, and turns an error into a failed check with the message", async () => {
    const spec: VerifySpec = {
      rowCounts: "none",
      checksumTables: [],
      assertions: [
        { name: "t", sql: "SELECT true" },
        { name: "true", sql: "SELECT 'true'" },
        { name: "f", sql: "SELECT false" },
        { name: "none", sql: "SELECT 1 WHERE false" },
        { name: "boom", sql: "SELECT broken", database: "postgres" },
      ],
    };
    const seen: string[] = [];
    const query = async (sql: string, db: string): Promise<string[][]> => {
      seen.push(db);
      if (sql === "SELECT true") return [["t"]];
      if (sql === "SELECT 'true'") return [["true"]];
      if (sql === "SELECT false") return [["f"]];
      if (sql === "SELECT 1 WHERE false") return [];
      throw new Error('psql failed\nERROR:  column "broken" does not exist\nLINE 1: SELECT broken');
    };
    const out = await assertions(query, spec, "app");
    expect(out.map((c) => [c.name, c.status, c.actual])).toEqual([
      ["t", "pass", "t"],
      ["true", "pass", "true"],
      ["f", "fail", "f"],
      ["none", "fail", "(no row)"],
      ["boom", "fail", 'error: psql failed ERROR:  column "broken" does not exist LINE 1: SELECT broken'],
    ]);
    expect(out.every((c) => c.kind === "assertion" && c.expected === "true")).toBe(true);
    expect(seen).toEqual(["app", "app", "app", "app", "postgres"]);
  });
});
