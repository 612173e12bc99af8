/**
 * An undone promotion puts newLive.dataDirLink back exactly as it was, nothing mocked: the
 * real Pulumi engine runs test/fixtures/promotion-program against a Debian cluster `13/uslu`
 * (pg_createcluster, its data directory on a zfs-fuse dataset, started by pg_ctlcluster),
 * rehearses 13 -> 15, and promotes through a real PgBouncer while pgbench writes through it,
 * with the new live as Debian cluster 15/uslu (newLive.dataDirLink /var/lib/postgresql/15/uslu,
 * pg_ctlcluster 15 uslu start/stop; /etc/postgresql/15/uslu prepared as the README says).
 *
 * Every attempt fails after the link was re-pointed: the rehearsal's assertion
 * `current_setting('port') <> '30820'` passes on the rehearsal's clone (port 30810) and fails
 * on the new live (port 30820), in the held `verify` phase, after the replayed `start` step
 * pointed the link at the attempt's generation and pg_ctlcluster started it there. The attempt
 * is undone: pg_ctlcluster stops 15/uslu (the link still on it), the link is put back, clients
 * resume on live, the clone is removed.
 *
 * In order, one stack: the link absent -> an attempt fails -> the link absent again (not
 * dangling at the removed clone), live serves, no client error; the link pointing at another
 * directory (a previous generation) -> an attempt fails -> the link points there again.
 *
 * Pool `uslu`, live on 30800, the rehearsal on 30810-30813, the new live on 30820-30823,
 * PgBouncer on 30850.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { sh } from "../harness/zfs";
import { sleep } from "../harness/postgres";
import { collector, failureOf, fileBackend, fixtureProgram, openStack, tempDir, type TestBackend } from "../harness/pulumi";
import { startPgbench, type PgbenchRun } from "../harness/pgbench";
import { BIN15, cleanupDebian, createDebianLive, cutOverState, debianPromotionConfig, debianRehearsalConfig, linkOf, pidFileOf, prepareDebianNewLive, servedPortOf, viaBouncerOf, type DebianFixture } from "../harness/debian-cluster";

const POOL = "uslu";
const CLUSTER = "uslu";
const LIVE_PORT = 30800;
const REHEARSAL_PORT = 30810;
const NEW_LIVE_PORT = 30820;
const BOUNCER_PORT = 30850;
const BOUNCER_NAME = "uslu";
const STACK = "lu";
const FIXTURE: DebianFixture = { pool: POOL, cluster: CLUSTER, livePort: LIVE_PORT, rehearsalPort: REHEARSAL_PORT, newLivePort: NEW_LIVE_PORT, bouncerName: BOUNCER_NAME, bouncerPort: BOUNCER_PORT, stack: STACK };
const LINK = linkOf(FIXTURE);
const PIDFILE = pidFileOf(FIXTURE);
const NEW_LIVE_MNT = `/srv/${POOL}/rehearsals/${STACK}-go-live-live-pg15`;
const PGBENCH_SECONDS = Number(process.env.UNDERSTUDY_TEST_PGBENCH_SECONDS ?? 60);

let backend: TestBackend;
let program: string;
let stack: Awaited<ReturnType<typeof openStack>>;
const children: ChildProcess[] = [];
const cmdlogDir = tempDir("uslu-cmdlog");
const cmdlog = path.join(cmdlogDir, "commands.jsonl");
const reportDir = tempDir("uslu-reports");

const viaBouncer = viaBouncerOf(FIXTURE);
const servedPort = servedPortOf(FIXTURE);

function pgbench(): PgbenchRun {
  return startPgbench([`${BIN15}/pgbench`, "-h", "127.0.0.1", "-p", String(BOUNCER_PORT), "-n", "-c", "2", "-T", String(PGBENCH_SECONDS), "app"], { asUser: "postgres", children });
}

/**
 * `pulumi up` while pgbench writes through PgBouncer; the promotion attempt must fail (the
 * assertion on the new live's port) and be undone: no client error, and every transaction
 * pgbench counted is in the table clients see afterwards (live's). Returns the engine's output.
 */
async function failingUpUnderLoad(what: string): Promise<string> {
  const before = Number(viaBouncer("SELECT count(*) FROM pgbench_history"));
  const bench = pgbench();
  for (let i = 0; i < 100 && Number(viaBouncer("SELECT count(*) FROM pgbench_history")) < before + 20; i++) await sleep(100);
  const out = collector();
  const t0 = Date.now();
  const message = await failureOf(() => stack.up({ onOutput: out.onOutput }));
  console.log(`pulumi up (${what}, fails): ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  expect(message).toMatch(/phase .verify. failed: assertion .not on the new live port/);
  expect(bench.running(), `pulumi up (${what}) outlasted pgbench's ${PGBENCH_SECONDS} s`).toBe(true);
  const r = await bench.done;
  console.log(`pgbench during ${what}: processed ${r.processed}, failed ${r.failed}`);
  expect(r.output).not.toMatch(/aborted|error/i);
  expect(r.failed).toBe(0);
  expect(r.code).toBe(0);
  expect(Number(viaBouncer("SELECT count(*) FROM pgbench_history"))).toBe(before + r.processed);
  return `${out.text()}\n${message}`;
}

async function cleanup(): Promise<void> {
  await cleanupDebian(FIXTURE, children);
}

const promotionConfig = debianPromotionConfig(FIXTURE);

beforeAll(async () => {
  await cleanup();
  createDebianLive(FIXTURE);
  prepareDebianNewLive(FIXTURE);
  backend = fileBackend();
  program = fixtureProgram("promotion-program");
  stack = await openStack(program, STACK, backend, {
    rehearsal: {
      value: JSON.stringify(
        debianRehearsalConfig(FIXTURE, reportDir, {
          // Passes on the rehearsal's clone, fails on the new live: every promotion attempt fails in `verify`, after `start`.
          checks: { assertions: [{ name: "not on the new live port", sql: `SELECT current_setting('port') <> '${NEW_LIVE_PORT}'` }] },
        }),
      ),
    },
    promotion: { value: JSON.stringify(promotionConfig) },
    promote: { value: "false" },
  });
  stack.workspace.envVars.UNDERSTUDY_COMMAND_LOG = cmdlog;
  const up = await stack.up();
  expect(up.summary.result).toBe("succeeded");
  expect(up.outputs.report.value.status).toBe("passed");
}, 900_000);

afterAll(async () => {
  await cleanup();
  for (const d of [backend?.dir, program, cmdlogDir, reportDir]) if (d) fs.rmSync(d, { recursive: true, force: true });
}, 300_000);

describe("an undone promotion puts newLive.dataDirLink back (Debian cluster 15/uslu)", () => {
  const dir = `${NEW_LIVE_MNT}/main.pg15`;

  /** What every undone attempt leaves: live serving, 15/uslu not running, the attempt's clone gone, the journal closed as undone. */
  async function expectUndone(log: string, restored: string): Promise<void> {
    // The attempt got as far as re-pointing the link and starting 15/uslu on it ...
    expect(log).toMatch(new RegExp(`${LINK} -> ${dir}`));
    expect(log).toMatch(/starting the new live with \["pg_ctlcluster","15","uslu","start"\]/);
    // ... which was stopped with pg_ctlcluster (the link still on it) before the link went back.
    expect(log).toMatch(/stopping the new live with \["pg_ctlcluster","15","uslu","stop"\]/);
    expect(log).toContain(restored);
    expect(log.indexOf("stopping the new live with")).toBeLessThan(log.indexOf(restored));
    expect(servedPort()).toBe(LIVE_PORT);
    expect((await cutOverState(stack)).state).toBe("serving-old");
    expect(fs.existsSync(NEW_LIVE_MNT)).toBe(false);
    expect(fs.existsSync(PIDFILE)).toBe(false);
    expect(fs.existsSync(`${LINK}.understudy-new`)).toBe(false);
    const journal = JSON.parse(fs.readFileSync(`/var/lib/understudy/cutover/promotion-program_${STACK}_Promotion_${STACK}-go-live.json`, "utf8")) as { finished?: { outcome: string } };
    expect(journal.finished?.outcome).toBe("undone");
  }

  it("the link absent before: an attempt that fails after re-pointing it leaves it absent (not dangling at the removed clone)", async () => {
    expect(fs.existsSync(LINK)).toBe(false);
    await stack.setConfig("promote", { value: "true" });
    const log = await failingUpUnderLoad("first attempt");
    expect(fs.lstatSync(LINK, { throwIfNoEntry: false }), `${LINK} is still there`).toBeUndefined();
    await expectUndone(log, `${LINK} removed (the undone attempt had created it`);
  });

  it("the link on a previous generation: a failed attempt points it there again, exactly", async () => {
    // Stands for a generation a roll-back kept (a real directory outside live).
    const prev = `/srv/${POOL}/prev-gen/main.pg15`;
    sh(["install", "-d", "-o", "postgres", "-g", "postgres", "-m", "0700", prev]);
    fs.rmSync(LINK, { force: true });
    fs.symlinkSync(prev, LINK);
    const log = await failingUpUnderLoad("second attempt");
    expect(fs.lstatSync(LINK).isSymbolicLink()).toBe(true);
    expect(fs.readlinkSync(LINK)).toBe(prev);
    await expectUndone(log, `${LINK} -> ${prev} again`);
  });
});
