/**
 * The timeline page (providers/rehearsal/timeline.ts) on the real reports in
 * test/fixtures/reports (made by real rehearsals, see generate.ts there) and on hand-made
 * edge cases: what must be on the page, that it is self-contained, that text is escaped.
 * The same pages are opened in a real Chromium in test/integration/timeline-chromium.test.ts.
 */
import { describe, expect, it } from "vitest";
import * as fs from "node:fs";
import * as path from "node:path";
import { esc, renderTimelineHtml, TimeAxis } from "../../providers/rehearsal/timeline";
import type { RehearsalReport } from "../../providers/rehearsal/report";
import { predictGrowth, GrowthModel } from "../../providers/rehearsal/predict";

const FIX = path.resolve(__dirname, "../fixtures/reports");
const load = (f: string): RehearsalReport => JSON.parse(fs.readFileSync(path.join(FIX, `${f}.json`), "utf8"));
const KINDS = ["passed", "failed-user-step", "failed-verify", "failed-check"];

/** Elements of a class with their data-* value, from the page text (the DOM itself is checked in Chromium). */
const marks = (html: string, cls: string, attr: string) =>
  [...html.matchAll(new RegExp(`<g class="${cls}[^"]*" ${attr}="([^"]*)"`, "g"))].map((m) => m[1]);

describe("renderTimelineHtml on real reports", () => {
  for (const kind of KINDS) {
    it(`${kind}: a bar for every step and a marker for every snapshot, each with text for a screen reader`, () => {
      const r = load(kind);
      const html = renderTimelineHtml(r);
      expect(marks(html, "step", "data-step")).toEqual(r.steps.map((s) => esc(s.name)));
      const snaps = r.steps.filter((s) => s.snapshot).map((s) => s.snapshot!);
      expect(snaps.length).toBeGreaterThan(0);
      expect(marks(html, "marker snap", "data-snapshot")).toEqual(snaps.map(esc));
      for (const s of r.steps) {
        // aria-label and <title> on the bar; a row in the table equivalent.
        expect(html).toMatch(new RegExp(`<g class="step[^"]*" data-step="${s.name}" role="img" aria-label="Step ${s.index}, ${s.name} \\(`));
        expect(html).toContain(`<tr class="${s.status === "failed" ? "fail" : s.cutover ? "cut" : ""}" data-step="${s.name}">`);
      }
      for (const sn of snaps) expect(html).toContain(`<code>${sn}</code>`);
      expect(html).toContain(`<title id="tl-title">Timeline of the rehearsal ${r.rehearsal}</title>`);
      expect(html).toMatch(/<desc id="tl-desc">\d+ steps from \d\d:\d\d:\d\d to \d\d:\d\d:\d\d UTC\./);
      expect(html).toContain(`<h1>Upgrade rehearsal <code>${r.rehearsal}</code> <span class="badge ${r.status}" role="status">${r.status.toUpperCase()}</span></h1>`);
    });
  }

  it("passed: no failure box, the cut-over steps banded with the predicted pause, every check passed, the methods shown", () => {
    const r = load("passed");
    const html = renderTimelineHtml(r);
    expect(html).not.toContain('class="failure"');
    expect(html).not.toMatch(/class="step failed/);
    const cut = r.steps.filter((s) => s.cutover);
    expect(cut.map((s) => s.name)).toEqual(["upgrade", "start", "post-upgrade"]);
    expect(html.match(/<rect class="cut-band"/g)).toHaveLength(cut.length);
    const pause = `${(r.predictedCutover.totalMs / 1000).toFixed(1)} s`;
    expect(html).toContain(`<h2 id="c-h">Cut-over: predicted pause ${pause}</h2>`);
    expect(html).toContain(`aria-label="Replayed during a cut-over: upgrade, start, post-upgrade; predicted pause ${pause}"`);
    expect(html).toContain(`<h2 id="v-h">Verification: ${r.checks.length} passed, 0 failed</h2>`);
    expect(html).toContain("sampled: 10% of rows, chosen by md5 of the primary key (id)");
    expect(html).toContain("not counted (larger than rowCountLimitBytes 20000000)");
  });

  it("failed at a user step: the step in red with its log tail, the last good snapshot and when it was taken", () => {
    const r = load("failed-user-step");
    const html = renderTimelineHtml(r);
    const f = r.failure!;
    expect(f.step).toBe("orders-note-required");
    expect(marks(html, "step failed", "data-step")).toEqual(["orders-note-required"]);
    expect(html).toContain(`<h2 id="f-h">Failed at step <code>orders-note-required</code></h2>`);
    expect(html).toContain(`<strong>Last good snapshot</strong> <code>${f.lastGoodSnapshot}</code>, taken at ${f.lastGoodAt} (after step <code>smoke</code>)`);
    expect(html).toContain(`<g class="marker snap last-good" data-snapshot="${f.lastGoodSnapshot}"`);
    expect(html).toContain("psql:&lt;stdin&gt;:1: ERROR:  column &quot;note&quot; of relation &quot;orders_2025&quot; contains null values");
    expect(html).toContain("Nothing was verified: the rehearsal did not reach the verify step.");
  });

  it("failed at verify: the failed checks listed first with both values", () => {
    const html = renderTimelineHtml(load("failed-verify"));
    expect(html).toContain('<h2 id="v-h">Verification: 21 passed, 3 failed</h2>');
    expect(html).toMatch(/<table class="checks"><caption>Failed checks<\/caption>.*<th scope="row">rows app\.public\.customers<\/th><td>row-count<\/td><td><strong>fail<\/strong><\/td><td><code>5000<\/code><\/td><td><code>4990<\/code><\/td>/s);
    expect(html).toContain('<li class="bad"><span class="kind">assertion</span> 1 of 2 passed</li>');
  });

  it("failed at pg_upgrade --check: the reason pg_upgrade gave, and a red bar for check", () => {
    const html = renderTimelineHtml(load("failed-check"));
    expect(marks(html, "step failed", "data-step")).toEqual(["check"]);
    expect(html).toContain("Checking for user-defined postfix operators");
    expect(html).toContain("✗ failed, ");
  });
});

describe("a self-contained page", () => {
  for (const kind of KINDS) {
    it(`${kind}: no script, no external resource of any kind, light and dark`, () => {
      const html = renderTimelineHtml(load(kind));
      expect(html).not.toMatch(/<script|<link|<img|<iframe|<object|<embed|@import|url\(|src=|href=|https?:\/\//i);
      expect(html).toContain("@media (prefers-color-scheme: dark)");
      expect(html).toContain('<meta name="color-scheme" content="light dark">');
      expect(html.startsWith("<!doctype html>\n<html lang=\"en\">")).toBe(true);
    });
  }
});

describe("escaping", () => {
  it("a hostile step name, snapshot, reason or log line is text, never markup", () => {
    const r = load("failed-user-step");
    const evil = `<script>alert("x")</script>&'`;
    r.rehearsal = evil;
    r.steps[0].name = evil;
    r.steps[0].snapshot = `pool/c@${evil}`;
    r.failure!.reason = evil;
    r.steps[r.steps.length - 1].logTail = evil;
    const html = renderTimelineHtml(r);
    expect(html).not.toContain("<script>");
    expect(html).toContain("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&#39;");
  });
});

describe("optional parts", () => {
  const model: GrowthModel = {
    basis: { machine: "test box", date: "2026-12-02", storage: "zfs-fuse", versions: "13 -> 15", bytes: { min: 1e7, max: 2e10 }, relations: { min: 10, max: 40000 }, command: "npm run bench -- growth", note: "note." },
    steps: {
      clone: { label: "snapshot + clone", a: 200, b: 0, c: 0, growsWith: "neither", in: ["rehearsal", "cutover"] },
      upgrade: { label: "pg_upgrade --link", a: 5000, b: 0, c: 2, growsWith: "relations", in: ["rehearsal", "cutover"] },
      baseline: { label: "row counts", a: 100, b: 5e-6, c: 0, growsWith: "bytes", in: ["rehearsal"] },
    },
  };

  it("the growth prediction at the source's size, with its basis", () => {
    const r = load("passed");
    r.growth = predictGrowth({ bytes: 100 * 1024 ** 4, relations: 40_000 }, model);
    const html = renderTimelineHtml(r);
    expect(html).toContain('<h2 id="g-h">At this size: 100 TB, 40,000 relations</h2>');
    expect(html).toContain("At 100 TB and 40,000 relations, expect the rehearsal to take about");
    expect(html).toContain("(extrapolated beyond the measured range)");
    expect(html).toContain('<tr><th scope="row">pg_upgrade --link</th><td class="num">85.0 s</td><td>relations</td></tr>');
    expect(html).toMatch(/Basis: Fitted \(time = a \+ b·bytes \+ c·relations per step\) on test box, zfs-fuse, 13 -&gt; 15, 2026-12-02; measured from 9\.5 MB to 18\.6 GB and 10 to 40,000 relations/);
  });

  it("after a promotion: the cut-over's phases, which held clients, and the measured pause next to the prediction", () => {
    const r = load("passed");
    r.cutover = {
      method: "replay",
      at: "2026-12-02T19:00:00.000Z",
      status: "promoted",
      pauseWindowMs: 12_345,
      phases: [
        { phase: "PAUSE (in-flight transactions finish)", ms: 40, held: true },
        { phase: "stop live cleanly", ms: 900, held: true },
        { phase: "upgrade", ms: 9000, held: true },
        { phase: "RESUME", ms: 5, held: true },
        { phase: "analyze (after resume)", ms: 3000, held: false },
      ],
    };
    const html = renderTimelineHtml(r);
    expect(html).toContain("<strong>Measured pause: 12.3 s</strong> (replay, promoted, 2026-12-02T19:00:00.000Z)");
    expect(html).toContain('<tr><th scope="row">analyze (after resume)</th><td class="num">3.0 s</td><td>no</td></tr>');
    expect(html).toContain('<g class="seg held" role="img" aria-label="stop live cleanly: 900 ms">');
    expect(html).toContain('<g class="seg free" role="img" aria-label="analyze (after resume): 3.0 s">');
    expect(renderTimelineHtml(load("passed"))).not.toContain("Measured pause");
  });
});

describe("TimeAxis", () => {
  it("maps a run linearly and cuts a long gap between runs into a break", () => {
    const h = 3600_000;
    const ax = new TimeAxis(
      [
        { start: 0, end: 10_000 },
        { start: 10_000, end: 20_000 },
        { start: 3 * h, end: 3 * h + 20_000 },
      ],
      100,
      500,
      20,
    );
    expect(ax.segments).toHaveLength(2);
    expect(ax.breaks).toEqual([{ x: 340, gapMs: 3 * h - 20_000 }]);
    expect(ax.at(0)).toBe(100);
    expect(ax.at(10_000)).toBe(220);
    expect(ax.at(3 * h)).toBe(360);
    expect(ax.at(3 * h + 20_000)).toBe(600);
    expect(ax.at(h)).toBe(340); // inside the break: its edge
    const xs = [0, 5000, 20_000, 3 * h + 1, 3 * h + 20_000].map((t) => ax.at(t));
    expect([...xs].sort((a, b) => a - b)).toEqual(xs);
  });

  it("keeps short pauses between steps on one axis, and ticks at round clock times", () => {
    const ax = new TimeAxis([{ start: 0, end: 10_000 }, { start: 15_000, end: 60_000 }], 0, 600);
    expect(ax.breaks).toEqual([]);
    expect(ax.ticks(90).map((t) => t.t)).toEqual([0, 10_000, 20_000, 30_000, 40_000, 50_000, 60_000]);
  });
});
