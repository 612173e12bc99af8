/**
 * PostgresDriver against real everything: a zfs-fuse pool, PostgreSQL 13 and 15 from the
 * Debian packages, pgbench writing to the source the whole time. Nothing is mocked.
 *
 * The story: a live PG 13 under write load; CHECKPOINT + snapshot + clone (owner-marked);
 * crash recovery of the clone with PG 13 on a private socket; pg_upgrade --check, then
 * --link to 15 on the clone; PG 15 serves the same data; the source never restarted and
 * still takes writes. Plus a clone that pg_upgrade must refuse (a user-defined postfix
 * operator, removed in PostgreSQL 14), and inputs that must be refused before anything runs.
 *
 * Measurements (crash recovery with and without a CHECKPOINT just before the snapshot,
 * pg_upgrade --link) are printed at the end.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ChildProcess, execFileSync, spawn } from "node:child_process";
import * as fs from "node:fs";
import { LocalHost } from "../../providers/host/local";
import type { Host, RunOptions, RunResult } from "../../providers/host/types";
import { ZfsDriver } from "../../providers/zfs/driver";
import { PostgresDriver, PgServer, RecoveryResult, UpgradeResult } from "../../providers/postgres/driver";
import { PgUpgradeError, PostgresError, PostgresInputError } from "../../providers/postgres/errors";
import type { PgConnection } from "../../providers/postgres/sql";
import { parseBusyPorts } from "../../providers/postgres/parse";
import { createPool, destroyPoolByName, sh, TestPool } from "../harness/zfs";

/** Runs everything on this machine and remembers which programs ran (to prove "nothing ran"). */
class RecordingHost implements Host {
  readonly description = "local";
  readonly commands: string[][] = [];
  private readonly inner = new LocalHost();
  run(argv: readonly string[], opts?: RunOptions): Promise<RunResult> {
    this.commands.push([...argv]);
    return this.inner.run(argv, opts);
  }
  runAs(user: string, argv: readonly string[], opts?: RunOptions): Promise<RunResult> {
    this.commands.push([...argv]);
    return this.inner.runAs(user, argv, opts);
  }
  writeFile(path: string, content: string, mode?: string): Promise<void> {
    this.commands.push(["(writeFile)", path]);
    return this.inner.writeFile(path, content, mode);
  }
  close(): Promise<void> {
    return this.inner.close();
  }
  /** Programs run since `mark` (argv[0] after an `env K=V` prefix). */
  programsSince(mark: number): string[] {
    return this.commands.slice(mark).map((a) => {
      let i = 0;
      if (a[0] === "env") {
        i = 1;
        while (i < a.length && /^[A-Z_]+=/.test(a[i])) i++;
      }
      return a[i];
    });
  }
}

const POOL = "pgdrv";
const OWNER = "pgdrv-test/postgres-driver";
const BIN13 = "/usr/lib/postgresql/13/bin";
const PW = "s3cret-Pw-never-logged";
const MNT = `/srv/${POOL}`;
const SRC_DS = `${POOL}/live`;
const SRC_DIR = `${MNT}/live/pg13`;
const SRC_SOCK = "/tmp/pgdrv-src";
/** Socket directories this file uses (removed in afterAll). */
const SOCKET_DIRS = [SRC_SOCK, "/tmp/pgdrv-x", "/tmp/pgdrv-spare", "/tmp/pgdrv-nockpt", "/tmp/pgdrv-c15", "/tmp/pgdrv-bad"];
/** Defaults keep the test under a minute; raise them for measurements (e.g. SCALE=20, WRITE_SECONDS=60). */
const SCALE = Number(process.env.UNDERSTUDY_PGDRV_SCALE ?? 2);
const WRITE_SECONDS = Number(process.env.UNDERSTUDY_PGDRV_WRITE_SECONDS ?? 15);
const clone = (n: string) => ({ ds: `${POOL}/rehearsal/${n}`, pg13: `${MNT}/rehearsal/${n}/pg13`, pg15: `${MNT}/rehearsal/${n}/pg15` });

const host = new RecordingHost();
const pg = new PostgresDriver(host);
const zfs = new ZfsDriver(host);
let pool: TestPool | undefined;
let ports: number[] = [];
let writer: ChildProcess | undefined;
let writerErr = "";
let source: PgServer | undefined;
let srcConn: PgConnection;
const started: Array<{ dataDir: string; version: number }> = [];
const progress: string[] = [];
const measured: Record<string, string> = {};

/** Free TCP ports in 25400..25499, as seen now. */
function freePorts(n: number): number[] {
  const used = parseBusyPorts(sh(["ss", "-tanH"]));
  const out: number[] = [];
  for (let p = 25400; p <= 25499 && out.length < n; p++) if (!used.has(p)) out.push(p);
  if (out.length < n) throw new Error(`fewer than ${n} free ports in 25400..25499`);
  return out;
}

async function counts(conn: PgConnection) {
  const [r] = await pg.query<{ accounts: string; history: string; a: string; t: string; b: string; d: string }>(
    conn,
    `SELECT (SELECT count(*) FROM pgbench_accounts) AS accounts, (SELECT count(*) FROM pgbench_history) AS history,
            (SELECT sum(abalance) FROM pgbench_accounts) AS a, (SELECT sum(tbalance) FROM pgbench_tellers) AS t,
            (SELECT sum(bbalance) FROM pgbench_branches) AS b, (SELECT coalesce(sum(delta), 0) FROM pgbench_history) AS d`,
  );
  return { accounts: Number(r.accounts), history: Number(r.history), a: Number(r.a), t: Number(r.t), b: Number(r.b), d: Number(r.d) };
}

async function historyCount(): Promise<number> {
  return Number((await pg.query<{ n: string }>(srcConn, "SELECT count(*) AS n FROM pgbench_history"))[0].n);
}

function sleep(ms: number) {
  return new Promise((r) => setTimeout(r, ms));
}

function track(dataDir: string, version: number) {
  if (!started.some((s) => s.dataDir === dataDir)) started.push({ dataDir, version });
}

function postgresUid(): { uid: number; gid: number } {
  return {
    uid: Number(execFileSync("id", ["-u", "postgres"], { encoding: "utf8" })),
    gid: Number(execFileSync("id", ["-g", "postgres"], { encoding: "utf8" })),
  };
}

beforeAll(async () => {
  pool = createPool(POOL, Math.max(4, 4 + Math.ceil(SCALE / 5)));
  ports = freePorts(12);
  sh(["zfs", "create", SRC_DS]);
  sh(["zfs", "create", `${POOL}/rehearsal`]);
  for (const d of SOCKET_DIRS) fs.rmSync(d, { recursive: true, force: true });
});

afterAll(async () => {
  writer?.kill("SIGTERM");
  // Stop every server this file started (newest first), then destroy the pool.
  for (const s of [...started].reverse()) {
    try {
      await pg.stop(s.dataDir, s.version, { timeoutMs: 60_000 });
    } catch (e) {
      console.error(`cleanup: could not stop ${s.dataDir}: ${(e as Error).message}`);
    }
  }
  await sleep(500);
  pool?.destroy();
  destroyPoolByName(POOL);
  for (const d of SOCKET_DIRS) fs.rmSync(d, { recursive: true, force: true });
  if (Object.keys(measured).length) {
    console.log(`\nmeasurements (PostgreSQL 13 -> 15 on zfs-fuse, pgbench -s ${SCALE}, 2 writers, ${WRITE_SECONDS} s of writes before the first snapshot):`);
    for (const [k, v] of Object.entries(measured)) console.log(`  ${k.padEnd(52)} ${v}`);
  }
});

describe("PostgresDriver on real PostgreSQL 13/15 and zfs-fuse", () => {
  let srcPid = 0;
  let startTime: Date;
  let atSnapshot: { before: number; after: number; accounts: number };
  let recNoCkpt: RecoveryResult;
  let recCkpt: RecoveryResult;
  let upgraded: UpgradeResult;

  it("runs a live PostgreSQL 13 source with pgbench writing", async () => {
    const init = await pg.initdb(SRC_DIR, 13, { dataChecksums: true, locale: "C.UTF-8", authLocal: "peer", authHost: "scram-sha-256" });
    expect(init.install.fullVersion).toMatch(/^13\./);
    const cd = await pg.controlData(SRC_DIR, 13);
    expect(cd).toMatchObject({ state: "shut down", dataChecksums: true });

    track(SRC_DIR, 13);
    source = await pg.start(SRC_DIR, 13, {
      port: ports[0],
      socketDir: SRC_SOCK,
      listen: "127.0.0.1",
      // No timed checkpoints during the test: the snapshot without CHECKPOINT must replay everything.
      settings: { checkpoint_timeout: "30min", max_wal_size: "4GB" },
      onProgress: (m) => progress.push(m),
    });
    expect((await pg.status(SRC_DIR, 13)).running).toBe(true);
    // A password for TCP, set through psql's stdin (never in argv).
    await pg.adminQuery(source, `SET password_encryption = 'scram-sha-256'; ALTER ROLE postgres PASSWORD '${PW}';`);
    srcConn = { host: "127.0.0.1", port: ports[0], user: "postgres", password: PW, database: "postgres" };

    await host.runAs("postgres", [`${BIN13}/pgbench`, "-i", "-s", String(SCALE), "-q", "-h", SRC_SOCK, "-p", String(ports[0]), "postgres"], { cwd: "/" });
    srcPid = Number(fs.readFileSync(`${SRC_DIR}/postmaster.pid`, "utf8").split("\n")[0]);
    startTime = await pg.postmasterStartTime(srcConn);

    const { uid, gid } = postgresUid();
    writer = spawn(`${BIN13}/pgbench`, ["-n", "-c", "2", "-j", "1", "-T", "1800", "-h", SRC_SOCK, "-p", String(ports[0]), "postgres"], {
      uid,
      gid,
      cwd: "/",
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: "/var/lib/postgresql" },
      stdio: ["ignore", "ignore", "pipe"],
    });
    writer.stderr?.on("data", (d: Buffer) => (writerErr += d.toString()));
    for (let i = 0; i < 100 && (await historyCount()) === 0; i++) await sleep(200);
    expect(await historyCount()).toBeGreaterThan(0);
  });

  it("refuses bad inputs with clear errors before running anything", async () => {
    // Hostile data directory names: no command at all reaches the host.
    let mark = host.commands.length;
    for (const bad of ["/srv/pgdrv/../../etc", "srv/pgdrv/x", "/srv/pgdrv/x;reboot", "/srv/pgdrv/$(id)", "/srv/pgdrv/a b", "/srv/pgdrv/`id`", "/srv/pgdrv/x\n"]) {
      await expect(pg.start(bad, 13, { port: ports[9], socketDir: "/tmp/pgdrv-x" })).rejects.toThrow(/^postgres\.dataDir: /);
      await expect(pg.recoverCrashConsistent(bad, 13, ports[9])).rejects.toBeInstanceOf(PostgresInputError);
      await expect(pg.upgrade(bad, "/srv/pgdrv/new", 13, 15)).rejects.toThrow(/^oldDataDir: /);
    }
    expect(host.commands.length).toBe(mark);

    // Version 16 is not installed: only the installation check ran.
    mark = host.commands.length;
    await expect(pg.start(clone("x").pg13, 16, { port: ports[9], socketDir: "/tmp/pgdrv-x" })).rejects.toThrow(
      "postgres.version: 16 is not installed on local: /usr/lib/postgresql/16/bin/pg_ctl not found (apt-get install postgresql-16, or set binDir)",
    );
    await expect(pg.upgradeCheck(clone("x").pg13, clone("x").pg15, 13, 16)).rejects.toThrow(/^to\.version: 16 is not installed on local/);
    expect(host.programsSince(mark).every((p) => p === "stat" || p.endsWith("/postgres"))).toBe(true);

    // A bin directory that does not exist, and one that holds another version.
    mark = host.commands.length;
    await expect(pg.start(clone("x").pg13, { version: 15, binDir: "/opt/pgdrv-missing/bin" }, { port: ports[9], socketDir: "/tmp/pgdrv-x" })).rejects.toThrow(
      "postgres.binDir: /opt/pgdrv-missing/bin does not exist on local",
    );
    await expect(pg.start(clone("x").pg13, { version: 13, binDir: "/usr/lib/postgresql/15/bin" }, { port: ports[9], socketDir: "/tmp/pgdrv-x" })).rejects.toThrow(
      /^postgres\.binDir: \/usr\/lib\/postgresql\/15\/bin on local holds PostgreSQL 15\.\d+, not 13$/,
    );
    expect(host.programsSince(mark).some((p) => /pg_ctl|initdb|pg_upgrade/.test(p))).toBe(false);

    // A port in use (the source's): refused, nothing started. The data directory is a fresh one.
    const spare = `${MNT}/rehearsal/spare13`;
    await pg.initdb(spare, 13);
    mark = host.commands.length;
    await expect(pg.start(spare, 13, { port: ports[0], socketDir: "/tmp/pgdrv-spare" })).rejects.toThrow(`postgres.port: port ${ports[0]} is already in use on local`);
    expect(host.programsSince(mark).filter((p) => p.endsWith("/pg_ctl")).length).toBe(1); // `pg_ctl status` only
    expect(host.commands.slice(mark).some((a) => a.includes("start"))).toBe(false);
    // A data directory of another major.
    await expect(pg.start(spare, 15, { port: ports[9], socketDir: "/tmp/pgdrv-spare" })).rejects.toThrow(
      `postgres.dataDir: ${spare} on local holds a PostgreSQL 13 cluster, but start was asked to use 15`,
    );
    // The live source is never "recovered": its postmaster.pid belongs to a running server.
    mark = host.commands.length;
    await expect(pg.recoverCrashConsistent(SRC_DIR, 13, ports[9])).rejects.toThrow(
      new RegExp(`^dataDir: a process with PID ${srcPid} from ${SRC_DIR}/postmaster.pid is running in ${SRC_DIR} on local`),
    );
    expect(host.programsSince(mark).filter((p) => p === "rm" || p.endsWith("/pg_ctl"))).toEqual([]);
    expect(host.commands.slice(mark).filter((a) => a.some((x) => x.endsWith("/postgres")) && !a.includes("--version") && a[0] !== "stat")).toEqual([]);
    expect(fs.existsSync(`${SRC_DIR}/postmaster.pid`)).toBe(true);
    // pg_upgrade is never pointed at a running server.
    await expect(pg.upgradeCheck(SRC_DIR, `${MNT}/rehearsal/nope15`, 13, 15, { oldPort: ports[9], newPort: ports[10] })).rejects.toThrow(
      /a server is running on .*pg_upgrade needs it stopped/,
    );
  });

  it("snapshots without and with a CHECKPOINT, clones, and recovers each clone on PG 13", async () => {
    await sleep(WRITE_SECONDS * 1000); // WAL accumulates since the last checkpoint (initdb's)
    await zfs.snapshot(`${SRC_DS}@nockpt`, { "understudy:owner": OWNER });
    await zfs.clone(`${SRC_DS}@nockpt`, clone("nockpt").ds, { "understudy:owner": OWNER });

    await sleep(5_000);
    const before = await historyCount();
    const ck = await pg.checkpoint(srcConn);
    await zfs.snapshot(`${SRC_DS}@ckpt`, { "understudy:owner": OWNER });
    const after = await historyCount();
    atSnapshot = { before, after, accounts: SCALE * 100_000 };
    measured["CHECKPOINT on the source (under load)"] = `${ck.durationMs} ms`;
    await zfs.clone(`${SRC_DS}@ckpt`, clone("ckpt").ds, { "understudy:owner": OWNER });
    await zfs.clone(`${SRC_DS}@ckpt`, clone("bad").ds, { "understudy:owner": OWNER });
    expect((await zfs.get(clone("ckpt").ds))?.user["understudy:owner"]).toBe(OWNER);

    // The copy is crash-consistent: pg_controldata of the clone says the server was running.
    expect((await pg.controlData(clone("ckpt").pg13, 13)).state).toBe("in production");

    const onProgress = (m: string) => progress.push(m);
    track(clone("nockpt").pg13, 13);
    const p0 = progress.length;
    recNoCkpt = await pg.recoverCrashConsistent(clone("nockpt").pg13, 13, ports[1], { onProgress, progressEveryMs: 300 });
    // Long recoveries are visible while they run: elapsed time and the server's last log line.
    const during = progress.slice(p0).filter((m) => /: (starting up \(recovering\)|not answering yet), \d+ s/.test(m));
    expect(during.length).toBeGreaterThan(0);
    measured["progress lines during the no-CHECKPOINT recovery"] = `${during.length}, last: ${during[during.length - 1]}`;
    track(clone("ckpt").pg13, 13);
    recCkpt = await pg.recoverCrashConsistent(clone("ckpt").pg13, 13, ports[2], { onProgress });
    for (const r of [recNoCkpt, recCkpt]) {
      expect(r.stateBefore).toBe("in production");
      expect(r.stateAfter).toBe("shut down");
      expect(r.control.cleanShutdown).toBe(true);
      expect(r.removedStalePid?.pid).toBe(srcPid); // the copy of the source's pid file, removed on the clone only
      expect(r.log.crashRecovery).toBe(true);
      expect(r.settings).toMatchObject({ encoding: "UTF8", lcCollate: "C.UTF-8", lcCtype: "C.UTF-8", dataChecksums: true, superuser: "postgres", localeProvider: "libc" });
    }
    expect(fs.existsSync(`${SRC_DIR}/postmaster.pid`)).toBe(true);
    expect(progress.some((m) => m.includes("recovering"))).toBe(true);
    // Replay started at the checkpoint just before the snapshot: far less WAL.
    expect(recCkpt.log.replayedBytes ?? 0).toBeLessThan(recNoCkpt.log.replayedBytes ?? Infinity);
    const mb = (b?: number) => (b === undefined ? "?" : `${(b / 1048576).toFixed(1)} MB`);
    measured["crash recovery, no CHECKPOINT before snapshot"] = `${recNoCkpt.recoveryMs} ms (WAL replayed ${mb(recNoCkpt.log.replayedBytes)})`;
    measured["crash recovery, CHECKPOINT just before snapshot"] = `${recCkpt.recoveryMs} ms (WAL replayed ${mb(recCkpt.log.replayedBytes)})`;
    measured["recover total (start+recover+stop), no / with CHECKPOINT"] = `${recNoCkpt.durationMs} / ${recCkpt.durationMs} ms`;

    // The no-checkpoint clone is transactionally consistent too (socket only, psql on the host).
    track(clone("nockpt").pg13, 13);
    const s13 = await pg.start(clone("nockpt").pg13, 13, { port: ports[3], socketDir: "/tmp/pgdrv-nockpt" });
    const [[acc, a, t, b, d]] = await pg.adminQuery(
      s13,
      "SELECT (SELECT count(*) FROM pgbench_accounts), (SELECT sum(abalance) FROM pgbench_accounts), (SELECT sum(tbalance) FROM pgbench_tellers), (SELECT sum(bbalance) FROM pgbench_branches), (SELECT coalesce(sum(delta),0) FROM pgbench_history);",
    );
    expect(Number(acc)).toBe(SCALE * 100_000);
    expect(new Set([a, t, b, d]).size).toBe(1);
    expect((await pg.stop(clone("nockpt").pg13, 13)).state).toBe("shut down");
  });

  it("pg_upgrade --check then --link 13 -> 15 on the clone; PG 15 serves the data of the snapshot", async () => {
    const c = clone("ckpt");
    const opts = { mode: "link" as const, oldPort: ports[4], newPort: ports[5], settings: recCkpt.settings, onProgress: (m: string) => progress.push(m) };
    const chk = await pg.upgradeCheck(c.pg13, c.pg15, 13, 15, opts);
    expect(chk.ok).toBe(true);
    expect(chk.initializedNew).toBe(true);
    expect(chk.output).toMatch(/Clusters are compatible/);
    measured["pg_upgrade --check --link"] = `${chk.durationMs} ms`;

    upgraded = await pg.upgrade(c.pg13, c.pg15, 13, 15, opts);
    expect(upgraded.initializedNew).toBe(false);
    expect(upgraded.oldClusterUsable).toBe(false);
    expect(upgraded.copiedConfig).toEqual(["pg_hba.conf", "pg_ident.conf"]);
    expect(upgraded.output).toMatch(/Upgrade Complete/);
    measured["pg_upgrade --link 13 -> 15"] = `${upgraded.durationMs} ms`;
    expect((await pg.controlData(c.pg15, 15)).state).toBe("shut down");

    track(c.pg15, 15);
    const s15 = await pg.start(c.pg15, 15, { port: ports[6], socketDir: "/tmp/pgdrv-c15", listen: "127.0.0.1" });
    const post = await pg.postUpgrade(c.pg15, 15, { server: s15, updateExtensionsSql: upgraded.updateExtensionsSql });
    measured["vacuumdb --all --analyze-in-stages on PG 15"] = `${post.analyzeMs} ms`;

    const conn15: PgConnection = { host: "127.0.0.1", port: ports[6], user: "postgres", password: PW, database: "postgres" };
    const [{ v }] = await pg.query<{ v: string }>(conn15, "SELECT current_setting('server_version') AS v");
    expect(v).toMatch(/^15\./);
    const n = await counts(conn15);
    expect(n.accounts).toBe(atSnapshot.accounts);
    expect(n.history).toBeGreaterThanOrEqual(atSnapshot.before);
    expect(n.history).toBeLessThanOrEqual(atSnapshot.after);
    // TPC-B invariant: every committed transaction moved the same delta everywhere.
    expect(new Set([n.a, n.t, n.b, n.d]).size).toBe(1);
    const st = await pg.stop(c.pg15, 15);
    expect(st).toMatchObject({ wasRunning: true, state: "shut down" });
  });

  it("pg_upgrade --check refuses a clone with a user-defined postfix operator and says why", async () => {
    const c = clone("bad");
    // Not recovered yet: its postmaster.pid is the source's. status() is not fooled, stop()
    // does not signal the source, start() and upgrade are refused with the remedy.
    const mark = host.commands.length;
    expect(await pg.status(c.pg13, 13)).toEqual({ running: false, stalePid: srcPid });
    expect(await pg.stop(c.pg13, 13)).toMatchObject({ wasRunning: false, state: "in production" });
    await expect(pg.start(c.pg13, 13, { port: ports[7], socketDir: "/tmp/pgdrv-bad" })).rejects.toThrow(
      /postmaster\.pid on local names PID \d+, a live process running elsewhere.*Run recoverCrashConsistent/,
    );
    await expect(pg.upgradeCheck(c.pg13, c.pg15, 13, 15, { oldPort: ports[7], newPort: ports[8] })).rejects.toThrow(
      /^oldDataDir: .* was not shut down cleanly \(pg_controldata: "in production"\).*run recoverCrashConsistent/,
    );
    expect(host.programsSince(mark).some((p) => p.endsWith("/pg_upgrade"))).toBe(false);

    track(c.pg13, 13);
    await pg.recoverCrashConsistent(c.pg13, 13, ports[7]);
    const s = await pg.start(c.pg13, 13, { port: ports[7], socketDir: "/tmp/pgdrv-bad" });
    await pg.adminQuery(
      s,
      "CREATE FUNCTION understudy_fact(bigint) RETURNS bigint LANGUAGE sql IMMUTABLE AS 'SELECT $1';\nCREATE OPERATOR !!! (LEFTARG = bigint, PROCEDURE = understudy_fact);\n",
    );
    await pg.stop(c.pg13, 13);

    const err = await pg.upgradeCheck(c.pg13, c.pg15, 13, 15, { oldPort: ports[7], newPort: ports[8] }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(PgUpgradeError);
    const e = err as PgUpgradeError;
    expect(e.failedCheck).toBe("Checking for user-defined postfix operators");
    expect(e.reason).toMatch(/user-defined postfix operators, which are not\s+supported anymore/);
    expect(e.message).toMatch(/^postgres pg_upgrade --check failed on local \(data directory .*\/bad\/pg13\): 13 -> 15 refused at "Checking for user-defined postfix operators"/);
    expect(e.message).toMatch(/Left behind: the old cluster .* is unchanged/);
    const report = Object.entries(e.files).find(([p]) => p.endsWith("postfix_ops.txt"));
    expect(report?.[1]).toMatch(/!!!/);
    expect(e.message).toContain("postfix_ops.txt");
    // --check changed nothing: the old cluster still starts.
    expect((await pg.controlData(c.pg13, 13)).state).toBe("shut down");
    expect(e).toBeInstanceOf(PostgresError);
  });

  it("left the source alone: same postmaster, still taking writes", async () => {
    expect((await pg.postmasterStartTime(srcConn)).getTime()).toBe(startTime.getTime());
    expect(Number(fs.readFileSync(`${SRC_DIR}/postmaster.pid`, "utf8").split("\n")[0])).toBe(srcPid);
    const h0 = await historyCount();
    await sleep(1000);
    expect(await historyCount()).toBeGreaterThan(h0);
    expect(writer?.exitCode).toBeNull();
    expect(writerErr).not.toMatch(/error|FATAL/i);
    await pg.sql(srcConn, "CREATE TABLE IF NOT EXISTS understudy_probe (at timestamptz)");
    expect((await pg.sql(srcConn, "INSERT INTO understudy_probe VALUES (now())")).rowCount).toBe(1);
    await pg.sql(srcConn, "DROP TABLE understudy_probe");
    // A wrong password is reported without the password that was tried.
    const wrong = "Wr0ng-Pass-xyz";
    await expect(pg.query({ ...srcConn, password: wrong }, "SELECT 1")).rejects.toThrow(/password authentication failed for user "postgres"/);
    await pg.query({ ...srcConn, password: wrong }, "SELECT 1").catch((e: Error) => expect(e.message).not.toContain(wrong));
    // The source's snapshots are ours (owner-marked), and nothing else was created on it.
    expect((await zfs.listSnapshots(SRC_DS)).map((s) => s.user["understudy:owner"])).toEqual([OWNER, OWNER]);
  });

  // A test, not an afterAll check: a failure in afterAll is outside the failure count.
  it("never printed or recorded the password (every command and progress line of the file)", () => {
    const commands = JSON.stringify(host.commands);
    // Positive control: the record holds what ran, and the password was really used.
    expect(commands).toContain("pg_ctl");
    expect(srcConn.password).toBe(PW);
    expect(commands).not.toContain(PW);
    expect(progress.join("\n")).not.toContain(PW);
  });
});
