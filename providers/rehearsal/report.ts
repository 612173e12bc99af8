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
  /** Check: copying the new cluster (initdb'd outside the clone) into place, what the cut-over's copy is predicted from. */
  placeMs?: number;
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
  /** With `method: "logical"`: the logical cut-over rehearsed on a stand-in for live (catch-up, apply lag, the held part, the predicted pause). */
  logicalCutover?: LogicalRehearsalRecord;
}

/** The logical cut-over as rehearsed between a stand-in for live and the upgraded clone. */
export interface LogicalRehearsalRecord {
  status: "ok" | "failed";
  /** When it started (ISO 8601). */
  at: string;
  /** Why it failed (status `failed`). */
  failure?: string;
  /** The stand-in for live: a clone of the snapshot the upgrade started from (the old version), destroyed afterwards. */
  standIn?: { volume: string; snapshot: string; version: number };
  databases?: string[];
  /** Live's WAL rate, read twice from `pg_current_wal_lsn()` (nothing else was done on live). */
  liveWal?: { bytesPerSecond: number; sampledMs: number };
  /** The writer on the stand-in: inserts into our own table, paced at live's WAL rate (or `floor`: the minimum rate, when live wrote less). */
  writer?: { database: string; table: string; targetBytesPerSecond: number; achievedBytesPerSecond: number; ms: number; rows: number; floor: boolean };
  /** The backlog written before the subscription started, how long until the subscriber had confirmed it (worker start included), and the rate. */
  catchUp?: { backlogBytes: number; ms: number; bytesPerSecond: number };
  /** Apply lag under the writer once caught up: bytes behind the stand-in's WAL position, and the time lag the WAL sender reports (replay_lag). */
  applyLag?: {
    samples: number;
    meanBytes: number;
    maxBytes: number;
    meanSeconds?: number;
    maxSeconds?: number;
    /** Where the time lag comes from: the WAL sender's `replay_lag`, or the bytes behind divided by the writer's rate (when the WAL sender reports none). */
    secondsFrom?: "replay_lag" | "bytes-at-write-rate";
  };
  /**
   * The promotion's check before PAUSE, made the same way before the held part: every
   * database's apply worker running (`workers` of them) and at most `maxLagBytes` behind
   * (`lagBytes`, the largest), reached `ms` after the apply-lag measurement.
   */
  gate?: { maxLagBytes: number; lagBytes: number; ms: number; workers: number };
  /** The held part of the cut-over, measured (without PgBouncer). */
  held?: Array<{ step: string; ms: number }>;
  sequencesSet?: number;
  /** Readiness findings of severity warning on the stand-in (the same a promotion would see on live). */
  warnings?: string[];
  predicted?: { totalMs: number; breakdown: Array<{ step: string; ms: number }>; note: string };
}

/**
 * Allowances for what the logical rehearsal cannot measure without PgBouncer: PAUSE (in-flight
 * transactions finish; longer transactions add their own remaining time) and the switch of
 * the endpoint with RESUME. The README's measurement of a bare PgBouncer switch under pgbench
 * load: PAUSE 3–9 ms, rename 3–8 ms, RELOAD + check + RESUME < 1 ms each (10–14 ms median);
 * the allowances are about twice that.
 */
export const LOGICAL_PAUSE_ALLOWANCES = { pauseMs: 20, switchAndResumeMs: 20 } as const;

/** The logical cut-over's predicted pause: the held part as measured, plus the allowances. */
export function predictLogicalPause(m: { captureMs: number; applyWaitMs?: number; finishMs: number }): NonNullable<LogicalRehearsalRecord["predicted"]> {
  for (const [k, v] of Object.entries(m)) if (typeof v !== "number" || !Number.isFinite(v) || v < 0) throw new Error(`${k}: ${v} is not a duration`);
  const breakdown = [
    { step: "PAUSE (allowance: in-flight transactions finish)", ms: LOGICAL_PAUSE_ALLOWANCES.pauseMs },
    { step: "capture on live (marker, sequences, schema), measured", ms: m.captureMs },
    ...(m.applyWaitMs !== undefined ? [{ step: "wait until the new live has applied everything, measured", ms: m.applyWaitMs }] : []),
    { step: `${m.applyWaitMs !== undefined ? "finish" : "applied"} on the new live (${m.applyWaitMs !== undefined ? "" : "bounded wait, "}sequences set, subscriptions disabled), measured`, ms: m.finishMs },
    { step: "endpoint switched and RESUME (allowance)", ms: LOGICAL_PAUSE_ALLOWANCES.switchAndResumeMs },
  ];
  return {
    totalMs: breakdown.reduce((a, b) => a + b.ms, 0),
    breakdown,
    note:
      "Measured between a stand-in for live (a clone of the snapshot the upgrade started from, the old version, driven by a writer at live's measured WAL rate) " +
      "and the upgraded clone, without PgBouncer; PAUSE and the switch are allowances. Live itself was only read (its WAL position). " +
      "Independent of the database's size; it grows with the number of databases and sequences, and with the apply lag at the moment of the pause.",
  };
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
 * costs, the clean stop of live, predicted by the clean stop of the recovered clone (the
 * same cluster, stopped by the same `pg_ctl stop -m fast`), and the copy of the new cluster
 * into the clone, timed in the check step (which places it the same way).
 */
export function predictCutover(steps: StepRecord[], fixed: Array<{ step: string; ms: number }>): RehearsalReport["predictedCutover"] {
  const stop = steps.find((s) => s.kind === "recover" && s.status === "ok" && typeof s.cleanStopMs === "number");
  const place = steps.find((s) => s.kind === "check" && s.status === "ok" && typeof s.placeMs === "number");
  const breakdown = [
    ...(stop ? [{ step: "stop live cleanly (as the clone stopped after recovery)", ms: stop.cleanStopMs! }] : []),
    ...fixed,
    ...(place ? [{ step: "copy the new cluster, initdb'd before clients wait, into the clone (as in the check step)", ms: place.placeMs! }] : []),
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
  if (r.logicalCutover) lines.push(...renderLogical(r.logicalCutover));
  lines.push(`_Generated ${r.generatedAt} by pulumi-understudy._`);
  return lines.join("\n") + "\n";
}

const rate = (b: number) => `${fmtBytes(b)}/s`;

/** The report's section "Predicted logical cut-over". */
export function renderLogical(l: LogicalRehearsalRecord): string[] {
  const lines: string[] = [];
  if (l.status === "failed") {
    lines.push("## Predicted logical cut-over: not measured");
    lines.push("");
    lines.push(`The logical cut-over rehearsal failed (${l.at}): ${l.failure ?? "unknown"}. Live was not touched.`);
    lines.push("");
    return lines;
  }
  lines.push(`## Predicted logical cut-over: ${fmtMs(l.predicted?.totalMs ?? 0)}`);
  lines.push("");
  if (l.standIn) {
    lines.push(
      `Rehearsed on a stand-in for live, not on live: \`${l.standIn.volume}\`, a clone of \`${l.standIn.snapshot}\` (PostgreSQL ${l.standIn.version}, the state the upgrade started from), ` +
        `started privately with wal_level = logical and driven by a writer at live's measured WAL rate; the upgraded clone subscribed to it as the new live subscribes to live. ` +
        "The stand-in was destroyed afterwards; nothing was created on live (its WAL position was read twice).",
    );
    lines.push("");
  }
  if (l.liveWal) lines.push(`- live's WAL rate: ${rate(l.liveWal.bytesPerSecond)} (sampled over ${fmtMs(l.liveWal.sampledMs)})`);
  if (l.writer) {
    lines.push(
      `- writer on the stand-in: ${rate(l.writer.achievedBytesPerSecond)} achieved of ${rate(l.writer.targetBytesPerSecond)}${l.writer.floor ? " (the minimum rate: live wrote less)" : ""}, ` +
        `${l.writer.rows.toLocaleString("en-US")} rows into \`${l.writer.table}\` in ${l.writer.database} over ${fmtMs(l.writer.ms)}`,
    );
  }
  if (l.catchUp) lines.push(`- catch-up: a backlog of ${fmtBytes(l.catchUp.backlogBytes)} applied in ${fmtMs(l.catchUp.ms)} (worker start included): ${rate(l.catchUp.bytesPerSecond)}`);
  if (l.applyLag) {
    const how = l.applyLag.secondsFrom === "bytes-at-write-rate" ? " (bytes behind at the writer's rate)" : l.applyLag.secondsFrom === "replay_lag" ? " (replay_lag)" : "";
    const sec = l.applyLag.meanSeconds !== undefined ? `; time lag mean ${fmtMs(l.applyLag.meanSeconds * 1000)}, max ${fmtMs((l.applyLag.maxSeconds ?? 0) * 1000)}${how}` : "";
    lines.push(`- apply lag under the writer (${l.applyLag.samples} samples): mean ${fmtBytes(l.applyLag.meanBytes)}, max ${fmtBytes(l.applyLag.maxBytes)}${sec}`);
  }
  if (l.gate) lines.push(`- before the hold, as a promotion checks it: ${l.gate.workers} apply worker(s) running, at most ${fmtBytes(l.gate.lagBytes)} behind (limit ${fmtBytes(l.gate.maxLagBytes)}), ${fmtMs(l.gate.ms)} after the measurement`);
  if (l.held) for (const h of l.held) lines.push(`- held, measured: ${h.step}: ${fmtMs(h.ms)}`);
  lines.push("");
  if (l.predicted) {
    lines.push("| held part | duration |");
    lines.push("| --- | --- |");
    for (const b of l.predicted.breakdown) lines.push(`| ${cell(b.step)} | ${fmtMs(b.ms)} |`);
    lines.push(`| **predicted pause** | **${fmtMs(l.predicted.totalMs)}** |`);
    lines.push("");
    lines.push(l.predicted.note);
    lines.push("");
  }
  if (l.warnings?.length) {
    lines.push("Readiness warnings (as a promotion would see them on live):");
    lines.push("");
    for (const w of l.warnings) lines.push(`- ${w}`);
    lines.push("");
  }
  return lines;
}
