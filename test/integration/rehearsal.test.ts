/**
 * UpgradeRehearsal end to end, nothing mocked: the real Pulumi engine (CLI v3.248, local
 * file backend) runs test/fixtures/rehearsal-program, which builds an UpgradeRehearsal from
 * stack config, against a "live" PostgreSQL 13 on a zfs-fuse pool (scripts/live-postgres.sh:
 * pgbench data plus examples/sql/varied-schema.sql) while a pgbench writer keeps committing
 * to it, and upgrades clones of it to the real PostgreSQL 15.
 *
 * Every test checks that the live server was never restarted (pg_postmaster_start_time),
 * that its rows committed before the test are all still there, that the tables the writer
 * does not touch are byte-for-byte the same, that the writer's transactions kept committing,
 * and that the source's snapshot list is back to what it was.
 *
 * Pool `usreh`, ports 26000..26099 only.
 */
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { ChildProcess, execFile, spawn } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { promisify } from "node:util";
import { datasetExists, destroyPoolByName, sh, snapshotsOf } from "../harness/zfs";
import { alive, sleep, stopServersUnder } from "../harness/postgres";
import { collector, failureOf, fileBackend, fixtureProgram, openStack, REPO, tempDir, TestBackend } from "../harness/pulumi";
import type { RehearsalReport, StepRecord } from "../../providers/rehearsal/report";
import { readCommandLog } from "../../providers/host/record";

const run = promisify(execFile);

const POOL = "usreh";
const LIVE_PORT = 26000;
const SRC = `${POOL}/pg13`;
const SOCK = "/var/run/postgresql";
const BIN13 = "/usr/lib/postgresql/13/bin";
const BIN15 = "/usr/lib/postgresql/15/bin";
const CLONES = `/srv/${POOL}/rehearsals`;
const LIVE = path.join(REPO, "scripts/live-postgres.sh");
/** Tables the pgbench writer never touches: they must stay byte-for-byte the same on the source. */
const STATIC_TABLES = ["customers", "orders", "documents", "invoice_numbers"];

let backend: TestBackend;
let program: string;
let reportRoot: string;
let liveStartedAt: string;
const listeners: ChildProcess[] = [];
const timings: Record<string, string> = {};

// ------------------------------------------------------------------------------ helpers

function live(...args: string[]): void {
  sh(["bash", LIVE, ...args]);
}

/** psql as the postgres OS user on a local server; rows as arrays of fields. */
function psql(port: number, sql: string, opts: { db?: string; bin?: string } = {}): string[][] {
  const out = sh(["runuser", "-u", "postgres", "--", `${opts.bin ?? BIN13}/psql`, "-X", "-q", "-A", "-t", "-F", "|", "-v", "ON_ERROR_STOP=1", "-h", SOCK, "-p", String(port), "-d", opts.db ?? "app", "-c", sql]);
  return out.split("\n").filter((l) => l !== "").map((l) => l.split("|"));
}
const one = (port: number, sql: string, opts?: { db?: string; bin?: string }) => psql(port, sql, opts)[0]?.[0] ?? "";

/** What must not change on the live source across a test, and a mark to see that its writer kept committing. */
interface SourceState {
  startedAt: string;
  cutoff: string;
  committed: string;
  staticTables: string;
  history: number;
  snapshots: string[];
}

function sourceState(cutoff?: string): SourceState {
  // Every transaction with an id below the snapshot's xmin has ended: the rows they inserted are exactly "committed before".
  const cut = cutoff ?? one(LIVE_PORT, "SELECT txid_snapshot_xmin(txid_current_snapshot())");
  return {
    startedAt: one(LIVE_PORT, "SELECT pg_postmaster_start_time()::text"),
    cutoff: cut,
    committed: one(LIVE_PORT, `SELECT count(*) || ':' || coalesce(md5(string_agg(h::text, ',' ORDER BY h::text)), '-') FROM pgbench_history h WHERE xmin::text::bigint < ${cut}`),
    staticTables: STATIC_TABLES.map((t) => one(LIVE_PORT, `SELECT count(*) || ':' || md5(coalesce(string_agg(x::text, ',' ORDER BY x::text), '')) FROM ${t} x`)).join(" "),
    history: Number(one(LIVE_PORT, "SELECT count(*) FROM pgbench_history")),
    snapshots: snapshotsOf(SRC),
  };
}

function writerPid(): number {
  return Number(fs.readFileSync(`/run/understudy-writer-${POOL}.pid`, "utf8").trim());
}




/** Full names of everything in the pool (datasets and snapshots). */
function poolContents(): string[] {
  return sh(["zfs", "list", "-H", "-o", "name", "-t", "all", "-r", POOL]).split("\n").filter(Boolean).sort();
}

function cronEntries(): string[] {
  return fs.existsSync("/etc/cron.d") ? fs.readdirSync("/etc/cron.d").sort() : [];
}

/** Processes whose command line mentions the clones' directory (servers, pg_upgrade). */
function processesOnClones(): string[] {
  return sh(["ps", "-eo", "pid=,args="]).split("\n").filter((l) => l.includes(`${CLONES}/`) && !/\bps -eo\b/.test(l));
}

function creation(name: string): string {
  return sh(["zfs", "get", "-H", "-p", "-o", "value", "creation", name]).trim();
}

/** The stack config of a rehearsal: the UpgradeRehearsalArgs as a user writes them. */
function rehearsalConfig(tag: string, port: number, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    source: { dataset: SRC, pgdata: "main", version: 13, port: LIVE_PORT, socketDir: SOCK },
    clone: { dataset: `${POOL}/rehearsals/${tag}` },
    to: 15,
    postgres: { port, database: "app" },
    checks: {
      checksumTables: ["public.pgbench_branches", "public.orders_2025", "public.customers", "app.public.documents"],
      assertions: [
        { name: "every order has a customer", sql: "SELECT NOT EXISTS (SELECT 1 FROM orders o LEFT JOIN customers c ON c.id = o.customer_id WHERE c.id IS NULL)" },
        { name: "large objects readable", sql: "SELECT sum(length(lo_get(body))) > 0 FROM documents" },
      ],
    },
    reportDir: path.join(reportRoot, tag),
    ...extra,
  };
}

async function stackFor(tag: string, cfg: Record<string, unknown>) {
  return await openStack(program, tag, backend, { rehearsal: { value: JSON.stringify(cfg) } });
}

function readReport(tag: string): { json: RehearsalReport; markdown: string } {
  const dir = path.join(reportRoot, tag);
  return { json: JSON.parse(fs.readFileSync(path.join(dir, `${tag}.json`), "utf8")), markdown: fs.readFileSync(path.join(dir, `${tag}.md`), "utf8") };
}

/** Custom resources of ours in a stack's state. */
async function ourResources(stack: Awaited<ReturnType<typeof stackFor>>): Promise<string[]> {
  const state = await stack.exportStack();
  return (state.deployment.resources ?? [])
    .filter((r: { type: string }) => r.type.startsWith("pulumi-nodejs:dynamic/understudy:"))
    .map((r: { urn: string }) => r.urn.split("::").pop() as string);
}

/**
 * `pulumi up`, killing (SIGKILL) the upgrade step's pg_upgrade (not the check's) once it has
 * started the new server, i.e. while it restores the schema: mid-step, with servers running.
 */
async function upWithUpgradeKilled(stack: Awaited<ReturnType<typeof stackFor>>, tag: string): Promise<{ message: string; killed: boolean }> {
  const newDir = `${CLONES}/${tag}/main.pg15`;
  let killed = false;
  let watching = true;
  const watcher = (async () => {
    while (watching && !killed) {
      const { stdout } = await run("ps", ["-eo", "pid=,args="]);
      const lines = stdout.split("\n").map((l) => l.trim());
      const upgrade = lines.find((l) => /^\d+ \/usr\/lib\/postgresql\/15\/bin\/pg_upgrade /.test(l) && l.includes(`${CLONES}/${tag}/`) && !l.includes("--check"));
      const server = lines.find((l) => /^\d+ \/usr\/lib\/postgresql\/15\/bin\/postgres /.test(l) && l.includes(`-D ${newDir}`));
      if (upgrade && server) {
        process.kill(Number(upgrade.split(" ")[0]), "SIGKILL");
        killed = true;
        break;
      }
      await sleep(50);
    }
  })();
  try {
    return { message: await failureOf(() => stack.up()), killed };
  } finally {
    watching = false;
    await watcher;
  }
}

function time(label: string, t0: number): void {
  timings[label] = `${((Date.now() - t0) / 1000).toFixed(1)} s`;
}

// ------------------------------------------------------------------------------ lifecycle

async function cleanupEverything(): Promise<void> {
  for (const l of listeners.splice(0)) l.kill("SIGKILL");
  if (fs.existsSync(`/run/understudy-writer-${POOL}.pid`)) {
    try {
      live("stop-writer", POOL);
    } catch (e) {
      console.error(`cleanup: stop-writer: ${(e as Error).message}`);
    }
  }
  await stopServersUnder(CLONES, { maxDepth: 3, mode: "immediate" });
  try {
    live("down", POOL, String(LIVE_PORT));
  } catch (e) {
    console.error(`cleanup: live-postgres.sh down: ${(e as Error).message}`);
  }
  destroyPoolByName(POOL);
}

beforeAll(async () => {
  const t0 = Date.now();
  backend = fileBackend();
  program = fixtureProgram("rehearsal-program");
  reportRoot = tempDir("reports");
  await cleanupEverything(); // left over from an earlier, crashed run
  live("up", POOL, String(LIVE_PORT), "2");
  live("writer", POOL, String(LIVE_PORT), "20");
  liveStartedAt = one(LIVE_PORT, "SELECT pg_postmaster_start_time()::text");
  // The writer is committing before any rehearsal starts.
  const h0 = Number(one(LIVE_PORT, "SELECT count(*) FROM pgbench_history"));
  for (let i = 0; i < 50 && Number(one(LIVE_PORT, "SELECT count(*) FROM pgbench_history")) <= h0; i++) await sleep(100);
  time("setup (live PostgreSQL 13, scale 2, writer)", t0);
});

afterAll(async () => {
  await cleanupEverything();
  for (const d of [backend?.dir, program, reportRoot]) if (d) fs.rmSync(d, { recursive: true, force: true });
  console.log("\ntimings:");
  for (const [k, v] of Object.entries(timings)) console.log(`  ${k.padEnd(60)} ${v}`);
});

let before: SourceState;

beforeEach(() => {
  before = sourceState();
});

afterEach(() => {
  // Live is sacred: never restarted, nothing committed before the test lost, untouched tables the same,
  // the writer still committing, and the snapshot list what it was.
  const after = sourceState(before.cutoff);
  expect(after.startedAt).toBe(before.startedAt);
  expect(after.startedAt).toBe(liveStartedAt);
  expect(after.committed).toBe(before.committed);
  expect(after.staticTables).toBe(before.staticTables);
  expect(after.history).toBeGreaterThan(before.history);
  expect(alive(writerPid())).toBe(true);
  expect(after.snapshots).toEqual(before.snapshots);
});

// ------------------------------------------------------------------------------ tests

describe("a healthy database passes", () => {
  it("up: snapshot after every step, all checks equal, report written, PostgreSQL 15 serving; preview: no change; destroy: nothing left", async () => {
    const tag = "healthy";
    const port = 26010;
    const cfg = rehearsalConfig(tag, port, {
      steps: [
        { name: "smoke", sql: "SELECT count(*) FROM big_customers; REFRESH MATERIALIZED VIEW revenue_by_month;" },
        { name: "app-check", command: [`${BIN15}/psql`, "-X", "-At", "-c", "SELECT count(*) FROM pgbench_accounts"] },
      ],
    });
    const stack = await stackFor(tag, cfg);
    const cmdlog = path.join(reportRoot, "healthy-commands.jsonl");
    stack.workspace.envVars.UNDERSTUDY_COMMAND_LOG = cmdlog;
    try {
      const out = collector();
      let t0 = Date.now();
      const up = await stack.up({ onOutput: out.onOutput });
      time("healthy: pulumi up (9 steps)", t0);
      expect(up.summary.result).toBe("succeeded");
      // The old version is started on the clone once (recovery, live's settings, the baseline and
      // what initdb must match, in one start); pg_upgrade's own private starts are not ours.
      const starts = readCommandLog(cmdlog).filter((c) => c.argv.some((a) => a.endsWith("/pg_ctl")) && c.argv.includes("start"));
      expect(starts.map((c) => c.argv[c.argv.indexOf("-D") + 1])).toEqual([`/srv/${POOL}/rehearsals/${tag}/main`, `/srv/${POOL}/rehearsals/${tag}/main.pg15`]);
      delete stack.workspace.envVars.UNDERSTUDY_COMMAND_LOG;
      // The check step places the new cluster as a promotion does, and the predicted pause counts that copy.
      const checkStep = (up.outputs.report.value as RehearsalReport).steps.find((s) => s.kind === "check")!;
      expect(checkStep.placeMs).toBeGreaterThan(0);
      expect((up.outputs.report.value as RehearsalReport).predictedCutover.breakdown).toContainEqual({ step: expect.stringMatching(/^copy the new cluster/), ms: checkStep.placeMs });
      const clone = `${POOL}/rehearsals/${tag}`;
      const sourceSnap = `${SRC}@understudy-${tag}-${tag}`;
      expect(up.outputs.clone.value.snapshot).toBe(sourceSnap);
      expect(up.outputs.clone.value.dataset).toBe(clone);
      expect(out.text()).toMatch(/preflight: PostgreSQL 13\.\d+ and 15\.\d+ installed, ports 26010, 26011, 26012, 26013 free/);

      // Steps: built-in and user steps in order, each with its own snapshot of the clone, which exists.
      const report = up.outputs.report.value as RehearsalReport;
      expect(report.status).toBe("passed");
      expect(report.failure).toBeUndefined();
      const names = ["recover", "check", "upgrade", "start", "post-upgrade", "analyze", "smoke", "app-check", "verify"];
      expect(report.steps.map((s) => s.name)).toEqual(names);
      const cloneSnaps = snapshotsOf(clone);
      report.steps.forEach((s: StepRecord, i: number) => {
        expect(s.status).toBe("ok");
        expect(s.index).toBe(i + 1);
        expect(s.snapshot).toBe(`${clone}@s${String(i + 1).padStart(2, "0")}-${s.name}`);
        expect(cloneSnaps).toContain(s.snapshot);
        expect(s.durationMs).toBeGreaterThan(0);
      });
      expect(up.outputs.steps.value).toEqual(report.steps);
      expect(report.steps.find((s) => s.name === "app-check")!.detail).toMatch(/command exited 0: 200000/);
      expect(report.source).toMatchObject({ dataset: SRC, snapshot: sourceSnap, version: 13 });
      expect(report.target).toMatchObject({ version: 15, port });

      // Verification: every check passes with equal values on both sides, covering the varied schema.
      expect(report.checks.length).toBeGreaterThan(15);
      for (const c of report.checks) {
        expect(c.status, c.name).toBe("pass");
        if (c.kind !== "assertion") expect(c.actual, c.name).toBe(c.expected);
      }
      const check = (name: string) => report.checks.find((c) => c.name === name);
      for (const t of ["pgbench_branches", "orders_2025", "customers", "documents"]) {
        expect(check(`checksum app.public.${t}`)?.expected, t).toMatch(/^\d+:[0-9a-f]{32}$/);
      }
      expect(check("checksum app.public.pgbench_branches")!.expected).toMatch(/^2:/);
      expect(check("rows app.public.pgbench_accounts")!.expected).toBe("200000");
      expect(check("rows app.public.orders_2025")!.expected).not.toBe("0"); // a partition
      expect(check("rows app.public.orders_2026")).toBeDefined();
      expect(check("rows app.public.revenue_by_month")).toBeDefined(); // a materialized view
      expect(check("large objects in app")!.expected).toBe("20");
      expect(check("sequence app.public.invoice_numbers")).toBeDefined();
      expect(check("sequence app.public.customers_id_seq")).toBeDefined(); // identity column
      for (const e of ["hstore", "pg_trgm", "plpgsql"]) expect(check(`extension app.${e}`)?.status).toBe("pass");
      expect(check("every order has a customer")?.actual).toBe("t");
      expect(check("large objects readable")?.actual).toBe("t");
      // The clone holds the source as of the snapshot: the writer's history at that moment, not now.
      const historyAtSnapshot = Number(check("rows app.public.pgbench_history")!.expected);
      expect(historyAtSnapshot).toBeGreaterThan(0);
      expect(historyAtSnapshot).toBeLessThan(Number(one(LIVE_PORT, "SELECT count(*) FROM pgbench_history")));

      // Report files: JSON and Markdown, the same as the stack outputs.
      const files = up.outputs.reportFiles.value as { json: string; markdown: string; html: string };
      expect(files).toEqual({ json: path.join(reportRoot, tag, `${tag}.json`), markdown: path.join(reportRoot, tag, `${tag}.md`), html: path.join(reportRoot, tag, `${tag}.html`) });
      const page = fs.readFileSync(files.html, "utf8");
      for (const s of report.steps) expect(page).toContain(s.snapshot);
      const written = readReport(tag);
      expect(written.json).toEqual(report);
      expect(written.markdown).toBe(up.outputs.reportMarkdown.value);
      expect(written.markdown).toMatch(/^# Upgrade rehearsal `healthy`: PASSED/);
      for (const s of report.steps) expect(written.markdown).toContain(`\`${s.snapshot}\``);
      expect(written.markdown).toMatch(/## Verification: \d+ passed, 0 failed/);
      expect(written.markdown).toMatch(/## Predicted cut-over downtime: /);

      // The upgraded clone answers on its port, as PostgreSQL 15, with the data and the user steps' effects.
      expect(psql(port, "SELECT current_setting('server_version_num')::int / 10000, (SELECT count(*) FROM pgbench_accounts), (SELECT count(*) FROM customers)", { bin: BIN15 })).toEqual([
        ["15", "200000", "5000"],
      ]);
      expect(one(port, "SELECT extversion FROM pg_extension WHERE extname = 'hstore'", { bin: BIN15 })).toMatch(/^\d+\.\d+$/);
      expect(up.outputs.upgraded.value.connectionString).toBe(`postgresql:///app?host=${SOCK}&port=${port}&user=postgres`);

      // Nothing to do on a second look.
      t0 = Date.now();
      const preview = await stack.preview();
      time("healthy: pulumi preview", t0);
      expect(Object.keys(preview.changeSummary)).toEqual(["same"]);

      // Destroy: the clone, every step snapshot, the source snapshot and the PostgreSQL 15 server are gone.
      t0 = Date.now();
      const destroy = await stack.destroy();
      time("healthy: pulumi destroy", t0);
      expect(destroy.summary.result).toBe("succeeded");
      expect(datasetExists(clone)).toBe(false);
      expect(datasetExists(sourceSnap)).toBe(false);
      expect(snapshotsOf(SRC)).toEqual(before.snapshots);
      expect(poolContents().filter((n) => n.startsWith(`${POOL}/rehearsals/`))).toEqual([]);
      expect(processesOnClones()).toEqual([]);
      expect(() => psql(port, "SELECT 1", { bin: BIN15 })).toThrow(/No such file or directory|could not connect|Connection refused/);
      await stack.workspace.removeStack(tag);
    } catch (e) {
      // A failure here must not leave the upgraded server running for every later test to trip over.
      await stack.destroy().catch(() => undefined);
      throw e;
    }
  });
});

describe("a database that pg_upgrade --check refuses", () => {
  it("fails at the check step with the reason and the last good snapshot; a fix on the clone resumes from there and passes", async () => {
    const tag = "refused";
    const port = 26020;
    const clone = `${POOL}/rehearsals/${tag}`;
    const sourceSnap = `${SRC}@understudy-${tag}-${tag}`;
    // The live database carries something PostgreSQL 15 no longer supports: a user-defined postfix operator.
    psql(LIVE_PORT, "CREATE OPERATOR public.!!! (LEFTARG = bigint, FUNCTION = numeric_fac)");
    try {
      before = sourceState();
      const stack = await stackFor(tag, rehearsalConfig(tag, port));
      let t0 = Date.now();
      const message = await failureOf(() => stack.up());
      time("refused: pulumi up, failing at check", t0);
      expect(message).toMatch(/rehearsal step 2 "check" failed on local/);
      expect(message).toMatch(/Checking for user-defined postfix operators/);
      expect(message).toMatch(/user-defined postfix operators, which are not\s+supported anymore/);
      expect(message).toContain(`Last good state: snapshot ${clone}@s01-recover after step "recover"`);
      expect(message).toMatch(/the source was not touched/);

      // The report says failed, where, why, and the last good snapshot and since when.
      const { json, markdown } = readReport(tag);
      expect(json.status).toBe("failed");
      expect(json.steps.map((s) => [s.name, s.status])).toEqual([
        ["recover", "ok"],
        ["check", "failed"],
      ]);
      const recover = json.steps[0];
      expect(json.failure).toMatchObject({ step: "check", lastGoodStep: "recover", lastGoodSnapshot: `${clone}@s01-recover`, lastGoodAt: recover.finishedAt });
      expect(json.failure!.reason).toMatch(/postfix operators/);
      expect(Date.parse(json.failure!.lastGoodAt!)).toBeLessThanOrEqual(Date.parse(json.failure!.at));
      expect(json.steps[1].logTail).toMatch(/postfix_ops\.txt/);
      expect(markdown).toMatch(/^# Upgrade rehearsal `refused`: FAILED/);
      expect(markdown).toMatch(/\*\*Failed at step `check`\*\* \(.+\): .*postfix operators/);
      expect(markdown).toContain(`Last good state: after \`recover\`, snapshot \`${clone}@s01-recover\` (${recover.finishedAt})`);

      // Left behind: the clone at the failed state with the good snapshots; live untouched but for our snapshot.
      expect(snapshotsOf(clone)).toEqual([`${clone}@s00-cloned`, `${clone}@s01-recover`]);
      expect(snapshotsOf(SRC)).toEqual([...before.snapshots, sourceSnap]);
      const mid = sourceState(before.cutoff);
      expect(mid.startedAt).toBe(before.startedAt);
      expect(mid.committed).toBe(before.committed);
      expect(mid.history).toBeGreaterThan(before.history);
      const recoverCreated = creation(`${clone}@s01-recover`);

      // Fix it on the clone, before the upgrade, and run again: resumes after "recover".
      await stack.setConfig("rehearsal", {
        value: JSON.stringify(
          rehearsalConfig(tag, port, { steps: [{ name: "drop-postfix-op", phase: "before-upgrade", sql: "DROP OPERATOR public.!!! (bigint, NONE)" }] }),
        ),
      });
      const out = collector();
      t0 = Date.now();
      const up = await stack.up({ onOutput: out.onOutput });
      time("refused: pulumi up, resumed with the fix", t0);
      expect(up.summary.result).toBe("succeeded");
      // recover (and the preflight, snapshot, clone) unchanged; the 7 steps from the fix on created; nothing replaced or deleted.
      const changes = up.summary.resourceChanges!;
      expect(changes.create).toBe(7);
      expect(Object.keys(changes).sort()).toEqual(["create", "same"]);
      expect(out.text()).not.toMatch(/recover: step 1 \(recover\) started/);
      expect(out.text()).toContain(`rolling ${clone} back to ${clone}@s01-recover`);
      expect(creation(`${clone}@s01-recover`)).toBe(recoverCreated);
      const report = up.outputs.report.value as RehearsalReport;
      expect(report.status).toBe("passed");
      expect(report.steps.map((s) => s.name)).toEqual(["recover", "drop-postfix-op", "check", "upgrade", "start", "post-upgrade", "analyze", "verify"]);
      expect(report.steps[0]).toEqual(recover); // the very record of the first run: not re-run
      expect(report.checks.every((c) => c.status === "pass")).toBe(true);
      // Fixed on the clone only: the source still has its operator.
      expect(one(port, "SELECT count(*) FROM pg_operator WHERE oprname = '!!!'", { bin: BIN15 })).toBe("0");
      expect(one(LIVE_PORT, "SELECT count(*) FROM pg_operator WHERE oprname = '!!!'")).toBe("1");

      t0 = Date.now();
      await stack.destroy();
      time("refused: pulumi destroy", t0);
      expect(datasetExists(clone)).toBe(false);
      expect(snapshotsOf(SRC)).toEqual(before.snapshots);
      expect(processesOnClones()).toEqual([]);
      await stack.workspace.removeStack(tag);
    } finally {
      psql(LIVE_PORT, "DROP OPERATOR IF EXISTS public.!!! (bigint, NONE)");
    }
  });
});

describe("a step killed mid-way", () => {
  it("pg_upgrade killed during the upgrade step fails `up` there; the next `up` rolls back to s02-check, re-runs it and passes", async () => {
    const tag = "killed";
    const port = 26030;
    const clone = `${POOL}/rehearsals/${tag}`;
    const newDir = `${CLONES}/${tag}/main.pg15`;
    const stack = await stackFor(tag, rehearsalConfig(tag, port));

    let t0 = Date.now();
    const { message, killed } = await upWithUpgradeKilled(stack, tag);
    time("killed: pulumi up, pg_upgrade killed", t0);
    expect(killed, "pg_upgrade of the upgrade step was seen and killed").toBe(true);
    expect(message).toMatch(/rehearsal step 3 "upgrade" failed on local/);
    expect(message).toContain(`Last good state: snapshot ${clone}@s02-check after step "check"`);
    // What is left behind is said as it is: the killed pg_upgrade's new server normally still runs.
    const leftRunning = processesOnClones().some((l) => l.includes(`${BIN15}/postgres`) && l.includes(newDir));
    timings["killed: pg_upgrade's new server still running after the kill"] = leftRunning ? "yes" : "no";
    if (leftRunning) {
      expect(message).toMatch(new RegExp(`a server pg_upgrade started is still running on ${newDir} \\(PID \\d+\\)`));
    } else {
      expect(message).toContain("no server is running");
    }
    const { json } = readReport(tag);
    expect(json.status).toBe("failed");
    expect(json.failure).toMatchObject({ step: "upgrade", lastGoodSnapshot: `${clone}@s02-check`, lastGoodStep: "check" });
    expect(snapshotsOf(clone)).toEqual([`${clone}@s00-cloned`, `${clone}@s01-recover`, `${clone}@s02-check`]);
    const checkCreated = creation(`${clone}@s02-check`);

    const out = collector();
    t0 = Date.now();
    const up = await stack.up({ onOutput: out.onOutput });
    time("killed: pulumi up, recovered", t0);
    expect(up.summary.result).toBe("succeeded");
    // The marker the killed step wrote names a set that was never taken: said as a cut-off step.
    expect(out.text()).toContain(`an earlier attempt (s03-upgrade) did not finish: rolling ${clone} back to ${clone}@s02-check`);
    const changes = up.summary.resourceChanges!;
    expect(changes.create).toBe(5); // upgrade, start, post-upgrade, analyze, verify
    expect(Object.keys(changes).sort()).toEqual(["create", "same"]);
    expect(creation(`${clone}@s02-check`)).toBe(checkCreated);
    const report = up.outputs.report.value as RehearsalReport;
    expect(report.status).toBe("passed");
    expect(report.steps.map((s) => s.status)).toEqual(Array(7).fill("ok"));
    expect(report.checks.every((c) => c.status === "pass")).toBe(true);
    expect(one(port, "SELECT count(*) FROM pgbench_accounts", { bin: BIN15 })).toBe("200000");

    t0 = Date.now();
    await stack.destroy();
    time("killed: pulumi destroy", t0);
    expect(datasetExists(clone)).toBe(false);
    expect(snapshotsOf(SRC)).toEqual(before.snapshots);
    expect(processesOnClones()).toEqual([]);
    await stack.workspace.removeStack(tag);
  });
});

describe("a step killed mid-way, then thrown away", () => {
  it("`pulumi destroy` right after the kill stops what pg_upgrade left running and removes the clone and every snapshot", async () => {
    const tag = "killed-destroyed";
    const clone = `${POOL}/rehearsals/${tag}`;
    const stack = await stackFor(tag, rehearsalConfig(tag, 26060));
    let t0 = Date.now();
    const { message, killed } = await upWithUpgradeKilled(stack, tag);
    time("killed-destroyed: pulumi up, pg_upgrade killed", t0);
    expect(killed).toBe(true);
    expect(message).toMatch(/rehearsal step 3 "upgrade" failed on local/);
    const newDir = `${CLONES}/${tag}/main.pg15`;
    const leftRunning = processesOnClones().some((l) => l.includes(`${BIN15}/postgres`) && l.includes(newDir));
    t0 = Date.now();
    const out = collector();
    const destroy = await stack.destroy({ onOutput: out.onOutput });
    time("killed-destroyed: pulumi destroy", t0);
    expect(destroy.summary.result).toBe("succeeded");
    timings["killed-destroyed: pg_upgrade's server left running, stopped by destroy"] = leftRunning ? "yes" : "no";
    if (leftRunning) expect(out.text()).toContain(`stopped the server on ${newDir}`);
    expect(datasetExists(clone)).toBe(false);
    expect(snapshotsOf(SRC)).toEqual(before.snapshots);
    expect(processesOnClones()).toEqual([]);
    await stack.workspace.removeStack(tag);
  });
});

describe("bad input gets a clear error before anything runs", () => {
  let pool0: string[];
  let cron0: string[];
  beforeEach(() => {
    pool0 = poolContents();
    cron0 = cronEntries();
  });

  /** Nothing was snapshotted, cloned, started, scheduled or recorded. */
  async function expectNothing(stack: Awaited<ReturnType<typeof stackFor>>, tag: string): Promise<void> {
    expect(poolContents()).toEqual(pool0);
    expect(snapshotsOf(SRC)).toEqual(before.snapshots);
    expect(datasetExists(`${POOL}/rehearsals/${tag}`)).toBe(false);
    expect(cronEntries()).toEqual(cron0);
    expect(processesOnClones()).toEqual([]);
    expect(await ourResources(stack)).toEqual([]);
    expect(fs.existsSync(path.join(reportRoot, tag))).toBe(false);
    await stack.workspace.removeStack(tag, { force: true });
  }

  it("to: 16 (not installed) names the field and says how to install it", async () => {
    const stack = await stackFor("to16", rehearsalConfig("to16", 26040, { to: 16 }));
    const message = await failureOf(() => stack.up());
    expect(message).toMatch(/preflight of to16\/preflight on local failed; nothing was snapshotted, cloned or started/);
    expect(message).toMatch(/- to: 16 is not installed on local: \/usr\/lib\/postgresql\/16\/bin\/\S+ not found \(apt-get install postgresql-16, or set toBinDir\)/);
    await expectNothing(stack, "to16");
  });

  it("toBinDir that does not exist names the field and the directory", async () => {
    const stack = await stackFor("nobin", rehearsalConfig("nobin", 26040, { toBinDir: "/nonexistent" }));
    const message = await failureOf(() => stack.up());
    expect(message).toMatch(/- toBinDir: \/nonexistent does not exist on local/);
    await expectNothing(stack, "nobin");
  });

  it("a port in use (a listener on postgres.port, on pg_upgrade's temporary port, or the live server's own port) names the port", async () => {
    const busy = 26045;
    const listener = spawn(process.execPath, ["-e", `require("net").createServer().listen(${busy}, "127.0.0.1", () => console.log("listening"))`]);
    listeners.push(listener);
    await new Promise<void>((resolve, reject) => {
      listener.stdout!.on("data", (d) => String(d).includes("listening") && resolve());
      listener.on("exit", (c) => reject(new Error(`listener exited with ${c}`)));
    });
    const cases: Array<[string, Record<string, unknown>, RegExp]> = [
      ["port", { postgres: { port: busy, database: "app" } }, new RegExp(`- postgres\\.port: port ${busy} is already in use on local`)],
      [
        "tempport",
        { postgres: { port: 26050, tempPort: busy - 2, database: "app" } },
        new RegExp(`- postgres\\.tempPort\\+2 \\(pg_upgrade's new server\\): port ${busy} is already in use on local`),
      ],
      // Live's own port is known without looking at the host: refused before anything is declared.
      ["liveport", { postgres: { port: LIVE_PORT, database: "app" } }, new RegExp(`- postgres\\.port: port ${LIVE_PORT} is also source\\.port \\(live\\)`)],
    ];
    try {
      for (const [tag, extra, expected] of cases) {
        const stack = await stackFor(tag, rehearsalConfig(tag, 26040, extra));
        const message = await failureOf(() => stack.up());
        expect(message, tag).toMatch(expected);
        expect(message).toMatch(tag === "liveport" ? /nothing was declared or run/ : /nothing was snapshotted, cloned or started/);
        await expectNothing(stack, tag);
      }
    } finally {
      listener.kill("SIGKILL");
    }
  });

  it("a malformed version fails the program with the field named", async () => {
    const stack = await stackFor("fifteen", rehearsalConfig("fifteen", 26040, { to: "fifteen" }));
    const message = await failureOf(() => stack.up());
    expect(message).toMatch(/fifteen: \d invalid arguments? \(nothing was declared or run\):\n\s+- to: "fifteen" is not a PostgreSQL major version/);
    await expectNothing(stack, "fifteen");
  });
});

describe("the live source across the whole file", () => {
  it("was never restarted and still serves the writer", () => {
    expect(one(LIVE_PORT, "SELECT pg_postmaster_start_time()::text")).toBe(liveStartedAt);
    expect(alive(writerPid())).toBe(true);
  });
});
