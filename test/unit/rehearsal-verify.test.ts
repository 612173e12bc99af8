/**
 * Verification logic (providers/rehearsal/verify.ts): what counts as "the upgraded clone
 * matches the source as of the snapshot", on hand-made cluster facts. The queries
 * themselves run against real PostgreSQL 13 and 15 in test/integration/rehearsal.test.ts;
 * here a recording function stands in for the server.
 */
import { describe, expect, it } from "vitest";
import { assertions, collect, compare, parseTableRef, Snapshot, validateVerifySpec, VerifySpec } from "../../providers/rehearsal/verify";

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
      if (sql.includes("query_to_xml")) return db === "app" ? [["public.customers", "5000"], ["public.orders_2025", "26215"]] : [];
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
      rowCounts: { "app.public.customers": "5000", "app.public.orders_2025": "26215" },
      checksums: {},
      sequences: { "app.public.invoice_numbers": "1041" },
      extensions: { "app.plpgsql": "1.0", "postgres.plpgsql": "1.0" },
      largeObjects: { app: "20", postgres: "0" },
    });
  });

  it("skips row counts with rowCounts: none", async () => {
    const { query, log } = fakeServer();
    const s = await collect(query, { rowCounts: "none", checksumTables: [], assertions: [] });
    expect(s.rowCounts).toEqual({});
    expect(log.some((l) => l.sql.includes("query_to_xml"))).toBe(false);
  });

  it("checksums schema.table in the first non-postgres database, db.schema.table where it says, identifiers quoted", async () => {
    const { query, log } = fakeServer();
    const s = await collect(query, { rowCounts: "none", checksumTables: ["public.pgbench_branches", "postgres.public.t"], assertions: [] });
    expect(Object.keys(s.checksums)).toEqual(["app.public.pgbench_branches", "postgres.public.t"]);
    const sums = log.filter((l) => l.sql.includes("md5(string_agg"));
    expect(sums.map((l) => l.db)).toEqual(["app", "postgres"]);
    expect(sums[0].sql).toContain(`FROM "public"."pgbench_branches" x`);
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
