/**
 * Predictions that hold at size: how long each rehearsal step takes as a function of the
 * source's size in bytes and its number of relations, fitted on measurements
 * (`npm run bench -- growth`, bench/growth.ts) as
 *
 *     time = a + b · bytes + c · relations
 *
 * per step. The fitted model and its basis (machine, date, ranges measured) live here, so a
 * report can say "at 100 TB and 40,000 relations, expect …" and what that rests on. Pure: no
 * I/O, no imports beyond types.
 */

/** One step's fitted growth: milliseconds = a + b·bytes + c·relations. */
export interface StepGrowth {
  /** What the step is, as a reader knows it (`pg_upgrade --link`, `row counts`, ...). */
  label: string;
  /** Fixed cost, ms. */
  a: number;
  /** ms per byte of the source (pg_database_size, all databases). */
  b: number;
  /** ms per user relation (tables, indexes, TOAST, sequences: pg_class.oid >= 16384). */
  c: number;
  /** Which term dominates at the top of the measured ranges: what the step grows with. */
  growsWith: "bytes" | "relations" | "both" | "neither";
  /** Part of the rehearsal, of the cut-over pause (method `replay`), or both. */
  in: Array<"rehearsal" | "cutover">;
  /** What a reader must know before extrapolating this step. */
  note?: string;
}

/** Where a model comes from: a reader must be able to judge how far to trust an extrapolation. */
export interface GrowthBasis {
  machine: string;
  date: string;
  storage: string;
  versions: string;
  /** Measured ranges. */
  bytes: { min: number; max: number };
  relations: { min: number; max: number };
  command: string;
  note: string;
}

export interface GrowthModel {
  basis: GrowthBasis;
  steps: Record<string, StepGrowth>;
}

export interface GrowthPrediction {
  bytes: number;
  relations: number;
  steps: Array<{ step: string; label: string; ms: number; growsWith: StepGrowth["growsWith"]; note?: string }>;
  /** The rehearsal's steps end to end (snapshot and clone to verification). */
  rehearsalMs: number;
  /** What clients wait for in a `replay` cut-over: clone of the final snapshot, pg_upgrade --link, start. */
  cutoverMs: number;
  /** True when the size or the relation count lies beyond what was measured. */
  extrapolated: boolean;
  basis: GrowthBasis;
}

/** A measurement: the source's size and relation count, and how long a step took. */
export interface GrowthPoint {
  bytes: number;
  relations: number;
  ms: number;
}

/**
 * Least squares fit of ms = a + b·bytes + c·relations with a, b, c >= 0 (a step never gets
 * faster with more data; a negative coefficient is noise). Solved exactly over the 7 subsets
 * of free coefficients (the others held at 0), keeping the best non-negative one.
 */
export function fitGrowth(points: GrowthPoint[], allow: { bytes?: boolean; relations?: boolean } = {}): { a: number; b: number; c: number; rmsMs: number } {
  if (points.length === 0) throw new Error("fitGrowth: no points");
  const cols: Array<(p: GrowthPoint) => number> = [() => 1, (p) => p.bytes, (p) => p.relations];
  let best: { a: number; b: number; c: number; rmsMs: number } | undefined;
  for (let mask = 1; mask < 8; mask++) {
    if ((mask & 2 && allow.bytes === false) || (mask & 4 && allow.relations === false)) continue;
    const use = [0, 1, 2].filter((k) => mask & (1 << k));
    // Scale columns to keep the normal equations well conditioned (bytes reach 1e10+).
    const scale = use.map((k) => Math.max(...points.map((p) => Math.abs(cols[k](p)))) || 1);
    const n = use.length;
    const A = Array.from({ length: n }, () => new Array<number>(n + 1).fill(0));
    for (const p of points) {
      const x = use.map((k, j) => cols[k](p) / scale[j]);
      for (let i = 0; i < n; i++) {
        for (let j = 0; j < n; j++) A[i][j] += x[i] * x[j];
        A[i][n] += x[i] * p.ms;
      }
    }
    const sol = solve(A);
    if (!sol || sol.some((v) => v < 0 || !Number.isFinite(v))) continue;
    const coef = [0, 0, 0];
    use.forEach((k, j) => (coef[k] = sol[j] / scale[j]));
    const rms = Math.sqrt(points.reduce((s, p) => s + (coef[0] + coef[1] * p.bytes + coef[2] * p.relations - p.ms) ** 2, 0) / points.length);
    if (!best || rms < best.rmsMs - 1e-9) best = { a: coef[0], b: coef[1], c: coef[2], rmsMs: rms };
  }
  return best ?? { a: 0, b: 0, c: 0, rmsMs: Number.NaN };
}

/** Gaussian elimination with partial pivoting on an augmented n×(n+1) matrix. */
function solve(A: number[][]): number[] | undefined {
  const n = A.length;
  for (let i = 0; i < n; i++) {
    let p = i;
    for (let r = i + 1; r < n; r++) if (Math.abs(A[r][i]) > Math.abs(A[p][i])) p = r;
    if (Math.abs(A[p][i]) < 1e-12) return undefined;
    [A[i], A[p]] = [A[p], A[i]];
    for (let r = 0; r < n; r++) {
      if (r === i) continue;
      const f = A[r][i] / A[i][i];
      for (let c = i; c <= n; c++) A[r][c] -= f * A[i][c];
    }
  }
  return A.map((row, i) => row[n] / row[i]);
}

/**
 * What a step grows with, judged at the top of each measured range: a term counts when, at
 * the largest size (or relation count) measured, it is at least a quarter of the step's time
 * there and at least half a second.
 */
export function growsWith(g: { a: number; b: number; c: number }, maxBytes: number, maxRelations: number): StepGrowth["growsWith"] {
  const byBytes = g.b * maxBytes >= Math.max(500, (g.a + g.b * maxBytes) / 4);
  const byRels = g.c * maxRelations >= Math.max(500, (g.a + g.c * maxRelations) / 4);
  return byBytes && byRels ? "both" : byBytes ? "bytes" : byRels ? "relations" : "neither";
}

/** Predict every step of the model at a size. */
export function predictGrowth(size: { bytes: number; relations: number }, model: GrowthModel = GROWTH_MODEL): GrowthPrediction {
  const steps = Object.entries(model.steps).map(([step, g]) => ({
    step,
    label: g.label,
    ms: Math.round(g.a + g.b * size.bytes + g.c * size.relations),
    growsWith: g.growsWith,
    ...(g.note ? { note: g.note } : {}),
  }));
  const sum = (where: "rehearsal" | "cutover") => steps.filter((s) => model.steps[s.step].in.includes(where)).reduce((t, s) => t + s.ms, 0);
  return {
    bytes: size.bytes,
    relations: size.relations,
    steps,
    rehearsalMs: sum("rehearsal"),
    cutoverMs: sum("cutover"),
    extrapolated: size.bytes > model.basis.bytes.max * 1.05 || size.relations > model.basis.relations.max * 1.05,
    basis: model.basis,
  };
}

/** 1 536 000 000 -> "1.4 GiB"; binary units, as PostgreSQL's pg_size_pretty. */
export function fmtBytes(n: number): string {
  const units = ["bytes", "kB", "MB", "GB", "TB", "PB"];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${n} bytes` : `${v >= 100 ? Math.round(v) : v.toFixed(1)} ${units[u]}`;
}

/** "1h 05m" / "3 min 20 s" / "4.2 s": durations from milliseconds to days. */
export function fmtDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 120_000) return `${(ms / 1000).toFixed(1)} s`;
  const min = Math.round(ms / 60_000);
  if (min < 120) return `${min} min`;
  const h = Math.floor(min / 60);
  if (h < 48) return `${h} h ${String(min % 60).padStart(2, "0")} min`;
  return `${(h / 24).toFixed(1)} days`;
}

/** One line a report can carry: "at 1.2 TB and 40,000 relations, expect …", with the basis. */
export function predictionSentence(p: GrowthPrediction): string {
  const rel = p.relations.toLocaleString("en-US");
  return (
    `At ${fmtBytes(p.bytes)} and ${rel} relations, expect the rehearsal to take about ${fmtDuration(p.rehearsalMs)} ` +
    `and a replay cut-over to hold clients for about ${fmtDuration(p.cutoverMs)}` +
    (p.extrapolated ? " (extrapolated beyond the measured range)" : "") +
    "."
  );
}

/** The basis in one sentence. */
export function basisSentence(b: GrowthBasis): string {
  return (
    `Fitted (time = a + b·bytes + c·relations per step) on ${b.machine}, ${b.storage}, ${b.versions}, ${b.date}; ` +
    `measured from ${fmtBytes(b.bytes.min)} to ${fmtBytes(b.bytes.max)} and ${b.relations.min.toLocaleString("en-US")} to ` +
    `${b.relations.max.toLocaleString("en-US")} relations (\`${b.command}\`). ${b.note}`
  );
}

/**
 * The fitted model. Generated by bench/growth.ts (it prints this object) from the raw
 * measurements kept in bench/results/growth-{size,relations}.json (a run of 79 minutes on
 * 2026-12-02, with other work on the machine: load average 5 to 15 on 2 cores); replace it
 * when you measure on your own hardware: `npm run bench -- growth`.
 */
export const GROWTH_MODEL: GrowthModel = {
  basis: {
    machine: "AMD EPYC, 2 cores, 24 GiB",
    date: "2026-12-02",
    storage: "zfs-fuse 0.7 on a sparse file (file-backed pool), one shared virtual disk",
    versions: "PostgreSQL 13 -> 15 (Debian), pg_upgrade --link",
    bytes: {
      min: 16180318,
      max: 21483275358,
    },
    relations: {
      min: 0,
      max: 40000,
    },
    command: "npm run bench -- growth",
    note: "Warm cache: the clone shares its blocks with the source just loaded. Checksums are per byte checksummed and are not in the totals (you choose the tables). Extrapolating far beyond the measured range assumes the same per-byte and per-relation rates: faster disks and more cores lower b; pg_upgrade --jobs lowers c for many databases.",
  },
  steps: {
    clone: {
      label: "snapshot + clone",
      a: 348,
      b: 0,
      c: 0,
      growsWith: "neither",
      in: ["rehearsal", "cutover"],
      note: "ZFS snapshot and clone are constant-time by design (copy-on-write); EBS snapshots are not (see the EBS backend).",
    },
    recover: {
      label: "recover (crash recovery, clean stop)",
      a: 2636,
      b: 4.1750570399230255e-08,
      c: 0.344,
      growsWith: "both",
      in: ["rehearsal"],
    },
    baseline: {
      label: "baseline row counts (old version)",
      a: 1175,
      b: 1.9159562326704355e-06,
      c: 0.2933,
      growsWith: "both",
      in: ["rehearsal"],
      note: "count(*) reads each table (an index-only scan when the visibility map allows). Above rowCountLimitBytes a table is compared by size instead.",
    },
    check: {
      label: "pg_upgrade --check",
      a: 7170,
      b: 0,
      c: 0.0725,
      growsWith: "relations",
      in: ["rehearsal"],
    },
    upgrade: {
      label: "pg_upgrade --link",
      a: 11803,
      b: 0,
      c: 2.2292,
      growsWith: "relations",
      in: ["rehearsal", "cutover"],
      note: "pg_upgrade --link dumps and restores the schema and links each relation's files: it grows with relations, not bytes.",
    },
    start: {
      label: "start PostgreSQL 15",
      a: 1153,
      b: 0,
      c: 0,
      growsWith: "neither",
      in: ["rehearsal", "cutover"],
    },
    analyze: {
      label: "vacuumdb --analyze-in-stages",
      a: 0,
      b: 4.156140784661517e-06,
      c: 1.6509,
      growsWith: "both",
      in: ["rehearsal"],
      note: "The size axis grew by adding 1 GB tables, so bytes and large tables grew together. ANALYZE samples at most 300 x statistics_target rows per table: with fewer, larger tables it grows with the number of tables rather than their size. Read the per-GB term as an upper bound.",
    },
    verify: {
      label: "verification row counts (new version)",
      a: 302,
      b: 1.5001960283853081e-06,
      c: 0.3823,
      growsWith: "both",
      in: ["rehearsal"],
      note: "The same counts on the upgraded clone. Above rowCountLimitBytes a table is compared by size instead.",
    },
    checksum: {
      label: "checksums, every row of every table",
      a: 0,
      b: 4.341209789016056e-05,
      c: 0,
      growsWith: "bytes",
      in: [],
    },
    checksumSampled: {
      label: "checksums, 1% sample by primary key",
      a: 3714,
      b: 8.263110924976678e-06,
      c: 0.2089,
      growsWith: "both",
      in: [],
    },
  },
};
