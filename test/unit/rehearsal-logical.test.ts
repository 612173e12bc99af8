/**
 * The rehearsal of the logical cut-over, pure parts: the plan (`method`, `logical`), its
 * rules (each error naming the field), the component (a LogicalRehearsal resource only when
 * asked for; InputPropertiesError naming the field before anything is registered), the
 * prediction, the writer's script, the report's section, and which prediction a promotion
 * checks its switchover timeout against. The run itself is in
 * test/integration/rehearsal-logical.test.ts.
 */
import { beforeAll, describe, expect, it } from "vitest";
import * as pulumi from "@pulumi/pulumi";
import { InputErrors } from "../../providers/errors";
import { LOGICAL_REHEARSAL_DEFAULTS, resolveRehearsalPlan, type RehearsalArgsPlain } from "../../providers/plan/rehearsal";
import { LOGICAL_PAUSE_ALLOWANCES, predictLogicalPause, renderMarkdown, type LogicalRehearsalRecord, type RehearsalReport } from "../../providers/rehearsal/report";
import { renderTimelineHtml } from "../../providers/rehearsal/timeline";
import { writerBatch, writerSql, WRITER_TABLE } from "../../providers/runner/logical-rehearsal";
import { predictedPauseFor } from "../../components/promotion";
import type { UpgradeRehearsalArgs } from "../../components/upgrade-rehearsal";
import { NoHostZfs } from "../harness/no-host-storage";

const base: RehearsalArgsPlain = {
  source: { dataset: "tank/pg13", version: 13, port: 5432 },
  clone: { dataset: "tank/rehearsals/r" },
  to: 15,
  postgres: { port: 55432 },
};

function fields(fn: () => unknown): string[] {
  try {
    fn();
  } catch (e) {
    if (e instanceof InputErrors) return e.errors.map((x) => x.field);
    throw e;
  }
  return [];
}

describe("the plan's method", () => {
  it("without method (or with replay): no method and no logical settings in the plan, as before", () => {
    for (const a of [base, { ...base, method: "replay" as const }]) {
      const p = resolveRehearsalPlan("r", a, { cwd: "/tmp" });
      expect(p).not.toHaveProperty("method");
      expect(p).not.toHaveProperty("logical");
    }
  });

  it("method logical: the defaults, declared once, with the user's settings over them", () => {
    const p = resolveRehearsalPlan("r", { ...base, method: "logical", logical: { measureMs: 8000, accept: ["large-objects"] } }, { cwd: "/tmp" });
    expect(p.method).toBe("logical");
    expect(p.logical).toEqual({ ...LOGICAL_REHEARSAL_DEFAULTS, measureMs: 8000, accept: ["large-objects"] });
  });

  const bad: Array<[string, Partial<RehearsalArgsPlain>, string]> = [
    ["an unknown method", { method: "blue-green" as never }, "method"],
    ["logical settings without the method", { logical: { measureMs: 5000 } }, "logical"],
    ["logical settings with method replay", { method: "replay", logical: {} }, "logical"],
    ["an unknown setting", { method: "logical", logical: { writerRate: 1 } as never }, "logical.writerRate"],
    ["a measuring time too short", { method: "logical", logical: { measureMs: 10 } }, "logical.measureMs"],
    ["a negative backlog", { method: "logical", logical: { backlogMs: -1 } }, "logical.backlogMs"],
    ["a fractional apply timeout", { method: "logical", logical: { applyTimeoutMs: 1.5 } }, "logical.applyTimeoutMs"],
    ["a minimum writer rate of 0", { method: "logical", logical: { minWriteBytesPerSecond: 0 } }, "logical.minWriteBytesPerSecond"],
    ["a finding that cannot be accepted", { method: "logical", logical: { accept: ["tables-without-key"] } }, "logical.accept[0]"],
  ];
  for (const [what, over, field] of bad) {
    it(`refuses ${what}, naming ${field}`, () => {
      expect(fields(() => resolveRehearsalPlan("r", { ...base, ...over }, { cwd: "/tmp" }))).toContain(field);
    });
  }
});

describe("UpgradeRehearsal with method logical (no engine)", () => {
  const registered: string[] = [];
  const inputsOf: Record<string, Record<string, unknown>> = {};
  beforeAll(async () => {
    await pulumi.runtime.setMocks(
      {
        newResource: (a) => {
          registered.push(a.type);
          inputsOf[a.name] = a.inputs;
          const report = {
            rehearsal: "ok", status: "passed", host: "local", source: { dataset: "tank/pg13", snapshot: "tank/pg13@s", version: 13 },
            clone: { dataset: "tank/rehearsals/r" }, target: { version: 15 }, steps: [], checks: [],
            predictedCutover: { totalMs: 0, breakdown: [], note: "" }, generatedAt: "2026-01-01T00:00:00Z",
          };
          if (a.type.endsWith(":LogicalRehearsal")) return { id: `${a.name}-id`, state: { ...a.inputs, reportOut: report } };
          return { id: `${a.name}-id`, state: a.type.endsWith(":RehearsalStep") ? { ...a.inputs, report, snapshot: `tank/rehearsals/r@${a.name}` } : a.inputs };
        },
        call: () => ({}),
      },
      "proj",
      "stk",
      false,
    );
  });
  const args = (over: Partial<UpgradeRehearsalArgs> = {}): UpgradeRehearsalArgs => ({
    storage: new NoHostZfs(),
    source: { dataset: "tank/pg13", version: 13, port: 5432 },
    clone: { dataset: "tank/rehearsals/r" },
    to: 15,
    postgres: { port: 55432 },
    ...over,
  });
  const ours = () => registered.filter((t) => t.startsWith("pulumi-nodejs:dynamic/understudy:")).map((t) => t.split(":").pop());

  it("refuses a bad method before any resource of ours is registered, naming the field", async () => {
    const { UpgradeRehearsal } = await import("../../components/upgrade-rehearsal");
    registered.length = 0;
    let err: unknown;
    try {
      new UpgradeRehearsal("r", args({ method: "logcial" as never }));
    } catch (e) {
      err = e;
    }
    expect(pulumi.InputPropertiesError.isInstance(err), String(err)).toBe(true);
    expect((err as InstanceType<typeof pulumi.InputPropertiesError>).errors.map((x) => x.propertyPath)).toContain("method");
    expect((err as Error).message).toMatch(/method: "logcial" is not one of replay, logical/);
    expect(ours()).toEqual([]);
  });

  it("declares a LogicalRehearsal after the steps, from the snapshot the upgrade started from; none without the method", async () => {
    const { UpgradeRehearsal } = await import("../../components/upgrade-rehearsal");
    registered.length = 0;
    const plain = new UpgradeRehearsal("plain", args());
    await new Promise((res) => plain.port.apply(res));
    await new Promise((res) => setTimeout(res, 200));
    expect(ours()).not.toContain("LogicalRehearsal");
    registered.length = 0;
    const r = new UpgradeRehearsal("lg", args({ method: "logical", logical: { measureMs: 2000 } }));
    await new Promise((res) => r.port.apply(res));
    for (let i = 0; i < 50 && !inputsOf["lg-logical"]; i++) await new Promise((res) => setTimeout(res, 50));
    expect(ours().filter((t) => t === "LogicalRehearsal")).toHaveLength(1);
    expect(ours().indexOf("LogicalRehearsal")).toBeGreaterThan(ours().lastIndexOf("RehearsalStep"));
    const i = inputsOf["lg-logical"];
    // The stand-in is cloned from the check step's snapshot: the old version, cleanly stopped, right before pg_upgrade --link.
    expect(i.fromSnapshot).toBe("tank/rehearsals/r@lg-s02-check");
    expect(i.settings).toEqual({ ...LOGICAL_REHEARSAL_DEFAULTS, measureMs: 2000 });
    expect(i.live).toEqual({ version: 13, binDir: "/usr/lib/postgresql/13/bin", socketDir: "/var/run/postgresql", port: 5432 });
  });
});

describe("the predicted logical pause", () => {
  it("is the measured held part plus the allowances for PAUSE and the switch", () => {
    const p = predictLogicalPause({ captureMs: 40, finishMs: 120 });
    expect(p.totalMs).toBe(40 + 120 + LOGICAL_PAUSE_ALLOWANCES.pauseMs + LOGICAL_PAUSE_ALLOWANCES.switchAndResumeMs);
    expect(p.breakdown.map((b) => b.ms)).toEqual([LOGICAL_PAUSE_ALLOWANCES.pauseMs, 40, 120, LOGICAL_PAUSE_ALLOWANCES.switchAndResumeMs]);
    expect(p.note).toMatch(/stand-in for live/);
    expect(p.note).toMatch(/not|only read/);
  });

  it("with the wait for apply timed on its own: one more part, in the total", () => {
    const p = predictLogicalPause({ captureMs: 40, applyWaitMs: 300, finishMs: 60 });
    expect(p.breakdown.map((b) => b.ms)).toEqual([LOGICAL_PAUSE_ALLOWANCES.pauseMs, 40, 300, 60, LOGICAL_PAUSE_ALLOWANCES.switchAndResumeMs]);
    expect(p.totalMs).toBe(40 + 300 + 60 + LOGICAL_PAUSE_ALLOWANCES.pauseMs + LOGICAL_PAUSE_ALLOWANCES.switchAndResumeMs);
    expect(() => predictLogicalPause({ captureMs: 1, applyWaitMs: -5, finishMs: 1 })).toThrow(/applyWaitMs/);
  });

  it("refuses a measurement that is not a duration", () => {
    expect(() => predictLogicalPause({ captureMs: -1, finishMs: 1 })).toThrow(/captureMs/);
    expect(() => predictLogicalPause({ captureMs: 1, finishMs: Number.NaN })).toThrow(/finishMs/);
  });
});

describe("the writer on the stand-in", () => {
  it("commits about 50 times a second whatever the rate, within bounds", () => {
    expect(writerBatch(256 * 1024)).toBe(17);
    expect(writerBatch(10)).toBe(1);
    expect(writerBatch(1e12)).toBe(2000);
  });
  it("writes into our own table only, paced by the WAL it wrote, named so that it can be stopped", () => {
    const sql = writerSql(300_000, 60_000);
    expect(sql).toContain(`INSERT INTO public.${WRITER_TABLE}`);
    expect(sql).toContain("application_name = 'understudy_rehearsal_writer'");
    expect(sql).toMatch(/pg_current_wal_lsn\(\) - l0\) > 300000::numeric/);
    expect(sql).toContain("interval '60 seconds'");
    expect(sql.match(/INSERT|UPDATE|DELETE|DROP|ALTER|TRUNCATE/g)).toEqual(["INSERT"]);
    expect(() => writerSql(0, 1000)).toThrow(/rate/);
  });
});

const record: LogicalRehearsalRecord = {
  status: "ok",
  at: "2026-12-03T15:00:00Z",
  standIn: { volume: "tank/rehearsals/r-standin", snapshot: "tank/rehearsals/r@s02-check", version: 13 },
  databases: ["app", "postgres"],
  liveWal: { bytesPerSecond: 300_000, sampledMs: 3000 },
  writer: { database: "app", table: "public.understudy_rehearsal_writer", targetBytesPerSecond: 300_000, achievedBytesPerSecond: 290_000, ms: 9000, rows: 5000, floor: false },
  catchUp: { backlogBytes: 900_000, ms: 1500, bytesPerSecond: 600_000 },
  applyLag: { samples: 20, meanBytes: 20_000, maxBytes: 80_000, meanSeconds: 0.02, maxSeconds: 0.08 },
  gate: { maxLagBytes: 1024 * 1024, lagBytes: 4096, ms: 250, workers: 2 },
  held: [
    { step: "capture", ms: 30 },
    { step: "finish", ms: 90 },
  ],
  warnings: ["[wal_level] live runs with wal_level = replica"],
  predicted: predictLogicalPause({ captureMs: 30, finishMs: 90 }),
};
const report: RehearsalReport = {
  rehearsal: "r", status: "passed", host: "local", source: { dataset: "tank/pg13", snapshot: "tank/pg13@s", version: 13 },
  clone: { dataset: "tank/rehearsals/r" }, target: { version: 15 }, steps: [], checks: [],
  predictedCutover: { totalMs: 6000, breakdown: [{ step: "upgrade", ms: 6000 }], note: "" }, generatedAt: "2026-01-01T00:00:00Z",
};

describe("the report", () => {
  it("has the section 'Predicted logical cut-over' with catch-up, apply lag, the held steps, the pause and what the stand-in was", () => {
    const md = renderMarkdown({ ...report, logicalCutover: record });
    expect(md).toContain("## Predicted logical cut-over: 160 ms");
    expect(md).toContain("Rehearsed on a stand-in for live, not on live: `tank/rehearsals/r-standin`, a clone of `tank/rehearsals/r@s02-check`");
    expect(md).toMatch(/driven by a writer at live's measured WAL rate/);
    expect(md).toMatch(/- catch-up: a backlog of 879 kB applied in 1\.5 s/);
    expect(md).toMatch(/- apply lag under the writer \(20 samples\): mean 19\.5 kB, max 78\.1 kB; time lag mean 20 ms, max 80 ms/);
    expect(md).toContain("- before the hold, as a promotion checks it: 2 apply worker(s) running, at most 4.0 kB behind (limit 1.0 MB), 250 ms after the measurement");
    expect(md).toContain("- held, measured: finish: 90 ms");
    expect(md).toContain("| **predicted pause** | **160 ms** |");
    expect(md).toContain("[wal_level]");
    const est = renderMarkdown({ ...report, logicalCutover: { ...record, applyLag: { samples: 4, meanBytes: 30_000, maxBytes: 60_000, meanSeconds: 0.1, maxSeconds: 0.2, secondsFrom: "bytes-at-write-rate" } } });
    expect(est).toContain("time lag mean 100 ms, max 200 ms (bytes behind at the writer's rate)");
    const html = renderTimelineHtml({ ...report, logicalCutover: record });
    expect(html).toContain("Predicted logical cut-over: 160 ms");
    expect(html).toContain("2 apply worker(s) running");
  });

  it("says plainly when the logical rehearsal failed, and has no section without it", () => {
    const md = renderMarkdown({ ...report, logicalCutover: { status: "failed", at: "t", failure: "table(s) without a primary key: public.h" } });
    expect(md).toContain("## Predicted logical cut-over: not measured");
    expect(md).toContain("public.h");
    expect(renderMarkdown(report)).not.toContain("logical cut-over");
  });
});

describe("a promotion's switchover-timeout check", () => {
  it("uses the logical prediction for method logical when the rehearsal measured it, else the replay's", () => {
    expect(predictedPauseFor("logical", { ...report, logicalCutover: record })).toBe(160);
    expect(predictedPauseFor("replay", { ...report, logicalCutover: record })).toBe(6000);
    expect(predictedPauseFor(undefined, { ...report, logicalCutover: record })).toBe(6000);
    expect(predictedPauseFor("logical", report)).toBe(6000);
    expect(predictedPauseFor("logical", { ...report, logicalCutover: { status: "failed", at: "t" } })).toBe(6000);
  });
});
