/**
 * PgBouncerEndpoint against real parts: PostgreSQL 13 and 15 clusters (initdb in a temp
 * dir, owned by postgres), a real pgbouncer 1.18 started by the driver, pgbench writing
 * through it while the target moves. Ports 25500..25599 only.
 */
import { ChildProcess, execFileSync, spawn } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LocalHost } from "../../providers/host/local";
import { SshHost } from "../../providers/host/ssh";
import { resolveConnection } from "../../providers/host/connection";
import type { Host, RunOptions, RunResult } from "../../providers/host/types";
import {
  DatabaseTarget,
  PauseTimeoutError,
  PgBouncerConfigError,
  PgBouncerEndpoint,
  PgBouncerError,
} from "../../providers/endpoint/pgbouncer";

const PG13 = { bin: "/usr/lib/postgresql/13/bin", port: 25501 };
const PG15 = { bin: "/usr/lib/postgresql/15/bin", port: 25502 };
const BOUNCER_PORT = 25510;
const SCRAM_PORT = 25511;
const SSH_BOUNCER_PORT = 25512;
const SESSION_PORT = 25513; // and 25514
const PGBENCH = "/usr/lib/postgresql/15/bin/pgbench";

let tmp = "";
let sockDir = "";
const started: { dataDir: string; bin: string }[] = [];
const endpoints: PgBouncerEndpoint[] = [];
const children: ChildProcess[] = [];
const openClients: { end(): Promise<void> }[] = [];

function sh(argv: string[], opts: { input?: string; allowFail?: boolean } = {}): string {
  try {
    return execFileSync(argv[0], argv.slice(1), { encoding: "utf8", input: opts.input, stdio: ["pipe", "pipe", "pipe"] });
  } catch (e) {
    if (opts.allowFail) return "";
    const err = e as { stderr?: string; message: string };
    throw new Error(`${argv.join(" ")} failed: ${err.stderr || err.message}`, { cause: e });
  }
}

function asPostgres(argv: string[]): string {
  return sh(["runuser", "-u", "postgres", "--", ...argv]);
}

function psql(port: number, sql: string, db = "app"): string {
  return sh(["/usr/lib/postgresql/15/bin/psql", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", sockDir, "-p", String(port), "-U", "postgres", "-d", db, "-c", sql]).trim();
}

function startCluster(name: string, v: { bin: string; port: number }): void {
  const dataDir = path.join(tmp, name);
  asPostgres([`${v.bin}/initdb`, "-D", dataDir, "--auth=trust", "-U", "postgres", "-N", "-E", "UTF8", "--locale=C"]);
  asPostgres([
    `${v.bin}/pg_ctl`, "-D", dataDir, "-l", path.join(tmp, `${name}.log`), "-w", "-t", "60",
    "-o", `-p ${v.port} -k ${sockDir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=50`,
    "start",
  ]);
  started.push({ dataDir, bin: v.bin });
  psql(v.port, "CREATE DATABASE app", "postgres");
  psql(
    v.port,
    "CREATE TABLE t (id bigserial PRIMARY KEY, client int, at timestamptz NOT NULL DEFAULT clock_timestamp(), " +
      "server_port int NOT NULL DEFAULT current_setting('port')::int)",
  );
}

const target13: DatabaseTarget = { host: "127.0.0.1", port: PG13.port, dbname: "app" };
const target15: DatabaseTarget = { host: "127.0.0.1", port: PG15.port, dbname: "app" };

/** A `pg` client through PgBouncer. */
async function bouncerClient(port = BOUNCER_PORT, user = "postgres", password?: string) {
   
  const pg = require("pg") as typeof import("pg");
  const c = new pg.Client({ host: "127.0.0.1", port, user, password, database: "app", connectionTimeoutMillis: 5000 });
  c.on("error", () => undefined);
  await c.connect();
  openClients.push(c);
  return c;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** A Host that records every command and refuses to run anything: for "nothing ran" checks. */
class RecordingHost implements Host {
  readonly description = "recording";
  calls: string[][] = [];
  async run(argv: readonly string[], _opts?: RunOptions): Promise<RunResult> {
    this.calls.push([...argv]);
    throw new Error("RecordingHost runs nothing");
  }
  runAs(_user: string, argv: readonly string[], opts?: RunOptions): Promise<RunResult> {
    return this.run(argv, opts);
  }
  async writeFile(p: string): Promise<void> {
    this.calls.push(["writeFile", p]);
    throw new Error("RecordingHost writes nothing");
  }
  async close(): Promise<void> {}
}

beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "understudy-pgb-"));
  fs.chmodSync(tmp, 0o755);
  sockDir = path.join(tmp, "sock");
  fs.mkdirSync(sockDir);
  sh(["chown", "postgres:postgres", tmp, sockDir]);
  startCluster("pg13", PG13);
  startCluster("pg15", PG15);
}, 180_000);

afterAll(async () => {
  for (const c of openClients) await c.end().catch(() => undefined);
  for (const ch of children) if (ch.exitCode === null) ch.kill("SIGKILL");
  for (const ep of endpoints) {
    await ep.destroy({ mode: "immediate" }).catch((e) => console.error(`cleanup ${ep.config.name}: ${(e as Error).message}`));
    // If destroy refused or failed, make sure no pgbouncer is left running from our dir.
    const pidfile = ep.paths.pidfile;
    const pid = fs.existsSync(pidfile) ? fs.readFileSync(pidfile, "utf8").trim() : "";
    if (/^\d+$/.test(pid)) sh(["kill", "-KILL", pid], { allowFail: true });
    await ep.host.close();
  }
  for (const c of started) {
    sh(["runuser", "-u", "postgres", "--", `${c.bin}/pg_ctl`, "-D", c.dataDir, "-m", "immediate", "-w", "stop"], { allowFail: true });
  }
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
}, 120_000);

describe("PgBouncerEndpoint (local host, trust auth, transaction pooling)", () => {
  let ep: PgBouncerEndpoint;

  beforeAll(async () => {
    ep = new PgBouncerEndpoint(new LocalHost(), {
      name: "main",
      baseDir: path.join(tmp, "pgbouncer"),
      listenPort: BOUNCER_PORT,
      authType: "trust",
      users: [{ name: "postgres" }],
      databases: { app: target13 },
    });
    endpoints.push(ep);
  });

  it("ensure() writes the files, starts pgbouncer as postgres and is idempotent", async () => {
    const r = await ep.ensure();
    expect(r).toMatchObject({ created: true, started: true, restarted: false, reloaded: false });
    expect(r.pid).toBeGreaterThan(0);
    const ini = fs.readFileSync(ep.paths.ini, "utf8");
    expect(ini).toContain("pool_mode = transaction");
    expect(ini).toContain(`%include ${ep.paths.databases}`);
    expect(ini).toContain("ignore_startup_parameters = extra_float_digits");
    expect(fs.readFileSync(ep.paths.databases, "utf8")).toContain(`app = host=127.0.0.1 port=${PG13.port} dbname=app`);
    expect(fs.statSync(ep.paths.userlist).mode & 0o777).toBe(0o600);
    // Runs as postgres.
    const user = sh(["ps", "-o", "user=", "-p", String(r.pid)]).trim();
    expect(user).toBe("postgres");
    // Clients reach PG 13 through it.
    const c = await bouncerClient();
    expect((await c.query("SELECT current_setting('port') AS p")).rows[0].p).toBe(String(PG13.port));
    await c.end();

    const again = await ep.ensure();
    expect(again).toMatchObject({ created: false, started: false, restarted: false, reloaded: false, pid: r.pid });
    expect(await ep.target("app")).toEqual(target13);
    const dbs = await ep.databases();
    expect(dbs.map((d) => d.name)).toEqual(["app"]);
    expect(dbs[0]).toMatchObject({ host: "127.0.0.1", port: PG13.port, database: "app", paused: false });
  });

  it("switchTarget moves pgbench clients between PG 13 and PG 15 with 0 failed transactions", async () => {
    const script = path.join(tmp, "insert.sql");
    fs.writeFileSync(script, "INSERT INTO t (client) VALUES (:client_id);\n");
    const bench = spawn(PGBENCH, ["-h", "127.0.0.1", "-p", String(BOUNCER_PORT), "-U", "postgres", "-n", "-c", "4", "-j", "2", "-T", "10", "-f", script, "app"], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    children.push(bench);
    let out = "";
    bench.stdout.on("data", (d: Buffer) => (out += d.toString()));
    bench.stderr.on("data", (d: Buffer) => (out += d.toString()));
    const exited = new Promise<number | null>((resolve) => bench.on("close", (code) => resolve(code)));

    await new Promise((r) => setTimeout(r, 1500));
    const plan = [target15, target13, target15, target13, target15];
    const windows: number[] = [];
    let lastResumeAt = 0;
    for (const to of plan) {
      const r = await ep.switchTarget("app", to, { pauseTimeoutMs: 5000 });
      lastResumeAt = Date.now();
      expect(r.changed).toBe(true);
      expect(r.to).toEqual(to);
      windows.push(r.pauseWindowMs);
      console.log(`[pgbouncer] switch app -> :${to.port}: pause window ${r.pauseWindowMs} ms`, JSON.stringify(r.phases));
      expect(await ep.target("app")).toEqual(to);
      await new Promise((res) => setTimeout(res, 1200));
    }
    const code = await exited;
    console.log(`[pgbouncer] pgbench output:\n${out}`);
    console.log(
      `[pgbouncer] pause window over ${windows.length} switches under pgbench load (transaction pooling): ` +
        `median ${median(windows)} ms, min ${Math.min(...windows)} ms, max ${Math.max(...windows)} ms`,
    );
    expect(code).toBe(0);
    expect(out).not.toMatch(/aborted|error/i);
    const failed = /number of failed transactions: (\d+)/.exec(out);
    expect(failed, "pgbench prints the failed-transaction count").not.toBeNull();
    expect(Number(failed![1])).toBe(0);
    const processed = Number(/number of transactions actually processed: (\d+)/.exec(out)![1]);
    expect(processed).toBeGreaterThan(100);

    // Every committed transaction is a row on exactly one of the two servers: nothing lost.
    const rows13 = Number(psql(PG13.port, "SELECT count(*) FROM t"));
    const rows15 = Number(psql(PG15.port, "SELECT count(*) FROM t"));
    expect(rows13 + rows15).toBe(processed);
    // After the last switch, writes went to PG 15 only.
    const since = new Date(lastResumeAt).toISOString();
    expect(Number(psql(PG15.port, `SELECT count(*) FROM t WHERE at > '${since}'`))).toBeGreaterThan(0);
    expect(Number(psql(PG13.port, `SELECT count(*) FROM t WHERE at > '${since}'`))).toBe(0);
    expect(windows.every((w) => w > 0 && w < 2000)).toBe(true);
  });

  it("switchTarget to the current target is a no-op", async () => {
    const r = await ep.switchTarget("app", target15);
    expect(r).toMatchObject({ changed: false, pauseWindowMs: 0 });
  });

  it("a PAUSE that cannot complete times out, resumes, and leaves clients on the old target", async () => {
    const before = await ep.target("app");
    expect(before).toEqual(target15);
    const dbFileBefore = fs.readFileSync(ep.paths.databases, "utf8");
    // An open transaction keeps its server connection: PAUSE has to wait for it.
    const holder = await bouncerClient();
    await holder.query("BEGIN");
    await holder.query("INSERT INTO t (client) VALUES (-1)");

    const t0 = Date.now();
    let err: unknown;
    try {
      await ep.switchTarget("app", target13, { pauseTimeoutMs: 1000 });
    } catch (e) {
      err = e;
    }
    const took = Date.now() - t0;
    // Whatever the assertions below say, do not leave a transaction open for later tests.
    const release = setTimeout(() => void holder.query("ROLLBACK").catch(() => undefined), 8000);
    console.log(`[pgbouncer] PAUSE timeout (1000 ms) reported after ${took} ms: ${(err as Error).message}`);
    expect(err).toBeInstanceOf(PauseTimeoutError);
    expect((err as PauseTimeoutError).clients).toBe("old-target");
    expect((err as Error).message).toMatch(/did not complete within 1000 ms/);
    expect((err as Error).message).toMatch(/old target, nothing was changed/);
    expect((err as Error).message).toMatch(/1 server connection\(s\) busy, for client\(s\) postgres@127\.0\.0\.1:\d+/);
    expect(took).toBeGreaterThanOrEqual(1000);
    expect(took).toBeLessThan(2500);

    // The admin connection whose PAUSE was abandoned is gone too (only ours is left).
     
    const pg = require("pg") as typeof import("pg");
    const adm = new pg.Client({ host: "127.0.0.1", port: BOUNCER_PORT, user: "understudy_admin", database: "pgbouncer" });
    await adm.connect();
    await new Promise((res) => setTimeout(res, 200));
    const admins = (await adm.query("SHOW CLIENTS")).rows.filter((r) => r.database === "pgbouncer");
    console.log(`[pgbouncer] admin clients after the timeout: ${JSON.stringify(admins.map((r) => [r.state, r.port]))}`);
    expect(admins.length).toBe(1);
    await adm.end();

    // Nothing changed: same live entry, not paused, same file; new clients get answers from PG 15.
    const dbs = await ep.databases();
    expect(dbs.find((d) => d.name === "app")).toMatchObject({ host: "127.0.0.1", port: PG15.port, paused: false });
    expect(fs.readFileSync(ep.paths.databases, "utf8")).toBe(dbFileBefore);
    expect(fs.readdirSync(ep.paths.configDir).filter((f) => /understudy-(next|tmp)/.test(f))).toEqual([]);
    const other = await bouncerClient();
    const q = await Promise.race([
      other.query("SELECT current_setting('port') AS p"),
      new Promise<never>((_, rej) => setTimeout(() => rej(new Error("query through PgBouncer hung: still paused?")), 3000)),
    ]);
    expect(q.rows[0].p).toBe(String(PG15.port));
    // The held transaction is intact and commits on the old target.
    clearTimeout(release);
    await holder.query("COMMIT");
    expect(Number(psql(PG15.port, "SELECT count(*) FROM t WHERE client = -1"))).toBe(1);
    await other.end();
    await holder.end();

    // And the same switch goes through once the transaction is gone.
    const r = await ep.switchTarget("app", target13, { pauseTimeoutMs: 1000 });
    expect(r.changed).toBe(true);
    expect(await ep.target("app")).toEqual(target13);
  });

  it("hold() restores the old target and resumes when the work fails after a retarget", async () => {
    const c = await bouncerClient();
    let err: unknown;
    try {
      await ep.hold(
        "app",
        async (h) => {
          await h.retarget(target15);
          expect((await h.databases()).find((d) => d.name === "app")?.port).toBe(PG15.port);
          throw new Error("replay step 3 failed");
        },
        { pauseTimeoutMs: 2000 },
      );
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(PgBouncerError);
    expect((err as PgBouncerError).clients).toBe("old-target");
    expect((err as Error).message).toMatch(/replay step 3 failed/);
    expect((err as Error).message).toMatch(/clients were resumed and are on the old target 127\.0\.0\.1:25501\/app/);
    expect(await ep.target("app")).toEqual(target13);
    expect((await ep.databases())[0].paused).toBe(false);
    expect((await c.query("SELECT current_setting('port') AS p")).rows[0].p).toBe(String(PG13.port));
    await c.end();
  });

  it("hold() holds queries while fn runs and reports the window", async () => {
    const c = await bouncerClient();
    let answeredAt = 0;
    const r = await ep.hold("app", async (h) => {
      // A query sent now waits inside PgBouncer until RESUME.
      void c.query("SELECT 1").then(() => (answeredAt = Date.now()));
      await new Promise((res) => setTimeout(res, 300));
      expect(answeredAt).toBe(0);
      return h.elapsedMs();
    });
    const resumedAt = Date.now();
    await new Promise((res) => setTimeout(res, 200));
    expect(answeredAt).toBeGreaterThan(0);
    expect(answeredAt).toBeLessThanOrEqual(resumedAt + 200);
    expect(r.value).toBeGreaterThanOrEqual(300);
    expect(r.pauseWindowMs).toBeGreaterThanOrEqual(300);
    await c.end();
  });

  it("pause()/resume() are bounded too, and a second PAUSE is refused clearly", async () => {
    const ms = await ep.pause("app", { pauseTimeoutMs: 2000 });
    expect(ms).toBeLessThan(2000);
    expect((await ep.databases())[0].paused).toBe(true);
    await expect(ep.switchTarget("app", target15, { pauseTimeoutMs: 500 })).rejects.toThrow(/paused already/);
    expect(await ep.resume("app")).toBe(true);
    expect(await ep.resume("app")).toBe(false);
    expect((await ep.databases())[0].paused).toBe(false);
  });

  it("ensure() adds a new entry with RELOAD, keeps the switched one, and a quoted name (app-ro) can be switched", async () => {
    const live = await ep.target("app");
    const again = new PgBouncerEndpoint(new LocalHost(), {
      name: "main",
      baseDir: path.join(tmp, "pgbouncer"),
      listenPort: BOUNCER_PORT,
      authType: "trust",
      users: [{ name: "postgres" }],
      // The config still says PG 13 for app: ensure() must not undo a switch.
      databases: { app: live?.port === PG13.port ? target15 : target13, "app-ro": target15 },
    });
    const r = await again.ensure();
    expect(r).toMatchObject({ created: false, started: false, restarted: false, reloaded: true });
    expect(await again.target("app")).toEqual(live);
    expect(await again.target("app-ro")).toEqual(target15);
    const s = await again.switchTarget("app-ro", target13, { pauseTimeoutMs: 2000 });
    expect(s.changed).toBe(true);
    expect(await again.target("app-ro")).toEqual(target13);
    expect(await again.target("app")).toEqual(live);
  });

  it("refuses bad input before running anything", async () => {
    const rec = new RecordingHost();
    const good = new PgBouncerEndpoint(rec, { name: "x", listenPort: 25520, authType: "trust", configDir: path.join(tmp, "never") });
    const hostile = "app]\n[x";
    await expect(good.switchTarget(hostile, target13)).rejects.toThrow(PgBouncerConfigError);
    await expect(good.switchTarget(hostile, target13)).rejects.toThrow(/database: "app\]\\n\[x" is not a database name/);
    await expect(good.switchTarget("app", { host: "127.0.0.1\nadmin_users = evil", port: 5432, dbname: "app" })).rejects.toThrow(/target: host: .* is not a valid host/);
    await expect(good.switchTarget("app", { host: "127.0.0.1", port: 70000, dbname: "app" })).rejects.toThrow(/target: port: 70000 is not a valid port/);
    await expect(good.switchTarget("app", { host: "127.0.0.1", port: 5432, dbname: "app x=1" })).rejects.toThrow(/dbname/);
    await expect(good.switchTarget("app", target13, { pauseTimeoutMs: 0 })).rejects.toThrow(/pauseTimeoutMs/);
    await expect(good.hold("pgbouncer", async () => 1)).rejects.toThrow(/admin console/);
    await expect(good.target("App;")).rejects.toThrow(PgBouncerConfigError);
    expect(rec.calls).toEqual([]);

    const bad: [Record<string, unknown>, RegExp][] = [
      [{ name: "x", listenPort: 25520, authType: "trust", configDir: "relative/dir" }, /configDir: "relative\/dir" must be an absolute path/],
      [{ name: "x", listenPort: 25520, authType: "trust", baseDir: "/tmp/a b" }, /baseDir: .* contains " "/],
      [{ name: "x", listenPort: 25520, authType: "trust", configDir: "/tmp/../etc" }, /configDir: .* must not contain "\.\." components/],
      [{ name: "x", listenPort: 0, authType: "trust" }, /listenPort: 0 is not a port in 1024\.\.65535/],
      [{ name: "x", listenPort: 25520, authType: "trust", databases: { [hostile]: target13 } }, /databases key: "app\]\\n\[x"/],
      [{ name: "x", listenPort: 25520, authType: "trust", databases: { app: { ...target13, port: "5432" } } }, /databases\.app: port: "5432" is not a valid port/],
      [{ name: "x", listenPort: 25520, authType: "trust", serverResetQuery: "DISCARD ALL\nadmin_users = evil" }, /serverResetQuery: .* contains "\\n"/],
      [{ name: "x", listenPort: 25520, authType: "trust", listenAddr: "0.0.0.0;x" }, /listenAddr/],
      [{ name: "x", listenPort: 25520, authType: "trust", adminUser: "adm=in" }, /adminUser/],
      [{ name: "x", listenPort: 25520, authType: "md5" }, /adminPassword: is required with authType "md5"/],
      [{ name: "x", listenPort: 25520, authType: "scram-sha-256", adminPassword: "s3cret-pw", users: [{ name: "u", password: "a\nb" }] }, /users\[\]\.password: contains a control character/],
      [{ name: "../x", listenPort: 25520, authType: "trust" }, /name: "\.\.\/x" is not a valid instance name/],
      [{ name: "x", listenPort: 25520, authType: "trust", poolMode: "sesion" }, /poolMode/],
      [{ name: "x", listenPort: 25520, authType: "trust", extra: 1 }, /Unrecognized key/],
    ];
    for (const [cfg, re] of bad) {
      let err: unknown;
      try {
        new PgBouncerEndpoint(rec, cfg as never);
      } catch (e) {
        err = e;
      }
      expect(err, JSON.stringify(cfg)).toBeInstanceOf(PgBouncerConfigError);
      expect((err as Error).message).toMatch(re);
      expect((err as Error).message).not.toContain("s3cret-pw");
    }
    expect(rec.calls).toEqual([]);
  });

  it("a listen port already in use is a clear error naming the port and the host; nothing is started", async () => {
    const dir = path.join(tmp, "pgbouncer", "busy");
    const busy = new PgBouncerEndpoint(new LocalHost(), {
      name: "busy",
      baseDir: path.join(tmp, "pgbouncer"),
      listenPort: PG13.port, // PostgreSQL 13 listens there
      authType: "trust",
      databases: { app: target13 },
    });
    endpoints.push(busy);
    const err = await busy.ensure().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(PgBouncerError);
    expect((err as Error).message).toMatch(/listenPort: port 25501 on local is already in use \(by postgres pid \d+\)/);
    expect((err as Error).message).toMatch(/Nothing was started/);
    expect(fs.existsSync(dir)).toBe(false);
  });

  it("destroy() refuses a directory it did not create", async () => {
    const foreign = path.join(tmp, "pgbouncer", "foreign");
    fs.mkdirSync(foreign, { recursive: true });
    fs.writeFileSync(path.join(foreign, "keep.txt"), "not ours");
    const ep2 = new PgBouncerEndpoint(new LocalHost(), { name: "foreign", baseDir: path.join(tmp, "pgbouncer"), listenPort: 25519, authType: "trust" });
    await expect(ep2.destroy()).rejects.toThrow(/exists but was not created by this driver.*refusing/);
    await expect(ep2.ensure()).rejects.toThrow(/exists but was not created by this driver/);
    expect(fs.existsSync(path.join(foreign, "keep.txt"))).toBe(true);
  });
});

describe("PgBouncerEndpoint with scram-sha-256 auth", () => {
  it("writes a 0600 userlist, authenticates the admin console and clients, never shows the passwords", async () => {
    const adminPassword = "adm'n\"pw-Zq81";
    const appPassword = "app pw \"quoted\" x9";
    const ep = new PgBouncerEndpoint(new LocalHost(), {
      name: "scram",
      baseDir: path.join(tmp, "pgbouncer"),
      listenPort: SCRAM_PORT,
      authType: "scram-sha-256",
      adminPassword,
      users: [{ name: "postgres", password: appPassword }],
      databases: { app: target13 },
    });
    endpoints.push(ep);
    const r = await ep.ensure();
    expect(r.started).toBe(true);
    const st = fs.statSync(ep.paths.userlist);
    expect(st.mode & 0o777).toBe(0o600);
    expect(sh(["stat", "-c", "%U", ep.paths.userlist]).trim()).toBe("postgres");
    expect(fs.readFileSync(ep.paths.userlist, "utf8")).toContain(`"postgres" "app pw ""quoted"" x9"`);
    expect(await ep.target("app")).toEqual(target13);

    const c = await bouncerClient(SCRAM_PORT, "postgres", appPassword);
    expect((await c.query("SELECT 1 AS one")).rows[0].one).toBe(1);
    await c.end();
    await expect(bouncerClient(SCRAM_PORT, "postgres", "wrong")).rejects.toThrow(/password authentication failed|SASL/);

    // A wrong admin password: the error names the console, not the password.
    const wrong = new PgBouncerEndpoint(new LocalHost(), {
      name: "scram",
      baseDir: path.join(tmp, "pgbouncer"),
      listenPort: SCRAM_PORT,
      authType: "scram-sha-256",
      adminPassword: "nope-wrong-pw",
    });
    const e = await wrong.databases().then(() => undefined, (x: unknown) => x as Error);
    expect(e?.message).toMatch(/cannot reach the admin console/);
    expect(e?.message).not.toContain("nope-wrong-pw");

    // The log never holds a password.
    const log = fs.readFileSync(ep.paths.logfile, "utf8");
    expect(log).not.toContain(appPassword);
    expect(log).not.toContain(adminPassword);

    expect(await ep.destroy()).toBe(true);
    expect(fs.existsSync(ep.paths.configDir)).toBe(false);
    expect(await ep.destroy()).toBe(false);
  });
});

describe("PgBouncerEndpoint with session pooling", () => {
  it("PAUSE waits for idle *sessions*: switchTarget times out while a client is merely connected", async () => {
    const ep = new PgBouncerEndpoint(new LocalHost(), {
      name: "session",
      baseDir: path.join(tmp, "pgbouncer"),
      listenPort: SESSION_PORT,
      poolMode: "session",
      authType: "trust",
      users: [{ name: "postgres" }],
      databases: { app: target13 },
    });
    endpoints.push(ep);
    await ep.ensure();
    const idle = await bouncerClient(SESSION_PORT);
    await idle.query("SELECT 1"); // no transaction open, just a session
    const err = await ep.switchTarget("app", target15, { pauseTimeoutMs: 1000 }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(PauseTimeoutError);
    expect(await ep.target("app")).toEqual(target13);
    expect((await idle.query("SELECT current_setting('port') AS p")).rows[0].p).toBe(String(PG13.port));
    await idle.end();
    // With the session gone PAUSE completes at once.
    const r = await ep.switchTarget("app", target15, { pauseTimeoutMs: 1000 });
    expect(r.changed).toBe(true);

    // A changed listen port is applied by a restart (RELOAD does not re-bind).
    const moved = new PgBouncerEndpoint(new LocalHost(), {
      name: "session",
      baseDir: path.join(tmp, "pgbouncer"),
      listenPort: SESSION_PORT + 1,
      poolMode: "session",
      authType: "trust",
      users: [{ name: "postgres" }],
    });
    endpoints.push(moved);
    const m = await moved.ensure();
    expect(m).toMatchObject({ created: false, started: false, restarted: true });
    expect(await moved.target("app")).toEqual(target15);
    await expect(bouncerClient(SESSION_PORT)).rejects.toThrow(/ECONNREFUSED/);
    expect(await moved.destroy()).toBe(true);
  });
});

describe("PgBouncerEndpoint over SSH", () => {
  const keyFile = path.join(os.homedir(), ".cache/understudy/ssh/id_ed25519");
  let sshReady = false;
  beforeAll(() => {
    try {
      execFileSync("bash", [path.join(__dirname, "../../scripts/setup-sshd.sh")], { stdio: ["ignore", "ignore", "pipe"] });
      sshReady = true;
    } catch (e) {
      console.error(`[pgbouncer] SSH test skipped: scripts/setup-sshd.sh failed: ${(e as { stderr?: Buffer }).stderr?.toString() ?? e}`);
    }
  }, 60_000);

  it("ensure(), switchTarget() and destroy() through an SshHost (admin console over a forwarded channel)", async (ctx) => {
    if (!sshReady) ctx.skip();
    const host = new SshHost(resolveConnection({ host: "127.0.0.1", port: 2222, user: "root", privateKey: fs.readFileSync(keyFile, "utf8") }));
    const ep = new PgBouncerEndpoint(host, {
      name: "overssh",
      baseDir: path.join(tmp, "pgbouncer"),
      listenPort: SSH_BOUNCER_PORT,
      authType: "trust",
      users: [{ name: "postgres" }],
      databases: { app: target13 },
    });
    endpoints.push(ep);
    expect((await ep.ensure()).started).toBe(true);
    const c = await bouncerClient(SSH_BOUNCER_PORT);
    expect((await c.query("SELECT current_setting('port') AS p")).rows[0].p).toBe(String(PG13.port));
    const r = await ep.switchTarget("app", target15, { pauseTimeoutMs: 3000 });
    console.log(`[pgbouncer] over SSH: pause window ${r.pauseWindowMs} ms`, JSON.stringify(r.phases));
    expect((await c.query("SELECT current_setting('port') AS p")).rows[0].p).toBe(String(PG15.port));
    await c.end();
    expect(await ep.destroy()).toBe(true);
    expect(fs.existsSync(ep.paths.configDir)).toBe(false);
  });
});
