/**
 * A rehearsal of a live whose local authentication is password-only, through the real
 * engine on zfs-fuse: live is a PostgreSQL 13 cluster made with `initdb -U admin` (no role
 * named like the OS user) whose pg_hba.conf says `scram-sha-256` for local and loopback
 * connections. The rehearsal is told nothing about a superuser and holds no password.
 * Afterwards:
 * - every step ran (recover, check, upgrade, start, post-upgrade, analyze, an SQL step, verify)
 *   and the report says the steps ran as `admin`, read from the clone;
 * - live's pg_hba.conf and pg_ident.conf are byte-identical (sha256), before and after destroy;
 * - the upgraded server on the clone has Understudy's marked peer block at the top of the
 *   CLONE's pg_hba.conf, and another OS user still needs the password.
 * Live's snapshot is taken without a CHECKPOINT (`checkpoint: false`): a CHECKPOINT is a read
 * of live, which still connects as the OS user's role by peer (a documented limitation).
 *
 * Pool `usauth`, live on 30150, the rehearsal on 30160-30163.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import { createPool, destroyPoolByName, sh, snapshotsOf } from "../harness/zfs";
import { stopServersUnder } from "../harness/postgres";
import { fileBackend, fixtureProgram, openStack, tempDir } from "../harness/pulumi";

const POOL = "usauth";
const PORT = 30150;
const UPGRADED = 30160;
const BIN13 = "/usr/lib/postgresql/13/bin";
const BIN15 = "/usr/lib/postgresql/15/bin";
const DATA = `/srv/${POOL}/live/pg13`;
const SOCK = "/var/tmp/understudy-auth-zfs-sock";
const CLONE_SOCK = "/var/tmp/understudy-auth-zfs-clone-sock";
const PASSWORD = "Adm1n-zfs-test-only";
const sha = (f: string) => crypto.createHash("sha256").update(fs.readFileSync(f)).digest("hex");
const asPostgres = (argv: string[]) => sh(["runuser", "-u", "postgres", "--", ...argv]);
const withPassword = (sql: string) =>
  sh(["runuser", "-u", "postgres", "--", "env", `PGPASSWORD=${PASSWORD}`, `${BIN13}/psql`, "-X", "-At", "-w", "-h", "127.0.0.1", "-p", String(PORT), "-U", "admin", "-d", "postgres", "-c", sql]).trim();

beforeAll(() => {
  createPool(POOL, 2);
  sh(["zfs", "create", `${POOL}/live`]);
  sh(["zfs", "create", `${POOL}/rehearsals`]);
  sh(["chown", "postgres:postgres", `/srv/${POOL}/live`]);
  for (const d of [SOCK, CLONE_SOCK]) sh(["install", "-d", "-o", "postgres", "-m", "0700", d]);
  const pw = `${tempDir("auth-pw")}/pw`;
  fs.writeFileSync(pw, `${PASSWORD}\n`);
  sh(["chown", "-R", "postgres", pw.slice(0, pw.lastIndexOf("/"))]);
  asPostgres([`${BIN13}/initdb`, "-D", DATA, "-U", "admin", `--pwfile=${pw}`, "--auth-local=scram-sha-256", "--auth-host=scram-sha-256", "--encoding=UTF8", "--locale=C.UTF-8"]);
  fs.rmSync(pw);
  fs.appendFileSync(`${DATA}/pg_ident.conf`, "livemap   postgres   admin\n");
  asPostgres([`${BIN13}/pg_ctl`, "start", "-w", "-D", DATA, "-l", `/srv/${POOL}/live/live.log`, "-o", `-p ${PORT} -k ${SOCK} -c listen_addresses=127.0.0.1`]);
  withPassword("CREATE TABLE accounts (id serial PRIMARY KEY, v text); INSERT INTO accounts (v) SELECT 'row ' || g FROM generate_series(1, 1000) g;");
}, 300_000);

afterAll(async () => {
  await stopServersUnder(`/srv/${POOL}`).catch(() => undefined);
  destroyPoolByName(POOL);
  for (const d of [SOCK, CLONE_SOCK]) fs.rmSync(d, { recursive: true, force: true });
}, 300_000);

describe("a rehearsal of a live with scram-only local auth and a bootstrap superuser named admin", () => {
  it("runs every step as admin without a password; live's pg_hba.conf and pg_ident.conf are byte-identical", async () => {
    const hashes = { hba: sha(`${DATA}/pg_hba.conf`), ident: sha(`${DATA}/pg_ident.conf`) };
    const liveStarted = withPassword("SELECT pg_postmaster_start_time()");
    const snaps = snapshotsOf(`${POOL}/live`);
    const stack = await openStack(fixtureProgram("rehearsal-program"), "auth", fileBackend(), {
      rehearsal: {
        value: JSON.stringify({
          source: { dataset: `${POOL}/live`, pgdata: "pg13", version: 13, port: PORT, socketDir: SOCK, checkpoint: false },
          clone: { dataset: `${POOL}/rehearsals/auth` },
          to: 15,
          postgres: { port: UPGRADED, socketDir: CLONE_SOCK },
          steps: [{ name: "who", sql: "SELECT current_user" }],
          checks: { checksumTables: ["public.accounts"], assertions: [{ name: "rows", sql: "SELECT count(*) = 1000 FROM accounts" }] },
          reportDir: tempDir("auth-reports"),
        }),
      },
    });
    const up = await stack.up();
    expect(up.summary.result).toBe("succeeded");
    const report = up.outputs.report.value as { status: string; steps: Array<{ name: string; status: string; detail: string }> };
    expect(report.status).toBe("passed");
    expect(report.steps.find((s) => s.name === "recover")?.detail).toMatch(/steps run as admin \(the bootstrap superuser, read from the clone\)/);
    expect(report.steps.find((s) => s.name === "who")?.detail).toMatch(/last row: admin/);
    expect(report.steps.every((s) => s.status === "ok")).toBe(true);

    // The clone's upgraded server: the block first in the CLONE's pg_hba.conf; live's rules after it.
    const cloneHba = fs.readFileSync(`/srv/${POOL}/rehearsals/auth/pg13.pg15/pg_hba.conf`, "utf8");
    expect(cloneHba.split("\n").find((l) => l.startsWith("local"))).toMatch(/^local\s+all\s+"admin"\s+peer\s+map=understudy_owner/);
    expect(cloneHba).toContain(fs.readFileSync(`${DATA}/pg_hba.conf`, "utf8"));
    const nobody = sh(["runuser", "-u", "nobody", "--", `${BIN15}/psql`, "-X", "-w", "-h", CLONE_SOCK, "-p", String(UPGRADED), "-U", "admin", "-d", "postgres", "-c", "SELECT 1"], { allowFail: true });
    expect(nobody).toBe("");

    // Live: not restarted, its authentication files untouched.
    expect(withPassword("SELECT pg_postmaster_start_time()")).toBe(liveStarted);
    expect(sha(`${DATA}/pg_hba.conf`)).toBe(hashes.hba);
    expect(sha(`${DATA}/pg_ident.conf`)).toBe(hashes.ident);

    const d = await stack.destroy();
    expect(d.summary.result).toBe("succeeded");
    expect(snapshotsOf(`${POOL}/live`)).toEqual(snaps);
    expect(sha(`${DATA}/pg_hba.conf`)).toBe(hashes.hba);
    expect(sha(`${DATA}/pg_ident.conf`)).toBe(hashes.ident);
  });
});
