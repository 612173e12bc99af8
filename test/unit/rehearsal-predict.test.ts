/**
 * The growth model (providers/rehearsal/predict.ts): the fit, the prediction, and how a
 * report carries both (withSourceSize, renderMarkdown). The measurements themselves come
 * from bench/growth.ts (bench/results/).
 */
import { describe, expect, it } from "vitest";
import * as fs from "node:fs";
import * as path from "node:path";
import { basisSentence, fitGrowth, fmtBytes, fmtDuration, growsWith, GROWTH_MODEL, GrowthModel, predictGrowth, predictionSentence } from "../../providers/rehearsal/predict";
import { renderMarkdown, withSourceSize, RehearsalReport } from "../../providers/rehearsal/report";

const model: GrowthModel = {
  basis: { machine: "test box", date: "2026-12-02", storage: "zfs-fuse", versions: "13 -> 15", bytes: { min: 1e7, max: 2e10 }, relations: { min: 10, max: 40_000 }, command: "npm run bench -- growth", note: "A note." },
  steps: {
    clone: { label: "snapshot + clone", a: 200, b: 0, c: 0, growsWith: "neither", in: ["rehearsal", "cutover"] },
    upgrade: { label: "pg_upgrade --link", a: 5000, b: 0, c: 2, growsWith: "relations", in: ["rehearsal", "cutover"] },
    baseline: { label: "row counts", a: 100, b: 5e-6, c: 0, growsWith: "bytes", in: ["rehearsal"] },
    checksum: { label: "checksums", a: 0, b: 1e-5, c: 0, growsWith: "bytes", in: [] },
  },
};

describe("fitGrowth", () => {
  it("recovers a, b and c from exact points on both axes", () => {
    const pts = [];
    for (const bytes of [1e7, 1e8, 1e9, 1e10]) pts.push({ bytes, relations: 20, ms: 300 + 2e-6 * bytes + 1.5 * 20 });
    for (const relations of [100, 1000, 10_000]) pts.push({ bytes: 2e7, relations, ms: 300 + 2e-6 * 2e7 + 1.5 * relations });
    const g = fitGrowth(pts);
    expect(g.a).toBeCloseTo(300, 6);
    expect(g.b).toBeCloseTo(2e-6, 12);
    expect(g.c).toBeCloseTo(1.5, 6);
    expect(g.rmsMs).toBeLessThan(1e-6);
  });

  it("never returns a negative coefficient: noise that would make a step faster with size is held at zero", () => {
    const pts = [
      { bytes: 1e7, relations: 10, ms: 1100 },
      { bytes: 1e9, relations: 10, ms: 1000 },
      { bytes: 1e10, relations: 10, ms: 1050 },
      { bytes: 1e7, relations: 10_000, ms: 9000 },
    ];
    const g = fitGrowth(pts);
    expect(g.b).toBe(0);
    expect(g.a).toBeGreaterThan(0);
    expect(g.c).toBeGreaterThan(0);
  });

  it("refuses to fit nothing", () => {
    expect(() => fitGrowth([])).toThrow(/no points/);
  });
});

describe("growsWith", () => {
  it("names the term that is a quarter of the time or more at the top of the measured range (and at least 0.5 s)", () => {
    expect(growsWith({ a: 1000, b: 1e-6, c: 0 }, 2e10, 40_000)).toBe("bytes"); // 20 s of 21 s
    expect(growsWith({ a: 1000, b: 0, c: 2 }, 2e10, 40_000)).toBe("relations");
    expect(growsWith({ a: 1000, b: 1e-6, c: 0.5 }, 2e10, 40_000)).toBe("both");
    expect(growsWith({ a: 10_000, b: 1e-10, c: 0.001 }, 2e10, 40_000)).toBe("neither");
    expect(growsWith({ a: 100, b: 1e-11, c: 0 }, 2e10, 40_000)).toBe("neither"); // 0.2 s: too little to matter
  });
});

describe("predictGrowth", () => {
  it("adds up the rehearsal and the cut-over (replay) from the steps each contains; checksums are per table chosen, in neither", () => {
    const p = predictGrowth({ bytes: 1e12, relations: 40_000 }, model);
    expect(p.steps).toEqual([
      { step: "clone", label: "snapshot + clone", ms: 200, growsWith: "neither" },
      { step: "upgrade", label: "pg_upgrade --link", ms: 85_000, growsWith: "relations" },
      { step: "baseline", label: "row counts", ms: 5_000_100, growsWith: "bytes" },
      { step: "checksum", label: "checksums", ms: 10_000_000, growsWith: "bytes" },
    ]);
    expect(p.rehearsalMs).toBe(200 + 85_000 + 5_000_100);
    expect(p.cutoverMs).toBe(85_200);
    expect(p.extrapolated).toBe(true);
    expect(predictGrowth({ bytes: 1e9, relations: 100 }, model).extrapolated).toBe(false);
  });

  it("says it in one sentence, and the basis in another", () => {
    const p = predictGrowth({ bytes: 100 * 1024 ** 4, relations: 40_000 }, model);
    expect(predictionSentence(p)).toBe(
      `At 100 TB and 40,000 relations, expect the rehearsal to take about ${fmtDuration(p.rehearsalMs)} and a replay cut-over to hold clients for about 85.2 s (extrapolated beyond the measured range).`,
    );
    expect(basisSentence(model.basis)).toBe(
      "Fitted (time = a + b·bytes + c·relations per step) on test box, zfs-fuse, 13 -> 15, 2026-12-02; measured from 9.5 MB to 18.6 GB and 10 to 40,000 relations (`npm run bench -- growth`). A note.",
    );
  });

  it("the shipped model states its basis and covers the steps a rehearsal and a cut-over consist of", () => {
    const b = GROWTH_MODEL.basis;
    for (const k of ["machine", "date", "storage", "versions", "command"] as const) expect(b[k]).not.toMatch(/placeholder/);
    expect(b.bytes.max).toBeGreaterThan(1024 ** 3);
    expect(b.relations.max).toBeGreaterThanOrEqual(10_000);
    expect(Object.keys(GROWTH_MODEL.steps)).toEqual(expect.arrayContaining(["clone", "recover", "baseline", "check", "upgrade", "start", "analyze", "verify"]));
    for (const g of Object.values(GROWTH_MODEL.steps)) {
      expect(Math.min(g.a, g.b, g.c)).toBeGreaterThanOrEqual(0);
    }
    // The basis names its raw data.
    const results = path.resolve(__dirname, "../../bench/results");
    for (const f of ["growth-size.json", "growth-relations.json"]) expect(fs.existsSync(path.join(results, f)), f).toBe(true);
  });
});

describe("formatting", () => {
  it.each([
    [512, "512 bytes"],
    [1536, "1.5 kB"],
    [56_034_398, "53.4 MB"],
    [21 * 1024 ** 3, "21.0 GB"],
    [100 * 1024 ** 4, "100 TB"],
  ])("fmtBytes(%d) = %s", (n, s) => expect(fmtBytes(n)).toBe(s));
  it.each([
    [850, "850 ms"],
    [4200, "4.2 s"],
    [200_000, "3 min"],
    [2 * 3600_000 + 5 * 60_000, "2 h 05 min"],
    [3 * 86_400_000, "3.0 days"],
  ])("fmtDuration(%d) = %s", (n, s) => expect(fmtDuration(n)).toBe(s));
});

describe("the report carries the size and the prediction", () => {
  const r = (): RehearsalReport => JSON.parse(fs.readFileSync(path.resolve(__dirname, "../fixtures/reports/passed.json"), "utf8"));

  it("withSourceSize records the baseline's size facts and the prediction at that size", () => {
    const size = { bytes: 56_034_398, relations: 32, tables: 10, databases: 2 };
    const out = withSourceSize(r(), size);
    expect(out.sourceSize).toEqual(size);
    expect(out.growth?.bytes).toBe(size.bytes);
    expect(out.growth?.basis).toEqual(GROWTH_MODEL.basis);
    expect(withSourceSize(r(), undefined)).toEqual(r());
  });

  it("renderMarkdown: 'at <size> and <N> relations, expect …' with the basis, and the methods of checks that have one", () => {
    const rep = r();
    rep.growth = predictGrowth({ bytes: 100 * 1024 ** 4, relations: 40_000 }, model);
    const md = renderMarkdown(rep);
    expect(md).toContain("## At this size: 100 TB, 40,000 relations");
    expect(md).toContain("At 100 TB and 40,000 relations, expect the rehearsal to take about");
    expect(md).toContain("| pg_upgrade --link | 85.0 s | relations |");
    expect(md).toContain("Basis: Fitted (time = a + b·bytes + c·relations per step) on test box");
    expect(md).toContain("| checksum app.public.customers (sampled: 10% of rows, chosen by md5 of the primary key (id)) | checksum | pass |");
  });

  it("renderMarkdown: after a promotion, the phases, which held clients, and measured against predicted", () => {
    const rep = r();
    rep.cutover = { method: "replay", at: "2026-12-02T19:00:00.000Z", status: "promoted", pauseWindowMs: 12_345, phases: [{ phase: "stop live cleanly", ms: 900, held: true }, { phase: "analyze (after resume)", ms: 3000, held: false }] };
    const md = renderMarkdown(rep);
    expect(md).toContain("## Cut-over (replay, promoted, 2026-12-02T19:00:00.000Z): clients held 12.3 s");
    expect(md).toContain("| stop live cleanly | 900 ms | yes |");
    expect(md).toContain("| analyze (after resume) | 3.0 s |  |");
    expect(md).toMatch(/Predicted from the rehearsal: [\d.]+ s; measured: 12\.3 s\./);
  });
});
