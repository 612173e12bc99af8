/**
 * `newLive.dataDirLink` WITHOUT `newLive.startCommand`/`stopCommand`, nothing mocked: the real
 * Pulumi engine runs test/fixtures/promotion-program against a Debian cluster `13/usnk`
 * (pg_createcluster, its data directory on a zfs-fuse dataset, started by pg_ctlcluster),
 * rehearses 13 -> 15, and promotes with `method: "replay"` through a real PgBouncer while
 * pgbench writes through it, with only
 *   newLive: { port, dataDirLink: /var/lib/postgresql/15/usnk }
 * so the replayed `start` step starts the new live with `pg_ctl` — but only after pointing the
 * link at the new generation (before the fix, the link was never pointed: the replayed start
 * went straight to pg_ctl and the link stayed absent).
 *
 * In order, one stack: the link absent -> promote under load (0 failed transactions, every
 * commit on the new live, the link -> the generation's data directory, the new live's
 * postmaster and `SHOW data_directory` on what the link resolves to, live stopped cleanly and
 * its files untouched) -> roll back (README: "A roll-back leaves the link as it is (the new
 * live stopped)": the link still on the rolled-back generation, that generation stopped
 * cleanly, live serving again with its files as the promotion left them).
 *
 * Pool `usnk`, live on 31100, the rehearsal on 31110-31113, the new live on 31120-31123,
 * PgBouncer on 31150.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ChildProcess } from "node:child_process";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import { sh, treeChecksum } from "../harness/zfs";
import { sleep } from "../harness/postgres";
import { collector, fileBackend, fixtureProgram, openStack, tempDir, type TestBackend } from "../harness/pulumi";
import { startPgbench } from "../harness/pgbench";
import { BIN13, BIN15, cleanupDebian, controlState, createDebianLive, cutOverState, debianPromotionConfig, debianPsql, debianRehearsalConfig, linkOf, liveDataOf, servedPortOf, SOCK, viaBouncerOf, type DebianFixture } from "../harness/debian-cluster";

const POOL = "usnk";
const CLUSTER = "usnk";
const LIVE_PORT = 31100;
const REHEARSAL_PORT = 31110;
const NEW_LIVE_PORT = 31120;
const BOUNCER_PORT = 31150;
const BOUNCER_NAME = "usnk";
const STACK = "nk";
const FIXTURE: DebianFixture = { pool: POOL, cluster: CLUSTER, livePort: LIVE_PORT, rehearsalPort: REHEARSAL_PORT, newLivePort: NEW_LIVE_PORT, bouncerName: BOUNCER_NAME, bouncerPort: BOUNCER_PORT, stack: STACK };
const LINK = linkOf(FIXTURE);
const LIVE_DIR = liveDataOf(FIXTURE);
const LIVE_ETC = `/etc/postgresql/13/${CLUSTER}`;
const NEW_LIVE_DIR = `/srv/${POOL}/rehearsals/${STACK}-go-live-live-pg15/main.pg15`;
/** pgbench runs this long; the promotion's `pulumi up` must finish inside it. */
const PGBENCH_SECONDS = Number(process.env.UNDERSTUDY_TEST_PGBENCH_SECONDS ?? 60);

let backend: TestBackend;
let program: string;
let stack: Awaited<ReturnType<typeof openStack>>;
const children: ChildProcess[] = [];
const reportDir = tempDir("usnk-reports");
/** Live's Debian configuration files (sha256) before the promotion. */
let liveEtcBefore: Record<string, string> = {};
/** Live's data directory (treeChecksum) right after the promotion stopped it. */
let liveTreeStopped = "";

const viaBouncer = viaBouncerOf(FIXTURE);
const servedPort = servedPortOf(FIXTURE);

function running(dataDir: string, bin: string): boolean {
  return sh(["runuser", "-u", "postgres", "--", `${bin}/pg_ctl`, "status", "-D", dataDir], { allowFail: true }).includes("server is running");
}

/** sha256 of every file directly in `dir`, by name. */
function filesSha(dir: string): Record<string, string> {
  return Object.fromEntries(
    fs
      .readdirSync(dir)
      .filter((f) => fs.statSync(`${dir}/${f}`).isFile())
      .sort()
      .map((f) => [f, crypto.createHash("sha256").update(fs.readFileSync(`${dir}/${f}`)).digest("hex")]),
  );
}

/** The promotion's configuration: the fixture's (PgBouncer, live under pg_ctlcluster), the new live with the link only. */
function promotionConfig(): Record<string, unknown> {
  const base = debianPromotionConfig(FIXTURE);
  return { ...base, method: "replay", newLive: { port: NEW_LIVE_PORT, dataDirLink: LINK } };
}

beforeAll(async () => {
  await cleanupDebian(FIXTURE, children);
  createDebianLive(FIXTURE);
  // No /etc/postgresql/15/usnk (prepareDebianNewLive): without a start command nothing reads it.
  backend = fileBackend();
  program = fixtureProgram("promotion-program");
  stack = await openStack(program, STACK, backend, {
    rehearsal: { value: JSON.stringify(debianRehearsalConfig(FIXTURE, reportDir)) },
    promotion: { value: JSON.stringify(promotionConfig()) },
    promote: { value: "false" },
  });
  const t0 = Date.now();
  const up = await stack.up();
  console.log(`pulumi up (rehearsal): ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  expect(up.summary.result).toBe("succeeded");
  expect(up.outputs.report.value.status).toBe("passed");
}, 900_000);

afterAll(async () => {
  await cleanupDebian(FIXTURE, children);
  for (const d of [backend?.dir, program, reportDir]) if (d) fs.rmSync(d, { recursive: true, force: true });
}, 300_000);

describe("newLive.dataDirLink without a start/stop command (the new live under pg_ctl, the link kept on it)", () => {
  it("promotes under load: the link is pointed at the new generation before pg_ctl starts it there, 0 failed transactions, live untouched", async () => {
    expect(fs.lstatSync(LINK, { throwIfNoEntry: false }), `${LINK} exists before the promotion`).toBeUndefined();
    expect(servedPort()).toBe(LIVE_PORT);
    liveEtcBefore = filesSha(LIVE_ETC);
    await stack.setConfig("promote", { value: "true" });

    const before = Number(viaBouncer("SELECT count(*) FROM pgbench_history"));
    const bench = startPgbench([`${BIN15}/pgbench`, "-h", "127.0.0.1", "-p", String(BOUNCER_PORT), "-n", "-c", "2", "-T", String(PGBENCH_SECONDS), "app"], { asUser: "postgres", children });
    for (let i = 0; i < 100 && Number(viaBouncer("SELECT count(*) FROM pgbench_history")) < before + 20; i++) await sleep(100);
    const out = collector();
    const t0 = Date.now();
    const up = await stack.up({ onOutput: out.onOutput });
    console.log(`pulumi up (promotion): ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    expect(up.summary.result).toBe("succeeded");
    expect(bench.running(), `pulumi up (promotion) outlasted pgbench's ${PGBENCH_SECONDS} s`).toBe(true);
    const r = await bench.done;
    console.log(`pgbench during the promotion: processed ${r.processed}, failed ${r.failed}`);
    expect(r.output).not.toMatch(/aborted|error/i);
    expect(r.failed).toBe(0);
    expect(r.code).toBe(0);
    const log = out.text();

    // Promoted (replay), clients on the new live with every transaction pgbench counted.
    const st = await cutOverState(stack);
    expect(st.state).toBe("promoted");
    expect(st.newLiveDataDir).toBe(NEW_LIVE_DIR);
    expect(up.outputs.endpoint.value.phases.map((p: { phase: string }) => p.phase)).toContain("replay start");
    expect(servedPort()).toBe(NEW_LIVE_PORT);
    expect(Number(viaBouncer("SELECT current_setting('server_version_num')"))).toBeGreaterThanOrEqual(150000);
    expect(Number(viaBouncer("SELECT count(*) FROM pgbench_history"))).toBe(before + r.processed);

    // The link points at the new generation's data directory (created by the replayed start) ...
    expect(fs.lstatSync(LINK, { throwIfNoEntry: false })?.isSymbolicLink(), `${LINK} is not a symlink after the promotion`).toBe(true);
    expect(fs.readlinkSync(LINK)).toBe(NEW_LIVE_DIR);
    expect(log).toContain(`${LINK} -> ${NEW_LIVE_DIR}`);
    // ... and the new live runs from what it resolves to: its data_directory, its postmaster.pid, the postmaster's cwd.
    expect(debianPsql(SOCK, NEW_LIVE_PORT, "SHOW data_directory")).toBe(fs.realpathSync(LINK));
    const pid = fs.readFileSync(`${LINK}/postmaster.pid`, "utf8").split("\n")[0].trim();
    expect(fs.realpathSync(`/proc/${pid}/cwd`)).toBe(fs.realpathSync(LINK));
    // Started with pg_ctl (no command was given): not pg_ctlcluster.
    expect(log).not.toMatch(/starting the new live with/);
    expect(fs.readFileSync(`/proc/${pid}/cmdline`, "utf8")).not.toContain("config_file=");

    // Live: stopped cleanly by the promotion, its data directory and its /etc files intact; the link is not in it.
    expect(running(LIVE_DIR, BIN13)).toBe(false);
    expect(controlState(LIVE_DIR, BIN13)).toBe("shut down");
    expect(fs.readFileSync(`${LIVE_DIR}/PG_VERSION`, "utf8").trim()).toBe("13");
    expect(filesSha(LIVE_ETC)).toEqual(liveEtcBefore);
    expect(fs.realpathSync(LINK).startsWith(`/srv/${POOL}/live`)).toBe(false);
    liveTreeStopped = treeChecksum(LIVE_DIR);
  });

  it("rolls back: the link stays on the rolled-back generation (README), which is stopped cleanly; live serves again, untouched", async () => {
    // Nothing wrote to live while the new live served.
    expect(liveTreeStopped, "the promotion test did not get as far as live's checksum").not.toBe("");
    expect(treeChecksum(LIVE_DIR)).toBe(liveTreeStopped);
    await stack.setConfig("promote", { value: "false" });
    const out = collector();
    const t0 = Date.now();
    const up = await stack.up({ onOutput: out.onOutput });
    console.log(`pulumi up (roll-back): ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    expect(up.summary.result).toBe("succeeded");
    expect((await cutOverState(stack)).state).toBe("rolled-back");
    expect(servedPort()).toBe(LIVE_PORT);
    expect(Number(viaBouncer("SELECT current_setting('server_version_num')"))).toBeLessThan(140000);

    // README ("The new live as a service"): "A roll-back leaves the link as it is (the new live stopped)".
    expect(fs.lstatSync(LINK).isSymbolicLink()).toBe(true);
    expect(fs.readlinkSync(LINK)).toBe(NEW_LIVE_DIR);
    expect(fs.existsSync(NEW_LIVE_DIR)).toBe(true);
    expect(running(NEW_LIVE_DIR, BIN15)).toBe(false);
    expect(controlState(LINK, BIN15)).toBe("shut down");
    expect(fs.existsSync(`${LINK}/postmaster.pid`)).toBe(false);
    expect(out.text()).not.toMatch(/does not point at/);
    // Live's configuration is as it was before the promotion.
    expect(filesSha(LIVE_ETC)).toEqual(liveEtcBefore);
  });
});
