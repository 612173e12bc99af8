/**
 * The whole story over SSH as a NON-ROOT login with `sudo -n`, as many production hosts are
 * reached: the user `understudy-ci` (made by scripts/setup-sshd.sh: key login, passwordless
 * sudo) on the local sshd (127.0.0.1:2222). A rehearsal (with a command step that must reach
 * the clone, not live: sudo resets the environment, so PGHOST/PGPORT must travel inside the
 * argv), a promotion through PgBouncer while a writer commits, its roll-back, and destroy.
 * Every command the host layer ran is recorded (UNDERSTUDY_COMMAND_LOG): all went to that
 * login, and every command that needs another user went through `sudo -n`.
 *
 * Pool `usnonroot`, live 29600, rehearsal 29610-29613, new live 29620-29623, PgBouncer 29690.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { destroyPoolByName, sh } from "../harness/zfs";
import { stopServersUnder, stopBouncerIn } from "../harness/postgres";
import { fileBackend, fixtureProgram, openStack, REPO, tempDir } from "../harness/pulumi";
import { readCommandLog } from "../../providers/host/record";

const POOL = "usnonroot";
const LIVE_PORT = 29600;
const NEW_PORT = 29620;
const BOUNCER_PORT = 29690;
const SOCK = "/var/run/postgresql";
const BOUNCER_DIR = "/var/lib/understudy/pgbouncer/nonroot";
const LIVE = path.join(REPO, "scripts/live-postgres.sh");
const BIN13 = "/usr/lib/postgresql/13/bin";
const BIN15 = "/usr/lib/postgresql/15/bin";
const USER = "understudy-ci";
const KEY = path.join(os.homedir(), ".cache/understudy/ssh/id_ed25519");

const psql = (host: string, port: number, sql: string, db = "app", bin = BIN15) =>
  sh(["runuser", "-u", "postgres", "--", `${bin}/psql`, "-X", "-At", "-h", host, "-p", String(port), "-d", db, "-c", sql]).trim();
const viaBouncer = (sql: string) => psql("127.0.0.1", BOUNCER_PORT, sql);
const run = promisify(execFile);
/** The writer's statement, without blocking the event loop (the engine runs meanwhile). */
const insertViaBouncer = () =>
  run("runuser", ["-u", "postgres", "--", `${BIN15}/psql`, "-X", "-At", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", String(BOUNCER_PORT), "-d", "app", "-c",
    "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (1, 1, 1, 1, now())"]);

let stack: Awaited<ReturnType<typeof openStack>>;
let cmdlog: string;
let stepOut: string;

beforeAll(async () => {
  sh(["bash", LIVE, "up", POOL, String(LIVE_PORT), "1"]);
  sh(["zfs", "create", "-p", `${POOL}/rehearsals`]);
  cmdlog = path.join(tempDir("nonroot-cmdlog"), "commands.jsonl");
  // The command step writes what it saw where the test can read it (as postgres, over sudo).
  stepOut = path.join(fs.mkdtempSync("/tmp/understudy-nonroot-"), "step.txt");
  fs.chmodSync(path.dirname(stepOut), 0o777);
  const connection = { host: "127.0.0.1", port: 2222, user: USER, privateKey: fs.readFileSync(KEY, "utf8") };
  stack = await openStack(fixtureProgram("promotion-program"), "nonroot", fileBackend(), {
    name: { value: "nonroot" },
    rehearsal: {
      value: JSON.stringify({
        connection,
        source: { dataset: `${POOL}/pg13`, pgdata: "main", version: 13, port: LIVE_PORT, socketDir: SOCK },
        clone: { dataset: `${POOL}/rehearsals/pg13-to-15` },
        to: 15,
        postgres: { port: 29610, database: "app" },
        steps: [
          {
            name: "where-am-i",
            // No -h/-p: psql uses PGHOST/PGPORT, which must name the clone.
            command: ["sh", "-c", `${BIN15}/psql -X -At -c "SELECT current_setting('port'), current_setting('server_version_num')" > ${stepOut}; echo "$PGPORT" >> ${stepOut}`],
          },
        ],
        checks: { rowCounts: "none" },
        reportDir: tempDir("nonroot-reports"),
      }),
      secret: true,
    },
    promotion: { value: JSON.stringify({ endpoint: { name: "nonroot", listenPort: BOUNCER_PORT, database: "app", authType: "trust" }, newLive: { port: NEW_PORT } }) },
    promote: { value: "false" },
  });
  stack.workspace.envVars.UNDERSTUDY_COMMAND_LOG = cmdlog;
}, 600_000);

afterAll(async () => {
  await stopBouncerIn(BOUNCER_DIR);
  fs.rmSync(path.dirname(stepOut), { recursive: true, force: true });
  await stopServersUnder(`/srv/${POOL}`).catch(() => undefined);
  try {
    sh(["bash", LIVE, "down", POOL, String(LIVE_PORT)]);
  } catch {
    destroyPoolByName(POOL);
  }
}, 300_000);

describe(`over SSH as ${USER} (not root) with sudo -n`, () => {
  it("rehearses (a command step reaches the clone, not live), promotes under writes, rolls back and destroys", async () => {
    const liveStart = psql(SOCK, LIVE_PORT, "SELECT pg_postmaster_start_time()", "app", BIN13);

    const up = await stack.up();
    expect(up.summary.result).toBe("succeeded");
    expect((up.outputs.report.value as { status: string }).status).toBe("passed");
    // The step's psql reached the upgraded clone on 29610 (PostgreSQL 15), through the environment it was given.
    const [seen, env] = fs.readFileSync(stepOut, "utf8").trim().split("\n");
    expect(seen).toMatch(/^29610\|15\d{4}$/);
    expect(env).toBe("29610");
    // Live was not restarted by the rehearsal.
    expect(psql(SOCK, LIVE_PORT, "SELECT pg_postmaster_start_time()", "app", BIN13)).toBe(liveStart);

    // Promote while a writer commits through PgBouncer.
    const before = Number(viaBouncer("SELECT count(*) FROM pgbench_history"));
    let committed = 0;
    let failed = 0;
    let writing = true;
    const writer = (async () => {
      while (writing) {
        try {
          await insertViaBouncer();
          committed++;
        } catch {
          failed++;
        }
      }
    })();
    await stack.setConfig("promote", { value: "true" });
    const promoted = await stack.up();
    writing = false;
    await writer;
    expect(promoted.summary.result).toBe("succeeded");
    expect((promoted.outputs.endpoint.value as { state: string }).state).toBe("promoted");
    expect(viaBouncer("SELECT current_setting('server_version_num')::int / 10000")).toBe("15");
    expect(failed).toBe(0);
    expect(committed).toBeGreaterThan(0);
    expect(Number(viaBouncer("SELECT count(*) FROM pgbench_history"))).toBe(before + committed);

    await stack.setConfig("promote", { value: "false" });
    const back = await stack.up();
    expect((back.outputs.endpoint.value as { state: string }).state).toBe("rolled-back");
    expect(viaBouncer("SELECT current_setting('server_version_num')::int / 10000")).toBe("13");

    const destroy = await stack.destroy();
    expect(destroy.summary.result).toBe("succeeded");

    // Every command went to the non-root login; those needing another user went through sudo -n.
    const commands = readCommandLog(cmdlog);
    expect(commands.length).toBeGreaterThan(50);
    expect([...new Set(commands.map((c) => c.host))]).toEqual([`${USER}@127.0.0.1:2222`]);
    // (`postgres --version` reads nothing of a cluster: any user may run it.)
    const needsPrivilege = (argv: string[]) => /(^|\/)(zfs|zpool|pg_ctl|pg_upgrade|initdb|postgres|pgbouncer|mount|umount|chown)$/.test(argv[0]) && argv[1] !== "--version";
    const unprivileged = commands.filter((c) => needsPrivilege(c.argv));
    expect(unprivileged.map((c) => c.argv.join(" "))).toEqual([]);
    const viaSudo = commands.filter((c) => c.argv[0] === "sudo");
    expect(viaSudo.length).toBeGreaterThan(20);
    for (const c of viaSudo) expect(c.argv.slice(0, 2)).toEqual(["sudo", "-n"]);
  });
});
