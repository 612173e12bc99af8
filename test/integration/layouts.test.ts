/**
 * Live is sacred on a production layout too: a Debian cluster (pg_createcluster: its
 * configuration in /etc/postgresql/13/uslay, started by pg_ctlcluster) whose data directory,
 * `pg_wal` and one tablespace are on three datasets of one pool, under pgbench write load,
 * is rehearsed 13 -> 15 through the real engine. Afterwards:
 * - every file of live that live itself does not write (its configuration, the tablespace,
 *   the files of tables the writer never touches) is byte-for-byte the same;
 * - live's tablespace holds no PG_15 directory and no file with a second hard link (what
 *   `pg_upgrade --link` through a link left pointing into live would have made);
 * - no command the host layer ran wrote to a path of live (the command log);
 * - the upgraded clone has the tablespace's data, served from the clone's own tablespace;
 * - destroy leaves live's datasets with no snapshot of ours.
 * And a path on no dataset (a tablespace on the root filesystem) is refused in preview,
 * naming it, with no command that writes anything.
 *
 * Pool `uslayout`, live on 29800, the rehearsal on 29810-29813.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ChildProcess, spawn } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { createPool, datasetExists, destroyPoolByName, sh, snapshotsOf } from "../harness/zfs";
import { stopServersUnder } from "../harness/postgres";
import { failureOf, fileBackend, fixtureProgram, openStack, tempDir } from "../harness/pulumi";
import { readCommandLog } from "../../providers/host/record";

const POOL = "uslayout";
const CLUSTER = "uslay";
const PORT = 29800;
const UPGRADED = 29810;
const BIN13 = "/usr/lib/postgresql/13/bin";
const BIN15 = "/usr/lib/postgresql/15/bin";
const SOCK = "/var/run/postgresql";
const DATA = `/srv/${POOL}/live/data/main`;
const WAL = `/srv/${POOL}/live/wal/pg_wal`;
const TS = `/srv/${POOL}/live/ts1/space`;
const ETC = `/etc/postgresql/13/${CLUSTER}`;
const STATIC = ["ts_orders", "customers_static"];


let writer: ChildProcess | undefined;
const cmdlog = path.join(tempDir("cmdlog"), "commands.jsonl");

const psql = (port: number, sql: string, bin = BIN13, db = "app") =>
  sh(["runuser", "-u", "postgres", "--", `${bin}/psql`, "-X", "-At", "-h", SOCK, "-p", String(port), "-d", db, "-c", sql]).trim();

/** sha256 of every file under `dir`, by relative path. */
function checksums(dir: string): Record<string, string> {
  const out = sh(["bash", "-c", 'cd "$1" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum', "x", dir]);
  return Object.fromEntries(out.split("\n").filter(Boolean).map((l) => [l.slice(66), l.slice(0, 64)]));
}

/** Files of the tables the writer never touches, as paths under PGDATA or the tablespace. */
function staticFiles(): string[] {
  return STATIC.map((t) => psql(PORT, `SELECT pg_relation_filepath('${t}')`));
}

function fileOf(rel: string): string {
  // pg_relation_filepath is relative to PGDATA; pg_tblspc/<oid>/... resolves through live's link.
  return fs.realpathSync(path.join(DATA, rel));
}

beforeAll(() => {
  sh(["pg_dropcluster", "--stop", "13", CLUSTER], { allowFail: true });
  createPool(POOL, 4);
  for (const d of ["live", "live/data", "live/wal", "live/ts1", "rehearsals"]) sh(["zfs", "create", `${POOL}/${d}`]);
  for (const d of [`/srv/${POOL}/live/data`, `/srv/${POOL}/live/wal`, `/srv/${POOL}/live/ts1`]) sh(["chown", "postgres:postgres", d]);
  sh(["pg_createcluster", "13", CLUSTER, "-d", DATA, "-p", String(PORT), "-s", SOCK, "--", "--waldir", WAL, "--data-checksums"]);
  sh(["pg_ctlcluster", "13", CLUSTER, "start"]);
  sh(["runuser", "-u", "postgres", "--", "install", "-d", "-m", "0700", TS]);
  psql(PORT, "CREATE DATABASE app", BIN13, "postgres");
  psql(PORT, `CREATE TABLESPACE space1 LOCATION '${TS}'`);
  psql(PORT, "CREATE TABLE ts_orders (id int PRIMARY KEY, note text) TABLESPACE space1");
  psql(PORT, "INSERT INTO ts_orders SELECT g, md5(g::text) FROM generate_series(1, 20000) g");
  psql(PORT, "CREATE TABLE customers_static AS SELECT g AS id, repeat('x', 50) AS name FROM generate_series(1, 5000) g");
  sh(["runuser", "-u", "postgres", "--", `${BIN13}/pgbench`, "-h", SOCK, "-p", String(PORT), "-i", "-q", "-s", "2", "app"]);
  // Settle the static tables' pages (hint bits, visibility map) so only the writer changes files.
  psql(PORT, "VACUUM (FREEZE, ANALYZE) ts_orders, customers_static");
  psql(PORT, "CHECKPOINT");
  writer = spawn("runuser", ["-u", "postgres", "--", `${BIN13}/pgbench`, "-h", SOCK, "-p", String(PORT), "-n", "-c", "2", "-T", "3600", "-R", "20", "app"], { stdio: "ignore", detached: true });
}, 600_000);

afterAll(async () => {
  if (writer?.pid) {
    try {
      process.kill(-writer.pid, "SIGKILL");
    } catch {
      writer.kill("SIGKILL");
    }
  }
  await stopServersUnder(`/srv/${POOL}`).catch(() => undefined);
  sh(["pg_dropcluster", "--stop", "13", CLUSTER], { allowFail: true });
  destroyPoolByName(POOL);
}, 300_000);

describe("a Debian cluster with pg_wal and a tablespace on other datasets, under write load", () => {
  it("rehearses on a clone of all three datasets; live's files are untouched; the clone has the tablespace", async () => {
    const liveStarted = psql(PORT, "SELECT pg_postmaster_start_time()");
    const before = {
      etc: checksums(ETC),
      ts: checksums(TS),
      static: Object.fromEntries(staticFiles().map((f) => [f, sh(["sha256sum", fileOf(f)]).slice(0, 64)])),
      snaps: ["data", "wal", "ts1"].map((d) => snapshotsOf(`${POOL}/live/${d}`)),
    };
    const history0 = Number(psql(PORT, "SELECT count(*) FROM pgbench_history"));
    const stack = await openStack(fixtureProgram("rehearsal-program"), "lay", fileBackend(), {
      rehearsal: {
        value: JSON.stringify({
          source: { dataset: `${POOL}/live/data`, pgdata: "main", version: 13, port: PORT, socketDir: SOCK },
          clone: { dataset: `${POOL}/rehearsals/lay` },
          to: 15,
          postgres: { port: UPGRADED, database: "app" },
          checks: { checksumTables: ["public.ts_orders", "public.customers_static"] },
          reportDir: tempDir("lay-reports"),
        }),
      },
    });
    // Every command of the program and of the providers the engine starts goes to the log.
    stack.workspace.envVars.UNDERSTUDY_COMMAND_LOG = cmdlog;
    const up = await stack.up();
    expect(up.summary.result).toBe("succeeded");
    expect(up.outputs.report.value.status).toBe("passed");

    // The clone set: one clone per dataset, each link re-pointed into the clones.
    const clone = `/srv/${POOL}/rehearsals/lay`;
    for (const d of ["lay", "lay-wal", "lay-ts1"]) expect(datasetExists(`${POOL}/rehearsals/${d}`), d).toBe(true);
    expect(fs.readlinkSync(`${clone}/main/pg_wal`)).toBe(`/srv/${POOL}/rehearsals/lay-wal/pg_wal`);
    const oid = psql(PORT, "SELECT oid FROM pg_tablespace WHERE spcname = 'space1'");
    expect(fs.readlinkSync(`${clone}/main/pg_tblspc/${oid}`)).toBe(`/srv/${POOL}/rehearsals/lay-ts1/space`);
    // The upgraded clone serves the tablespace's rows from the clone's tablespace.
    expect(psql(UPGRADED, "SELECT count(*) FROM ts_orders", BIN15)).toBe("20000");
    expect(psql(UPGRADED, "SELECT pg_tablespace_location(oid) FROM pg_tablespace WHERE spcname = 'space1'", BIN15)).toBe(`/srv/${POOL}/rehearsals/lay-ts1/space`);
    expect(fs.readdirSync(`/srv/${POOL}/rehearsals/lay-ts1/space`).some((n) => n.startsWith("PG_15_"))).toBe(true);
    const checks = up.outputs.report.value.checks as Array<{ name: string; status: string }>;
    expect(checks.find((c) => c.name === "checksum app.public.ts_orders")?.status).toBe("pass");

    // Live: not restarted, still written to, and nothing of it changed that live itself does not write.
    expect(psql(PORT, "SELECT pg_postmaster_start_time()")).toBe(liveStarted);
    expect(Number(psql(PORT, "SELECT count(*) FROM pgbench_history"))).toBeGreaterThan(history0);
    expect(checksums(ETC)).toEqual(before.etc);
    expect(checksums(TS)).toEqual(before.ts);
    for (const [f, sum] of Object.entries(before.static)) expect(sh(["sha256sum", fileOf(f)]).slice(0, 64), f).toBe(sum);
    expect(fs.readdirSync(TS).filter((n) => n.startsWith("PG_15_"))).toEqual([]);
    const linked = sh(["find", TS, "-type", "f", "-links", "+1"]).trim();
    expect(linked).toBe("");

    // What ran, by the host layer's own record: nothing that writes touched a path of live.
    const livePaths = [DATA, WAL, TS, ETC, `/srv/${POOL}/live/`, `${POOL}/live`];
    const reads = new Set(["readlink", "find", "cat", "test", "stat", "head", "zfs", "psql", "sha256sum", "pg_controldata"]);
    const commands = readCommandLog(cmdlog);
    expect(commands.length).toBeGreaterThan(20);
    for (const c of commands) {
      const argv = c.argv[0] === "runuser" || c.argv[0] === "sudo" ? c.argv.slice(c.argv.indexOf("--") + 1) : c.argv;
      const prog = path.basename(argv[0] === "env" ? argv.find((a, i) => i > 0 && !a.includes("=")) ?? "" : argv[0]);
      const touchesLive = argv.some((a) => livePaths.some((p) => a === p || a.startsWith(p)));
      if (!touchesLive) continue;
      if (prog === "zfs") {
        // Snapshots of live are taken (a read); nothing else may act on its datasets.
        expect(["get", "list", "snapshot", "destroy", "clone"], argv.join(" ")).toContain(argv[1]);
        if (argv[1] === "destroy") expect(argv.join(" "), "only our own snapshots of live are destroyed").toMatch(/@(understudy-|s\d\d-)/);
        if (argv[1] === "clone") expect(argv.at(-1), "a clone of a snapshot of live is made among the rehearsals").toMatch(new RegExp(`^${POOL}/rehearsals/`));
        continue;
      }
      expect(reads.has(prog) || (prog === "cp" && argv.at(-1)!.startsWith(`/srv/${POOL}/rehearsals/`)), `a command that may write touched live: ${argv.join(" ")}`).toBe(true);
    }

    const d = await stack.destroy();
    expect(d.summary.result).toBe("succeeded");
    for (const x of ["lay", "lay-wal", "lay-ts1"]) expect(datasetExists(`${POOL}/rehearsals/${x}`)).toBe(false);
    expect(["data", "wal", "ts1"].map((x) => snapshotsOf(`${POOL}/live/${x}`))).toEqual(before.snaps);
    expect(checksums(TS)).toEqual(before.ts);
  });

  it("refuses in preview a tablespace on no dataset, naming it; nothing that writes runs", async () => {
    const outside = "/var/tmp/understudy-layout-outside";
    sh(["install", "-d", "-o", "postgres", "-m", "0700", outside]);
    psql(PORT, `CREATE TABLESPACE outside LOCATION '${outside}'`);
    try {
      fs.rmSync(cmdlog, { force: true });
      const stack = await openStack(fixtureProgram("rehearsal-program"), "outside", fileBackend(), {
        rehearsal: {
          value: JSON.stringify({
            source: { dataset: `${POOL}/live/data`, pgdata: "main", version: 13, port: PORT, socketDir: SOCK },
            clone: { dataset: `${POOL}/rehearsals/outside` },
            to: 15,
            postgres: { port: UPGRADED, database: "app" },
          }),
        },
      });
      stack.workspace.envVars.UNDERSTUDY_COMMAND_LOG = cmdlog;
      const message = await failureOf(() => stack.preview());
      const oid = psql(PORT, "SELECT oid FROM pg_tablespace WHERE spcname = 'outside'");
      expect(message).toMatch(new RegExp(`tablespace ${oid} \\(pg_tblspc/${oid}\\) -> ${outside} is on no volume of zfs on local`));
      expect(message).toMatch(/nothing was run/);
      expect(datasetExists(`${POOL}/rehearsals/outside`)).toBe(false);
      const writes = readCommandLog(cmdlog).filter((c) => !["readlink", "find", "zfs", "cat", "psql", "test"].includes(path.basename(c.argv[c.argv[0] === "runuser" ? 4 : 0])));
      expect(writes).toEqual([]);
    } finally {
      psql(PORT, "DROP TABLESPACE outside");
      fs.rmSync(outside, { recursive: true, force: true });
    }
  });
});
