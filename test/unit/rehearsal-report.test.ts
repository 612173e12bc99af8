/**
 * The rehearsal report (providers/rehearsal/report.ts): the Markdown a person reads after
 * `pulumi up` — what passed or where it failed, since when the last good snapshot exists,
 * every step with its snapshot, the checks, and the predicted cut-over downtime.
 */
import { describe, expect, it } from "vitest";
import { fmtMs, predictCutover, renderMarkdown, RehearsalReport, StepRecord } from "../../providers/rehearsal/report";

const step = (index: number, name: string, over: Partial<StepRecord> = {}): StepRecord => ({
  index,
  name,
  kind: name,
  status: "ok",
  startedAt: `2026-11-24T20:00:0${index}.000Z`,
  finishedAt: `2026-11-24T20:00:0${index}.500Z`,
  durationMs: 500 * index,
  snapshot: `tank/r@s0${index}-${name}`,
  cutover: false,
  ...over,
});

const base = (over: Partial<RehearsalReport> = {}): RehearsalReport => {
  const steps = [step(1, "recover"), step(2, "check"), step(3, "upgrade", { cutover: true }), step(4, "start", { cutover: true, durationMs: 1500 })];
  return {
    rehearsal: "pg13-to-15",
    status: "passed",
    host: "local",
    source: { dataset: "tank/pg13", snapshot: "tank/pg13@understudy-demo", snapshotAt: "2026-11-24T19:59:59.000Z", version: 13 },
    clone: { dataset: "tank/r", mountpoint: "/srv/tank/r" },
    target: { version: 15, port: 55432, dataDir: "/srv/tank/r/main.pg15" },
    steps,
    checks: [
      { name: "rows app.public.orders", kind: "row-count", status: "pass", expected: "50000", actual: "50000" },
      { name: "checksum app.public.orders_2025", kind: "checksum", status: "pass", expected: "26215:abc", actual: "26215:abc" },
    ],
    predictedCutover: predictCutover(steps, []),
    generatedAt: "2026-11-24T20:01:00.000Z",
    ...over,
  };
};

describe("renderMarkdown", () => {
  it("a passed rehearsal: title, what was rehearsed where, every step with its snapshot, the checks and the prediction", () => {
    const md = renderMarkdown(base());
    const lines = md.split("\n");
    expect(lines[0]).toBe("# Upgrade rehearsal `pg13-to-15`: PASSED");
    expect(md).toContain(
      "PostgreSQL 13 → 15 on `local`, rehearsed on clone `tank/r` of `tank/pg13@understudy-demo` (taken 2026-11-24T19:59:59.000Z). The source was not touched.",
    );
    expect(md).not.toContain("Failed at step");
    expect(lines).toContain("| # | step | status | started | duration | snapshot after | cut-over |");
    expect(lines).toContain("| 1 | recover | ok | 2026-11-24T20:00:01.000Z | 500 ms | `tank/r@s01-recover` |  |");
    expect(lines).toContain("| 3 | upgrade | ok | 2026-11-24T20:00:03.000Z | 1.5 s | `tank/r@s03-upgrade` | yes |");
    expect(lines).toContain("## Verification: 2 passed, 0 failed");
    expect(lines).toContain("| checksum app.public.orders_2025 | checksum | pass | 26215:abc | 26215:abc |");
    expect(lines).toContain("## Predicted cut-over downtime: 3.0 s");
    expect(lines).toContain("- upgrade: 1.5 s");
    expect(lines).toContain("- start: 1.5 s");
    expect(md.endsWith("_Generated 2026-11-24T20:01:00.000Z by pulumi-understudy._\n")).toBe(true);
  });

  it("a failed rehearsal: the failed step, the reason, the last good snapshot and since when, and the step's log", () => {
    const steps = [step(1, "recover"), step(2, "check", { status: "failed", snapshot: undefined, detail: "refused", logTail: "Checking for user-defined postfix operators   fatal\npostfix_ops.txt" })];
    const md = renderMarkdown(
      base({
        status: "failed",
        steps,
        checks: [],
        failure: {
          step: "check",
          at: "2026-11-24T20:00:02.000Z",
          reason: "postgres pg_upgrade --check failed on local: 13 -> 15 refused at \"Checking for user-defined postfix operators\"",
          lastGoodStep: "recover",
          lastGoodSnapshot: "tank/r@s01-recover",
          lastGoodAt: "2026-11-24T20:00:01.500Z",
        },
        predictedCutover: predictCutover(steps, []),
      }),
    );
    expect(md.split("\n")[0]).toBe("# Upgrade rehearsal `pg13-to-15`: FAILED");
    expect(md).toContain('**Failed at step `check`** (2026-11-24T20:00:02.000Z): postgres pg_upgrade --check failed on local: 13 -> 15 refused at "Checking for user-defined postfix operators"');
    expect(md).toContain("Last good state: after `recover`, snapshot `tank/r@s01-recover` (2026-11-24T20:00:01.500Z). Fix the cause and run `pulumi up` again");
    expect(md).toContain("| 2 | check | failed | 2026-11-24T20:00:02.000Z | 1.0 s | — |  |");
    expect(md).toContain("### Log of `check`\n\n```\nChecking for user-defined postfix operators   fatal\npostfix_ops.txt\n```");
    expect(md).not.toContain("## Verification"); // nothing was verified
    expect(md).toContain("## Predicted cut-over downtime: 0 ms");
  });

  it("a failure before any snapshot of the clone says no last good state", () => {
    const md = renderMarkdown(base({ status: "failed", failure: { step: "recover", at: "t", reason: "no space" } }));
    expect(md).toContain("**Failed at step `recover`** (t): no space");
    expect(md).not.toContain("Last good state");
  });

  it("keeps the tables intact whatever a value holds (| and newlines)", () => {
    const md = renderMarkdown(
      base({
        checks: [{ name: "a | b", kind: "assertion", status: "fail", expected: "true", actual: "error: x |\ny" }],
      }),
    );
    expect(md).toContain("| a \\| b | assertion | fail | true | error: x \\| y |");
    expect(md).toContain("## Verification: 0 passed, 1 failed");
  });
});

describe("predictCutover", () => {
  it("adds fixed costs and the measured steps replayed while clients wait (cut-over steps that succeeded)", () => {
    const steps = [
      step(1, "recover", { durationMs: 9000 }),
      step(2, "upgrade", { cutover: true, durationMs: 4000 }),
      step(3, "start", { cutover: true, durationMs: 1000 }),
      step(4, "post-upgrade", { cutover: true, status: "failed", durationMs: 700 }),
    ];
    const p = predictCutover(steps, [{ step: "stop live", ms: 300 }]);
    expect(p.breakdown).toEqual([
      { step: "stop live", ms: 300 },
      { step: "upgrade", ms: 4000 },
      { step: "start", ms: 1000 },
    ]);
    expect(p.totalMs).toBe(5300);
    expect(p.note).toMatch(/PgBouncer PAUSE/);
  });

  it("predicts live's clean stop by the recovered clone's clean stop (the same cluster, the same pg_ctl stop)", () => {
    const steps = [step(1, "recover", { durationMs: 9000, cleanStopMs: 450 }), step(2, "upgrade", { cutover: true, durationMs: 4000 })];
    const p = predictCutover(steps, []);
    expect(p.breakdown).toEqual([
      { step: "stop live cleanly (as the clone stopped after recovery)", ms: 450 },
      { step: "upgrade", ms: 4000 },
    ]);
    expect(p.totalMs).toBe(4450);
    // A report of an earlier release (no cleanStopMs) predicts as before.
    expect(predictCutover([step(1, "recover", { durationMs: 9000 }), step(2, "upgrade", { cutover: true, durationMs: 4000 })], []).totalMs).toBe(4000);
  });

  it("adds the copy of the new cluster into the clone as the check step timed it (a promotion copies it while clients wait)", () => {
    const steps = [
      step(1, "recover", { durationMs: 9000, cleanStopMs: 450 }),
      step(2, "check", { durationMs: 3000, placeMs: 620 }),
      step(3, "upgrade", { cutover: true, durationMs: 4000 }),
    ];
    const p = predictCutover(steps, []);
    expect(p.breakdown).toEqual([
      { step: "stop live cleanly (as the clone stopped after recovery)", ms: 450 },
      { step: "copy the new cluster, initdb'd before clients wait, into the clone (as in the check step)", ms: 620 },
      { step: "upgrade", ms: 4000 },
    ]);
    expect(p.totalMs).toBe(5070);
    // A failed check step's copy is not a measurement of a working one.
    expect(predictCutover([step(2, "check", { status: "failed", placeMs: 620 }), step(3, "upgrade", { cutover: true, durationMs: 4000 })], []).totalMs).toBe(4000);
  });
});

describe("fmtMs", () => {
  it.each([
    [0, "0 ms"],
    [999, "999 ms"],
    [1000, "1.0 s"],
    [1549, "1.5 s"],
    [119_900, "119.9 s"],
    [120_000, "2 min 0 s"],
    [179_400, "2 min 59 s"],
    [179_600, "3 min 0 s"],
    [3_725_000, "62 min 5 s"],
  ])("%d ms -> %s", (ms, text) => {
    expect(fmtMs(ms)).toBe(text);
  });
});
