/**
 * The timeline page in a real browser: Debian's headless Chromium (/usr/bin/chromium, or
 * $UNDERSTUDY_CHROMIUM), driven by playwright-core with a fresh profile and no background
 * networking, opens the HTML files that writeReportFiles writes for the real reports in
 * test/fixtures/reports (passed, failed at a user step, failed at verify, failed at
 * pg_upgrade --check). For each page: every step and every snapshot of the report is in the
 * DOM, drawn, and named in the accessibility tree; the failing step is red; light and dark
 * differ; the page asks for nothing but itself; a screenshot is taken.
 *
 * UNDERSTUDY_UPDATE_SCREENSHOTS=1 also copies the passed and the failed (user step) light
 * screenshots to docs/ for the README.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { pathToFileURL } from "node:url";
import { chromium, BrowserContext } from "playwright-core";
import { writeReportFiles } from "../../providers/rehearsal/report-files";
import type { RehearsalReport } from "../../providers/rehearsal/report";

// The page's globals, used inside the function Chromium evaluates (the tests compile without the DOM lib).
/* eslint-disable @typescript-eslint/no-explicit-any */
declare const document: any;
declare function getComputedStyle(e: unknown): { fill: string; backgroundColor: string };
type El = any;

const REPO = path.resolve(__dirname, "../..");
const FIX = path.join(REPO, "test/fixtures/reports");
const CHROMIUM = process.env.UNDERSTUDY_CHROMIUM ?? "/usr/bin/chromium";
const KINDS = ["passed", "failed-user-step", "failed-verify", "failed-check"] as const;

let ctx: BrowserContext;
let work: string;
const requests: string[] = [];
const consoleErrors: string[] = [];

beforeAll(async () => {
  if (!fs.existsSync(CHROMIUM)) {
    throw new Error(`no Chromium at ${CHROMIUM}: install Debian's chromium (apt-get install chromium) or set UNDERSTUDY_CHROMIUM`);
  }
  work = fs.mkdtempSync(path.join(os.tmpdir(), "understudy-chromium-"));
  ctx = await chromium.launchPersistentContext(path.join(work, "profile"), {
    executablePath: CHROMIUM,
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    viewport: { width: 1100, height: 900 },
    colorScheme: "light",
  });
  ctx.on("request", (r) => requests.push(r.url()));
  ctx.on("console", (m) => {
    if (m.type() === "error") consoleErrors.push(m.text());
  });
}, 60_000);

afterAll(async () => {
  await ctx?.close();
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

/** What the browser made of the page. */
async function inspect(file: string) {
  const page = await ctx.newPage();
  const url = pathToFileURL(file).href;
  requests.length = 0;
  await page.goto(url);
  const dom = await page.evaluate(() => {
    const box = (e: El) => {
      const b = e?.getBoundingClientRect();
      return b ? { x: b.x, y: b.y, w: b.width, h: b.height } : undefined;
    };
    return {
      steps: [...document.querySelectorAll("svg.timeline g.step")].map((g: El) => ({
        name: (g.dataset.step ?? "") as string,
        failed: g.classList.contains("failed"),
        label: (g.getAttribute("aria-label") ?? "") as string,
        title: g.querySelector("title")?.textContent ?? "",
        fill: getComputedStyle(g.querySelector("rect.bar")!).fill,
        bar: box(g.querySelector("rect.bar")),
      })),
      snapshots: [...document.querySelectorAll("svg.timeline g.marker")].map((g: El) => ({
        name: (g.dataset.snapshot ?? "") as string,
        lastGood: g.classList.contains("last-good"),
        label: g.getAttribute("aria-label") ?? "",
        mark: box(g.querySelector("path")),
      })),
      tableSteps: [...document.querySelectorAll("table.steps tbody tr")].map((tr: El) => tr.dataset.step as string),
      failure: (document.querySelector("section.failure")?.textContent ?? "") as string,
      text: document.body.innerText as string,
      width: document.documentElement.clientWidth as number,
    };
  });
  return { page, url, dom };
}

const luminance = (css: string) => {
  const [r, g, b] = (css.match(/\d+(\.\d+)?/g) ?? []).map(Number);
  return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255;
};
const isRed = (css: string) => {
  const [r, g, b] = (css.match(/\d+(\.\d+)?/g) ?? []).map(Number);
  return r > 180 && g < 120 && b < 120;
};

describe("the timeline page in Chromium", () => {
  for (const kind of KINDS) {
    it(`${kind}: every step and snapshot drawn and named, the failing step red, light and dark, nothing fetched; screenshot`, async () => {
      const r = JSON.parse(fs.readFileSync(path.join(FIX, `${kind}.json`), "utf8")) as RehearsalReport;
      const files = writeReportFiles(path.join(work, "reports"), r);
      const { page, url, dom } = await inspect(files.html);
      try {
        // Every step of the report: a bar that is drawn (has a size, inside the page), a label, a table row.
        const expectedSteps = r.steps.map((s) => s.name);
        expect(dom.steps.map((s) => s.name), "steps in the SVG").toEqual(expectedSteps);
        expect(dom.tableSteps, "steps in the table").toEqual(expectedSteps);
        for (const s of dom.steps) {
          expect(s.bar!.w, `${s.name} bar width`).toBeGreaterThanOrEqual(1.5);
          expect(s.bar!.x + s.bar!.w, `${s.name} inside the page`).toBeLessThanOrEqual(dom.width);
          expect(s.label).toMatch(new RegExp(`^Step \\d+, ${s.name} \\(`));
          expect(s.title).toBe(s.label);
        }
        // Every snapshot of the report: a marker that is drawn, with its full name in its label and on the page.
        const expectedSnaps = r.steps.filter((s) => s.snapshot).map((s) => s.snapshot!);
        expect(dom.snapshots.map((s) => s.name), "snapshot markers").toEqual(expectedSnaps);
        for (const s of dom.snapshots) {
          expect(s.mark!.w, `${s.name} marker`).toBeGreaterThan(5);
          expect(s.label).toContain(s.name);
          expect(dom.text).toContain(s.name);
        }
        // The accessibility tree Chromium builds names every bar and every snapshot.
        const aria = await page.locator("svg.timeline").ariaSnapshot();
        for (const s of r.steps) expect(aria).toContain(`Step ${s.index}, ${s.name} (`);
        for (const sn of expectedSnaps) expect(aria).toContain(sn);

        // The failing step: red, and the only red one; the last good snapshot and when.
        const failed = r.steps.filter((s) => s.status === "failed").map((s) => s.name);
        expect(dom.steps.filter((s) => s.failed).map((s) => s.name)).toEqual(failed);
        for (const s of dom.steps) expect(isRed(s.fill), `${s.name} fill ${s.fill}`).toBe(s.failed);
        if (r.failure) {
          expect(failed).toEqual([r.failure.step]);
          expect(dom.failure).toContain(`Failed at step ${r.failure.step}`);
          expect(dom.failure).toContain(`Last good snapshot ${r.failure.lastGoodSnapshot}, taken at ${r.failure.lastGoodAt}`);
          expect(dom.snapshots.filter((s) => s.lastGood).map((s) => s.name)).toEqual([r.failure.lastGoodSnapshot]);
        } else {
          expect(failed).toEqual([]);
          expect(dom.failure).toBe("");
        }

        // Light and dark.
        const bg = () => page.evaluate(() => getComputedStyle(document.body).backgroundColor);
        const light = await bg();
        await page.screenshot({ path: path.join(work, `${kind}-light.png`), fullPage: true });
        await page.emulateMedia({ colorScheme: "dark" });
        const dark = await bg();
        await page.screenshot({ path: path.join(work, `${kind}-dark.png`), fullPage: true });
        expect(luminance(light)).toBeGreaterThan(0.9);
        expect(luminance(dark)).toBeLessThan(0.15);
        for (const f of [`${kind}-light.png`, `${kind}-dark.png`]) expect(fs.statSync(path.join(work, f)).size).toBeGreaterThan(20_000);

        // Self-contained: the page itself is the only request; no script errors.
        expect(requests).toEqual([url]);
        expect(consoleErrors).toEqual([]);
      } finally {
        await page.close();
      }
      if (process.env.UNDERSTUDY_UPDATE_SCREENSHOTS && (kind === "passed" || kind === "failed-user-step")) {
        fs.mkdirSync(path.join(REPO, "docs"), { recursive: true });
        fs.copyFileSync(path.join(work, `${kind}-light.png`), path.join(REPO, "docs", kind === "passed" ? "timeline-passed.png" : "timeline-failed.png"));
      }
    }, 60_000);
  }
});
