/**
 * The new live honours the user's start/stop commands (issue 10, item 4's last part), nothing
 * mocked: the real Pulumi engine runs test/fixtures/promotion-program against a Debian
 * cluster `13/usnl` (pg_createcluster, its data directory on a zfs-fuse dataset, started by
 * pg_ctlcluster), rehearses 13 -> 15, and promotes through a real PgBouncer while pgbench
 * writes through it, with
 *   newLive: { dataDirLink: /var/lib/postgresql/15/usnl,
 *              startCommand: pg_ctlcluster 15 usnl start, stopCommand: pg_ctlcluster 15 usnl stop }
 * and the Debian configuration directory /etc/postgresql/15/usnl prepared as the README says
 * (data_directory = the link; the new PGDATA's postgresql.conf included; hba_file and
 * ident_file in it; the new live's port).
 *
 * There is no systemd on this machine: pg_ctlcluster then runs pg_ctl itself (with
 * `-c config_file=/etc/postgresql/15/usnl/postgresql.conf`), which is what the test checks
 * in the postmaster's command line. With systemd, `pg_ctlcluster ... start` would go through
 * the postgresql@15-usnl unit; the configuration the DBA prepares is the same.
 *
 * In order, one stack: preview refused while the link's path is a real directory (nothing
 * run but reads) -> promote (pg_lsclusters shows 15/usnl online on the link, its postmaster
 * is pg_ctlcluster's, the link points at the generation's data directory, no client error)
 * -> roll back (15/usnl stopped by pg_ctlcluster, cleanly; live 13/usnl serves) -> promote
 * again (the link re-pointed at the `-2` generation, started by pg_ctlcluster).
 *
 * Pool `usnl`, live on 30600, the rehearsal on 30610-30613, the new live on 30620-30623,
 * PgBouncer on 30650.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { sh } from "../harness/zfs";
import { sleep } from "../harness/postgres";
import { collector, failureOf, fileBackend, fixtureProgram, openStack, tempDir, type TestBackend } from "../harness/pulumi";
import { readCommandLog } from "../../providers/host/record";
import { startPgbench, type PgbenchRun } from "../harness/pgbench";
import { BIN15, cleanupDebian, controlState, createDebianLive, cutOverState, debianPromotionConfig, debianRehearsalConfig, etc15Of, linkOf, pidFileOf, prepareDebianNewLive, servedPortOf, viaBouncerOf, type DebianFixture } from "../harness/debian-cluster";

const POOL = "usnl";
const CLUSTER = "usnl";
const LIVE_PORT = 30600;
const REHEARSAL_PORT = 30610;
const NEW_LIVE_PORT = 30620;
const BOUNCER_PORT = 30650;
const BOUNCER_NAME = "usnl";
const STACK = "nl";
const FIXTURE: DebianFixture = { pool: POOL, cluster: CLUSTER, livePort: LIVE_PORT, rehearsalPort: REHEARSAL_PORT, newLivePort: NEW_LIVE_PORT, bouncerName: BOUNCER_NAME, bouncerPort: BOUNCER_PORT, stack: STACK };
const LINK = linkOf(FIXTURE);
const ETC15 = etc15Of(FIXTURE);
const PIDFILE = pidFileOf(FIXTURE);
const NEW_LIVE_MNT = `/srv/${POOL}/rehearsals/${STACK}-go-live-live-pg15`;
const PGBENCH_SECONDS = Number(process.env.UNDERSTUDY_TEST_PGBENCH_SECONDS ?? 75);

let backend: TestBackend;
let program: string;
let stack: Awaited<ReturnType<typeof openStack>>;
const children: ChildProcess[] = [];
const cmdlogDir = tempDir("usnl-cmdlog");
const cmdlog = path.join(cmdlogDir, "commands.jsonl");
const reportDir = tempDir("usnl-reports");

const viaBouncer = viaBouncerOf(FIXTURE);
const servedPort = servedPortOf(FIXTURE);

/** pg_lsclusters' line for `<version> usnl`: [ver, cluster, port, status, owner, data dir, log]. */
function lsCluster(version: number): string[] {
  const line = sh(["pg_lsclusters", "-h"]).split("\n").find((l) => l.split(/\s+/)[0] === String(version) && l.split(/\s+/)[1] === CLUSTER);
  return line ? line.trim().split(/\s+/) : [];
}

function pgbench(): PgbenchRun {
  return startPgbench([`${BIN15}/pgbench`, "-h", "127.0.0.1", "-p", String(BOUNCER_PORT), "-n", "-c", "2", "-T", String(PGBENCH_SECONDS), "app"], { asUser: "postgres", children });
}

/**
 * `pulumi up` while pgbench writes through PgBouncer: no client error. `exact`: every
 * transaction pgbench counted is in the table clients see afterwards (a promotion; a
 * roll-back leaves the new live's writes on the new live, by design).
 */
async function upUnderLoad(what: string, exact = true): Promise<string> {
  const before = Number(viaBouncer("SELECT count(*) FROM pgbench_history"));
  const bench = pgbench();
  for (let i = 0; i < 100 && Number(viaBouncer("SELECT count(*) FROM pgbench_history")) < before + 20; i++) await sleep(100);
  const out = collector();
  const t0 = Date.now();
  const up = await stack.up({ onOutput: out.onOutput });
  console.log(`pulumi up (${what}): ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  expect(up.summary.result, what).toBe("succeeded");
  expect(bench.running(), `pulumi up (${what}) outlasted pgbench's ${PGBENCH_SECONDS} s`).toBe(true);
  const r = await bench.done;
  console.log(`pgbench during ${what}: processed ${r.processed}, failed ${r.failed}`);
  expect(r.output).not.toMatch(/aborted|error/i);
  expect(r.failed).toBe(0);
  expect(r.code).toBe(0);
  // Every transaction pgbench counted is in the table clients see now.
  if (exact) expect(Number(viaBouncer("SELECT count(*) FROM pgbench_history"))).toBe(before + r.processed);
  return out.text();
}

/** The postmaster of the new live on `dataDir`: it is pg_ctlcluster's (its external pid file, its config_file). */
function expectStartedByPgCtlcluster(dataDir: string): void {
  const pid = fs.readFileSync(`${dataDir}/postmaster.pid`, "utf8").split("\n")[0].trim();
  expect(fs.readFileSync(PIDFILE, "utf8").trim()).toBe(pid);
  const cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").join(" ");
  expect(cmdline).toContain(`config_file=${ETC15}/postgresql.conf`);
  expect(fs.realpathSync(`/proc/${pid}/cwd`)).toBe(dataDir);
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
    rehearsal: { value: JSON.stringify(debianRehearsalConfig(FIXTURE, reportDir)) },
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

describe("the new live as Debian cluster 15/usnl, started and stopped by pg_ctlcluster", () => {
  it("refuses in preview a dataDirLink that is a real directory, naming the field; nothing but reads ran", async () => {
    sh(["install", "-d", "-o", "postgres", "-m", "0700", LINK]);
    fs.writeFileSync(`${LINK}/keep-me`, "a real directory\n");
    try {
      await stack.setConfig("promote", { value: "true" });
      fs.rmSync(cmdlog, { force: true });
      const message = await failureOf(() => stack.preview());
      expect(message).toMatch(new RegExp(`newLive.dataDirLink: ${LINK} exists and is not a symlink`));
      expect(fs.lstatSync(LINK).isDirectory()).toBe(true);
      expect(fs.readFileSync(`${LINK}/keep-me`, "utf8")).toBe("a real directory\n");
      const reads = new Set(["readlink", "find", "zfs", "cat", "psql", "test", "head", "stat", "pg_controldata", "pg_ctl", "pg_isready", "postgres"]);
      const progs = readCommandLog(cmdlog).map((c) => {
        const a = c.argv[0] === "runuser" || c.argv[0] === "sudo" ? c.argv.slice(c.argv.indexOf("--") + 1) : c.argv;
        const argv = a[0] === "env" ? a.slice(a.findIndex((x, i) => i > 0 && !x.includes("="))) : a;
        return { prog: path.basename(argv[0]), argv };
      });
      expect(progs.length).toBeGreaterThan(0);
      expect(progs.filter((p) => !reads.has(p.prog) || (p.prog === "zfs" && !["get", "list"].includes(p.argv[1])) || (p.prog === "pg_ctl" && p.argv[1] !== "status"))).toEqual([]);
      expect(lsCluster(13)[3]).toBe("online");
      expect(servedPort()).toBe(LIVE_PORT);
      expect((await cutOverState(stack)).state).toBe("serving-old");
    } finally {
      fs.rmSync(LINK, { recursive: true, force: true });
      await stack.setConfig("promote", { value: "false" });
    }
  });

  it("promotes: the link points at the generation, pg_ctlcluster started 15/usnl on it, clients lost nothing", async () => {
    await stack.setConfig("promote", { value: "true" });
    const log = await upUnderLoad("promotion");
    const st = await cutOverState(stack);
    expect(st.state).toBe("promoted");
    const dir = `${NEW_LIVE_MNT}/main.pg15`;
    expect(st.newLiveDataDir).toBe(dir);
    expect(fs.readlinkSync(LINK)).toBe(dir);
    expect(lsCluster(15).slice(2, 6)).toEqual([String(NEW_LIVE_PORT), "online", "postgres", LINK]);
    expectStartedByPgCtlcluster(dir);
    expect(log).toMatch(/starting the new live with \["pg_ctlcluster","15","usnl","start"\]/);
    expect(servedPort()).toBe(NEW_LIVE_PORT);
    expect(Number(viaBouncer("SELECT current_setting('server_version_num')"))).toBeGreaterThanOrEqual(150000);
    // Live (13/usnl) is stopped, cleanly.
    expect(lsCluster(13)[3]).toBe("down");
  });

  it("rolls back: pg_ctlcluster stops 15/usnl cleanly, the link stays, live serves", async () => {
    await stack.setConfig("promote", { value: "false" });
    const log = await upUnderLoad("roll-back", false);
    expect((await cutOverState(stack)).state).toBe("rolled-back");
    const dir = `${NEW_LIVE_MNT}/main.pg15`;
    expect(log).toMatch(/stopping the new live with \["pg_ctlcluster","15","usnl","stop"\]/);
    expect(lsCluster(15)[3]).toBe("down");
    expect(controlState(dir)).toBe("shut down");
    expect(fs.readlinkSync(LINK)).toBe(dir);
    expect(fs.existsSync(PIDFILE)).toBe(false);
    expect(lsCluster(13)[3]).toBe("online");
    expect(servedPort()).toBe(LIVE_PORT);
  });

  it("promotes again: the link re-pointed at the -2 generation, started by pg_ctlcluster", async () => {
    await stack.setConfig("promote", { value: "true" });
    await upUnderLoad("second promotion");
    const st = await cutOverState(stack);
    const dir = `${NEW_LIVE_MNT}-2/main.pg15`;
    expect(st.newLiveDataDir).toBe(dir);
    expect(fs.readlinkSync(LINK)).toBe(dir);
    expect(lsCluster(15).slice(2, 6)).toEqual([String(NEW_LIVE_PORT), "online", "postgres", LINK]);
    expectStartedByPgCtlcluster(dir);
    expect(servedPort()).toBe(NEW_LIVE_PORT);
    // The first generation stays stopped (it holds the writes made while it served).
    expect(controlState(`${NEW_LIVE_MNT}/main.pg15`)).toBe("shut down");
  });
});
