/**
 * Promotion end to end, nothing mocked: the real Pulumi engine (CLI v3.248, local file
 * backend) runs test/fixtures/promotion-program (an UpgradeRehearsal and a Promotion built
 * from stack config) against a "live" PostgreSQL 13 on a zfs-fuse pool
 * (scripts/live-postgres.sh), upgrades to the real PostgreSQL 15, and moves clients that
 * reach the database through a real PgBouncer (transaction pooling, trust auth on loopback).
 *
 * Clients are pgbench (PostgreSQL 15's, which counts failed transactions) connected through
 * PgBouncer while `pulumi up` promotes, rolls back, or fails a promotion on purpose. The
 * tests run in order and share one stack: rehearse -> promote -> roll back -> failed
 * promotion -> promote again -> destroy (hand-over).
 *
 * Pool `usprom`, PostgreSQL ports 28000..28099, PgBouncer port 28150 only.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ChildProcess } from "node:child_process";
import type { EngineEvent } from "@pulumi/pulumi/automation";
import * as fs from "node:fs";
import * as path from "node:path";
import { datasetExists, destroyPoolByName, sh, snapshotsOf, treeChecksum } from "../harness/zfs";
import { sleep, stopServersUnder, stopBouncerIn } from "../harness/postgres";
import { collector, fileBackend, fixtureProgram, openStack, REPO, tempDir, TestBackend } from "../harness/pulumi";
import { startPgbench, type PgbenchResult, type PgbenchRun } from "../harness/pgbench";
import { controlState, cutOverState as cutOverStateOf } from "../harness/debian-cluster";

const POOL = "usprom";
const LIVE_PORT = 28000;
const REHEARSAL_PORT = 28010; // pg_upgrade's private servers use 28011..28013
const NEW_LIVE_PORT = 28020; // and 28022, 28023 during the replay
const BOUNCER_PORT = 28150;
const BOUNCER_NAME = "usprom";
const BOUNCER_DIR = `/var/lib/understudy/pgbouncer/${BOUNCER_NAME}`;
const SRC = `${POOL}/pg13`;
const LIVE_DIR = `/srv/${POOL}/pg13/main`;
const SOCK = "/var/run/postgresql";
const BIN13 = "/usr/lib/postgresql/13/bin";
const BIN15 = "/usr/lib/postgresql/15/bin";
const STACK = "prom";
/** The Promotion's new live: `<parent of the rehearsal clone>/<name>-live-pg15`, then `-2`, `-3` ... after a roll-back. */
const NEW_LIVE = `${POOL}/rehearsals/${STACK}-go-live-live-pg15`;
/** While this file exists, the user step `gate` (cutover: true) fails. */
const FAIL_FILE = "/tmp/usprom-fail-cutover";
const LIVE = path.join(REPO, "scripts/live-postgres.sh");
/** pgbench runs this long; every `pulumi up` it accompanies must finish inside it. */
const PGBENCH_SECONDS = Number(process.env.UNDERSTUDY_TEST_PGBENCH_SECONDS ?? 60);

let backend: TestBackend;
let program: string;
let reportDir: string;
let stack: Awaited<ReturnType<typeof openStack>>;
const children: ChildProcess[] = [];
const timings: Record<string, string> = {};
const pauses: Record<string, unknown> = {};
/** pgbench_history rows committed on live before the first promotion started. */
let committedBeforePromotion = 0;
/** Content of the old live's data directory right after the promotion stopped it. */
let oldLiveTree = "";

// ------------------------------------------------------------------------------ helpers



/** psql as the postgres OS user; `host` is the socket dir or 127.0.0.1 (PgBouncer). */
function psql(host: string, port: number, sql: string, bin = BIN15): string {
  return sh(["runuser", "-u", "postgres", "--", `${bin}/psql`, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", host, "-p", String(port), "-d", "app", "-c", sql]).trim();
}
/** Through the endpoint, as clients see it. */
const viaBouncer = (sql: string) => psql("127.0.0.1", BOUNCER_PORT, sql);
const served = () => Number(viaBouncer("SELECT current_setting('server_version_num')"));
const servedPort = () => Number(viaBouncer("SELECT current_setting('port')"));
const historyVia = (port: number) => Number(psql(SOCK, port, "SELECT count(*) FROM pgbench_history"));

function running(dataDir: string, bin: string): boolean {
  return sh(["runuser", "-u", "postgres", "--", `${bin}/pg_ctl`, "status", "-D", dataDir], { allowFail: true }).includes("server is running");
}


/** pgbench (tpcb-like, 4 clients) through PgBouncer; resolves when it exits. */
function pgbench(seconds = PGBENCH_SECONDS): PgbenchRun {
  return startPgbench([`${BIN15}/pgbench`, "-h", "127.0.0.1", "-p", String(BOUNCER_PORT), "-n", "-c", "4", "-T", String(seconds), "app"], { asUser: "postgres", children });
}

/** pgbench's clients are connected and committing through PgBouncer. */
async function waitForCommits(port: number, from: number): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if (historyVia(port) > from + 20) return;
    await sleep(100);
  }
  throw new Error("pgbench did not commit through PgBouncer within 10 s");
}

function expectCleanRun(r: PgbenchResult, what: string): void {
  console.log(`pgbench during ${what}:\n${r.output.split("\n").filter((l) => /processed|failed|tps|latency average|abort/.test(l)).join("\n")}`);
  expect(r.output).not.toMatch(/aborted|error/i);
  expect(r.failed).toBe(0);
  expect(r.processed).toBeGreaterThan(0);
  expect(r.code).toBe(0);
}


/** The PgBouncer this test's endpoint started (retainOnDelete: destroy leaves it running). */
const stopBouncer = () => stopBouncerIn(BOUNCER_DIR);

async function cleanupEverything(): Promise<void> {
  for (const c of children.splice(0)) if (c.exitCode === null) c.kill("SIGKILL");
  fs.rmSync(FAIL_FILE, { force: true });
  await stopBouncer();
  await stopServersUnder(`/srv/${POOL}`);
  try {
    sh(["bash", LIVE, "down", POOL, String(LIVE_PORT)]);
  } catch (e) {
    console.error(`cleanup: live-postgres.sh down: ${(e as Error).message}`);
  }
  destroyPoolByName(POOL);
}

function rehearsalConfig(): Record<string, unknown> {
  return {
    source: { dataset: SRC, pgdata: "main", version: 13, port: LIVE_PORT, socketDir: SOCK },
    clone: { dataset: `${POOL}/rehearsals/pg13-to-15` },
    to: 15,
    postgres: { port: REHEARSAL_PORT, database: "app" },
    steps: [
      // Passes during the rehearsal; replayed (cutover: true) while clients wait during a promotion.
      { name: "gate", command: ["sh", "-c", `test ! -e ${FAIL_FILE}`], cutover: true },
    ],
    checks: {
      checksumTables: ["public.pgbench_branches", "public.customers"],
      assertions: [{ name: "every order has a customer", sql: "SELECT NOT EXISTS (SELECT 1 FROM orders o LEFT JOIN customers c ON c.id = o.customer_id WHERE c.id IS NULL)" }],
    },
    reportDir,
  };
}

async function setPromote(v: boolean): Promise<void> {
  await stack.setConfig("promote", { value: String(v) });
}

/** `pulumi up` while pgbench runs through PgBouncer; returns both results. */
async function upUnderLoad(what: string): Promise<{ up?: Awaited<ReturnType<typeof stack.up>>; error?: string; bench: PgbenchResult; log: string; before: number }> {
  const before = Number(viaBouncer("SELECT count(*) FROM pgbench_history"));
  const port = servedPort();
  const bench = pgbench();
  await waitForCommits(port, before);
  const out = collector();
  const t0 = Date.now();
  let up: Awaited<ReturnType<typeof stack.up>> | undefined;
  let error: string | undefined;
  try {
    up = await stack.up({ onOutput: out.onOutput });
  } catch (e) {
    const err = e as { message?: string; stdout?: string; stderr?: string };
    error = [err.message, err.stdout, err.stderr].filter(Boolean).join("\n");
  }
  timings[`pulumi up: ${what}`] = `${((Date.now() - t0) / 1000).toFixed(1)} s`;
  // The switch must have happened while pgbench was still running.
  expect(bench.running(), `pulumi up (${what}) outlasted pgbench's ${PGBENCH_SECONDS} s`).toBe(true);
  return { up, error, bench: await bench.done, log: out.text(), before };
}

const cutOverState = () => cutOverStateOf(stack);

// ------------------------------------------------------------------------------ lifecycle

beforeAll(async () => {
  const t0 = Date.now();
  await cleanupEverything(); // left over from an earlier, crashed run
  sh(["bash", LIVE, "up", POOL, String(LIVE_PORT), "2"]);
  // Live's own dataset settings, which the new live must keep (a clone takes its parent's).
  sh(["zfs", "set", "recordsize=16K", `${POOL}/pg13`]); // zfs-fuse: one property per call
  sh(["zfs", "set", "logbias=throughput", `${POOL}/pg13`]);
  backend = fileBackend();
  program = fixtureProgram("promotion-program");
  reportDir = tempDir("prom-reports");
  timings["setup (live PostgreSQL 13, scale 2)"] = `${((Date.now() - t0) / 1000).toFixed(1)} s`;
  const t1 = Date.now();
  stack = await openStack(program, STACK, backend, {
    rehearsal: { value: JSON.stringify(rehearsalConfig()) },
    promotion: { value: JSON.stringify({ endpoint: { name: BOUNCER_NAME, listenPort: BOUNCER_PORT, database: "app", authType: "trust" }, newLive: { port: NEW_LIVE_PORT } }) },
    promote: { value: "false" },
  });
  const up = await stack.up();
  expect(up.summary.result).toBe("succeeded");
  expect(up.outputs.report.value.status).toBe("passed");
  pauses.predictedByRehearsal = { totalMs: up.outputs.report.value.predictedCutover?.totalMs };
  timings["pulumi up: rehearsal (promote=false)"] = `${((Date.now() - t1) / 1000).toFixed(1)} s`;
});

afterAll(async () => {
  await cleanupEverything();
  for (const d of [backend?.dir, program, reportDir]) if (d) fs.rmSync(d, { recursive: true, force: true });
  console.log("\ntimings:");
  for (const [k, v] of Object.entries(timings)) console.log(`  ${k.padEnd(50)} ${v}`);
  console.log("pause windows (ms) and phases:");
  console.log(JSON.stringify(pauses, null, 2));
});

// ------------------------------------------------------------------------------ tests

describe("Promotion through PgBouncer", () => {
  it("refuses to promote while live has a replication slot nobody acknowledged, naming it, with nothing stopped; acknowledged, it is listed and the promotion may go", async () => {
    psql(SOCK, LIVE_PORT, "SELECT pg_create_physical_replication_slot('cdc_consumer')", BIN13);
    await setPromote(true);
    let error = "";
    try {
      await stack.up();
    } catch (e) {
      const err = e as { message?: string; stdout?: string; stderr?: string };
      error = [err.message, err.stdout, err.stderr].filter(Boolean).join("\n");
    }
    expect(error).toMatch(/acknowledgeReplicationLoss/);
    expect(error).toMatch(/slot:cdc_consumer: physical slot, inactive; afterwards: create it again on the new live/);
    // Nothing happened: clients on live, live not restarted, the cut-over still serving the old live.
    expect(servedPort()).toBe(LIVE_PORT);
    expect((await cutOverState()).state).toBe("serving-old");
    await setPromote(false);
    await stack.setConfig("promotion", {
      value: JSON.stringify({ endpoint: { name: BOUNCER_NAME, listenPort: BOUNCER_PORT, database: "app", authType: "trust" }, newLive: { port: NEW_LIVE_PORT }, acknowledgeReplicationLoss: ["slot:cdc_consumer"] }),
    });
    const up = await stack.up();
    expect(up.summary.result).toBe("succeeded");
    expect((up.outputs.endpoint.value as { replication: Array<{ id: string }> }).replication.map((i) => i.id)).toEqual(["slot:cdc_consumer"]);
  });

  it("promotes under load: no failed transaction, no lost commit, clients on PostgreSQL 15, old live kept stopped", async () => {
    // Before: the rehearsal passed, the endpoint serves live.
    expect(served()).toBeGreaterThanOrEqual(130000);
    expect(served()).toBeLessThan(140000);
    expect(servedPort()).toBe(LIVE_PORT);
    const liveStarted = psql(SOCK, LIVE_PORT, "SELECT pg_postmaster_start_time()::text", BIN13);

    // The reviewed change: preview shows the CutOver updated, with promote false => true.
    await setPromote(true);
    const events: EngineEvent[] = [];
    const preview = await stack.preview({ diff: true, onEvent: (e) => events.push(e) });
    expect(preview.changeSummary.update).toBe(1);
    // (The default pulumi-nodejs provider shows as updated too: dynamic providers receive the
    // stack's config, and promote is part of it. Resources are what a reviewer looks at.)
    const pre = events.map((e) => e.resourcePreEvent?.metadata).filter((m) => m && m.op !== "same" && !m.type.startsWith("pulumi:providers:"));
    expect(pre.map((m) => [m!.type.split(":").pop(), m!.op])).toEqual([["CutOver", "update"]]);
    // The reviewer sees the flip: promote false => true in the CutOver's inputs (and in the diff text).
    expect([pre[0]!.old?.inputs?.promote, pre[0]!.new?.inputs?.promote]).toEqual([false, true]);
    expect(preview.stdout).toMatch(/promote\s*:\s*false => true/);
    // Preview changed nothing.
    expect(servedPort()).toBe(LIVE_PORT);
    expect(psql(SOCK, LIVE_PORT, "SELECT pg_postmaster_start_time()::text", BIN13)).toBe(liveStarted);

    const { up, error, bench, log, before } = await upUnderLoad("promote");
    expect(error).toBeUndefined();
    expect(up!.summary.result).toBe("succeeded");
    expectCleanRun(bench, "the promotion");

    // Clients are on PostgreSQL 15, on the new live.
    expect(served()).toBeGreaterThanOrEqual(150000);
    expect(served()).toBeLessThan(160000);
    expect(servedPort()).toBe(NEW_LIVE_PORT);
    // Every transaction pgbench committed, before and after the switch, is on the new live.
    expect(historyVia(NEW_LIVE_PORT)).toBe(before + bench.processed);
    committedBeforePromotion = before;
    // New writes work through the endpoint.
    expect(viaBouncer("INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (1, 1, 1, 0, now()) RETURNING 'ok'")).toBe("ok");

    const ep = up!.outputs.endpoint.value;
    expect(ep.state).toBe("promoted");
    expect(ep.target).toEqual({ host: SOCK, port: NEW_LIVE_PORT, dbname: "app" });
    expect(ep.pauseWindowMs).toBeGreaterThan(0);
    const phaseNames = (ep.phases as Array<{ phase: string; ms: number }>).map((p) => p.phase);
    expect(phaseNames).toEqual(
      expect.arrayContaining(["stop live cleanly", "final snapshot", "clone", "replay upgrade", "replay start", "replay post-upgrade", "replay gate", "verify", "switch endpoint"]),
    );
    pauses.promote = { pauseWindowMs: ep.pauseWindowMs, phases: ep.phases };
    console.log(`promotion: clients held ${ep.pauseWindowMs} ms; phases ${JSON.stringify(ep.phases)}`);
    expect(log).toMatch(/promoted \(replay\): clients resumed on PostgreSQL 15/);

    // The old live: stopped cleanly, data directory intact, dataset still there.
    expect(running(LIVE_DIR, BIN13)).toBe(false);
    expect(controlState(LIVE_DIR, BIN13)).toBe("shut down");
    expect(fs.readFileSync(`${LIVE_DIR}/PG_VERSION`, "utf8").trim()).toBe("13");
    expect(datasetExists(SRC)).toBe(true);
    expect(datasetExists(NEW_LIVE)).toBe(true);
    const prop = (p: string) => sh(["zfs", "get", "-H", "-o", "value,source", p, NEW_LIVE]).trim().split("\t");
    expect(prop("recordsize")).toEqual(["16K", "local"]);
    expect(prop("logbias")).toEqual(["throughput", "local"]);
    expect(snapshotsOf(SRC)).toContain(ep.finalSnapshot);
    oldLiveTree = treeChecksum(LIVE_DIR);
    // The new live logs like live (pg_ctl -l into live's dataset): the same place on its own dataset.
    const newPid = fs.readFileSync(`/srv/${NEW_LIVE}/main.pg15/postmaster.pid`, "utf8").split("\n")[0];
    expect(fs.readlinkSync(`/proc/${newPid}/fd/2`)).toBe(`/srv/${NEW_LIVE}/server-pg15.log`);
    expect(fs.existsSync(`/srv/${SRC}/server-pg15.log`)).toBe(false);

    // Nothing left to do: a second up is a no-op.
    const again = await stack.preview();
    expect(again.changeSummary.update ?? 0).toBe(0);
  });

  it("rolls back under load: no failed transaction, clients on PostgreSQL 13 again, the new live kept stopped", async () => {
    // Nothing touched the old live while the new one served.
    expect(treeChecksum(LIVE_DIR)).toBe(oldLiveTree);
    const onNewLive = historyVia(NEW_LIVE_PORT);
    await setPromote(false);
    const { up, error, bench } = await upUnderLoad("roll back");
    expect(error).toBeUndefined();
    expect(up!.summary.result).toBe("succeeded");
    expectCleanRun(bench, "the roll-back");

    expect(served()).toBeGreaterThanOrEqual(130000);
    expect(served()).toBeLessThan(140000);
    expect(servedPort()).toBe(LIVE_PORT);
    const ep = up!.outputs.endpoint.value;
    expect(ep.state).toBe("rolled-back");
    pauses.rollBack = { pauseWindowMs: ep.pauseWindowMs, phases: ep.phases };
    console.log(`roll-back: clients held ${ep.pauseWindowMs} ms; phases ${JSON.stringify(ep.phases)}`);

    // Live has its own rows up to the final snapshot plus what pgbench wrote after the switch
    // back (the writes made on the new live stay there: they are not copied back).
    const onLive = historyVia(LIVE_PORT);
    expect(onLive).toBeGreaterThan(committedBeforePromotion);
    expect(onLive).toBeLessThan(onNewLive + bench.processed);
    // The new live is kept, stopped cleanly.
    expect(datasetExists(NEW_LIVE)).toBe(true);
    const nlDir = `/srv/${NEW_LIVE}/main.pg15`;
    expect(running(nlDir, BIN15)).toBe(false);
    // Live was started again logging where it always logged (read before the promotion stopped it).
    const livePid = fs.readFileSync(`${LIVE_DIR}/postmaster.pid`, "utf8").split("\n")[0];
    expect(fs.readlinkSync(`/proc/${livePid}/fd/2`)).toBe(`/srv/${SRC}/server.log`);
    expect(controlState(nlDir, BIN15)).toBe("shut down");
  });

  it("a promotion that fails during the replay restarts live and resumes clients on it; after the fix it succeeds", async () => {
    fs.writeFileSync(FAIL_FILE, "fail the cut-over replay\n");
    const snapsBefore = snapshotsOf(SRC);
    await setPromote(true);
    const { error, bench, before } = await upUnderLoad("failed promotion");
    expect(error).toBeDefined();
    console.log(`the failed promotion's error:\n${error!.split("\n").find((l) => /error: promote failed/.test(l))?.trim()}`);
    expect(error).toMatch(/replay gate/);
    expect(error).toMatch(/clients were resumed and are on the old targets \(app -> \/var\/run\/postgresql:28000\/app, postgres -> \/var\/run\/postgresql:28000\/postgres\)/);
    expect(error).toMatch(/Undone, in reverse order: clone, final snapshot, stop live cleanly/);
    expectCleanRun(bench, "the failed promotion");

    // Clients are on PostgreSQL 13 (restarted), every row is there, new writes work.
    expect(served()).toBeLessThan(140000);
    expect(servedPort()).toBe(LIVE_PORT);
    expect(running(LIVE_DIR, BIN13)).toBe(true);
    // Restarted the way it was started, logging where it always logged.
    const livePid = fs.readFileSync(`${LIVE_DIR}/postmaster.pid`, "utf8").split("\n")[0];
    expect(fs.readlinkSync(`/proc/${livePid}/fd/2`)).toBe(`/srv/${SRC}/server.log`);
    expect(historyVia(LIVE_PORT)).toBe(before + bench.processed);
    expect(viaBouncer("INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (1, 1, 1, 0, now()) RETURNING 'ok'")).toBe("ok");
    // The state still says rolled back: nothing was switched.
    expect((await cutOverState()).state).toBe("rolled-back");
    // The attempt's half-made clone and its final snapshot were removed once clients had resumed.
    const attempt = `${NEW_LIVE}-2`;
    expect(datasetExists(attempt)).toBe(false);
    expect(snapshotsOf(SRC).filter((s) => !snapsBefore.includes(s))).toEqual([]);

    // The fix, then the same reviewed change again.
    fs.rmSync(FAIL_FILE);
    const t0 = Date.now();
    const out = collector();
    const up = await stack.up({ onOutput: out.onOutput });
    timings["pulumi up: promote again (no load)"] = `${((Date.now() - t0) / 1000).toFixed(1)} s`;
    expect(up.summary.result).toBe("succeeded");
    const ep = up.outputs.endpoint.value;
    expect(ep.state).toBe("promoted");
    pauses.promoteAgain = { pauseWindowMs: ep.pauseWindowMs, phases: ep.phases };
    expect(served()).toBeGreaterThanOrEqual(150000);
    // The same generation's name is taken again; the first new live is still kept.
    expect((await cutOverState()).newLiveDataset).toBe(attempt);
    expect(datasetExists(`${NEW_LIVE}-3`)).toBe(false);
    expect(datasetExists(NEW_LIVE)).toBe(true);
    expect(snapshotsOf(SRC)).toContain(ep.finalSnapshot);
  });

  it("destroy hands over: PgBouncer keeps serving the promoted PostgreSQL 15", async () => {
    const rowsBefore = Number(viaBouncer("SELECT count(*) FROM pgbench_history"));
    const out = collector();
    const t0 = Date.now();
    const d = await stack.destroy({ onOutput: out.onOutput });
    timings["pulumi destroy (hand-over)"] = `${((Date.now() - t0) / 1000).toFixed(1)} s`;
    expect(d.summary.result).toBe("succeeded");
    expect(out.text()).toMatch(/hand-over: app stays on PostgreSQL 15/);
    // The endpoint still answers, on PostgreSQL 15, with every row.
    expect(served()).toBeGreaterThanOrEqual(150000);
    expect(servedPort()).toBe(NEW_LIVE_PORT);
    expect(Number(viaBouncer("SELECT count(*) FROM pgbench_history"))).toBe(rowsBefore);
    expect(datasetExists(`${NEW_LIVE}-2`)).toBe(true);
    // The rehearsal itself is gone; the old live is intact and stopped.
    expect(datasetExists(`${POOL}/rehearsals/pg13-to-15`)).toBe(false);
    expect(controlState(LIVE_DIR, BIN13)).toBe("shut down");
    expect(datasetExists(SRC)).toBe(true);
    await stack.workspace.removeStack(STACK);
  });
});
