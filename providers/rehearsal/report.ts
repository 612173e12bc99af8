/**
 * The rehearsal report: what ran, how long each step took, which snapshot holds the clone
 * after each step, what was verified, and what the real cut-over would cost. Produced as
 * JSON (machine-readable, a stack output) and Markdown (for a person / a pull request);
 * the timeline picture is in ./timeline.ts, the files in ./report-files.ts.
 */
import type { ClusterSize } from "./verify";
import { basisSentence, fmtBytes, fmtDuration, GrowthPrediction, GROWTH_MODEL, predictGrowth, predictionSentence } from "./predict";

export interface StepRecord {
  index: number;
  name: string;
  kind: string;
  status: "ok" | "failed";
  startedAt: string;
  finishedAt: string;
  durationMs: number;
  /** The clone's snapshot right after this step (absent when it failed). */
  snapshot?: string;
  /** Whether this step is replayed while clients are held during a promotion. */
  cutover: boolean;
  detail?: string;
  logTail?: string;
  /** Recover: the recovered clone's clean stop (ms), what the cut-over's clean stop of live is predicted from. */
  cleanStopMs?: number;
}

export interface CheckRecord {
  name: string;
  kind: "row-count" | "checksum" | "sequence" | "extension" | "assertion";
  status: "pass" | "fail";
  expected?: string;
  actual?: string;
  /** How the values were taken where it is not the default (a sampled checksum, a size instead of a count). */
  method?: string;
}

export interface RehearsalReport {
  rehearsal: string;
  status: "passed" | "failed" | "running";
  host: string;
  source: { dataset: string; snapshot: string; snapshotAt?: string; version: number };
  clone: { dataset: string; mountpoint?: string };
  target: { version: number; port?: number; dataDir?: string };
  steps: StepRecord[];
  checks: CheckRecord[];
  failure?: {
    step: string;
    at: string;
    reason: string;
    lastGoodStep?: string;
    lastGoodSnapshot?: string;
    lastGoodAt?: string;
  };
  predictedCutover: {
    totalMs: number;
    breakdown: Array<{ step: string; ms: number }>;
    note: string;
  };
  generatedAt: string;
  /** The source's size as measured in the baseline (recover step, old version): what the growth prediction uses. */
  sourceSize?: ClusterSize;
  /** Step times predicted at the source's size from the fitted growth model (./predict.ts), with its basis. */
  growth?: GrowthPrediction;
  /** After a promotion: how the cut-over went, phase by phase, and how long clients were held. */
  cutover?: CutoverRecord;
}

/** A cut-over as it happened: each phase's time and whether clients were held during it. */
export interface CutoverRecord {
  /** `replay` or `logical`. */
  method: string;
  /** When it started (ISO 8601). */
  at: string;
  status?: "promoted" | "failed" | "rolled-back";
  /** Measured: from PAUSE until RESUME returned. */
  pauseWindowMs: number;
  phases: Array<{ phase: string; ms: number; held: boolean }>;
}

/**
 * Record the source's size (from the baseline that {@link collect} measured) and the growth
 * prediction at that size. The step provider calls this when it builds a report.
 */
export function withSourceSize(r: RehearsalReport, size: ClusterSize | undefined): RehearsalReport {
  if (!size) return r;
  const growth = growthOf({ ...r, sourceSize: size });
  return { ...r, sourceSize: size, ...(growth ? { growth } : {}) };
}

/** The report's growth prediction: the recorded one, else one computed from its size facts (none without a fitted model). */
export function growthOf(r: RehearsalReport): GrowthPrediction | undefined {
  if (r.growth) return r.growth;
  if (!r.sourceSize || Object.keys(GROWTH_MODEL.steps).length === 0) return undefined;
  return predictGrowth(r.sourceSize);
}

/**
 * Cut-over prediction: the measured steps a promotion replays while clients wait, plus fixed
 * costs, and the clean stop of live, predicted by the clean stop of the recovered clone (the
 * same cluster, stopped by the same `pg_ctl stop -m fast`).
 */
export function predictCutover(steps: StepRecord[], fixed: Array<{ step: string; ms: number }>): RehearsalReport["predictedCutover"] {
  const stop = steps.find((s) => s.kind === "recover" && s.status === "ok" && typeof s.cleanStopMs === "number");
  const breakdown = [
    ...(stop ? [{ step: "stop live cleanly (as the clone stopped after recovery)", ms: stop.cleanStopMs! }] : []),
    ...fixed,
    ...steps.filter((s) => s.cutover && s.status === "ok").map((s) => ({ step: s.name, ms: s.durationMs })),
  ];
  return {
    totalMs: breakdown.reduce((a, b) => a + b.ms, 0),
    breakdown,
    note:
      "Clients are held (PgBouncer PAUSE) from the clean stop of live until the endpoint points at the upgraded clone. " +
      "Measured on the rehearsal clone; steps marked cut-over are replayed during promotion, the others run after clients resume.",
  };
}

export function fmtMs(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 120_000) return `${(ms / 1000).toFixed(1)} s`;
  const s = Math.round(ms / 1000); // round once: 179.6 s is "3 min 0 s", not "2 min 60 s"
  return `${Math.floor(s / 60)} min ${s % 60} s`;
}

function cell(s: string | undefined): string {
  return (s ?? "").replace(/\|/g, "\\|").replace(/\n/g, " ");
}

export function renderMarkdown(r: RehearsalReport): string {
  const icon = r.status === "passed" ? "PASSED" : r.status === "failed" ? "FAILED" : "RUNNING";
  const lines: string[] = [];
  lines.push(`# Upgrade rehearsal \`${r.rehearsal}\`: ${icon}`);
  lines.push("");
  lines.push(
    `PostgreSQL ${r.source.version} → ${r.target.version} on \`${r.host}\`, rehearsed on clone \`${r.clone.dataset}\` of ` +
      `\`${r.source.snapshot}\`${r.source.snapshotAt ? ` (taken ${r.source.snapshotAt})` : ""}. The source was not touched.`,
  );
  lines.push("");
  if (r.failure) {
    lines.push(`**Failed at step \`${r.failure.step}\`** (${r.failure.at}): ${r.failure.reason}`);
    lines.push("");
    if (r.failure.lastGoodSnapshot) {
      lines.push(
        `Last good state: after \`${r.failure.lastGoodStep}\`, snapshot \`${r.failure.lastGoodSnapshot}\` (${r.failure.lastGoodAt}). ` +
          "Fix the cause and run `pulumi up` again: the clone is rolled back to that snapshot and the rehearsal resumes there.",
      );
      lines.push("");
    }
  }
  lines.push("## Steps");
  lines.push("");
  lines.push("| # | step | status | started | duration | snapshot after | cut-over |");
  lines.push("| --- | --- | --- | --- | --- | --- | --- |");
  for (const s of r.steps) {
    lines.push(
      `| ${s.index} | ${cell(s.name)} | ${s.status} | ${s.startedAt} | ${fmtMs(s.durationMs)} | ${s.snapshot ? `\`${s.snapshot}\`` : "—"} | ${s.cutover ? "yes" : ""} |`,
    );
  }
  lines.push("");
  const failedStep = r.steps.find((s) => s.status === "failed");
  if (failedStep?.logTail) {
    lines.push(`### Log of \`${failedStep.name}\``);
    lines.push("");
    lines.push("```");
    lines.push(failedStep.logTail);
    lines.push("```");
    lines.push("");
  }
  if (r.checks.length) {
    const failed = r.checks.filter((c) => c.status === "fail").length;
    lines.push(`## Verification: ${r.checks.length - failed} passed, ${failed} failed`);
    lines.push("");
    lines.push("| check | kind | result | source (at snapshot) | upgraded clone |");
    lines.push("| --- | --- | --- | --- | --- |");
    for (const c of r.checks) {
      lines.push(`| ${cell(c.name)}${c.method ? ` (${cell(c.method)})` : ""} | ${c.kind} | ${c.status} | ${cell(c.expected)} | ${cell(c.actual)} |`);
    }
    lines.push("");
  }
  lines.push(`## Predicted cut-over downtime: ${fmtMs(r.predictedCutover.totalMs)}`);
  lines.push("");
  for (const b of r.predictedCutover.breakdown) lines.push(`- ${b.step}: ${fmtMs(b.ms)}`);
  lines.push("");
  lines.push(r.predictedCutover.note);
  lines.push("");
  const g = growthOf(r);
  if (g) {
    lines.push(`## At this size: ${fmtBytes(g.bytes)}, ${g.relations.toLocaleString("en-US")} relations`);
    lines.push("");
    lines.push(predictionSentence(g));
    lines.push("");
    lines.push("| step | expected | grows with |");
    lines.push("| --- | --- | --- |");
    for (const s of g.steps) lines.push(`| ${cell(s.label)} | ${fmtDuration(s.ms)} | ${s.growsWith} |`);
    lines.push("");
    for (const s of g.steps.filter((x) => x.note)) lines.push(`- ${s.label}: ${s.note}`);
    if (g.steps.some((x) => x.note)) lines.push("");
    lines.push(`Basis: ${basisSentence(g.basis)}`);
    lines.push("");
  }
  if (r.cutover) {
    const c = r.cutover;
    lines.push(`## Cut-over (${c.method}${c.status ? `, ${c.status}` : ""}, ${c.at}): clients held ${fmtMs(c.pauseWindowMs)}`);
    lines.push("");
    lines.push("| phase | duration | clients held |");
    lines.push("| --- | --- | --- |");
    for (const p of c.phases) lines.push(`| ${cell(p.phase)} | ${fmtMs(p.ms)} | ${p.held ? "yes" : ""} |`);
    lines.push("");
    lines.push(`Predicted from the rehearsal: ${fmtMs(r.predictedCutover.totalMs)}; measured: ${fmtMs(c.pauseWindowMs)}.`);
    lines.push("");
  }
  lines.push(`_Generated ${r.generatedAt} by pulumi-understudy._`);
  return lines.join("\n") + "\n";
}
