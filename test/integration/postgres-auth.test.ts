/**
 * Restricted local authentication, at the driver and step-runner level, without ZFS (plain
 * directories under /var/tmp/understudy-auth-*, ports 30100..30190).
 *
 * Live is what a DBA often runs: a PostgreSQL 13 cluster made with `initdb -U admin` (no role
 * named like the OS user) and `scram-sha-256` for local and loopback connections, with a
 * user map in its pg_ident.conf. A copy of its data directory (cp -a after a clean stop)
 * stands in for the clone. The rehearsal's steps run on it through the real step runner
 * (recover, check, upgrade --link to 15, start, post-upgrade, analyze, an SQL step, a
 * command step, verify) with a driver that was told nothing about the superuser and holds
 * no password: the bootstrap superuser is read from the clone (`admin`), and the steps reach
 * the servers started on the clone by a marked peer block in the CLONE's pg_hba.conf.
 * Live's pg_hba.conf and pg_ident.conf are byte-identical (sha256) afterwards, and once the
 * block is revoked (as after a promotion) the upgraded server's pg_hba.conf is live's, byte
 * for byte, and passwordless access is gone again.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execFileSync } from "node:child_process";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import { LocalHost } from "../../providers/host/local";
import { PostgresDriver } from "../../providers/postgres/driver";
import type { PgPlan } from "../../providers/plan/rehearsal";
import { planSteps } from "../../providers/plan/steps";
import { runStep, serverAfter, type RunnerEnv, type ServerState, type StepResult } from "../../providers/runner/steps";
import type { Snapshot, VerifySpec } from "../../providers/rehearsal/verify";
import type { Storage } from "../../providers/storage/types";
import { parseBusyPorts } from "../../providers/postgres/parse";
import { stopServersUnder } from "../harness/postgres";
import { sh } from "../harness/zfs";

const BIN13 = "/usr/lib/postgresql/13/bin";
const ROOT = fs.mkdtempSync("/var/tmp/understudy-auth-");
const LIVE = `${ROOT}/live/pg13`;
const LIVE_SOCK = `${ROOT}/live-sock`;
const CLONE = `${ROOT}/clone`;
const PASSWORD = "Adm1n-only-in-this-test";

const host = new LocalHost();
/** Told nothing about the superuser (its default is the OS user, `postgres`, which does not exist in this cluster). */
const pg = new PostgresDriver(host);
const logs: string[] = [];

/** Every free TCP port in 30100..30190, as seen now. */
function freePorts(): number[] {
  const used = parseBusyPorts(sh(["ss", "-tanH"]));
  const out: number[] = [];
  for (let p = 30100; p <= 30190; p++) if (!used.has(p)) out.push(p);
  return out;
}

const sha = (f: string) => crypto.createHash("sha256").update(fs.readFileSync(f)).digest("hex");
const asPostgres = (argv: string[], input?: string) => sh(["runuser", "-u", "postgres", "--", ...argv], { input });

let livePort: number;
let plan: PgPlan;
const hashes: Record<string, string> = {};
const liveHba = () => fs.readFileSync(`${LIVE}/pg_hba.conf`);

beforeAll(async () => {
  // Live, then four consecutive ports: the upgraded server, private servers (tempPort), pg_upgrade's two (+1, +2).
  const free = freePorts();
  livePort = free[0];
  const base = free.find((p) => p > livePort && [1, 2, 3].every((k) => free.includes(p + k)));
  if (base === undefined) throw new Error("no four consecutive free ports in 30100..30190");
  const [p1, temp] = [base, base + 1];
  fs.mkdirSync(`${ROOT}/live`, { recursive: true });
  fs.mkdirSync(CLONE, { recursive: true });
  fs.mkdirSync(LIVE_SOCK, { recursive: true });
  sh(["chown", "-R", "postgres:postgres", ROOT]);
  fs.writeFileSync(`${ROOT}/pw`, `${PASSWORD}\n`);
  sh(["chown", "postgres", `${ROOT}/pw`]);
  asPostgres([`${BIN13}/initdb`, "-D", LIVE, "-U", "admin", `--pwfile=${ROOT}/pw`, "--auth-local=scram-sha-256", "--auth-host=scram-sha-256", "--encoding=UTF8", "--locale=C.UTF-8"]);
  fs.rmSync(`${ROOT}/pw`);
  // A user map of live's own (must survive byte for byte).
  fs.appendFileSync(`${LIVE}/pg_ident.conf`, "livemap   postgres   admin\n");
  const hba = liveHba().toString();
  expect(hba).toMatch(/^local\s+all\s+all\s+scram-sha-256/m);
  expect(hba).toMatch(/^host\s+all\s+all\s+127\.0\.0\.1\/32\s+scram-sha-256/m);
  // Live, with some data, reached with the password (the only way in).
  asPostgres([`${BIN13}/pg_ctl`, "start", "-w", "-D", LIVE, "-l", `${ROOT}/live.log`, "-o", `-p ${livePort} -k ${LIVE_SOCK} -c listen_addresses=127.0.0.1`]);
  const psqlLive = (sql: string) =>
    execFileSync("runuser", ["-u", "postgres", "--", "env", `PGPASSWORD=${PASSWORD}`, `${BIN13}/psql`, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", String(livePort), "-U", "admin", "-d", "postgres", "-c", sql], { encoding: "utf8" });
  psqlLive("CREATE TABLE accounts (id serial PRIMARY KEY, v text); INSERT INTO accounts (v) SELECT 'row ' || g FROM generate_series(1, 500) g;");
  // Without the password, live refuses the OS user: what broke every step before.
  const r = sh(["runuser", "-u", "postgres", "--", `${BIN13}/psql`, "-X", "-w", "-h", LIVE_SOCK, "-p", String(livePort), "-U", "admin", "-d", "postgres", "-c", "SELECT 1"], { allowFail: true });
  expect(r).toBe("");
  // A clean stop, the copy that stands in for the clone, and live running again.
  asPostgres([`${BIN13}/pg_ctl`, "stop", "-w", "-D", LIVE, "-m", "fast"]);
  sh(["cp", "-a", LIVE, `${CLONE}/pg13`]);
  asPostgres([`${BIN13}/pg_ctl`, "start", "-w", "-D", LIVE, "-l", `${ROOT}/live.log`, "-o", `-p ${livePort} -k ${LIVE_SOCK} -c listen_addresses=127.0.0.1`]);
  for (const f of ["pg_hba.conf", "pg_ident.conf"]) hashes[f] = sha(`${LIVE}/${f}`);
  plan = {
    from: 13,
    to: 15,
    fromBinDir: BIN13,
    toBinDir: "/usr/lib/postgresql/15/bin",
    osUser: "postgres",
    oldDataDir: `${CLONE}/pg13`,
    newDataDir: `${CLONE}/pg15`,
    port: p1,
    tempPort: temp,
    socketDir: `${ROOT}/clone-sock`,
    listen: "",
    mode: "link",
    database: "postgres",
  };
}, 120_000);

afterAll(async () => {
  await stopServersUnder(ROOT, { maxDepth: 4 });
  fs.rmSync(ROOT, { recursive: true, force: true });
  await host.close();
  console.log(`restricted-auth driver test log:\n${logs.map((l) => `  ${l}`).join("\n")}`);
});

describe("restricted local auth: steps on a clone of a scram-only live whose superuser is admin", () => {
  const verify: VerifySpec = { rowCounts: "exact", checksumTables: ["public.accounts"], assertions: [{ name: "rows", sql: "SELECT count(*) = 500 FROM accounts" }] };
  const steps = planSteps([
    { name: "who", sql: "SELECT current_user, (SELECT rolname FROM pg_roles WHERE oid = 10)" },
    { name: "whoami", command: ["sh", "-c", 'psql -X -A -t -w -c "SELECT current_user" > "$0"', `${ROOT}/whoami.txt`] },
  ]);
  const env: RunnerEnv = { host, storage: {} as Storage, pg, log: (m) => logs.push(m) };
  let server: ServerState = "none";
  let baseline: Snapshot | undefined;
  let updateExtensionsSql: string | undefined;
  const results: Record<string, StepResult> = {};

  it("runs every step as the cluster's bootstrap superuser, read from the clone, with no password", async () => {
    // planSteps: recover, check, upgrade, start, post-upgrade, analyze, who, whoami, verify.
    for (const [i, step] of steps.entries()) {
      const r = await runStep(env, { step, index: i + 1, pg: plan, prevServer: server, verify, baseline, updateExtensionsSql });
      results[step.name] = r;
      if (r.baseline) baseline = r.baseline;
      if (r.updateExtensionsSql) updateExtensionsSql = r.updateExtensionsSql;
      server = serverAfter(step.kind, server);
    }
    expect(results.recover.detail.join("; ")).toMatch(/steps run as admin/);
    expect(fs.readFileSync(`${ROOT}/whoami.txt`, "utf8").trim()).toBe("admin");
    expect(results.verify.checks?.every((c) => c.status === "pass")).toBe(true);
    const rows = await pg.adminQuery({ version: 15, socketDir: plan.socketDir, port: plan.port }, "SELECT count(*) FROM accounts", { user: "admin" });
    expect(rows).toEqual([["500"]]);
    expect(results.who.detail.join("; ")).toMatch(/last row: admin \| admin/);
  });

  it("reads the bootstrap superuser of a cleanly stopped cluster in single-user mode", async () => {
    // The upgraded cluster is running: refused, nothing started.
    await expect(pg.readSuperuser(plan.newDataDir, { version: 15 })).rejects.toThrow(/running/);
    // The clone's old directory is unusable after --link: a second copy of live, made after a clean stop.
    sh(["mkdir", "-p", `${ROOT}/copy3`]);
    asPostgres([`${BIN13}/pg_ctl`, "stop", "-w", "-D", LIVE, "-m", "fast"]);
    sh(["cp", "-a", LIVE, `${ROOT}/copy3/pg13`]);
    asPostgres([`${BIN13}/pg_ctl`, "start", "-w", "-D", LIVE, "-l", `${ROOT}/live.log`, "-o", `-p ${livePort} -k ${LIVE_SOCK} -c listen_addresses=127.0.0.1`]);
    expect(await pg.readSuperuser(`${ROOT}/copy3/pg13`, { version: 13 })).toBe("admin");
  });

  it("refuses to add the block to a pg_hba.conf or pg_ident.conf that is not the clone's own file (live's, through a link or hba_file)", async () => {
    const copy = `${ROOT}/copy3/pg13`;
    // A pg_hba.conf that is a link to live's.
    fs.renameSync(`${copy}/pg_hba.conf`, `${copy}/pg_hba.conf.own`);
    fs.symlinkSync(`${LIVE}/pg_hba.conf`, `${copy}/pg_hba.conf`);
    await expect(pg.grantOwnerAccess(copy, { version: 13 }, "admin")).rejects.toThrow(/dataDir: hba_file of .* is .*pg_hba\.conf \(-> .*live\/pg13\/pg_hba\.conf\), not a file of that data directory/);
    fs.rmSync(`${copy}/pg_hba.conf`);
    fs.renameSync(`${copy}/pg_hba.conf.own`, `${copy}/pg_hba.conf`);
    // An ident_file setting that names live's file.
    fs.appendFileSync(`${copy}/postgresql.conf`, `\nident_file = '${LIVE}/pg_ident.conf'\n`);
    await expect(pg.grantOwnerAccess(copy, { version: 13 }, "admin")).rejects.toThrow(/ident_file of .* not a file of that data directory/);
    for (const f of ["pg_hba.conf", "pg_ident.conf"]) expect(sha(`${LIVE}/${f}`), f).toBe(hashes[f]);
    expect(fs.readFileSync(`${copy}/pg_hba.conf`, "utf8")).not.toMatch(/understudy/);
  });

  it("left live's pg_hba.conf and pg_ident.conf byte-identical", () => {
    for (const f of ["pg_hba.conf", "pg_ident.conf"]) expect(sha(`${LIVE}/${f}`), f).toBe(hashes[f]);
  });

  it("gave the clone's upgraded server a marked peer block for the OS user only", () => {
    const hba = fs.readFileSync(`${plan.newDataDir}/pg_hba.conf`, "utf8");
    expect(hba.split("\n").find((l) => /^local/.test(l))).toMatch(/^local\s+all\s+"admin"\s+peer\s+map=understudy_owner/);
    expect(fs.readFileSync(`${plan.newDataDir}/pg_ident.conf`, "utf8")).toMatch(/^understudy_owner\s+"postgres"\s+"admin"/m);
    // Another OS user still needs the password (nobody gained anything).
    const r = sh(["runuser", "-u", "nobody", "--", "/usr/lib/postgresql/15/bin/psql", "-X", "-w", "-h", plan.socketDir, "-p", String(plan.port), "-U", "admin", "-d", "postgres", "-c", "SELECT 1"], { allowFail: true });
    expect(r).toBe("");
  });

  it("revoking the block (as after a promotion) leaves exactly live's pg_hba.conf, reloaded", async () => {
    expect(await pg.revokeOwnerAccess(plan.newDataDir, { version: 15 })).toBe(true);
    expect(fs.readFileSync(`${plan.newDataDir}/pg_hba.conf`).equals(liveHba())).toBe(true);
    expect(sha(`${plan.newDataDir}/pg_ident.conf`)).toBe(hashes["pg_ident.conf"]);
    // Reloaded: the OS user needs the password again.
    const r = sh(["runuser", "-u", "postgres", "--", "/usr/lib/postgresql/15/bin/psql", "-X", "-w", "-h", plan.socketDir, "-p", String(plan.port), "-U", "admin", "-d", "postgres", "-c", "SELECT 1"], { allowFail: true });
    expect(r).toBe("");
    for (const f of ["pg_hba.conf", "pg_ident.conf"]) expect(sha(`${LIVE}/${f}`), f).toBe(hashes[f]);
  });
});
