/**
 * Promotion with `method: "logical"` end to end, nothing mocked: the real Pulumi engine runs
 * test/fixtures/promotion-program (an UpgradeRehearsal and a Promotion from stack config)
 * against a "live" PostgreSQL 13 on a zfs-fuse pool (scripts/live-postgres.sh, with a second
 * database `shop`), upgrades to the real PostgreSQL 15, and moves clients that reach every
 * database through a real PgBouncer (transaction pooling, trust on loopback).
 *
 * The user's changes for the method are made by the TEST, as a DBA would: `wal_level =
 * logical` (a restart of live, before the rehearsal) and a replica identity for
 * pgbench_history (after preview named it).
 *
 * In order, one stack: rehearse -> preview refuses (a table without a key, named) -> DDL on
 * live while the clone is prepared: refused, live serving, nothing left -> promote under
 * pgbench -> roll back under pgbench (the new live's writes kept) -> destroy (nothing of ours
 * on live).
 *
 * Pool `uslc2`; PostgreSQL ports 29400..29423; PgBouncer port 29490.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { destroyPoolByName, sh } from "../harness/zfs";
import { crashMessage, keepCrashLogsUnder, sleep, stopServersUnder, stopBouncerIn } from "../harness/postgres";
import { collector, fileBackend, fixtureProgram, openStack, REPO, tempDir, TestBackend } from "../harness/pulumi";
import { startPgbench, type PgbenchResult, type PgbenchRun } from "../harness/pgbench";

const POOL = "uslc2";
const LIVE_PORT = 29400;
const REHEARSAL_PORT = 29410; // pg_upgrade's private servers use 29411..29413
const NEW_LIVE_PORT = 29420; // the conversion uses 29421, pg_upgrade 29422, 29423
const BOUNCER_PORT = 29490;
const BOUNCER_NAME = "uslc";
const BOUNCER_DIR = `/var/lib/understudy/pgbouncer/${BOUNCER_NAME}`;
const SRC = `${POOL}/pg13`;
const LIVE_DIR = `/srv/${POOL}/pg13/main`;
const SOCK = "/var/run/postgresql";
const BIN13 = "/usr/lib/postgresql/13/bin";
const BIN15 = "/usr/lib/postgresql/15/bin";
const STACK = "lc";
const LIVE = path.join(REPO, "scripts/live-postgres.sh");
const DBS = ["app", "postgres", "shop"];
/** pgbench runs this long (s) during a promotion and during a roll-back; each `pulumi up` must finish inside it. */
const PROMOTE_SECONDS = Number(process.env.UNDERSTUDY_TEST_PGBENCH_SECONDS ?? 110);
const ROLLBACK_SECONDS = 45;

let backend: TestBackend;
let program: string;
let reportDir: string;
let stack: Awaited<ReturnType<typeof openStack>>;
const children: ChildProcess[] = [];
const timings: Record<string, string> = {};
const measured: Record<string, unknown> = {};

// ------------------------------------------------------------------------------ helpers

function psql(host: string, port: number, sql: string, db = "app"): string {
  return sh(["runuser", "-u", "postgres", "--", `${BIN15}/psql`, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", host, "-p", String(port), "-d", db, "-c", sql]).trim();
}
const viaBouncer = (sql: string, db = "app") => psql("127.0.0.1", BOUNCER_PORT, sql, db);
const servedPort = (db = "app") => Number(viaBouncer("SELECT current_setting('port')", db));
const historyVia = (port: number) => Number(psql(SOCK, port, "SELECT count(*) FROM pgbench_history"));

/** Everything of any replication on live, as a DBA would look (ours are all named understudy_*). */
function liveReplicationState(): Record<string, string> {
  return {
    slots: psql(SOCK, LIVE_PORT, "SELECT coalesce(string_agg(slot_name, ','), '') FROM pg_replication_slots", "postgres"),
    publications: DBS.map((d) => psql(SOCK, LIVE_PORT, "SELECT coalesce(string_agg(pubname, ','), '') FROM pg_publication", d)).join(""),
    subscriptions: psql(SOCK, LIVE_PORT, "SELECT coalesce(string_agg(subname, ','), '') FROM pg_subscription", "postgres"),
    settings: psql(SOCK, LIVE_PORT, "SELECT coalesce(string_agg(array_to_string(setconfig, ' '), ','), '') FROM pg_db_role_setting", "postgres"),
  };
}
const NOTHING = { slots: "", publications: "", subscriptions: "", settings: "" };


/** pgbench (tpcb-like, 4 clients, rate-limited: the machine is shared) through PgBouncer. */
function pgbench(seconds: number): PgbenchRun {
  return startPgbench([`${BIN15}/pgbench`, "-h", "127.0.0.1", "-p", String(BOUNCER_PORT), "-n", "-c", "4", "-j", "2", "-R", "100", "-T", String(seconds), "app"], { asUser: "postgres", children });
}

async function waitForCommits(port: number, from: number): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if (historyVia(port) > from + 20) return;
    await sleep(100);
  }
  throw new Error("pgbench did not commit through PgBouncer within 10 s");
}

function expectCleanRun(r: PgbenchResult, what: string): void {
  console.log(`[logical-promotion] pgbench during ${what}: ${r.output.split("\n").filter((l) => /processed|failed|tps|latency average|abort/.test(l)).join(" | ")}`);
  // A server crash is the worst this test can see: the failure itself says which process died.
  expect(r.output, crashMessage(r.output, `/srv/${POOL}`)).not.toMatch(/aborted|error/i);
  expect(r.failed).toBe(0);
  expect(r.processed).toBeGreaterThan(0);
  expect(r.code).toBe(0);
}

const stopBouncer = () => stopBouncerIn(BOUNCER_DIR);

async function cleanupEverything(): Promise<void> {
  for (const c of children.splice(0)) if (c.exitCode === null) c.kill("SIGKILL");
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
    checks: { checksumTables: ["public.pgbench_branches"] },
    reportDir,
  };
}

async function upUnderLoad(what: string, seconds: number, during?: () => Promise<void>): Promise<{ up?: Awaited<ReturnType<typeof stack.up>>; error?: string; bench: PgbenchResult; log: string; before: number }> {
  const before = Number(viaBouncer("SELECT count(*) FROM pgbench_history"));
  const port = servedPort();
  const bench = pgbench(seconds);
  await waitForCommits(port, before);
  const out = collector();
  const t0 = Date.now();
  let up: Awaited<ReturnType<typeof stack.up>> | undefined;
  let error: string | undefined;
  const side = during?.();
  try {
    up = await stack.up({ onOutput: out.onOutput });
  } catch (e) {
    const err = e as { message?: string; stdout?: string; stderr?: string };
    error = [err.message, err.stdout, err.stderr].filter(Boolean).join("\n");
  }
  await side;
  timings[`pulumi up: ${what}`] = `${((Date.now() - t0) / 1000).toFixed(1)} s`;
  expect(bench.running(), `pulumi up (${what}) outlasted pgbench's ${seconds} s`).toBe(true);
  return { up, error, bench: await bench.done, log: out.text(), before };
}

// ------------------------------------------------------------------------------ lifecycle

beforeAll(async () => {
  const t0 = Date.now();
  await cleanupEverything();
  sh(["bash", LIVE, "up", POOL, String(LIVE_PORT), "2"]);
  // The user's change for the method (a restart of live): never Understudy's.
  psql(SOCK, LIVE_PORT, "ALTER SYSTEM SET wal_level = logical", "postgres");
  // (-l: a server that inherited our stdout would keep execFileSync waiting.)
  sh(["runuser", "-u", "postgres", "--", `${BIN13}/pg_ctl`, "-D", LIVE_DIR, "-l", `/srv/${POOL}/pg13/server.log`, "-w", "-m", "fast", "restart"]);
  // A second application database with a sequence and a keyed table: it moves with the cluster.
  psql(SOCK, LIVE_PORT, "CREATE DATABASE shop", "postgres");
  psql(SOCK, LIVE_PORT, "CREATE TABLE items (id bigserial PRIMARY KEY, name text NOT NULL); INSERT INTO items (name) SELECT 'item ' || g FROM generate_series(1, 100) g", "shop");
  backend = fileBackend();
  program = fixtureProgram("promotion-program");
  reportDir = tempDir("lc-reports");
  timings["setup (live PostgreSQL 13, scale 2, wal_level logical)"] = `${((Date.now() - t0) / 1000).toFixed(1)} s`;
  const t1 = Date.now();
  stack = await openStack(program, STACK, backend, {
    rehearsal: { value: JSON.stringify(rehearsalConfig()) },
    promotion: {
      value: JSON.stringify({
        endpoint: { name: BOUNCER_NAME, listenPort: BOUNCER_PORT, database: "app", authType: "trust" },
        newLive: { port: NEW_LIVE_PORT },
        method: "logical",
        // The varied schema has large objects and a materialized view: the user accepts them by name.
        logical: { accept: ["large-objects", "materialized-views"], maxLagBytes: 1024 * 1024, switchoverTimeoutMs: 120_000 },
      }),
    },
    promote: { value: "false" },
  });
  const up = await stack.up();
  expect(up.summary.result).toBe("succeeded");
  expect(up.outputs.report.value.status).toBe("passed");
  timings["pulumi up: rehearsal (promote=false)"] = `${((Date.now() - t1) / 1000).toFixed(1)} s`;
}, 900_000);

afterAll(async () => {
  keepCrashLogsUnder(`/srv/${POOL}`, "logical-promotion");
  await cleanupEverything();
  for (const d of [backend?.dir, program, reportDir]) if (d) fs.rmSync(d, { recursive: true, force: true });
  console.log("\n[logical-promotion] timings:");
  for (const [k, v] of Object.entries(timings)) console.log(`  ${k.padEnd(56)} ${v}`);
  console.log(`[logical-promotion] measured: ${JSON.stringify(measured, null, 2)}`);
}, 300_000);

// ------------------------------------------------------------------------------ tests

describe("Promotion with method logical, through PgBouncer", () => {
  it("every database of the cluster has its PgBouncer entry, on live", () => {
    for (const db of DBS) expect(servedPort(db)).toBe(LIVE_PORT);
  });

  it("preview refuses a table without a primary key or replica identity, naming it; nothing changes on live", async () => {
    await stack.setConfig("promote", { value: "true" });
    const err = await stack.preview().then(
      () => undefined,
      (e: { message?: string; stdout?: string; stderr?: string }) => [e.message, e.stdout, e.stderr].join("\n"),
    );
    expect(err).toBeDefined();
    console.log(`[logical-promotion] preview refused: ${err!.split("\n").find((l) => /replica identity/.test(l))?.trim()}`);
    expect(err).toMatch(/not ready for the logical method/);
    expect(err).toMatch(/public\.pgbench_history/);
    expect(liveReplicationState()).toEqual(NOTHING);
    expect(servedPort()).toBe(LIVE_PORT);
    // The user's change: an insert-only table gets REPLICA IDENTITY FULL.
    psql(SOCK, LIVE_PORT, "ALTER TABLE pgbench_history REPLICA IDENTITY FULL");
    const ok = await stack.preview();
    expect(ok.changeSummary.update).toBeGreaterThanOrEqual(1);
  });

  it("DDL on live while the clone is prepared: refused before clients are held, live keeps serving, nothing of ours left on live", async () => {
    // The user's DDL lands once our slots exist (after the snapshot): the clone cannot have it.
    let ddlAt = "";
    const ddl = async () => {
      for (let i = 0; i < 1200; i++) {
        if (psql(SOCK, LIVE_PORT, "SELECT count(*) FROM pg_replication_slots WHERE slot_type = 'logical' AND slot_name LIKE 'understudy_%'", "postgres") !== "0") {
          psql(SOCK, LIVE_PORT, "CREATE TABLE added_during_catch_up (id int PRIMARY KEY)");
          ddlAt = new Date().toISOString();
          return;
        }
        await sleep(100);
      }
    };
    const { error, bench, before, log } = await upUnderLoad("promote with DDL during preparation", PROMOTE_SECONDS, ddl);
    expect(ddlAt).not.toBe("");
    expect(error).toBeDefined();
    console.log(`[logical-promotion] refused: ${error!.split("\n").find((l) => /schema changed/.test(l))?.trim()}`);
    // Committed before the start point: the clone has the table but the publication does not
    // (refused before subscribing); after it: the schema differs from the snapshot's (refused at catch-up).
    expect(error).toMatch(/phase "(subscribe|catch up)" failed: the schema changed on live (while the clone was prepared|since the snapshot)/);
    expect(error).toMatch(/added_during_catch_up/);
    expectCleanRun(bench, "the refused promotion");
    // Clients never moved: live served every write, and serves.
    expect(log).not.toMatch(/capture on live/);
    for (const db of DBS) expect(servedPort(db)).toBe(LIVE_PORT);
    expect(historyVia(LIVE_PORT)).toBe(before + bench.processed);
    expect(liveReplicationState()).toEqual(NOTHING);
    psql(SOCK, LIVE_PORT, "DROP TABLE added_during_catch_up");
  });

  it("promotes under pgbench load: 0 failed, every committed transaction on the new live, every database moved, pause measured", async () => {
    const shopSeq = Number(psql(SOCK, LIVE_PORT, "SELECT nextval('items_id_seq')", "shop"));
    const { up, error, bench, before } = await upUnderLoad("promote (logical)", PROMOTE_SECONDS);
    expect(error).toBeUndefined();
    expect(up!.summary.result).toBe("succeeded");
    expectCleanRun(bench, "the logical promotion");
    for (const db of DBS) expect(servedPort(db)).toBe(NEW_LIVE_PORT);
    expect(Number(viaBouncer("SELECT current_setting('server_version_num')"))).toBeGreaterThanOrEqual(150000);
    // Every transaction pgbench committed, before, during and after the switch, is on the new live.
    expect(historyVia(NEW_LIVE_PORT)).toBe(before + bench.processed);
    // Sequences were carried: the next value on the new live follows live's.
    expect(Number(viaBouncer("SELECT nextval('items_id_seq')", "shop"))).toBeGreaterThan(shopSeq);
    const ep = up!.outputs.endpoint.value;
    expect(ep.state).toBe("promoted");
    const phases = ep.phases as Array<{ phase: string; ms: number; held: boolean }>;
    measured.promote = { pauseWindowMs: ep.pauseWindowMs, held: phases.filter((p) => p.held), before: phases.filter((p) => !p.held).map((p) => `${p.phase} ${p.ms}`) };
    console.log(`[logical-promotion] promote: clients held ${ep.pauseWindowMs} ms: ${JSON.stringify(phases.filter((p) => p.held))}`);
    expect(phases.map((p) => p.phase)).toEqual(expect.arrayContaining(["readiness", "convert the clone", "replay upgrade", "subscribe", "catch up", "switch endpoint"]));
    expect(ep.pauseWindowMs).toBeGreaterThan(0);
    expect(ep.pauseWindowMs).toBeLessThan(5000);
    // Live's configuration came along, the zfs-fuse setting of scripts/live-postgres.sh included.
    expect(psql(SOCK, NEW_LIVE_PORT, "SHOW data_sync_retry")).toBe("on");
    // Live still runs, read-only for new sessions, and receives the new live's writes (the way back).
    expect(psql(SOCK, LIVE_PORT, "SHOW default_transaction_read_only")).toBe("on");
    expect(psql(SOCK, LIVE_PORT, "SELECT count(*) FROM pg_subscription", "postgres")).toBe(String(DBS.length));
  });

  it("rolls back under pgbench load: 0 failed, every write made on the new live is on the old live", async () => {
    await stack.setConfig("promote", { value: "false" });
    const { up, error, bench, before, log } = await upUnderLoad("roll back (logical)", ROLLBACK_SECONDS);
    expect(error).toBeUndefined();
    // The way back is a subscription of ours on live: not replication a promotion would drop.
    expect(log).not.toMatch(/would drop/);
    expect(up!.summary.result).toBe("succeeded");
    expectCleanRun(bench, "the logical roll-back");
    for (const db of DBS) expect(servedPort(db)).toBe(LIVE_PORT);
    // `before` was counted on the new live: all of it, and everything since, is on live.
    expect(historyVia(LIVE_PORT)).toBe(before + bench.processed);
    const ep = up!.outputs.endpoint.value;
    expect(ep.state).toBe("rolled-back");
    measured.rollBack = { pauseWindowMs: ep.pauseWindowMs, phases: ep.phases };
    console.log(`[logical-promotion] roll-back: clients held ${ep.pauseWindowMs} ms`);
    // Live is writable again and nothing of ours is on it.
    expect(psql(SOCK, LIVE_PORT, "SHOW default_transaction_read_only")).toBe("off");
    expect(liveReplicationState()).toEqual(NOTHING);
  });

  it("promoted again, then destroyed (hand-over): the new live keeps serving; on the old live nothing of ours but its read-only setting", async () => {
    await stack.setConfig("promote", { value: "true" });
    const t0 = Date.now();
    const up = await stack.up();
    timings["pulumi up: promote again (no load)"] = `${((Date.now() - t0) / 1000).toFixed(1)} s`;
    expect(up.summary.result).toBe("succeeded");
    for (const db of DBS) expect(servedPort(db)).toBe(NEW_LIVE_PORT);
    // The way back exists now: subscriptions on the old live, slots on the new live.
    expect(liveReplicationState().subscriptions).not.toBe("");
    const out = collector();
    const d = await stack.destroy({ onOutput: out.onOutput });
    expect(d.summary.result).toBe("succeeded");
    expect(out.text()).toMatch(/removed: .*subscription/);
    const after = liveReplicationState();
    // The old live's data stops at the cut-over: it stays read-only for new sessions (ours, on purpose).
    expect({ ...after, settings: "" }).toEqual(NOTHING);
    const entries = after.settings.split(",");
    expect(entries.length).toBe(DBS.length);
    for (const e of entries) expect(e).toMatch(/^(?=.*default_transaction_read_only=on)(?=.*understudy\.read_only_u[0-9a-f]+=)/);
    expect(psql(SOCK, NEW_LIVE_PORT, "SELECT count(*) FROM pg_replication_slots", "postgres")).toBe("0");
    for (const db of DBS) expect(servedPort(db)).toBe(NEW_LIVE_PORT);
    await stack.workspace.removeStack(STACK);
  });
});
