/**
 * A clone never acts as live toward the outside world: live subscribes to a publication on a
 * third server, and a rehearsal (13 -> 15) runs on clones of live while that publisher keeps
 * writing. The clone's catalog holds live's enabled subscription, so a server started on it
 * with live's settings would start an apply worker and connect to the publisher, taking or
 * fighting for live's slot. Afterwards:
 * - the publisher saw no replication connection while the rehearsal ran (its own log, with
 *   `log_replication_commands` and `log_connections`), and live's slot stayed active for the
 *   same walsender all along (`active_pid` sampled during the whole `up`);
 * - live's subscription still receives the publisher's rows (it was never disturbed);
 * - the upgraded clone holds the subscription's definition, disabled and never run.
 *
 * Pool `ussub`, live on 30200, the rehearsal on 30210-30213, the publisher on 30250 (a plain
 * directory, no ZFS).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { destroyPoolByName, sh } from "../harness/zfs";
import { stopServersUnder } from "../harness/postgres";
import { fileBackend, fixtureProgram, openStack, REPO, tempDir } from "../harness/pulumi";

const POOL = "ussub";
const LIVE = 30200;
const UPGRADED = 30210;
const PUB = 30250;
const BIN13 = "/usr/lib/postgresql/13/bin";
const BIN15 = "/usr/lib/postgresql/15/bin";
const SOCK = "/var/run/postgresql";
const PUB_DIR = "/var/tmp/understudy-ussub-publisher";
const PUB_LOG = `${PUB_DIR}.log`;
const live = (...args: string[]) => execFileSync("bash", [path.join(REPO, "scripts/live-postgres.sh"), ...args], { stdio: "inherit" });
const asPg = (argv: string[]) => sh(["runuser", "-u", "postgres", "--", ...argv]);
const psql = (port: number, sql: string, db = "app", bin = BIN13) => asPg([`${bin}/psql`, "-X", "-At", "-h", SOCK, "-p", String(port), "-d", db, "-c", sql]).trim();

let insertTimer: NodeJS.Timeout | undefined;

function stopPublisher(): void {
  if (fs.existsSync(`${PUB_DIR}/postmaster.pid`)) asPg([`${BIN13}/pg_ctl`, "stop", "-D", PUB_DIR, "-m", "immediate", "-w"]);
}

beforeAll(() => {
  live("up", POOL, String(LIVE), "1");
  sh(["zfs", "create", "-p", `${POOL}/rehearsals`]);
  // The publisher: a third server, outside every dataset of ours.
  stopPublisher();
  fs.rmSync(PUB_DIR, { recursive: true, force: true });
  fs.rmSync(PUB_LOG, { force: true });
  sh(["install", "-d", "-o", "postgres", "-g", "postgres", "-m", "0700", PUB_DIR]);
  sh(["install", "-o", "postgres", "-g", "postgres", "-m", "0600", "/dev/null", PUB_LOG]);
  asPg([`${BIN13}/initdb`, "-D", PUB_DIR, "-A", "peer", "--no-sync"]);
  const opts = `-c port=${PUB} -c unix_socket_directories=${SOCK} -c listen_addresses='' -c wal_level=logical -c log_connections=on -c log_replication_commands=on`;
  asPg([`${BIN13}/pg_ctl`, "start", "-D", PUB_DIR, "-l", PUB_LOG, "-w", "-o", opts]);
  psql(PUB, "CREATE DATABASE feed", "postgres");
  psql(PUB, "CREATE TABLE events (id bigserial PRIMARY KEY, note text)", "feed");
  psql(PUB, "INSERT INTO events (note) SELECT 'before ' || g FROM generate_series(1, 100) g", "feed");
  psql(PUB, "CREATE PUBLICATION feedpub FOR TABLE events", "feed");
  // Live subscribes to it (a walsender for live's apply worker on the publisher, slot `livesub`).
  psql(LIVE, "CREATE TABLE events (id bigint PRIMARY KEY, note text)");
  psql(LIVE, `CREATE SUBSCRIPTION livesub CONNECTION 'host=${SOCK} port=${PUB} dbname=feed user=postgres' PUBLICATION feedpub`);
  for (let i = 0; i < 120 && psql(LIVE, "SELECT count(*) FROM events") !== "100"; i++) sh(["sleep", "0.5"]);
  expect(psql(LIVE, "SELECT count(*) FROM events")).toBe("100");
}, 600_000);

afterAll(async () => {
  if (insertTimer) clearInterval(insertTimer);
  await stopServersUnder(`/srv/${POOL}`).catch(() => undefined);
  try {
    psql(LIVE, "DROP SUBSCRIPTION livesub");
  } catch {
    // live may be gone already
  }
  try {
    stopPublisher();
  } catch {
    // not running
  }
  fs.rmSync(PUB_DIR, { recursive: true, force: true });
  try {
    live("down", POOL, String(LIVE));
  } catch {
    destroyPoolByName(POOL);
  }
}, 300_000);

describe("live with a subscription to a third server", () => {
  it("a rehearsal on its clones never connects to the publisher; live's slot keeps its walsender", async () => {
    const slotPid = () => psql(PUB, "SELECT coalesce(active_pid::text, 'inactive') FROM pg_replication_slots WHERE slot_name = 'livesub'", "feed");
    const pid0 = slotPid();
    expect(pid0).toMatch(/^\d+$/);
    const logFrom = fs.statSync(PUB_LOG).size;

    // The publisher keeps writing, and the slot is sampled, while the rehearsal runs.
    const pids = new Set<string>();
    let n = 0;
    insertTimer = setInterval(() => {
      try {
        psql(PUB, `INSERT INTO events (note) VALUES ('during ${++n}')`, "feed");
        pids.add(slotPid());
      } catch (e) {
        pids.add(`error: ${(e as Error).message.split("\n")[0]}`);
      }
    }, 500);

    const stack = await openStack(fixtureProgram("rehearsal-program"), "sub", fileBackend(), {
      rehearsal: {
        value: JSON.stringify({
          source: { dataset: `${POOL}/pg13`, pgdata: "main", version: 13, port: LIVE, socketDir: SOCK },
          clone: { dataset: `${POOL}/rehearsals/sub` },
          to: 15,
          postgres: { port: UPGRADED, database: "app" },
          steps: [{ name: "settle", sql: "SELECT pg_sleep(3)" }],
          reportDir: tempDir("sub-reports"),
        }),
      },
    });
    try {
      const up = await stack.up();
      clearInterval(insertTimer);
      insertTimer = undefined;
      expect(up.summary.result).toBe("succeeded");
      expect(up.outputs.report.value.status).toBe("passed");

      // The publisher's own record: no replication connection, no START_REPLICATION, no
      // slot error, since the rehearsal began.
      const log = fs.readFileSync(PUB_LOG, "utf8").slice(logFrom);
      expect(log).not.toMatch(/replication connection authorized/);
      expect(log).not.toMatch(/START_REPLICATION|is active for PID/);
      // Live's slot stayed with the same walsender the whole time.
      expect(n).toBeGreaterThan(10);
      expect([...pids]).toEqual([pid0]);
      // Live still receives: every row the publisher wrote during the rehearsal arrives.
      const want = psql(PUB, "SELECT count(*) FROM events", "feed");
      for (let i = 0; i < 60 && psql(LIVE, "SELECT count(*) FROM events") !== want; i++) sh(["sleep", "0.5"]);
      expect(psql(LIVE, "SELECT count(*) FROM events")).toBe(want);
      // The upgraded clone holds the definition (pg_upgrade carries it, disabled) and never ran it.
      expect(psql(UPGRADED, "SELECT subname || ' ' || subenabled FROM pg_subscription", "app", BIN15)).toBe("livesub false");
      expect(psql(UPGRADED, "SELECT count(*) FROM pg_stat_subscription WHERE pid IS NOT NULL", "app", BIN15)).toBe("0");
    } finally {
      const d = await stack.destroy();
      expect(d.summary.result).toBe("succeeded");
      await stack.workspace.removeStack("sub");
    }
  });
});
