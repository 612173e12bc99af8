/**
 * The rehearsal as a picture a reviewer can look at: one self-contained HTML file (inline CSS
 * and an inline SVG; no script, no network, no external fonts) with
 *
 *   - one bar per step on a time axis, with its duration,
 *   - a marker per snapshot with its name and time,
 *   - the failing step in red with its log tail, and the last good snapshot and when it was taken,
 *   - the steps a cut-over replays highlighted, with the predicted pause,
 *   - the verification summary,
 *   - after a promotion, the cut-over's phases with the measured pause,
 *   - the growth prediction at the source's size, with its basis.
 *
 * Light and dark (prefers-color-scheme). For screen readers every mark carries text (an
 * aria-label and a <title>), the SVG a <title> and <desc>, and a table below says the same.
 * Pure: a report in, a string out.
 */
import { CheckRecord, fmtMs, growthOf, RehearsalReport, StepRecord, type LogicalRehearsalRecord } from "./report";
import { basisSentence, fmtBytes, fmtDuration, predictionSentence } from "./predict";

/** Escape text for HTML and SVG content and attribute values. */
export function esc(s: unknown): string {
  return String(s ?? "")
    .replace(/&/g, "&amp;")
    .replace(/</g, "&lt;")
    .replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;")
    .replace(/'/g, "&#39;");
}

const ms = (iso: string | undefined): number => (iso ? Date.parse(iso) : Number.NaN);
/** 2026-11-24T20:39:20.123Z -> 20:39:20 */
const clock = (t: number): string => (Number.isFinite(t) ? new Date(t).toISOString().slice(11, 19) : "?");
/** The snapshot's own name, after the @. */
const shortSnap = (s: string): string => (s.includes("@") ? s.slice(s.indexOf("@") + 1) : s);

// ------------------------------------------------------------------------------ the time axis

interface Segment {
  from: number;
  to: number;
  x: number;
  width: number;
}

/**
 * Maps time to x. Steps of one run follow each other; a rehearsal resumed after a fix has a
 * gap of hours between runs. Gaps longer than the busy time's 15% (and at least 30 s) are
 * cut out and drawn as a break, so each run stays readable.
 */
export class TimeAxis {
  readonly segments: Segment[] = [];
  readonly breaks: Array<{ x: number; gapMs: number }> = [];

  constructor(
    spans: Array<{ start: number; end: number }>,
    readonly x0: number,
    readonly width: number,
    readonly breakWidth = 26,
  ) {
    const sorted = spans.filter((s) => Number.isFinite(s.start) && Number.isFinite(s.end)).sort((a, b) => a.start - b.start);
    if (!sorted.length) {
      this.segments.push({ from: 0, to: 1, x: x0, width });
      return;
    }
    // Merge overlapping spans into runs.
    const runs: Array<{ from: number; to: number }> = [];
    for (const s of sorted) {
      const last = runs[runs.length - 1];
      if (last && s.start <= last.to) last.to = Math.max(last.to, s.end);
      else runs.push({ from: s.start, to: Math.max(s.end, s.start) });
    }
    const busy = runs.reduce((t, r) => t + (r.to - r.from), 0) || 1;
    const cut = Math.max(30_000, busy * 0.15);
    // Join runs whose gap is small; keep big gaps as breaks.
    const groups: Array<{ from: number; to: number }> = [];
    for (const r of runs) {
      const last = groups[groups.length - 1];
      if (last && r.from - last.to <= cut) last.to = Math.max(last.to, r.to);
      else groups.push({ ...r });
    }
    const total = groups.reduce((t, g) => t + Math.max(g.to - g.from, 1), 0);
    const avail = width - this.breakWidth * (groups.length - 1);
    let x = x0;
    groups.forEach((g, i) => {
      const w = (avail * Math.max(g.to - g.from, 1)) / total;
      this.segments.push({ from: g.from, to: g.to, x, width: w });
      x += w;
      if (i < groups.length - 1) {
        this.breaks.push({ x, gapMs: groups[i + 1].from - g.to });
        x += this.breakWidth;
      }
    });
  }

  /** x of a moment; moments inside a break go to its edge. */
  at(t: number): number {
    if (!Number.isFinite(t)) return this.x0;
    let prev = this.segments[0];
    for (const s of this.segments) {
      if (t < s.from) return prev === s ? s.x : prev.x + prev.width;
      if (t <= s.to) return s.x + (s.to === s.from ? 0 : ((t - s.from) / (s.to - s.from)) * s.width);
      prev = s;
    }
    return prev.x + prev.width;
  }

  /** Clock-time ticks at a round interval inside each segment. */
  ticks(minSpacingPx = 90): Array<{ x: number; t: number }> {
    const steps = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 43200, 86400].map((s) => s * 1000);
    const out: Array<{ x: number; t: number }> = [];
    for (const s of this.segments) {
      const span = Math.max(s.to - s.from, 1);
      const step = steps.find((st) => (st / span) * s.width >= minSpacingPx) ?? steps[steps.length - 1];
      for (let t = Math.ceil(s.from / step) * step; t <= s.to; t += step) out.push({ x: this.at(t), t });
      if (!out.some((o) => o.t >= s.from && o.t <= s.to)) out.push({ x: s.x, t: s.from });
    }
    return out;
  }
}

// ------------------------------------------------------------------------------ pieces

const W = 980;
const LABEL_W = 190;
const RIGHT_W = 170;
const ROW = 30;
const BAR = 16;

function stepAria(s: StepRecord, cut: boolean): string {
  const when = `started ${clock(ms(s.startedAt))} UTC, took ${fmtMs(s.durationMs)}`;
  const status = s.status === "failed" ? "FAILED" : "ok";
  return `Step ${s.index}, ${s.name} (${s.kind}): ${status}, ${when}${cut ? "; replayed during a cut-over" : ""}${s.snapshot ? `; snapshot after it: ${s.snapshot}` : ""}`;
}

function timelineSvg(r: RehearsalReport): string {
  const steps = r.steps;
  const topPad = 34;
  const rowsH = Math.max(steps.length, 1) * ROW;
  const axisY = topPad + rowsH + 8;
  const H = axisY + 34;
  const spans = steps.map((s) => ({ start: ms(s.startedAt), end: ms(s.finishedAt) }));
  const srcAt = ms(r.source.snapshotAt);
  if (Number.isFinite(srcAt)) spans.push({ start: srcAt, end: srcAt });
  const axis = new TimeAxis(spans, LABEL_W, W - LABEL_W - RIGHT_W);
  const failed = steps.find((s) => s.status === "failed");
  const lastGood = r.failure?.lastGoodSnapshot;
  const parts: string[] = [];
  const cutSteps = steps.filter((s) => s.cutover);
  const desc =
    `${steps.length} steps from ${clock(spans[0]?.start)} to ${clock(Math.max(...spans.map((s) => s.end).filter(Number.isFinite)))} UTC. ` +
    (failed ? `Step ${failed.name} failed; the last good snapshot is ${lastGood ?? "none"}. ` : `Every step succeeded. `) +
    (cutSteps.length ? `${cutSteps.length} steps are replayed during a cut-over (${cutSteps.map((s) => s.name).join(", ")}), predicted pause ${fmtMs(r.predictedCutover.totalMs)}.` : "");
  parts.push(
    `<svg class="timeline" viewBox="0 0 ${W} ${H}" width="100%" role="group" aria-labelledby="tl-title tl-desc" preserveAspectRatio="xMinYMin meet">`,
    `<title id="tl-title">Timeline of the rehearsal ${esc(r.rehearsal)}</title>`,
    `<desc id="tl-desc">${esc(desc)}</desc>`,
  );
  // Cut-over rows: a band behind each replayed step.
  steps.forEach((s, i) => {
    if (!s.cutover) return;
    parts.push(`<rect class="cut-band" x="0" y="${topPad + i * ROW}" width="${W}" height="${ROW}" aria-hidden="true"/>`);
  });
  // Grid and ticks.
  for (const t of axis.ticks()) {
    parts.push(`<line class="grid" x1="${t.x.toFixed(1)}" x2="${t.x.toFixed(1)}" y1="${topPad - 4}" y2="${axisY}" aria-hidden="true"/>`);
    parts.push(`<text class="tick" x="${t.x.toFixed(1)}" y="${axisY + 16}" text-anchor="middle" aria-hidden="true">${clock(t.t)}</text>`);
  }
  for (const b of axis.breaks) {
    parts.push(
      `<g class="break" role="img" aria-label="${esc(`break in the time axis: ${fmtDuration(b.gapMs)} without a step`)}">` +
        `<title>${esc(`${fmtDuration(b.gapMs)} later`)}</title>` +
        `<rect x="${(b.x + 3).toFixed(1)}" y="${topPad - 6}" width="${axis.breakWidth - 6}" height="${rowsH + 12}"/>` +
        `<text class="break-label" x="${(b.x + axis.breakWidth / 2).toFixed(1)}" y="${topPad - 10}" text-anchor="middle">${esc(fmtDuration(b.gapMs))}</text></g>`,
    );
  }
  parts.push(`<line class="axis" x1="${LABEL_W}" x2="${W - RIGHT_W}" y1="${axisY}" y2="${axisY}" aria-hidden="true"/>`);
  parts.push(`<text class="axis-label" x="${W - RIGHT_W}" y="${axisY + 30}" text-anchor="end" aria-hidden="true">time (UTC)</text>`);
  // Source snapshot marker, at the top.
  if (Number.isFinite(srcAt)) {
    const x = axis.at(srcAt);
    parts.push(
      `<g class="marker source" data-snapshot="${esc(r.source.snapshot)}" role="img" aria-label="${esc(`Source snapshot ${r.source.snapshot}, taken at ${clock(srcAt)} UTC`)}">` +
        `<title>${esc(`source snapshot ${r.source.snapshot}, ${r.source.snapshotAt}`)}</title>` +
        `<path d="M${x.toFixed(1)} ${topPad - 16} l6 6 l-6 6 l-6 -6 z"/>` +
        `<text x="${(x + 9).toFixed(1)}" y="${topPad - 6}">${esc(`source ${shortSnap(r.source.snapshot)}`)}</text></g>`,
    );
  }
  steps.forEach((s, i) => {
    const y = topPad + i * ROW;
    const x1 = axis.at(ms(s.startedAt));
    const x2 = Math.max(axis.at(ms(s.finishedAt)), x1 + 2);
    const cls = ["step", s.status === "failed" ? "failed" : "ok", s.cutover ? "cutover" : ""].filter(Boolean).join(" ");
    const label = `${s.index}. ${s.name}`;
    parts.push(
      `<g class="${cls}" data-step="${esc(s.name)}" role="img" aria-label="${esc(stepAria(s, s.cutover))}">` +
        `<title>${esc(stepAria(s, s.cutover))}</title>` +
        `<text class="step-label" x="${LABEL_W - 10}" y="${y + ROW / 2 + 4}" text-anchor="end">${esc(label.length > 26 ? `${label.slice(0, 25)}…` : label)}</text>` +
        `<rect class="bar" x="${x1.toFixed(1)}" y="${y + (ROW - BAR) / 2}" width="${(x2 - x1).toFixed(1)}" height="${BAR}" rx="3"/>` +
        `<text class="dur" x="${W - RIGHT_W + 8}" y="${y + ROW / 2 + 4}">${esc(s.status === "failed" ? `✗ failed, ${fmtMs(s.durationMs)}` : fmtMs(s.durationMs))}</text></g>`,
    );
    if (s.snapshot) {
      const good = s.snapshot === lastGood;
      parts.push(
        `<g class="marker snap${good ? " last-good" : ""}" data-snapshot="${esc(s.snapshot)}" role="img" aria-label="${esc(`${good ? "Last good snapshot" : "Snapshot"} ${s.snapshot}, taken at ${clock(ms(s.finishedAt))} UTC`)}">` +
          `<title>${esc(`${good ? "last good snapshot " : "snapshot "}${s.snapshot}, ${s.finishedAt}`)}</title>` +
          `<path d="M${x2.toFixed(1)} ${y + ROW / 2 - 7} l7 7 l-7 7 l-7 -7 z"/>` +
          (good ? `<circle cx="${x2.toFixed(1)}" cy="${y + ROW / 2}" r="11"/>` : "") +
          `</g>`,
      );
    }
  });
  // A bracket on the right over each run of consecutive cut-over steps, the predicted pause on the first.
  const groups: Array<[number, number]> = [];
  steps.forEach((s, i) => {
    if (!s.cutover) return;
    const last = groups[groups.length - 1];
    if (last && last[1] === i - 1) last[1] = i;
    else groups.push([i, i]);
  });
  groups.forEach(([a, b], k) => {
    const bx = W - RIGHT_W + 66;
    const y1 = topPad + a * ROW + 4;
    const y2 = topPad + (b + 1) * ROW - 4;
    const text = k === 0 ? `predicted pause ${fmtMs(r.predictedCutover.totalMs)}` : "replayed too";
    parts.push(
      `<g class="cut-bracket" role="img" aria-label="${esc(`Replayed during a cut-over: ${steps.slice(a, b + 1).map((s) => s.name).join(", ")}; ${text}`)}">` +
        `<title>${esc(`cut-over replays ${steps.slice(a, b + 1).map((s) => s.name).join(", ")}; ${text}`)}</title>` +
        `<path d="M${bx} ${y1} h6 V${y2} h-6"/>` +
        `<text x="${bx + 12}" y="${(y1 + y2) / 2 - 3}">cut-over</text>` +
        `<text x="${bx + 12}" y="${(y1 + y2) / 2 + 11}">${esc(k === 0 ? fmtMs(r.predictedCutover.totalMs) + " pause" : "(replayed)")}</text></g>`,
    );
  });
  parts.push("</svg>");
  return parts.join("\n");
}

/** A horizontal stacked bar (predicted pause, measured phases). */
function stackedBar(
  id: string,
  title: string,
  items: Array<{ label: string; ms: number; cls: string }>,
  scaleMs: number,
  totalText?: string,
): string {
  const width = W - LABEL_W - RIGHT_W;
  const total = items.reduce((t, i) => t + i.ms, 0);
  let x = LABEL_W;
  const segs = items.map((it) => {
    const w = Math.max((it.ms / Math.max(scaleMs, 1)) * width, it.ms > 0 ? 1.5 : 0);
    const g =
      `<g class="seg ${it.cls}" role="img" aria-label="${esc(`${it.label}: ${fmtMs(it.ms)}`)}"><title>${esc(`${it.label}: ${fmtMs(it.ms)}`)}</title>` +
      `<rect x="${x.toFixed(1)}" y="6" width="${w.toFixed(1)}" height="18" rx="2"/>` +
      (w > 70 ? `<text class="seg-label" x="${(x + 4).toFixed(1)}" y="19">${esc(it.label.length * 6.5 > w - 8 ? `${it.label.slice(0, Math.max(1, Math.floor((w - 14) / 6.5)))}…` : it.label)}</text>` : "") +
      `</g>`;
    x += w;
    return g;
  });
  return (
    `<svg class="pause" viewBox="0 0 ${W} 30" width="100%" role="group" aria-labelledby="${id}-t"><title id="${id}-t">${esc(`${title}: ${fmtMs(total)}`)}</title>` +
    `<text class="step-label" x="${LABEL_W - 10}" y="19" text-anchor="end">${esc(title)}</text>` +
    segs.join("") +
    `<text class="dur" x="${W - RIGHT_W + 8}" y="19">${esc(totalText ?? fmtMs(total))}</text></svg>`
  );
}

function checksSection(checks: CheckRecord[]): string {
  if (!checks.length) return `<section aria-labelledby="v-h"><h2 id="v-h">Verification</h2><p>Nothing was verified: the rehearsal did not reach the verify step.</p></section>`;
  const failed = checks.filter((c) => c.status === "fail");
  const kinds = [...new Set(checks.map((c) => c.kind))];
  const byKind = kinds
    .map((k) => {
      const all = checks.filter((c) => c.kind === k);
      const bad = all.filter((c) => c.status === "fail").length;
      return `<li class="${bad ? "bad" : "good"}"><span class="kind">${esc(k)}</span> ${all.length - bad} of ${all.length} passed</li>`;
    })
    .join("");
  const row = (c: CheckRecord) =>
    `<tr class="${c.status === "fail" ? "fail" : ""}"><th scope="row">${esc(c.name)}${c.method ? `<div class="method">${esc(c.method)}</div>` : ""}</th><td>${esc(c.kind)}</td><td>${c.status === "fail" ? "<strong>fail</strong>" : "pass"}</td><td><code>${esc(c.expected)}</code></td><td><code>${esc(c.actual)}</code></td></tr>`;
  const head = `<thead><tr><th scope="col">check</th><th scope="col">kind</th><th scope="col">result</th><th scope="col">source (at snapshot)</th><th scope="col">upgraded clone</th></tr></thead>`;
  return (
    `<section aria-labelledby="v-h"><h2 id="v-h">Verification: ${checks.length - failed.length} passed, ${failed.length} failed</h2>` +
    `<ul class="kinds">${byKind}</ul>` +
    (failed.length ? `<table class="checks"><caption>Failed checks</caption>${head}<tbody>${failed.map(row).join("")}</tbody></table>` : "") +
    `<details><summary>All ${checks.length} checks</summary><table class="checks"><caption>Every check, source as of the snapshot against the upgraded clone</caption>${head}<tbody>${checks.map(row).join("")}</tbody></table></details></section>`
  );
}

const CSS = `
:root { color-scheme: light dark;
  --bg: #ffffff; --fg: #1b1f24; --muted: #57606a; --line: #d0d7de; --panel: #f6f8fa;
  --ok: #2f6feb; --ok-snap: #1a7f37; --fail: #cf222e; --fail-bg: #ffebe9; --cut: #fff1c2; --cut-fg: #7d4e00; --held: #bf8700; --free: #8c959f; --src: #8250df; --badge-ok: #1a7f37; --badge-fail: #cf222e; --seg-text: #ffffff; }
@media (prefers-color-scheme: dark) { :root {
  --bg: #0d1117; --fg: #e6edf3; --muted: #9198a1; --line: #30363d; --panel: #161b22;
  --ok: #4493f8; --ok-snap: #3fb950; --fail: #ff6b6b; --fail-bg: #3c1618; --cut: #3a2e0b; --cut-fg: #e3b341; --held: #d29922; --free: #6e7681; --src: #ab7df8; --badge-ok: #238636; --badge-fail: #b62324; --seg-text: #0d1117; } }
* { box-sizing: border-box; }
body { margin: 0; padding: 24px clamp(12px, 3vw, 40px); background: var(--bg); color: var(--fg);
  font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans", "DejaVu Sans", sans-serif; max-width: 1100px; }
h1 { font-size: 24px; margin: 0 0 4px; } h1 code, h2 code { font-size: 0.9em; } h2 { font-size: 18px; margin: 28px 0 8px; }
code, pre { font-family: ui-monospace, "SFMono-Regular", "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 13px; }
.badge { display: inline-block; padding: 2px 10px; border-radius: 999px; color: #fff; font-size: 15px; vertical-align: 3px; }
.badge.passed { background: var(--badge-ok); } .badge.failed { background: var(--badge-fail); } .badge.running { background: var(--muted); }
.sub { color: var(--muted); margin: 0 0 16px; }
.failure { border: 2px solid var(--fail); background: var(--fail-bg); border-radius: 8px; padding: 12px 16px; margin: 16px 0; }
.failure h2 { margin-top: 0; color: var(--fail); }
.failure pre { white-space: pre-wrap; overflow-wrap: anywhere; background: var(--bg); border: 1px solid var(--line); border-radius: 6px; padding: 10px; max-height: 24em; overflow: auto; }
.legend { display: flex; flex-wrap: wrap; gap: 16px; margin: 6px 0 2px; padding: 0; list-style: none; color: var(--muted); font-size: 13px; }
.legend i { display: inline-block; width: 14px; height: 10px; border-radius: 2px; margin-right: 6px; vertical-align: 0; }
.lg-ok { background: var(--ok); } .lg-fail { background: var(--fail); } .lg-cut { background: var(--cut); border: 1px solid var(--cut-fg); }
.lg-snap { background: var(--ok-snap); transform: rotate(45deg) scale(.8); width: 10px !important; }
figure { margin: 8px 0 0; } figcaption { color: var(--muted); font-size: 13px; }
svg text { fill: var(--fg); font-size: 12px; }
svg .tick, svg .axis-label, svg .break-label { fill: var(--muted); font-size: 11px; }
svg .grid { stroke: var(--line); stroke-width: 1; } svg .axis { stroke: var(--muted); }
svg .cut-band { fill: var(--cut); }
svg .step .bar { fill: var(--ok); } svg .step.failed .bar { fill: var(--fail); }
svg .step.failed .step-label { fill: var(--fail); font-weight: 700; }
svg .step.failed .dur { fill: var(--fail); font-weight: 700; }
svg .cut-bracket path { fill: none; stroke: var(--cut-fg); stroke-width: 2; } svg .cut-bracket text { fill: var(--cut-fg); font-size: 11px; font-weight: 600; }
svg .dur { fill: var(--muted); font-variant-numeric: tabular-nums; }
svg .marker.snap path { fill: var(--ok-snap); stroke: var(--bg); stroke-width: 1.5; }
svg .marker.last-good circle { fill: none; stroke: var(--ok-snap); stroke-width: 2.5; }
svg .marker.source path { fill: var(--src); } svg .marker.source text { fill: var(--src); font-size: 11px; }
svg .break rect { fill: var(--bg); stroke: var(--muted); stroke-dasharray: 3 3; }
svg .seg rect { fill: var(--held); } svg .seg.free rect { fill: var(--free); } svg .seg.predicted rect { fill: var(--cut-fg); }
svg .seg-label { fill: var(--seg-text); font-size: 11px; } svg .seg.free .seg-label { fill: #fff; }
.cut { border-left: 4px solid var(--cut-fg); background: var(--panel); padding: 8px 14px; border-radius: 0 8px 8px 0; }
table { border-collapse: collapse; width: 100%; margin: 8px 0; font-size: 13px; }
caption { text-align: left; color: var(--muted); padding: 4px 0; }
th, td { border-bottom: 1px solid var(--line); padding: 4px 8px; text-align: left; vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; } td.when { white-space: nowrap; font-variant-numeric: tabular-nums; }
tr.fail th, tr.fail td { background: var(--fail-bg); } tr.cut th, tr.cut td { background: var(--cut); }
.method { color: var(--muted); font-weight: normal; font-size: 12px; }
.kinds { list-style: none; padding: 0; display: flex; flex-wrap: wrap; gap: 8px 18px; }
.kinds li.good::before { content: "✓ "; color: var(--ok-snap); } .kinds li.bad::before { content: "✗ "; color: var(--fail); }
.kinds li.bad { color: var(--fail); font-weight: 600; } .kind { font-weight: 600; }
details summary { cursor: pointer; color: var(--muted); }
.basis { color: var(--muted); font-size: 13px; }
footer { color: var(--muted); font-size: 12px; margin-top: 32px; }
`;

/**
 * The report as one self-contained HTML page with the timeline picture. Pure.
 *
 * @example
 * ```ts
 * import * as fs from "node:fs";
 * import { renderTimelineHtml } from "pulumi-understudy";
 * const report = JSON.parse(fs.readFileSync("understudy-reports/pg13-to-15.json", "utf8"));
 * fs.writeFileSync("pg13-to-15.html", renderTimelineHtml(report));
 * ```
 */
export function renderTimelineHtml(r: RehearsalReport): string {
  const status = r.status === "passed" ? "passed" : r.status === "failed" ? "failed" : "running";
  const failedStep = r.steps.find((s) => s.status === "failed");
  const cutSteps = r.steps.filter((s) => s.cutover);
  const g = growthOf(r);
  const out: string[] = [];
  out.push(
    "<!doctype html>",
    `<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">`,
    `<meta name="color-scheme" content="light dark">`,
    `<title>Upgrade rehearsal ${esc(r.rehearsal)}: ${status.toUpperCase()}</title>`,
    `<style>${CSS}</style></head><body>`,
    `<main>`,
    `<h1>Upgrade rehearsal <code>${esc(r.rehearsal)}</code> <span class="badge ${status}" role="status">${status.toUpperCase()}</span></h1>`,
    `<p class="sub">PostgreSQL ${esc(r.source.version)} → ${esc(r.target.version)} on <code>${esc(r.host)}</code>, rehearsed on clone <code>${esc(r.clone.dataset)}</code> of ` +
      `<code>${esc(r.source.snapshot)}</code>${r.source.snapshotAt ? ` (taken ${esc(r.source.snapshotAt)})` : ""}. The source was not touched.` +
      (r.sourceSize ? ` Source: ${esc(fmtBytes(r.sourceSize.bytes))}, ${esc(r.sourceSize.relations.toLocaleString("en-US"))} relations in ${esc(r.sourceSize.databases)} databases.` : "") +
      `</p>`,
  );
  if (r.failure) {
    const f = r.failure;
    out.push(
      `<section class="failure" aria-labelledby="f-h"><h2 id="f-h">Failed at step <code>${esc(f.step)}</code></h2>`,
      `<p>${esc(f.at)}: ${esc(f.reason)}</p>`,
      f.lastGoodSnapshot
        ? `<p><strong>Last good snapshot</strong> <code>${esc(f.lastGoodSnapshot)}</code>, taken at ${esc(f.lastGoodAt ?? "?")}${f.lastGoodStep ? ` (after step <code>${esc(f.lastGoodStep)}</code>)` : ""}. ` +
            `Fix the cause and run <code>pulumi up</code> again: the clone is rolled back to it and the rehearsal resumes there.</p>`
        : `<p>No good snapshot of the clone yet.</p>`,
      failedStep?.logTail ? `<h3>Log of <code>${esc(failedStep.name)}</code> (tail)</h3><pre>${esc(failedStep.logTail)}</pre>` : "",
      `</section>`,
    );
  }
  out.push(
    `<h2 id="t-h">Timeline</h2>`,
    `<ul class="legend" aria-label="Legend"><li><i class="lg-ok"></i>step</li><li><i class="lg-fail"></i>failed step</li>` +
      `<li><i class="lg-snap"></i>snapshot after the step (ringed: last good)</li><li><i class="lg-cut"></i>replayed during a cut-over</li></ul>`,
    `<figure aria-labelledby="t-h">${timelineSvg(r)}<figcaption>One bar per step on a time axis (UTC), its duration on the right; a diamond where its snapshot was taken. ` +
      `The same as a table below.</figcaption></figure>`,
  );
  if (cutSteps.length || r.predictedCutover.breakdown.length) {
    const scale = Math.max(r.predictedCutover.totalMs, r.cutover?.pauseWindowMs ?? 0, r.cutover ? r.cutover.phases.reduce((t, p) => t + p.ms, 0) : 0);
    out.push(
      `<section class="cut" aria-labelledby="c-h"><h2 id="c-h">Cut-over: predicted pause ${esc(fmtMs(r.predictedCutover.totalMs))}</h2>`,
      `<p>Replayed while clients are held: ${cutSteps.map((s) => `<code>${esc(s.name)}</code>`).join(", ") || "nothing yet"}. ${esc(r.predictedCutover.note)}</p>`,
      stackedBar("pred", "predicted", r.predictedCutover.breakdown.map((b) => ({ label: b.step, ms: b.ms, cls: "predicted" })), scale),
    );
    if (r.cutover) {
      const c = r.cutover;
      out.push(
        stackedBar("meas", `measured (${c.method})`, c.phases.map((p) => ({ label: p.phase, ms: p.ms, cls: p.held ? "held" : "free" })), scale, `${fmtMs(c.pauseWindowMs)} held`),
        `<p><strong>Measured pause: ${esc(fmtMs(c.pauseWindowMs))}</strong> (${esc(c.method)}${c.status ? `, ${esc(c.status)}` : ""}, ${esc(c.at)}); predicted ${esc(fmtMs(r.predictedCutover.totalMs))}. Amber: clients held; grey: after they resumed.</p>`,
        `<table><caption>Cut-over phases</caption><thead><tr><th scope="col">phase</th><th scope="col">duration</th><th scope="col">clients held</th></tr></thead><tbody>` +
          c.phases.map((p) => `<tr><th scope="row">${esc(p.phase)}</th><td class="num">${esc(fmtMs(p.ms))}</td><td>${p.held ? "yes" : "no"}</td></tr>`).join("") +
          `</tbody></table>`,
      );
    }
    out.push(`</section>`);
  }
  if (r.logicalCutover) out.push(logicalSection(r.logicalCutover));
  out.push(checksSection(r.checks));
  if (g) {
    out.push(
      `<section aria-labelledby="g-h"><h2 id="g-h">At this size: ${esc(fmtBytes(g.bytes))}, ${esc(g.relations.toLocaleString("en-US"))} relations</h2>`,
      `<p>${esc(predictionSentence(g))}</p>`,
      `<table><caption>Expected step times at this size</caption><thead><tr><th scope="col">step</th><th scope="col">expected</th><th scope="col">grows with</th></tr></thead><tbody>` +
        g.steps.map((s) => `<tr><th scope="row">${esc(s.label)}${s.note ? `<div class="method">${esc(s.note)}</div>` : ""}</th><td class="num">${esc(fmtDuration(s.ms))}</td><td>${esc(s.growsWith)}</td></tr>`).join("") +
        `</tbody></table>`,
      `<p class="basis">Basis: ${esc(basisSentence(g.basis))}</p></section>`,
    );
  }
  out.push(
    `<section aria-labelledby="s-h"><h2 id="s-h">Steps</h2><table class="steps"><caption>The timeline as a table</caption>`,
    `<thead><tr><th scope="col">#</th><th scope="col">step</th><th scope="col">status</th><th scope="col">started (UTC)</th><th scope="col">duration</th><th scope="col">snapshot after</th><th scope="col">replayed at cut-over</th></tr></thead><tbody>`,
    ...r.steps.map(
      (s) =>
        `<tr class="${s.status === "failed" ? "fail" : s.cutover ? "cut" : ""}" data-step="${esc(s.name)}"><td class="num">${s.index}</td><th scope="row">${esc(s.name)}</th>` +
        `<td>${s.status === "failed" ? "<strong>failed</strong>" : "ok"}</td><td class="when"><time datetime="${esc(s.startedAt)}">${esc(s.startedAt.replace("T", " ").replace(/Z$/, ""))}</time></td><td class="num">${esc(fmtMs(s.durationMs))}</td>` +
        `<td>${s.snapshot ? `<code>${esc(s.snapshot)}</code>` : "—"}</td><td>${s.cutover ? "yes" : ""}</td></tr>`,
    ),
    `</tbody></table></section>`,
    `</main><footer>Generated ${esc(r.generatedAt)} by pulumi-understudy. This page loads nothing from anywhere.</footer>`,
    `</body></html>`,
  );
  return out.filter(Boolean).join("\n") + "\n";
}

/** The section "Predicted logical cut-over": the held part as a bar, the measurements as a table. */
function logicalSection(l: LogicalRehearsalRecord): string {
  if (l.status !== "ok" || !l.predicted) {
    return `<section class="logical" aria-labelledby="l-h"><h2 id="l-h">Predicted logical cut-over: not measured</h2><p>${esc(l.failure ?? "")} Live was not touched.</p></section>`;
  }
  const rows: Array<[string, string]> = [];
  if (l.liveWal) rows.push(["live's WAL rate (read twice)", `${fmtBytes(l.liveWal.bytesPerSecond)}/s`]);
  if (l.writer) rows.push(["writer on the stand-in", `${fmtBytes(l.writer.achievedBytesPerSecond)}/s of ${fmtBytes(l.writer.targetBytesPerSecond)}/s${l.writer.floor ? " (minimum rate)" : ""}, ${l.writer.rows} rows`]);
  if (l.catchUp) rows.push(["catch-up", `${fmtBytes(l.catchUp.backlogBytes)} in ${fmtMs(l.catchUp.ms)}: ${fmtBytes(l.catchUp.bytesPerSecond)}/s`]);
  if (l.applyLag) rows.push(["apply lag under the writer", `mean ${fmtBytes(l.applyLag.meanBytes)}, max ${fmtBytes(l.applyLag.maxBytes)}${l.applyLag.maxSeconds !== undefined ? `, max ${fmtMs(l.applyLag.maxSeconds * 1000)}` : ""}`]);
  if (l.gate) rows.push(["before the hold (as a promotion)", `${l.gate.workers} apply worker(s) running, at most ${fmtBytes(l.gate.lagBytes)} behind`]);
  return (
    `<section class="logical" aria-labelledby="l-h"><h2 id="l-h">Predicted logical cut-over: ${esc(fmtMs(l.predicted.totalMs))}</h2>` +
    stackedBar("lpred", "predicted (logical)", l.predicted.breakdown.map((b) => ({ label: b.step, ms: b.ms, cls: "predicted" })), l.predicted.totalMs) +
    `<p>${esc(l.predicted.note)}${l.standIn ? ` Stand-in: <code>${esc(l.standIn.volume)}</code>, a clone of <code>${esc(l.standIn.snapshot)}</code>, destroyed afterwards.` : ""}</p>` +
    `<table><caption>Measured on the stand-in and the upgraded clone</caption><tbody>` +
    rows.map(([k, v]) => `<tr><th scope="row">${esc(k)}</th><td>${esc(v)}</td></tr>`).join("") +
    `</tbody></table></section>`
  );
}
