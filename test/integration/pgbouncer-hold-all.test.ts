/**
 * PgBouncerEndpoint.holdAll against real parts (no ZFS): two PostgreSQL 15 clusters (initdb in
 * a temp dir), each with databases `app` and `shop`, a real pgbouncer 1.18 started by the
 * driver with an entry per database, pgbench writing into both databases through it while
 * the whole cluster moves. Ports 29440, 29441 (PostgreSQL) and 29491 (PgBouncer) only.
 */
import { ChildProcess, execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LocalHost } from "../../providers/host/local";
import { PauseTimeoutError, PgBouncerEndpoint, PgBouncerError, type DatabaseTarget } from "../../providers/endpoint/pgbouncer";
import { startPgbench } from "../harness/pgbench";

const BIN = "/usr/lib/postgresql/15/bin";
const A = 29440;
const B = 29441;
const BOUNCER = 29491;
const DBS = ["app", "shop"];

let tmp = "";
let sock = "";
let ep: PgBouncerEndpoint;
const children: ChildProcess[] = [];
const dataDirs: string[] = [];

function sh(argv: string[]): string {
  return execFileSync(argv[0], argv.slice(1), { encoding: "utf8", stdio: ["pipe", "pipe", "pipe"] });
}
const psql = (port: number, db: string, sql: string, host = sock) =>
  sh([`${BIN}/psql`, "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", host, "-p", String(port), "-U", "postgres", "-d", db, "-c", sql]).trim();
const servedPort = (db: string) => Number(psql(BOUNCER, db, "SELECT current_setting('port')", "127.0.0.1"));
const to = (port: number): Record<string, DatabaseTarget> => Object.fromEntries(DBS.map((d) => [d, { host: "127.0.0.1", port, dbname: d }]));

function cluster(name: string, port: number): void {
  const dir = path.join(tmp, name);
  sh(["runuser", "-u", "postgres", "--", `${BIN}/initdb`, "-D", dir, "--auth=trust", "-U", "postgres", "-N", "-E", "UTF8", "--locale=C"]);
  sh(["runuser", "-u", "postgres", "--", `${BIN}/pg_ctl`, "-D", dir, "-l", `${dir}.log`, "-w", "-o", `-p ${port} -k ${sock} -c listen_addresses=127.0.0.1 -c fsync=off`, "start"]);
  dataDirs.push(dir);
  for (const db of DBS) {
    psql(port, "postgres", `CREATE DATABASE ${db}`);
    psql(port, db, "CREATE TABLE t (id bigserial PRIMARY KEY, port int NOT NULL DEFAULT current_setting('port')::int)");
  }
}

function writer(db: string, seconds: number): Promise<{ failed: number; processed: number; output: string }> {
  const script = path.join(tmp, "w.sql");
  fs.writeFileSync(script, "INSERT INTO t DEFAULT VALUES;\n");
  return startPgbench([`${BIN}/pgbench`, "-h", "127.0.0.1", "-p", String(BOUNCER), "-U", "postgres", "-n", "-c", "2", "-R", "100", "-T", String(seconds), "-f", script, db], { children }).done;
}

beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "understudy-holdall-"));
  fs.chmodSync(tmp, 0o755);
  sock = path.join(tmp, "sock");
  fs.mkdirSync(sock);
  sh(["chown", "postgres:postgres", tmp, sock]);
  cluster("a", A);
  cluster("b", B);
  ep = new PgBouncerEndpoint(new LocalHost(), {
    name: "uslc-holdall",
    baseDir: path.join(tmp, "pgbouncer"),
    listenPort: BOUNCER,
    authType: "trust",
    users: [{ name: "postgres" }],
    databases: to(A),
  });
  await ep.ensure();
}, 180_000);

afterAll(async () => {
  for (const c of children) if (c.exitCode === null) c.kill("SIGKILL");
  await ep?.destroy({ mode: "immediate" }).catch(() => undefined);
  for (const d of dataDirs) {
    try {
      sh(["runuser", "-u", "postgres", "--", `${BIN}/pg_ctl`, "-D", d, "-m", "immediate", "-w", "stop"]);
    } catch {
      // not running
    }
  }
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
}, 120_000);

describe("PgBouncerEndpoint.holdAll: the whole cluster moves together", () => {
  it("under pgbench in both databases: both held, both switched with one RELOAD, both resumed; 0 failed, every row on one side or the other", async () => {
    const runs = DBS.map((db) => writer(db, 8));
    await new Promise((r) => setTimeout(r, 2500));
    const r = await ep.holdAll(DBS, async (ctx) => ctx.retarget(to(B)), { pauseTimeoutMs: 5000 });
    console.log(`[holdAll] two databases switched: pause window ${r.pauseWindowMs} ms (PAUSE ${r.phases.pauseMs}, work ${r.phases.workMs}, RESUME ${r.phases.resumeMs})`);
    for (const db of DBS) expect(servedPort(db)).toBe(B);
    for (const [i, res] of (await Promise.all(runs)).entries()) {
      expect(res.failed, res.output).toBe(0);
      const rows = Number(psql(A, DBS[i], "SELECT count(*) FROM t")) + Number(psql(B, DBS[i], "SELECT count(*) FROM t"));
      expect(rows).toBe(res.processed);
      expect(Number(psql(B, DBS[i], "SELECT count(*) FROM t"))).toBeGreaterThan(0);
    }
    expect((await ep.databases()).filter((d) => DBS.includes(d.name)).map((d) => d.paused)).toEqual([false, false]);
  });

  it("a failure after the switch puts every entry back before clients resume", async () => {
    const err = await ep
      .holdAll(DBS, async (ctx) => {
        await ctx.retarget(to(A));
        throw new Error("injected after the switch");
      })
      .catch((e) => e);
    expect(err).toBeInstanceOf(PgBouncerError);
    expect((err as PgBouncerError).clients).toBe("old-target");
    expect(err.message).toMatch(/injected after the switch; the old databases file was restored/);
    for (const db of DBS) expect(servedPort(db)).toBe(B);
    expect((await ep.databases()).filter((d) => DBS.includes(d.name)).every((d) => !d.paused)).toBe(true);
  });

  it("PAUSE of the second database times out (a transaction open on it): the first is resumed too, nothing changed", async () => {
    const pg = require("pg") as typeof import("pg");
    const c = new pg.Client({ host: "127.0.0.1", port: BOUNCER, user: "postgres", database: "shop" });
    c.on("error", () => undefined);
    await c.connect();
    try {
      await c.query("BEGIN");
      await c.query("INSERT INTO t DEFAULT VALUES");
      let ran = false;
      const err = await ep
        .holdAll(DBS, async () => {
          ran = true;
        }, { pauseTimeoutMs: 800 })
        .catch((e) => e);
      expect(err).toBeInstanceOf(PauseTimeoutError);
      expect(err.message).toMatch(/PAUSE shop .* did not complete within 800 ms/);
      expect(ran).toBe(false);
      expect((await ep.databases()).filter((d) => DBS.includes(d.name)).every((d) => !d.paused)).toBe(true);
      expect(servedPort("app")).toBe(B);
      await c.query("COMMIT");
    } finally {
      await c.end().catch(() => undefined);
    }
  });
});
