/**
 * UpgradeRehearsal with `method: "logical"` end to end, nothing mocked: the real Pulumi
 * engine runs test/fixtures/rehearsal-program against a "live" PostgreSQL 13 on a zfs-fuse
 * pool (scripts/live-postgres.sh) while a pgbench writer commits to it, upgrades the clone to
 * the real PostgreSQL 15, then rehearses the logical cut-over between a stand-in for live
 * (a clone of the snapshot the upgrade started from) and the upgraded clone.
 *
 * Live stays at wal_level = replica throughout: the stand-in gets wal_level = logical itself.
 * While `pulumi up` runs, live is polled for replication slots, publications and
 * subscriptions: there must never be any. Afterwards: the report's logical section has
 * plausible numbers, the stand-in's dataset is gone, the upgraded clone carries nothing of
 * ours and still verifies, live was never restarted.
 *
 * The user's change for the method is made by the TEST, as a DBA would, before the
 * rehearsal: pgbench_history (no primary key) gets REPLICA IDENTITY FULL.
 *
 * Pool `usrl`; PostgreSQL ports 30400..30413 only.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execFile } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { promisify } from "node:util";
import { datasetExists, destroyPoolByName, sh } from "../harness/zfs";
import { sleep, stopServersUnder } from "../harness/postgres";
import { collector, failureOf, fixtureProgram, fileBackend, openStack, REPO, tempDir, TestBackend } from "../harness/pulumi";
import type { RehearsalReport } from "../../providers/rehearsal/report";

const run = promisify(execFile);

const POOL = "usrl";
const LIVE_PORT = 30400;
const REHEARSAL_PORT = 30410; // private servers (and the stand-in) on 30411, pg_upgrade's on 30412, 30413
const SRC = `${POOL}/pg13`;
const SOCK = "/var/run/postgresql";
const BIN13 = "/usr/lib/postgresql/13/bin";
const BIN15 = "/usr/lib/postgresql/15/bin";
const CLONES = `/srv/${POOL}/rehearsals`;
const TAG = "rl";
const CLONE = `${POOL}/rehearsals/${TAG}`;
const STAND_IN = `${POOL}/rehearsals/${TAG}-standin`;
const LIVE = path.join(REPO, "scripts/live-postgres.sh");
const DBS = ["app", "postgres"];
/** The second stack (the refusal): its own clone and ports 30420..30423. */
const TAG2 = "rl2";
const CLONE2 = `${POOL}/rehearsals/${TAG2}`;
const STAND_IN2 = `${POOL}/rehearsals/${TAG2}-standin`;
const REHEARSAL_PORT2 = 30420;

let backend: TestBackend;
let program: string;
let reportRoot: string;
let liveStartedAt: string;
const timings: Record<string, string> = {};

function live(...args: string[]): void {
  sh(["bash", LIVE, ...args]);
}

function psql(port: number, sql: string, db = "app", bin = BIN13): string {
  return sh(["runuser", "-u", "postgres", "--", `${bin}/psql`, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", SOCK, "-p", String(port), "-d", db, "-c", sql]).trim();
}

/** Everything of any replication on live, as a DBA would look. Async: it runs while `pulumi up` does. */
async function liveReplication(): Promise<string> {
  const q = async (sql: string, db: string) =>
    (await run("runuser", ["-u", "postgres", "--", `${BIN13}/psql`, "-X", "-q", "-A", "-t", "-h", SOCK, "-p", String(LIVE_PORT), "-d", db, "-c", sql], { cwd: "/" })).stdout.trim();
  const parts = [
    `slots=${await q("SELECT coalesce(string_agg(slot_name, ','), '') FROM pg_replication_slots", "postgres")}`,
    ...(await Promise.all(DBS.map(async (d) => `${d}.publications=${await q("SELECT coalesce(string_agg(pubname, ','), '') FROM pg_publication", d)}`))),
    `subscriptions=${await q("SELECT coalesce(string_agg(subname, ','), '') FROM pg_subscription", "postgres")}`,
    `writerTable=${await q("SELECT coalesce(to_regclass('public.understudy_rehearsal_writer')::text, '')", "app")}`,
  ];
  return parts.join(" ");
}
const NOTHING = "slots= app.publications= postgres.publications= subscriptions= writerTable=";

/** Polls live every 200 ms until stopped; returns every state seen that was not NOTHING, and the number of polls. */
function pollLive(): { stop: () => Promise<{ seen: string[]; polls: number }> } {
  const seen: string[] = [];
  let polls = 0;
  let going = true;
  const loop = (async () => {
    while (going) {
      try {
        const s = await liveReplication();
        polls++;
        if (s !== NOTHING) seen.push(s);
      } catch (e) {
        seen.push(`poll failed: ${(e as Error).message}`);
      }
      await sleep(200);
    }
  })();
  return {
    stop: async () => {
      going = false;
      await loop;
      return { seen, polls };
    },
  };
}

function rehearsalConfig(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    source: { dataset: SRC, pgdata: "main", version: 13, port: LIVE_PORT, socketDir: SOCK },
    clone: { dataset: CLONE },
    to: 15,
    postgres: { port: REHEARSAL_PORT, database: "app" },
    reportDir: path.join(reportRoot, TAG),
    method: "logical",
    // The varied schema has large objects and a materialized view: accepted by name, as for a promotion.
    logical: { accept: ["large-objects", "materialized-views"], backlogMs: 2000, measureMs: 3000 },
    ...extra,
  };
}

function readReport(tag = TAG): { json: RehearsalReport; markdown: string; html: string } {
  const dir = path.join(reportRoot, tag);
  const f = (ext: string) => fs.readFileSync(path.join(dir, `${tag}.${ext}`), "utf8");
  return { json: JSON.parse(f("json")), markdown: f("md"), html: f("html") };
}

function time(label: string, t0: number): void {
  timings[label] = `${((Date.now() - t0) / 1000).toFixed(1)} s`;
}

async function cleanupEverything(): Promise<void> {
  try {
    live("stop-writer", POOL);
  } catch (e) {
    console.error(`cleanup: stop-writer: ${(e as Error).message}`);
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
  await cleanupEverything();
  live("up", POOL, String(LIVE_PORT), "2");
  // The DBA's change for the logical method: the insert-only table without a key gets a replica identity.
  psql(LIVE_PORT, "ALTER TABLE pgbench_history REPLICA IDENTITY FULL");
  live("writer", POOL, String(LIVE_PORT), "50");
  liveStartedAt = psql(LIVE_PORT, "SELECT pg_postmaster_start_time()::text");
  const h0 = Number(psql(LIVE_PORT, "SELECT count(*) FROM pgbench_history"));
  for (let i = 0; i < 50 && Number(psql(LIVE_PORT, "SELECT count(*) FROM pgbench_history")) <= h0; i++) await sleep(100);
  time("setup (live PostgreSQL 13, scale 2, writer 50 tx/s)", t0);
}, 300_000);

afterAll(async () => {
  await cleanupEverything();
  for (const d of [backend?.dir, program, reportRoot]) if (d) fs.rmSync(d, { recursive: true, force: true });
  console.log("\ntimings:");
  for (const [k, v] of Object.entries(timings)) console.log(`  ${k.padEnd(60)} ${v}`);
}, 300_000);

describe("UpgradeRehearsal with method logical", () => {
  let stack: Awaited<ReturnType<typeof openStack>>;

  it("rehearses the logical cut-over on a stand-in, never on live, and reports catch-up, apply lag and the predicted pause", async () => {
    expect(psql(LIVE_PORT, "SHOW wal_level", "postgres")).toBe("replica");
    stack = await openStack(program, TAG, backend, { rehearsal: { value: JSON.stringify(rehearsalConfig()) } });
    const out = collector();
    const poll = pollLive();
    const t0 = Date.now();
    let polled: { seen: string[]; polls: number };
    try {
      await stack.up({ onOutput: out.onOutput });
    } finally {
      polled = await poll.stop();
    }
    time("pulumi up (rehearsal + logical)", t0);
    console.log(`[rehearsal-logical] live polled ${polled.polls} times during pulumi up`);
    // Live: nothing of any replication, at any point during the run.
    expect(polled.seen).toEqual([]);
    expect(polled.polls).toBeGreaterThan(20);
    expect(await liveReplication()).toBe(NOTHING);
    expect(psql(LIVE_PORT, "SELECT pg_postmaster_start_time()::text")).toBe(liveStartedAt);
    expect(psql(LIVE_PORT, "SHOW wal_level", "postgres")).toBe("replica");

    // The stand-in is gone; the clone is there.
    expect(datasetExists(STAND_IN)).toBe(false);
    expect(datasetExists(CLONE)).toBe(true);

    // The report's logical section.
    const { json, markdown, html } = readReport();
    expect(json.status).toBe("passed");
    const l = json.logicalCutover!;
    console.log(`[rehearsal-logical] ${JSON.stringify(l, null, 1)}`);
    expect(l.status).toBe("ok");
    expect(l.standIn?.volume).toBe(STAND_IN);
    expect(l.standIn?.snapshot).toMatch(new RegExp(`^${CLONE}@s\\d\\d-check$`));
    expect(l.databases).toEqual(expect.arrayContaining(["app", "postgres"]));
    // pgbench at 50 tx/s writes WAL: live's rate was measured (a read), and the writer ran near it.
    expect(l.liveWal!.bytesPerSecond).toBeGreaterThan(1000);
    expect(l.writer!.targetBytesPerSecond).toBeGreaterThanOrEqual(l.liveWal!.bytesPerSecond);
    expect(l.writer!.achievedBytesPerSecond).toBeGreaterThan(0.5 * l.writer!.targetBytesPerSecond);
    expect(l.writer!.achievedBytesPerSecond).toBeLessThan(3 * l.writer!.targetBytesPerSecond);
    expect(l.writer!.rows).toBeGreaterThan(100);
    expect(l.catchUp!.backlogBytes).toBeGreaterThan(0);
    expect(l.catchUp!.ms).toBeGreaterThan(0);
    expect(l.catchUp!.bytesPerSecond).toBeGreaterThan(0);
    expect(l.applyLag!.samples).toBeGreaterThan(3);
    expect(l.applyLag!.maxBytes).toBeGreaterThanOrEqual(l.applyLag!.meanBytes);
    expect(l.applyLag!.maxBytes).toBeLessThan(64 * 1024 * 1024);
    expect(l.applyLag!.meanSeconds).toBeGreaterThanOrEqual(0);
    expect(l.applyLag!.maxSeconds).toBeLessThan(30);
    expect(l.applyLag!.secondsFrom).toMatch(/^(replay_lag|bytes-at-write-rate)$/);
    // The promotion's gate before the hold, made the same way: every database's apply worker
    // running, the lag under the limit. (PostgreSQL 15's launcher starts the second database's
    // worker about 5 s after the first; without the gate the hold began before it had started.)
    expect(l.gate!.workers).toBe(l.databases!.length);
    expect(l.gate!.lagBytes).toBeLessThanOrEqual(l.gate!.maxLagBytes);
    expect(l.held).toHaveLength(2);
    for (const h of l.held!) expect(h.ms).toBeGreaterThanOrEqual(0);
    // The held wait past the marker, sequences and finish, with every worker running: as in a
    // promotion (117-174 ms measured there), far below the ~1.2 s it took while a worker was
    // still starting. 600 ms leaves room for a loaded 2-core machine.
    expect(l.held![1].ms).toBeLessThan(600);
    const held = l.held!.reduce((t, h) => t + h.ms, 0);
    expect(l.predicted!.totalMs).toBeGreaterThan(held);
    expect(l.predicted!.totalMs).toBeLessThan(held + 100);
    expect(l.predicted!.totalMs).toBeLessThan(5000);
    expect(l.warnings!.some((w) => w.startsWith("[wal_level]"))).toBe(true);
    expect(markdown).toMatch(/## Predicted logical cut-over: \d/);
    expect(markdown).toContain("Rehearsed on a stand-in for live, not on live");
    expect(markdown).toContain("catch-up:");
    expect(markdown).toContain("apply lag under the writer");
    expect(html).toContain("Predicted logical cut-over");
    // The replay prediction is still there, unchanged in kind.
    expect(json.predictedCutover.totalMs).toBeGreaterThan(0);

    // The upgraded clone: nothing of ours, running, and it verifies as before.
    const up = (sql: string, db = "app") => psql(REHEARSAL_PORT, sql, db, BIN15);
    expect(up("SELECT count(*) FROM pg_subscription", "postgres")).toBe("0");
    expect(up("SELECT coalesce(to_regclass('public.understudy_rehearsal_writer')::text, '')")).toBe("");
    expect(up("SHOW max_logical_replication_workers", "postgres")).toBe("0");
    const verify = json.checks;
    expect(verify.length).toBeGreaterThan(0);
    expect(verify.filter((c) => c.status === "fail")).toEqual([]);
    // Row counts of tables pgbench does not touch, counted again now (after the logical rehearsal) against the verification's.
    const recount = verify.filter((x) => x.kind === "row-count" && /^rows app\.public\.(customers|invoice_numbers|pgbench_branches)$/.test(x.name));
    expect(recount.length).toBeGreaterThan(0);
    for (const c of recount) expect(up(`SELECT count(*) FROM ${c.name.replace(/^rows app\./, "")}`), c.name).toBe(c.actual);
  }, 900_000);

  it("destroy leaves the pool as it was and nothing on live", async () => {
    await stack.destroy({ onOutput: () => undefined });
    expect(datasetExists(CLONE)).toBe(false);
    expect(datasetExists(STAND_IN)).toBe(false);
    expect(await liveReplication()).toBe(NOTHING);
    expect(psql(LIVE_PORT, "SELECT pg_postmaster_start_time()::text")).toBe(liveStartedAt);
  }, 300_000);

  it("refuses what a promotion would refuse (a table without a key, named), removes what it made, and leaves live untouched", async () => {
    // The DBA's change undone: pgbench_history has no primary key and no replica identity again.
    psql(LIVE_PORT, "ALTER TABLE pgbench_history REPLICA IDENTITY DEFAULT");
    const cfg = rehearsalConfig({ clone: { dataset: CLONE2 }, postgres: { port: REHEARSAL_PORT2, database: "app" }, reportDir: path.join(reportRoot, TAG2) });
    const s2 = await openStack(program, TAG2, backend, { rehearsal: { value: JSON.stringify(cfg) } });
    const poll = pollLive();
    const t0 = Date.now();
    let message: string;
    let polled: { seen: string[]; polls: number };
    try {
      message = await failureOf(() => s2.up({ onOutput: () => undefined }));
    } finally {
      polled = await poll.stop();
    }
    time("pulumi up (refused at the logical part)", t0);
    expect(message).toMatch(/the logical cut-over rehearsal failed/);
    expect(message).toMatch(/pgbench_history/);
    expect(message).toMatch(/Live was not touched/);
    expect(polled.seen).toEqual([]);
    expect(await liveReplication()).toBe(NOTHING);
    expect(datasetExists(STAND_IN2)).toBe(false);
    const { json, markdown } = readReport(TAG2);
    expect(json.logicalCutover?.status).toBe("failed");
    expect(markdown).toContain("## Predicted logical cut-over: not measured");
    expect(markdown).toMatch(/pgbench_history/);
    // The upgraded clone: running with its own settings again, nothing of ours on it.
    const up = (sql: string, db = "app") => psql(REHEARSAL_PORT2, sql, db, BIN15);
    expect(up("SHOW max_logical_replication_workers", "postgres")).toBe("0");
    expect(up("SELECT count(*) FROM pg_subscription", "postgres")).toBe("0");
    expect(up("SELECT coalesce(to_regclass('public.understudy_rehearsal_writer')::text, '')")).toBe("");
    await s2.destroy({ onOutput: () => undefined });
    expect(datasetExists(CLONE2)).toBe(false);
    expect(psql(LIVE_PORT, "SELECT pg_postmaster_start_time()::text")).toBe(liveStartedAt);
  }, 900_000);
});
