/**
 * What the orchestration costs: the whole upgrade rehearsal (13 -> 15, --link) through
 * `pulumi up` of an UpgradeRehearsal, against the same steps in a plain shell script
 * (bench/rehearsal-by-hand.sh), on a "live" PostgreSQL 13 with a pgbench writer running.
 * Prints Markdown tables. Run: `npm run bench -- rehearsal` (after scripts/setup.sh).
 *
 * Sizes are pgbench scales, default 10 and 50; override with BENCH_SCALES=10,50.
 * Pools `usbr<scale>`, ports 27000 (live), 27010-27013 (pulumi), 27020-27023 (script).
 * Each size runs BENCH_REPEAT (default 3) pairs, alternating which side goes first; the
 * table shows the pair with the median overhead and lists all pairs.
 * BENCH_VERBOSE=1 streams the engine's output to stderr.
 */
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import type { EngineEvent } from "@pulumi/pulumi/automation";
import { destroyPoolByName, sh } from "../test/harness/zfs";
import { fileBackend, makeProgram, openStack, REPO } from "../test/harness/pulumi";
import type { RehearsalReport } from "../providers/rehearsal/report";
import { run } from "./run";

const LIVE_PORT = 27000;
const PULUMI_PORT = 27010; // +1 private old server, +2/+3 pg_upgrade's servers
const SCRIPT_PORT = 27020; // +1/+2 pg_upgrade's servers, +3 PostgreSQL 15
const WRITER_RATE = 20;
const LIVE = path.join(REPO, "scripts/live-postgres.sh");
const BY_HAND = path.join(REPO, "bench/rehearsal-by-hand.sh");

const fmt = (x: number) => (Math.abs(x) >= 10_000 ? `${(x / 1000).toFixed(1)} s` : `${(x / 1000).toFixed(2)} s`);
const sign = (x: number) => (x >= 0 ? "+" : "−") + fmt(Math.abs(x));
const log = (m: string) => process.stderr.write(`[bench rehearsal] ${m}\n`);


interface ScriptRun {
  wallMs: number;
  steps: Record<string, number>;
  totalMs: number;
  cleanupMs: number;
}

async function byHand(pool: string): Promise<ScriptRun> {
  const out = await run(["bash", BY_HAND, pool, String(LIVE_PORT), String(SCRIPT_PORT), "byhand"]);
  const steps: Record<string, number> = {};
  let totalMs = NaN;
  let cleanupMs = NaN;
  for (const line of out.split("\n")) {
    const m = line.match(/^step (\S+) (\d+)$/);
    if (m) steps[m[1].replace(/^s\d\d-/, "")] = Number(m[2]);
    if (/^total \d+$/.test(line)) totalMs = Number(line.split(" ")[1]);
    if (/^cleanup \d+$/.test(line)) cleanupMs = Number(line.split(" ")[1]);
  }
  if (!Number.isFinite(totalMs) || !Number.isFinite(cleanupMs)) throw new Error(`rehearsal-by-hand.sh printed no total/cleanup:\n${out}`);
  // Wall time of the rehearsal part, timed by the script: from its CHECKPOINT to its last snapshot.
  return { wallMs: totalMs, steps, totalMs, cleanupMs };
}

interface PulumiRun {
  wallMs: number;
  report: RehearsalReport;
  engineStartMs: number;
  snapCloneMs: number;
  stepsMs: number;
  betweenMs: number;
  finishMs: number;
  previewMs: number;
  destroyMs: number;
}

function program(pool: string, reportDir: string): Record<string, string> {
  const args = {
    source: { dataset: `${pool}/pg13`, pgdata: "main", version: 13, port: LIVE_PORT, socketDir: "/var/run/postgresql" },
    clone: { dataset: `${pool}/rehearsals/pulumi` },
    to: 15,
    postgres: { port: PULUMI_PORT, database: "app" },
    mode: "link",
    checks: { rowCounts: "exact", checksumTables: ["public.pgbench_branches"] },
    reportDir,
  };
  return {
    "index.js": [
      `const { UpgradeRehearsal } = require("pulumi-understudy");`,
      `const r = new UpgradeRehearsal("bench", ${JSON.stringify(args, null, 2)});`,
      `exports.report = r.report;`,
      "",
    ].join("\n"),
  };
}

async function viaPulumi(pool: string, stackName: string): Promise<PulumiRun> {
  const backend = fileBackend();
  const dir = makeProgram("usbr-rehearsal", {});
  Object.entries(program(pool, path.join(dir, "reports"))).forEach(([f, t]) => fs.writeFileSync(path.join(dir, f), t));
  const stack = await openStack(dir, stackName, backend);
  const removeTemp = () => [dir, backend.dir].forEach((d) => fs.rmSync(d, { recursive: true, force: true }));
  const out = (s: string) => {
    if (process.env.BENCH_VERBOSE) process.stderr.write(s);
  };
  let upDone = false;
  try {
    // A preview, as `pulumi up` run by hand shows before asking; timed apart, not part of (a).
    const p0 = Date.now();
    await stack.preview({ onOutput: out });
    const previewMs = Date.now() - p0;

    // Receipt times of engine events (the Automation API polls the event log every 200 ms).
    let firstCustom: number | undefined;
    let cloneDone: number | undefined;
    const onEvent = (e: EngineEvent) => {
      const now = Date.now();
      const pre = e.resourcePreEvent?.metadata;
      if (pre && firstCustom === undefined && pre.type !== "pulumi:pulumi:Stack" && !pre.type.startsWith("pulumi:providers:") && !pre.type.startsWith("understudy:index:")) firstCustom = now;
      const outs = e.resOutputsEvent?.metadata;
      if (outs && /ZfsClone/.test(outs.type + outs.urn) && cloneDone === undefined) cloneDone = now;
    };
    log(`pulumi up (stack ${stackName}, program ${dir})`);
    const t0 = Date.now();
    const up = await stack.up({ onOutput: out, onEvent });
    const tEnd = Date.now();
    upDone = true;
    const report = up.outputs.report?.value as RehearsalReport;
    if (!report || report.status !== "passed") throw new Error(`rehearsal did not pass: ${JSON.stringify(report?.failure ?? report)}`);
    const failed = report.checks.filter((c) => c.status !== "pass");
    if (failed.length) throw new Error(`checks failed: ${JSON.stringify(failed)}`);
    const steps = report.steps;
    const t = (s: string) => new Date(s).getTime();
    if (firstCustom === undefined || cloneDone === undefined) throw new Error("no engine events for the snapshot/clone seen");
    const stepsMs = steps.reduce((a, s) => a + s.durationMs, 0);
    let betweenMs = t(steps[0].startedAt) - cloneDone;
    for (let i = 1; i < steps.length; i++) betweenMs += t(steps[i].startedAt) - t(steps[i - 1].finishedAt);
    const d0 = Date.now();
    await stack.destroy({ onOutput: out });
    const destroyMs = Date.now() - d0;
    removeTemp();
    return {
      wallMs: tEnd - t0,
      report,
      engineStartMs: firstCustom - t0,
      snapCloneMs: cloneDone - firstCustom,
      stepsMs,
      betweenMs,
      finishMs: tEnd - t(steps[steps.length - 1].finishedAt),
      previewMs,
      destroyMs,
    };
  } catch (e) {
    if (!upDone) log("pulumi up failed; running pulumi destroy");
    try {
      await stack.destroy({ onOutput: out });
    } catch (d) {
      log(`pulumi destroy failed too (the pool is destroyed below anyway): ${(d as Error).message.slice(0, 500)}`);
    }
    log(`kept for a look: program ${dir}, state ${backend.dir}`);
    throw e;
  }
}

/** Stop servers this benchmark started on the pool (pid file whose process runs in that directory). */
function stopServersUnder(mnt: string): void {
  const pids = sh(["bash", "-c", 'find "$1" -maxdepth 5 -name postmaster.pid 2>/dev/null', "x", mnt], { allowFail: true }).split("\n").filter(Boolean);
  for (const f of pids) {
    const dir = path.dirname(f);
    const pid = Number(fs.readFileSync(f, "utf8").split("\n")[0]);
    let cwd: string;
    try {
      cwd = fs.realpathSync(`/proc/${pid}/cwd`);
    } catch {
      continue;
    }
    if (cwd !== fs.realpathSync(dir)) continue;
    log(`stopping the server left running on ${dir} (pid ${pid})`);
    try {
      process.kill(pid, "SIGINT");
    } catch {
      /* gone */
    }
    for (let i = 0; i < 60 && fs.existsSync(`/proc/${pid}`); i++) execFileSync("sleep", ["0.5"]);
  }
}

function teardown(pool: string): void {
  sh(["bash", LIVE, "stop-writer", pool], { allowFail: true });
  stopServersUnder(`/srv/${pool}/rehearsals`);
  sh(["bash", LIVE, "down", pool, String(LIVE_PORT)], { allowFail: true });
  destroyPoolByName(pool);
}

interface Pair {
  hand: ScriptRun;
  pulumi: PulumiRun;
}
interface Row extends Pair {
  scale: number;
  mb: number;
  /** Every pair, in run order; the row shows the one with the median overhead. */
  pairs: Pair[];
}
const overheadOf = (p: Pair) => p.pulumi.wallMs - p.hand.wallMs;

let current: string | undefined;
for (const sig of ["SIGINT", "SIGTERM"] as const) {
  process.on(sig, () => {
    log(`${sig}: tearing down ${current ?? "nothing"}`);
    if (current) teardown(current);
    process.exit(130);
  });
}

async function bench(scale: number): Promise<Row> {
  const pool = `usbr${scale}`;
  teardown(pool); // left over from an interrupted run
  current = pool;
  try {
    log(`live PostgreSQL 13 on pool ${pool}, port ${LIVE_PORT}, pgbench scale ${scale}`);
    await run(["bash", LIVE, "up", pool, String(LIVE_PORT), String(scale)]);
    const bytes = Number(
      sh(["runuser", "-u", "postgres", "--", "/usr/lib/postgresql/13/bin/psql", "-X", "-At", "-h", "/var/run/postgresql", "-p", String(LIVE_PORT), "-d", "postgres", "-c", "SELECT sum(pg_database_size(datname)) FROM pg_database"]).trim(),
    );
    await run(["bash", LIVE, "writer", pool, String(LIVE_PORT), String(WRITER_RATE)]);
    execFileSync("sleep", ["5"]);
    const pairs: Pair[] = [];
    for (let k = 0; k < REPEAT; k++) {
      // Alternate the order so that neither side always runs first (warm caches, a busy neighbour).
      const doHand = async () => {
        log(`scale ${scale}, pair ${k + 1}/${REPEAT}: (b) by hand: bench/rehearsal-by-hand.sh`);
        const h = await byHand(pool);
        log(`(b) ${fmt(h.wallMs)}`);
        return h;
      };
      const doPulumi = async () => {
        log(`scale ${scale}, pair ${k + 1}/${REPEAT}: (a) pulumi up`);
        const a = await viaPulumi(pool, `s${scale}-${k + 1}`);
        log(`(a) ${fmt(a.wallMs)}`);
        return a;
      };
      if (k % 2 === 0) {
        const hand = await doHand();
        pairs.push({ hand, pulumi: await doPulumi() });
      } else {
        const pulumi = await doPulumi();
        pairs.push({ hand: await doHand(), pulumi });
      }
    }
    const median = [...pairs].sort((x, y) => overheadOf(x) - overheadOf(y))[Math.floor((pairs.length - 1) / 2)];
    return { scale, mb: bytes / 1024 / 1024, ...median, pairs };
  } finally {
    teardown(pool);
    current = undefined;
  }
}

const REPEAT = Number(process.env.BENCH_REPEAT ?? 3);
const STEP_NAMES = ["recover", "check", "upgrade", "start", "post-upgrade", "analyze", "verify"];

function print(rows: Row[]): void {
  console.log(
    "| database size (scale, MB) | by hand (script) | pulumi up (UpgradeRehearsal) | overhead | of which engine start/preview | of which snapshot + clone | of which inside the steps | of which between steps + finish | overhead, all pairs | cleanup: script / `pulumi destroy` |",
  );
  console.log("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
  for (const r of rows) {
    const a = r.pulumi;
    const b = r.hand;
    const over = a.wallMs - b.wallMs;
    const handSteps = STEP_NAMES.reduce((s, n) => s + (b.steps[n] ?? 0), 0);
    console.log(
      `| ${r.scale}, ${Math.round(r.mb)} MB | ${fmt(b.wallMs)} | ${fmt(a.wallMs)} | ${sign(over)} (${((over / b.wallMs) * 100).toFixed(0)} %) | ` +
        `${fmt(a.engineStartMs)} (preview alone: ${fmt(a.previewMs)}) | ${sign(a.snapCloneMs - (b.steps.clone ?? 0))} | ${sign(a.stepsMs - handSteps)} | ` +
        `${fmt(a.betweenMs + a.finishMs)} | ${r.pairs.map((p) => `${fmt(p.hand.wallMs)} → ${fmt(p.pulumi.wallMs)}`).join("; ")} | ${fmt(b.cleanupMs)} / ${fmt(a.destroyMs)} |`,
    );
  }
  console.log(`
Note: ${REPEAT} pairs (script, \`pulumi up\`) per size against the same live server, ${WRITER_RATE} tx/s pgbench writer on it throughout, the order alternating (script first in pairs 1, 3, ...). Each row is the pair with the median overhead, so its columns add up; *overhead, all pairs* lists every pair's by hand → pulumi up, in run order.
- *by hand*: bench/rehearsal-by-hand.sh, timed inside the script from its CHECKPOINT to its last snapshot (bash start and its cleanup excluded): CHECKPOINT + snapshot + clone, then one PG 13 start for crash recovery **and** the baseline counts, initdb + pg_upgrade --check, --link, PG 15 start, update_extensions (if any), vacuumdb --analyze-in-stages, counts + checksum compared; a CHECKPOINT (while PG 15 runs) and a zfs snapshot after each step.
- *pulumi up*: wall time of \`stack.up()\` (Automation API, real CLI, file backend; --skip-preview as the Automation API does): engine, ZfsSnapshot (with CHECKPOINT) + ZfsClone, the seven RehearsalSteps, state writes.
- *overhead* = pulumi up − by hand (and as % of by hand); the four *of which* columns add up to it (up to rounding):
  - *engine start*: from \`up()\` to the first resource's event (CLI + language host + program + plugin start); in parentheses a separate \`pulumi preview\` of the same stack, **not** included in either total (what an interactive \`pulumi up\` adds before asking).
  - *snapshot + clone*: the ZfsSnapshot/ZfsClone resources minus the script's CHECKPOINT/snapshot/clone.
  - *inside the steps*: the sum of the report's step durations minus the script's steps (library work the script does not do, e.g. extra server starts, status checks, marker files).
  - *between steps + finish*: engine time between one step's end and the next's start (provider process, check/diff, state checkpoint) plus the end of the last step to \`up()\` returning.
  - Event times are taken when the Automation API delivers them (polled every 200 ms): the split between the first three columns is ±0.2 s; the totals are exact.
- *cleanup*: the script's (stop PG 15, zfs destroy -r clone, destroy snapshot) vs \`pulumi destroy\`; not in the totals.
zfs-fuse on sparse files, ${new Date().toISOString().slice(0, 10)}, ${fs.readFileSync("/proc/cpuinfo", "utf8").match(/model name\s*:\s*(.*)/)?.[1] ?? "?"}, ${execFileSync("nproc", { encoding: "utf8" }).trim()} cores, shared with other jobs.`);

  // Per step, the minimum over all pairs of each side: the least disturbed by the shared machine.
  console.log(`\nPer step, best of ${REPEAT} (the minimum over the pairs, each side and step on its own; the library's from its report):\n`);
  console.log(`| step | ${rows.map((r) => `scale ${r.scale}: by hand | library | Δ`).join(" | ")} |`);
  console.log(`| --- | ${rows.map(() => "--- | --- | ---").join(" | ")} |`);
  const min = (xs: Array<number | undefined>) => {
    const v = xs.filter((x): x is number => x !== undefined);
    return v.length ? Math.min(...v) : undefined;
  };
  const cell = (h: number | undefined, l: number | undefined) => `${h === undefined ? "—" : fmt(h)} | ${l === undefined ? "—" : fmt(l)} | ${h === undefined || l === undefined ? "—" : sign(l - h)}`;
  const line = (label: string, hand: (p: Pair) => number | undefined, lib: (p: Pair) => number | undefined) =>
    console.log(`| ${label} | ${rows.map((r) => cell(min(r.pairs.map(hand)), min(r.pairs.map(lib)))).join(" | ")} |`);
  line("snapshot + clone", (p) => p.hand.steps.clone, (p) => p.pulumi.snapCloneMs);
  for (const n of STEP_NAMES) line(n, (p) => p.hand.steps[n], (p) => p.pulumi.report.steps.find((s) => s.name === n)?.durationMs);
  line("engine (start, between steps, finish)", () => 0, (p) => p.pulumi.engineStartMs + p.pulumi.betweenMs + p.pulumi.finishMs);
  line("**total**", (p) => p.hand.wallMs, (p) => p.pulumi.wallMs);
  console.log("\nLibrary step details (the median pair's report):\n");
  for (const r of rows) for (const s of r.pulumi.report.steps) console.log(`- scale ${r.scale}, ${s.name}: ${s.detail ?? ""}`);
}

async function main(): Promise<void> {
  const scales = (process.env.BENCH_SCALES ?? "10,50").split(",").map((s) => Number(s.trim()));
  if (scales.some((s) => !Number.isInteger(s) || s < 1 || s > 1000)) throw new Error(`BENCH_SCALES: ${process.env.BENCH_SCALES} must be pgbench scales, e.g. 10,50`);
  if (!Number.isInteger(REPEAT) || REPEAT < 1 || REPEAT > 20) throw new Error(`BENCH_REPEAT: ${process.env.BENCH_REPEAT} must be 1..20`);
  if (!fs.existsSync(path.join(REPO, "dist/understudy.js"))) throw new Error("dist/ is missing: run `npx tsc -p tsconfig.json` first");
  const rows: Row[] = [];
  for (const s of scales) {
    rows.push(await bench(s));
    const r = rows[rows.length - 1];
    log(`scale ${s}: by hand ${fmt(r.hand.wallMs)}, pulumi up ${fmt(r.pulumi.wallMs)}`);
  }
  print(rows);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
