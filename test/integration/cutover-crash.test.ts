/**
 * A crash of the engine in the middle of a cut-over (issue: "pulumi up after a kill -9 of the
 * engine mid-cut-over either finishes or restores live and resumes clients"). The real CLI
 * runs the promotion of a real rehearsal (PostgreSQL 13 -> 15 on zfs-fuse, PgBouncer in
 * front) and is killed with SIGKILL — with every process it started: the language host and
 * the dynamic provider doing the work — as soon as the provider reports a given phase. Then:
 * the host shows the damage (clients held, live maybe stopped), the journal on the host is
 * open, and the next `pulumi up` recovers and finishes: clients are served by PostgreSQL 15,
 * nothing is lost, and no clone of the dead attempt is left behind. Every phase failing on
 * its own is tested on fakes (test/unit/cutover-phases.test.ts); here, three real points:
 * before live stops, in the middle of the replayed upgrade, and at the switch.
 *
 * Pool `uscrash`, live 29500, rehearsal 29510-29513, new live 29520-29523, PgBouncer 29590.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execFileSync, spawn } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { datasetExists, destroyPoolByName, sh } from "../harness/zfs";
import { sleep, stopServersUnder, stopBouncerIn } from "../harness/postgres";
import { fileBackend, fixtureProgram, openStack, REPO, tempDir, type TestBackend } from "../harness/pulumi";
import { journalPath } from "../../providers/runner/journal";

const POOL = "uscrash";
const LIVE_PORT = 29500;
const NEW_PORT = 29520;
const BOUNCER_PORT = 29590;
const SOCK = "/var/run/postgresql";
const BOUNCER_DIR = "/var/lib/understudy/pgbouncer/crash";
const LIVE = path.join(REPO, "scripts/live-postgres.sh");
const BIN15 = "/usr/lib/postgresql/15/bin";
/** The promotion's journal on the host (owner: project/stack/Promotion/name). */
const JOURNAL = journalPath("promotion-program/crash/Promotion/crash-go-live");
const newLives = () => sh(["zfs", "list", "-H", "-o", "name", "-r", `${POOL}/rehearsals`]).split("\n").filter((n) => /live-pg15(-\d+)?$/.test(n));

let backend: TestBackend;
let program: string;
let stack: Awaited<ReturnType<typeof openStack>>;

const psql = (host: string, port: number, sql: string, db = "app") =>
  sh(["runuser", "-u", "postgres", "--", `${BIN15}/psql`, "-X", "-At", "-h", host, "-p", String(port), "-d", db, "-c", sql]).trim();
const viaBouncer = (sql: string) => psql("127.0.0.1", BOUNCER_PORT, sql);
/** PgBouncer's admin console, as an operator reaches it: its admin user and the generated password (a stack output). */
const admin = async (cmd: string) => {
  const password = (await stack.outputs()).adminPassword.value as string;
  const argv = ["-X", "-At", "-h", "127.0.0.1", "-p", String(BOUNCER_PORT), "-U", "understudy_admin", "-d", "pgbouncer", "-c", cmd];
  return execFileSync(`${BIN15}/psql`, argv, { encoding: "utf8", env: { ...process.env, PGPASSWORD: password } }).trim();
};

/** Every descendant of a process (to kill the engine with what it started, as a crash does). */
function descendants(pid: number): number[] {
  const all = fs.readdirSync("/proc").filter((d) => /^\d+$/.test(d));
  const parent = new Map<number, number>();
  for (const d of all) {
    try {
      const stat = fs.readFileSync(`/proc/${d}/stat`, "utf8");
      parent.set(Number(d), Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]));
    } catch {
      /* gone */
    }
  }
  const out: number[] = [];
  const walk = (p: number) => {
    for (const [c, pp] of parent) {
      if (pp !== p) continue;
      out.push(c);
      walk(c);
    }
  };
  walk(pid);
  return out;
}

/** `pulumi up` through the real CLI, killed -9 with its whole tree when the provider reports `phase`. */
async function upKilledAt(phase: RegExp): Promise<{ killed: boolean; output: string }> {
  const cli = spawn(path.join(process.env.UNDERSTUDY_PULUMI_BIN!, "pulumi"), ["up", "--yes", "--skip-preview", "--non-interactive", "--stack", "crash"], {
    cwd: program,
    env: { ...process.env, ...backend.env },
  });
  let output = "";
  let killed = false;
  const done = new Promise<void>((r) => cli.on("close", () => r()));
  const onData = (d: Buffer) => {
    output += d.toString();
    if (!killed && phase.test(output)) {
      killed = true;
      const tree = [cli.pid!, ...descendants(cli.pid!)];
      for (const p of tree) {
        try {
          process.kill(p, "SIGKILL");
        } catch {
          /* already gone */
        }
      }
    }
  };
  cli.stdout.on("data", onData);
  cli.stderr.on("data", onData);
  await done;
  return { killed, output };
}

beforeAll(async () => {
  sh(["bash", LIVE, "up", POOL, String(LIVE_PORT), "1"]);
  sh(["zfs", "create", "-p", `${POOL}/rehearsals`]);
  backend = fileBackend();
  program = fixtureProgram("promotion-program");
  stack = await openStack(program, "crash", backend, {
    name: { value: "crash" },
    rehearsal: {
      value: JSON.stringify({
        source: { dataset: `${POOL}/pg13`, pgdata: "main", version: 13, port: LIVE_PORT, socketDir: SOCK },
        clone: { dataset: `${POOL}/rehearsals/pg13-to-15` },
        to: 15,
        postgres: { port: 29510, database: "app" },
        checks: { rowCounts: "none" },
        reportDir: tempDir("crash-reports"),
      }),
    },
    promotion: { value: JSON.stringify({ endpoint: { name: "crash", listenPort: BOUNCER_PORT, database: "app", authType: "trust" }, newLive: { port: NEW_PORT } }) },
    promote: { value: "false" },
  });
  const up = await stack.up();
  expect(up.summary.result).toBe("succeeded");
  expect(viaBouncer("SELECT current_setting('server_version_num')::int / 10000")).toBe("13");
}, 900_000);

afterAll(async () => {
  await stopBouncerIn(BOUNCER_DIR);
  await stopServersUnder(`/srv/${POOL}`).catch(() => undefined);
  try {
    sh(["bash", LIVE, "down", POOL, String(LIVE_PORT)]);
  } catch {
    destroyPoolByName(POOL);
  }
}, 300_000);

describe("the engine killed -9 in the middle of a cut-over", () => {
  const points: Array<[string, RegExp, "restored" | "promoted"]> = [
    ["before live stops (clients held)", /read live sequences\.\.\./, "restored"],
    ["during the replayed pg_upgrade (live stopped, a half-upgraded clone)", /pg_upgrade 13 -> 15 \(link\)/, "restored"],
    ["right after the switch, before the engine recorded it", /analyze \(after resume\)\.\.\./, "promoted"],
  ];
  for (const [what, at, expected] of points) {
    it(`${what}: the next \`pulumi up\` recovers and finishes the promotion; nothing is lost`, async () => {
      const rowsBefore = Number(viaBouncer("SELECT count(*) FROM pgbench_history"));
      const livesBefore = newLives().length;
      viaBouncer("INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (1, 1, 1, 7, now())");
      await stack.setConfig("promote", { value: "true" });
      const first = await upKilledAt(at);
      expect(first.killed, `the provider never reported ${at}:\n${first.output.slice(-3000)}`).toBe(true);
      await sleep(1000);
      // A killed engine leaves its lock in the local backend: what a user does first (README: troubleshooting).
      await stack.cancel();
      // The damage a crash leaves: an open journal on the host.
      const journal = JSON.parse(fs.readFileSync(JOURNAL, "utf8")) as { finished?: unknown; op: string };
      expect(journal.op).toBe("promote");
      expect(journal.finished).toBeUndefined();

      const again = await stack.up();
      expect(again.summary.result).toBe("succeeded");
      expect(again.stdout).toMatch(expected === "promoted" ? /the switch had happened/ : /live serves again and clients resumed on it/);
      const endpoint = again.outputs.endpoint.value as { state: string; target: { port: number } };
      expect(endpoint.state).toBe("promoted");
      expect(endpoint.target.port).toBe(NEW_PORT);
      // Clients are served (not held) by PostgreSQL 15, with every row committed before the crash.
      const app = (await admin("SHOW DATABASES")).split("\n").find((l) => l.startsWith("app|"))!.split("|");
      expect(app[11], "app is paused in PgBouncer").toBe("0");
      expect(viaBouncer("SELECT current_setting('server_version_num')::int / 10000")).toBe("15");
      expect(Number(viaBouncer("SELECT count(*) FROM pgbench_history"))).toBe(rowsBefore + 1);
      expect(JSON.parse(fs.readFileSync(JOURNAL, "utf8")).finished).toBeDefined();
      // One new live more, no other: a dead attempt's clone is not left next to it.
      expect(newLives()).toHaveLength(livesBefore + 1);

      // Back to PostgreSQL 13 for the next point (a roll-back keeps the new live: the next promotion takes the next name).
      await stack.setConfig("promote", { value: "false" });
      const back = await stack.up();
      expect((back.outputs.endpoint.value as { state: string }).state).toBe("rolled-back");
      expect(viaBouncer("SELECT current_setting('server_version_num')::int / 10000")).toBe("13");
      expect(datasetExists(`${POOL}/pg13`)).toBe(true);
    });
  }
});
