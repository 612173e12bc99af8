/**
 * The endpoint's security end to end, nothing mocked (issue 10, items 10 and 11): the real
 * Pulumi engine runs test/fixtures/promotion-program against a live PostgreSQL 13 whose
 * pg_hba asks for scram-sha-256 on local and host lines (only the `postgres` superuser keeps
 * `peer` on the socket), with a role `app` that has a password. The Promotion uses the
 * defaults a user gets: scram-sha-256 in PgBouncer, a generated admin password, and
 * `serverHost: 127.0.0.1` so that PgBouncer logs into live and the new live over TCP with
 * the user's password. Clients (pgbench as `app`, with its password) go through PgBouncer
 * while the promotion runs. The state file (`pulumi stack export`, as written) must hold no
 * password in clear, though the program passes the users' passwords as plain values.
 *
 * Pool `ussec`, live on 29900, rehearsal 29910-29913, new live 29920-29923, PgBouncer 29950.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { destroyPoolByName, sh } from "../harness/zfs";
import { sleep, stopServersUnder, stopBouncerIn } from "../harness/postgres";
import { failureOf, fileBackend, fixtureProgram, openStack, REPO, tempDir, type TestBackend } from "../harness/pulumi";
import { startPgbench, type PgbenchRun } from "../harness/pgbench";

const POOL = "ussec";
const LIVE_PORT = 29900;
const REHEARSAL_PORT = 29910;
const NEW_LIVE_PORT = 29920;
const BOUNCER_PORT = 29950;
const BOUNCER_NAME = "ussec";
const BOUNCER_DIR = `/var/lib/understudy/pgbouncer/${BOUNCER_NAME}`;
const LIVE_DIR = `/srv/${POOL}/pg13/main`;
const SOCK = "/var/run/postgresql";
const BIN13 = "/usr/lib/postgresql/13/bin";
const BIN15 = "/usr/lib/postgresql/15/bin";
const LIVE = path.join(REPO, "scripts/live-postgres.sh");
const STACK = "sec";
/** The application's password: in the stack config (as a secret), the userlist and PostgreSQL; never in the state file. */
const APP_PW = "App-pw-9f3Kq7Zr2Lm8Xv";
const PGBENCH_SECONDS = Number(process.env.UNDERSTUDY_TEST_PGBENCH_SECONDS ?? 60);

let backend: TestBackend;
let program: string;
let reportDir: string;
let stack: Awaited<ReturnType<typeof openStack>>;
const children: ChildProcess[] = [];

const asPg = (argv: string[], input?: string) => sh(["runuser", "-u", "postgres", "--", ...argv], { input });

/** psql as `user` over TCP with `password` (PGPASSWORD in its environment, never in argv); returns [exit code, output]. */
function tcpPsql(port: number, user: string, password: string | undefined, sql: string, db = "app"): [number, string] {
  const { spawnSync } = require("node:child_process") as typeof import("node:child_process");
  const env: NodeJS.ProcessEnv = { ...process.env, PGCONNECT_TIMEOUT: "5" };
  delete env.PGPASSWORD;
  if (password !== undefined) env.PGPASSWORD = password;
  const r = spawnSync(`${BIN15}/psql`, ["-X", "-q", "-A", "-t", "-w", "-h", "127.0.0.1", "-p", String(port), "-U", user, "-d", db, "-c", sql], { encoding: "utf8", env });
  return [r.status ?? -1, `${r.stdout}${r.stderr}`.trim()];
}

/** Through the endpoint, as the application sees it. */
const asApp = (sql: string) => {
  const [code, out] = tcpPsql(BOUNCER_PORT, "app", APP_PW, sql);
  if (code !== 0) throw new Error(`psql as app through PgBouncer failed: ${out}`);
  return out;
};

/** Files under `dirs` that contain `text` (grep -r; symlinks not followed). Throws when grep itself fails. */
function filesHolding(text: string, dirs: string[]): string[] {
  const { spawnSync } = require("node:child_process") as typeof import("node:child_process");
  const r = spawnSync("grep", ["-rlF", "--", text, ...dirs], { encoding: "utf8" });
  if (r.status !== 0 && r.status !== 1) throw new Error(`grep failed (${r.status}): ${r.stderr}`);
  return r.stdout.split("\n").filter(Boolean);
}

function adminPasswordOnHost(): string {
  const line = fs.readFileSync(`${BOUNCER_DIR}/userlist.txt`, "utf8").split("\n").find((l) => l.startsWith('"understudy_admin" '));
  return /^"understudy_admin" "(.*)"$/.exec(line ?? "")?.[1] ?? "";
}

/** The stack's state file in the file backend, as the engine wrote it (what `pulumi stack export` prints, secrets encrypted). */
function stateFile(): string {
  const found = sh(["find", path.join(backend.dir, ".pulumi", "stacks"), "-name", `${STACK}.json`, "-type", "f"]).trim().split("\n").filter(Boolean);
  expect(found).toHaveLength(1);
  return found[0];
}

function stateText(): string {
  return fs.readFileSync(stateFile(), "utf8");
}

/** Where in a deployment a text occurs, as paths (`resources[6] (PgBouncerEndpoint).inputs.config...`): the message when a check fails. */
function whereIn(deployment: { resources?: Array<{ type: string }> }, text: string): string[] {
  const found: string[] = [];
  const walk = (v: unknown, at: string) => {
    if (typeof v === "string") {
      if (v.includes(text)) found.push(at);
    } else if (Array.isArray(v)) v.forEach((x, i) => walk(x, `${at}[${i}]`));
    else if (v && typeof v === "object") for (const [k, x] of Object.entries(v)) walk(x, at ? `${at}.${k}` : k);
  };
  (deployment.resources ?? []).forEach((r, i) => walk(r, `resources[${i}] (${r.type.split(":").pop()})`));
  return found;
}

const whereInState = (text: string) => whereIn((JSON.parse(stateText()) as { checkpoint: { latest: { resources?: Array<{ type: string }> } } }).checkpoint.latest, text);

function pgbench(seconds = PGBENCH_SECONDS): PgbenchRun {
  return startPgbench([`${BIN15}/pgbench`, "-h", "127.0.0.1", "-p", String(BOUNCER_PORT), "-U", "app", "-n", "-c", "2", "-T", String(seconds), "app"], { env: { PGPASSWORD: APP_PW }, children });
}

const stopBouncer = () => stopBouncerIn(BOUNCER_DIR);

async function cleanupEverything(): Promise<void> {
  for (const c of children.splice(0)) if (c.exitCode === null) c.kill("SIGKILL");
  await stopBouncer();
  await stopServersUnder(`/srv/${POOL}`);
  try {
    sh(["bash", LIVE, "down", POOL, String(LIVE_PORT)]);
  } catch (e) {
    console.error(`cleanup: live-postgres.sh down: ${(e as Error).message}`);
  }
  destroyPoolByName(POOL);
}

/** Live as a hardened production server: scram everywhere but the superuser's socket, TCP on loopback, an application role with a password. */
function hardenLive(): void {
  fs.writeFileSync(
    `${LIVE_DIR}/pg_hba.conf`,
    ["# issue 10: passwords everywhere but the superuser's own socket", "local all postgres peer", "local all all scram-sha-256", "host all all 127.0.0.1/32 scram-sha-256", "host all all ::1/128 scram-sha-256", ""].join("\n"),
  );
  sh(["chown", "postgres:postgres", `${LIVE_DIR}/pg_hba.conf`]);
  // The password goes through stdin, never argv.
  asPg([`${BIN13}/psql`, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", SOCK, "-p", String(LIVE_PORT), "-d", "app", "-f", "-"],
    `SET password_encryption = 'scram-sha-256';
     DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'app') THEN CREATE ROLE app LOGIN; END IF; END $$;
     ALTER ROLE app PASSWORD '${APP_PW}';
     GRANT ALL ON ALL TABLES IN SCHEMA public TO app;
     GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO app;\n`);
  // Listen on loopback too (live-postgres.sh starts it socket-only), as the production server would.
  asPg([`${BIN13}/pg_ctl`, "-D", LIVE_DIR, "-m", "fast", "-w", "stop"]);
  asPg([`${BIN13}/pg_ctl`, "-D", LIVE_DIR, "-l", `/srv/${POOL}/pg13/server.log`, "-w", "-o", `-p ${LIVE_PORT} -k ${SOCK} -c listen_addresses=127.0.0.1`, "start"]);
}

function rehearsalConfig(): Record<string, unknown> {
  return {
    source: { dataset: `${POOL}/pg13`, pgdata: "main", version: 13, port: LIVE_PORT, socketDir: SOCK },
    clone: { dataset: `${POOL}/rehearsals/pg13-to-15` },
    to: 15,
    postgres: { port: REHEARSAL_PORT, database: "app" },
    checks: { checksumTables: ["public.pgbench_branches"] },
    reportDir,
  };
}

beforeAll(async () => {
  await cleanupEverything();
  sh(["bash", LIVE, "up", POOL, String(LIVE_PORT), "1"]);
  hardenLive();
  backend = fileBackend();
  program = fixtureProgram("promotion-program");
  reportDir = tempDir("sec-reports");
  stack = await openStack(program, STACK, backend, {
    rehearsal: { value: JSON.stringify(rehearsalConfig()) },
    // The users' passwords ride in stack config set with --secret (plain config is stored in clear).
    promotion: {
      value: JSON.stringify({
        endpoint: { name: BOUNCER_NAME, listenPort: BOUNCER_PORT, database: "app", serverHost: "127.0.0.1", users: [{ name: "app", password: APP_PW }] },
        newLive: { port: NEW_LIVE_PORT },
      }),
      secret: true,
    },
    promote: { value: "false" },
  });
});

afterAll(async () => {
  await cleanupEverything();
  for (const d of [backend?.dir, program, reportDir]) if (d) fs.rmSync(d, { recursive: true, force: true });
});

describe("a scram endpoint in front of a scram live (real PgBouncer, real PostgreSQL, real engine)", () => {
  it("live really asks for passwords (positive control of the setup)", () => {
    expect(tcpPsql(LIVE_PORT, "app", APP_PW, "SELECT current_user")).toEqual([0, "app"]);
    const [code, out] = tcpPsql(LIVE_PORT, "app", "wrong-password", "SELECT 1");
    expect(code).not.toBe(0);
    expect(out).toMatch(/password authentication failed for user "app"/);
  });

  it("up: the endpoint asks for passwords, reaches live over TCP, and its admin console has a generated password", async () => {
    const up = await stack.up();
    expect(up.summary.result).toBe("succeeded");
    expect(up.outputs.report.value.status).toBe("passed");
    expect(up.outputs.endpoint.value.target).toEqual({ host: "127.0.0.1", port: LIVE_PORT, dbname: "app" });
    // Clients: the right password gets in (on live, over TCP), a wrong one or none does not.
    expect(asApp("SELECT current_user || ' ' || current_setting('port') || ' ' || coalesce(host(inet_server_addr()), 'socket')")).toBe(`app ${LIVE_PORT} 127.0.0.1`);
    expect(tcpPsql(BOUNCER_PORT, "app", "wrong-password", "SELECT 1")[1]).toMatch(/password authentication failed|SASL authentication failed/);
    expect(tcpPsql(BOUNCER_PORT, "app", undefined, "SELECT 1")[0]).not.toBe(0);
    expect(tcpPsql(BOUNCER_PORT, "postgres", undefined, "SELECT 1")[0]).not.toBe(0);
    // The admin console: 32 generated characters, in a 0600 userlist; an empty password is refused.
    const admin = adminPasswordOnHost();
    expect(admin).toMatch(/^[A-Za-z0-9]{32}$/);
    expect(fs.statSync(`${BOUNCER_DIR}/userlist.txt`).mode & 0o777).toBe(0o600);
    expect(fs.readFileSync(`${BOUNCER_DIR}/pgbouncer.ini`, "utf8")).toMatch(/^auth_type = scram-sha-256$/m);
    // Clients held up to the switchover timeout (default 300 s) are not dropped by PgBouncer first.
    expect(fs.readFileSync(`${BOUNCER_DIR}/pgbouncer.ini`, "utf8")).toMatch(/^query_wait_timeout = 360$/m);
    expect(tcpPsql(BOUNCER_PORT, "understudy_admin", admin, "SHOW VERSION", "pgbouncer")[0]).toBe(0);
    expect(tcpPsql(BOUNCER_PORT, "understudy_admin", "", "SHOW VERSION", "pgbouncer")[0]).not.toBe(0);
  });

  it("the state file holds no password in clear (the program passed them as plain values)", async () => {
    const state = stateText();
    const admin = adminPasswordOnHost();
    // Positive controls: the file is the state (the endpoint, encrypted secrets in it), and the
    // same state decrypted (`pulumi stack export --show-secrets`, what the Automation API's
    // exportStack runs) does hold both passwords where the engine keeps them.
    expect(state).toContain("understudy:PgBouncerEndpoint");
    expect(state).toContain("1b47061264138c4ac30d75fd1eb44270");
    expect(state).toContain('"ciphertext"');
    const decrypted = (await stack.exportStack()).deployment;
    expect(whereIn(decrypted, APP_PW)).toEqual(expect.arrayContaining([expect.stringMatching(/\(PgBouncerEndpoint\)\.inputs\.config\./), expect.stringMatching(/\(CutOver\)\.inputs\.endpoint\./)]));
    expect(whereIn(decrypted, admin)).toEqual(expect.arrayContaining([expect.stringMatching(/\(PgBouncerEndpoint\)\.outputs\.adminPassword/)]));
    // The file itself: neither in clear, anywhere.
    expect(whereInState(APP_PW)).toEqual([]);
    // Nor any other file of the backend (history, backups) or the stack's config file (set with --secret).
    expect(filesHolding(APP_PW, [backend.dir, program])).toEqual([]);
    expect(filesHolding(admin, [backend.dir, program])).toEqual([]);
    expect(filesHolding("understudy:PgBouncerEndpoint", [backend.dir]).length).toBeGreaterThan(0); // positive control
    expect(state).not.toContain(APP_PW);
    expect(state).not.toContain(admin);
  });

  it("a second up changes nothing and keeps the admin password", async () => {
    const admin = adminPasswordOnHost();
    const preview = await stack.preview({ diff: true });
    expect(preview.changeSummary, preview.stdout).toEqual({ same: preview.changeSummary.same });
    const up = await stack.up();
    expect(Object.keys(up.summary.resourceChanges ?? {})).toEqual(["same"]);
    expect(adminPasswordOnHost()).toBe(admin);
  });

  it("promotes under load through the scram endpoint: no failed transaction, clients on PostgreSQL 15 over TCP, still no password in state", async () => {
    await stack.setConfig("promote", { value: "true" });
    const bench = pgbench();
    for (let i = 0; i < 100 && Number(asApp("SELECT count(*) FROM pgbench_history")) < 20; i++) await sleep(100);
    const up = await stack.up();
    expect(bench.running(), "the promotion outlasted pgbench").toBe(true);
    const r = await bench.done;
    expect(r.output).not.toMatch(/aborted|error/i);
    expect(r.failed).toBe(0);
    expect(r.processed).toBeGreaterThan(0);
    expect(up.outputs.endpoint.value.state).toBe("promoted");
    expect(up.outputs.endpoint.value.target).toEqual({ host: "127.0.0.1", port: NEW_LIVE_PORT, dbname: "app" });
    const [ver, port, addr] = asApp("SELECT current_setting('server_version_num') || ' ' || current_setting('port') || ' ' || host(inet_server_addr())").split(" ");
    expect(Number(ver)).toBeGreaterThanOrEqual(150000);
    expect(Number(port)).toBe(NEW_LIVE_PORT);
    expect(addr).toBe("127.0.0.1");
    // The new live asks for the password too (live's pg_hba came along).
    expect(tcpPsql(NEW_LIVE_PORT, "app", "wrong-password", "SELECT 1")[0]).not.toBe(0);
    const state = stateText();
    expect(whereInState(APP_PW)).toEqual([]);
    expect(state).not.toContain(APP_PW);
    expect(state).not.toContain(adminPasswordOnHost());
  });
});

describe("trust is for loopback only", () => {
  it("`pulumi preview` of a Promotion with trust on '*' fails naming endpoint.listenAddr, and declares nothing", async () => {
    const other = await openStack(program, "trust-star", backend, {
      rehearsal: { value: JSON.stringify({ ...rehearsalConfig(), clone: { dataset: `${POOL}/rehearsals/star` }, postgres: { port: 29930, database: "app" } }) },
      promotion: { value: JSON.stringify({ endpoint: { name: "ussec-star", listenPort: 29951, database: "app", authType: "trust", listenAddr: "*" }, newLive: { port: 29940 } }) },
    });
    const message = await failureOf(() => other.preview());
    expect(message).toMatch(/endpoint\.listenAddr: "\*" with authType "trust" would let anyone/);
    expect(fs.existsSync("/var/lib/understudy/pgbouncer/ussec-star")).toBe(false);
    await other.workspace.removeStack("trust-star");
  });
});
