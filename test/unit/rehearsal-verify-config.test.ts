/**
 * The verification options for large clusters (checks.rowCountLimitBytes,
 * checks.checksumSamplePercent) through the root program's configuration and the component.
 */
import { describe, expect, it } from "vitest";
import { parseConfig } from "../../config";

const base = () => ({
  source: { dataset: "tank/pg13", pgdata: "main", version: 13, port: 5432, socketDir: "/var/run/postgresql" },
  clone: { dataset: "tank/rehearsals/pg13-to-15" },
  to: 15,
  postgres: { port: 55432, database: "app" },
});

describe("checks for large clusters in the stack configuration", () => {
  it("accepts a size limit for counting and a sample percentage", () => {
    const c = parseConfig({ ...base(), checks: { rowCounts: "exact", rowCountLimitBytes: 10_737_418_240, checksumSamplePercent: 0.5, checksumTables: ["public.orders"] } });
    expect(c.checks).toEqual({ rowCounts: "exact", rowCountLimitBytes: 10_737_418_240, checksumSamplePercent: 0.5, checksumTables: ["public.orders"] });
  });

  it("refuses a negative or fractional limit and a percentage outside (0, 100], naming the key", () => {
    for (const checks of [{ rowCountLimitBytes: -1 }, { rowCountLimitBytes: 1.5 }, { checksumSamplePercent: 0 }, { checksumSamplePercent: 150 }]) {
      expect(() => parseConfig({ ...base(), checks })).toThrow(new RegExp(`understudy:checks.*${Object.keys(checks)[0]}`));
    }
  });
});
