/**
 * DatabaseClone with PostgreSQL running on the clone (PostgresServer), through the real
 * engine, against a live PostgreSQL 13 that a writer keeps writing to. Live is never
 * restarted and loses nothing.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { datasetExists, destroyPoolByName, sh, snapshotsOf } from "../harness/zfs";
import { failureOf, fileBackend, fixtureProgram, openStack, REPO } from "../harness/pulumi";

const POOL = "usdbc";
const LIVE_PORT = 26200;
const CLONE_PORT = 26210;
const live = (...args: string[]) => execFileSync("bash", [path.join(REPO, "scripts/live-postgres.sh"), ...args], { stdio: "inherit" });
const psql = (port: number, sql: string, bin = 13) =>
  sh(["runuser", "-u", "postgres", "--", `/usr/lib/postgresql/${bin}/bin/psql`, "-X", "-At", "-h", "/var/run/postgresql", "-p", String(port), "-d", "app", "-c", sql]).trim();

beforeAll(() => {
  live("up", POOL, String(LIVE_PORT), "1");
  live("writer", POOL, String(LIVE_PORT), "20");
}, 300_000);

afterAll(() => {
  for (const dir of [`/srv/${POOL}/clones/friday/main`]) {
    if (sh(["runuser", "-u", "postgres", "--", "/usr/lib/postgresql/13/bin/pg_ctl", "-D", dir, "status"], { allowFail: true }))
      sh(["runuser", "-u", "postgres", "--", "/usr/lib/postgresql/13/bin/pg_ctl", "-D", dir, "stop", "-m", "fast"], { allowFail: true });
  }
  try {
    live("down", POOL, String(LIVE_PORT));
  } catch {
    destroyPoolByName(POOL);
  }
}, 120_000);

describe("DatabaseClone", () => {
  it("gives a running copy of live in seconds; refresh sees a stopped server and up starts it; destroy stops and removes it", async () => {
    const started = psql(LIVE_PORT, "SELECT pg_postmaster_start_time()");
    const snapsBefore = snapshotsOf(`${POOL}/pg13`);
    sh(["zfs", "create", "-p", `${POOL}/clones`]);
    const stack = await openStack(fixtureProgram("clone-program"), "friday", fileBackend(), {
      clone: {
        value: JSON.stringify({
          source: { dataset: `${POOL}/pg13`, pgdata: "main", version: 13, port: LIVE_PORT },
          clone: { dataset: `${POOL}/clones/friday` },
          postgres: { port: CLONE_PORT, listen: "127.0.0.1", database: "app" },
        }),
      },
    });
    const t0 = Date.now();
    const up = await stack.up();
    const upMs = Date.now() - t0;
    expect(up.summary.result).toBe("succeeded");
    expect(up.outputs.connectionString.value).toBe(`postgresql://postgres@127.0.0.1:${CLONE_PORT}/app`);
    expect(up.outputs.dataDir.value).toBe(`/srv/${POOL}/clones/friday/main`);
    console.log(`DatabaseClone up (CHECKPOINT, snapshot, clone, start with crash recovery): ${upMs} ms`);

    // The clone serves the data as of the snapshot; the writer goes on on live only.
    const accounts = psql(CLONE_PORT, "SELECT count(*) FROM pgbench_accounts");
    expect(accounts).toBe(psql(LIVE_PORT, "SELECT count(*) FROM pgbench_accounts"));
    const cloneHistory = Number(psql(CLONE_PORT, "SELECT count(*) FROM pgbench_history"));
    psql(CLONE_PORT, "CREATE TABLE only_on_the_clone (x int)");
    await new Promise((r) => setTimeout(r, 1500));
    expect(Number(psql(LIVE_PORT, "SELECT count(*) FROM pgbench_history"))).toBeGreaterThan(cloneHistory);
    expect(psql(LIVE_PORT, "SELECT count(*) FROM pg_tables WHERE tablename = 'only_on_the_clone'")).toBe("0");

    expect((await stack.preview()).changeSummary).toEqual({ same: 6 });

    // A server stopped behind Pulumi's back: refresh notices, up starts it again.
    sh(["runuser", "-u", "postgres", "--", "/usr/lib/postgresql/13/bin/pg_ctl", "-D", `/srv/${POOL}/clones/friday/main`, "stop", "-m", "fast"]);
    await stack.refresh();
    const again = await stack.up();
    expect(again.summary.resourceChanges?.update).toBe(1);
    expect(psql(CLONE_PORT, "SELECT count(*) FROM only_on_the_clone")).toBe("0");

    await stack.destroy();
    expect(datasetExists(`${POOL}/clones/friday`)).toBe(false);
    expect(sh(["ss", "-ltnH", `sport = :${CLONE_PORT}`]).trim()).toBe("");
    expect(snapshotsOf(`${POOL}/pg13`)).toEqual(snapsBefore);
    // Live: the same server all along, still taking writes.
    expect(psql(LIVE_PORT, "SELECT pg_postmaster_start_time()")).toBe(started);
  });

  it("over SSH with the connection a secret Output (the README's remote example): preview, up and destroy", async () => {
    // A secret connection makes every Output computed from it secret, also an optional input
    // that holds nothing (a one-volume cluster's snapshot `members`): the engine sends it as
    // null, which the checks once refused ("members: must be a list of datasets").
    const sshDir = `${process.env.HOME}/.cache/understudy/ssh`;
    const connection = { host: "127.0.0.1", port: 2222, user: "root", privateKey: fs.readFileSync(`${sshDir}/id_ed25519`, "utf8") };
    const snapsBefore = snapshotsOf(`${POOL}/pg13`);
    sh(["zfs", "create", "-p", `${POOL}/clones`]);
    const stack = await openStack(fixtureProgram("clone-program"), "remote", fileBackend(), {
      clone: {
        value: JSON.stringify({
          source: { dataset: `${POOL}/pg13`, pgdata: "main", version: 13, port: LIVE_PORT },
          clone: { dataset: `${POOL}/clones/remote` },
          postgres: { port: CLONE_PORT + 1, database: "app" },
        }),
      },
      ssh: { value: JSON.stringify(connection), secret: true },
    });
    expect((await stack.preview()).changeSummary).toEqual({ create: 6 });
    const up = await stack.up();
    expect(up.summary.result).toBe("succeeded");
    expect(datasetExists(`${POOL}/clones/remote`)).toBe(true);
    expect(psql(CLONE_PORT + 1, "SELECT count(*) FROM pgbench_accounts")).toBe(psql(LIVE_PORT, "SELECT count(*) FROM pgbench_accounts"));
    expect((await stack.preview()).changeSummary).toEqual({ same: 6 });
    await stack.destroy();
    expect(datasetExists(`${POOL}/clones/remote`)).toBe(false);
    expect(snapshotsOf(`${POOL}/pg13`)).toEqual(snapsBefore);
  });

  it("refuses a port that live already uses, before anything is snapshotted", async () => {
    const snapsBefore = snapshotsOf(`${POOL}/pg13`);
    const stack = await openStack(fixtureProgram("clone-program"), "busy-port", fileBackend(), {
      clone: {
        value: JSON.stringify({
          source: { dataset: `${POOL}/pg13`, pgdata: "main", version: 13, port: LIVE_PORT },
          clone: { dataset: `${POOL}/clones/busy` },
          postgres: { port: LIVE_PORT },
        }),
      },
    });
    expect(await failureOf(() => stack.up())).toMatch(new RegExp(`port ${LIVE_PORT} .*in use|in use.*${LIVE_PORT}`));
    expect(datasetExists(`${POOL}/clones/busy`)).toBe(false);
    expect(snapshotsOf(`${POOL}/pg13`)).toEqual(snapsBefore);
  });
});
