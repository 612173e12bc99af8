/**
 * Stored state stays usable across releases: a stack is deployed by release 0.1.0 (the
 * packed package in test/fixtures/release-0.1.0, exactly as it was published), then the
 * program's package is swapped for this release and the engine runs `refresh`, `up` (which
 * must change nothing), a promotion and its roll-back, and `destroy` on the state 0.1.0
 * wrote. The stack holds a ZFS snapshot, a clone, a snapshot schedule, a passed rehearsal
 * and a promotion with its PgBouncer endpoint: every resource kind 0.1.0 had.
 *
 * Pool `uscompat`, live on port 29700, rehearsal 29710-29713, new live 29720-29723,
 * PgBouncer 29790.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { datasetExists, destroyPoolByName, sh, snapshotsOf } from "../harness/zfs";
import { stopServersUnder } from "../harness/postgres";
import { fileBackend, makeProgram, openStack, REPO, tempDir } from "../harness/pulumi";
import type { EngineEvent } from "@pulumi/pulumi/automation";

const POOL = "uscompat";
const LIVE_PORT = 29700;
const SRC = `${POOL}/pg13`;
const TARBALL = path.join(REPO, "test/fixtures/release-0.1.0/pulumi-understudy-0.1.0.tgz");
const live = (...args: string[]) => execFileSync("bash", [path.join(REPO, "scripts/live-postgres.sh"), ...args], { stdio: "inherit" });

const PROGRAM = `
const pulumi = require("@pulumi/pulumi");
const u = require("pulumi-understudy");
const cfg = new pulumi.Config();
const pool = cfg.require("pool");
const snap = new u.ZfsSnapshot("raw-snap", { dataset: pool + "/pg13", name: "compat-raw" });
const clone = new u.ZfsClone("raw-clone", { snapshot: snap.snapshot, dataset: pool + "/scratch" });
const hourly = new u.SnapshotSchedule("hourly", { dataset: pool + "/pg13", every: "1h", keep: { hourly: 2, daily: 1 }, pruneOnDelete: true });
const rehearsal = new u.UpgradeRehearsal("compat", {
  source: { dataset: pool + "/pg13", pgdata: "main", version: 13, port: ${LIVE_PORT} },
  clone: { dataset: pool + "/rehearsals/compat" },
  to: 15,
  postgres: { port: 29710, database: "app" },
  steps: [{ name: "smoke", sql: "SELECT count(*) FROM pgbench_accounts" }],
  checks: { checksumTables: ["public.pgbench_branches"] },
  reportDir: cfg.require("reportDir"),
});
const promotion = new u.Promotion("compat-go", {
  rehearsal,
  promote: cfg.getBoolean("promote") ?? false,
  endpoint: { name: "compat", listenPort: 29790, database: "app", authType: "trust" },
  newLive: { port: 29720 },
});
module.exports = { clone: clone.mountpoint, status: rehearsal.report.status, state: promotion.state, target: promotion.target };
`;

/** A program directory whose node_modules holds `pkg` as pulumi-understudy and the repo's other packages. */
function programWith(pkg: "0.1.0" | "current"): string {
  const dir = makeProgram("compat", { "index.js": PROGRAM }, { linkNodeModules: false });
  const nm = path.join(dir, "node_modules");
  fs.mkdirSync(nm);
  for (const entry of fs.readdirSync(path.join(REPO, "node_modules"))) {
    if (entry === "pulumi-understudy" || entry === ".bin") continue;
    fs.symlinkSync(path.join(REPO, "node_modules", entry), path.join(nm, entry));
  }
  usePackage(dir, pkg);
  return dir;
}

function usePackage(dir: string, pkg: "0.1.0" | "current"): void {
  const target = path.join(dir, "node_modules", "pulumi-understudy");
  fs.rmSync(target, { recursive: true, force: true });
  if (pkg === "current") {
    fs.symlinkSync(REPO, target);
    return;
  }
  const tmp = tempDir("release");
  sh(["tar", "xzf", TARBALL, "-C", tmp]);
  fs.renameSync(path.join(tmp, "package"), target);
}

let dir: string;
let stack: Awaited<ReturnType<typeof openStack>>;
let reportDir: string;

beforeAll(async () => {
  live("up", POOL, String(LIVE_PORT), "1");
  sh(["zfs", "create", "-p", `${POOL}/rehearsals`]);
  reportDir = tempDir("compat-reports");
  dir = programWith("0.1.0");
  stack = await openStack(dir, "compat", fileBackend(), { pool: { value: POOL }, reportDir: { value: reportDir } });
}, 600_000);

afterAll(async () => {
  await stopServersUnder(`/srv/${POOL}`).catch(() => undefined);
  const bouncer = "/var/lib/understudy/pgbouncer/compat";
  if (fs.existsSync(`${bouncer}/pgbouncer.pid`)) sh(["kill", fs.readFileSync(`${bouncer}/pgbouncer.pid`, "utf8").trim()], { allowFail: true });
  fs.rmSync(bouncer, { recursive: true, force: true });
  try {
    live("down", POOL, String(LIVE_PORT));
  } catch {
    destroyPoolByName(POOL);
  }
}, 300_000);

describe("state written by release 0.1.0", () => {
  it("0.1.0 deploys the stack (the recorded release, nothing of this one)", async () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(dir, "node_modules/pulumi-understudy/package.json"), "utf8"));
    expect(pkg.version).toBe("0.1.0");
    expect(fs.existsSync(path.join(dir, "node_modules/pulumi-understudy/dist/providers/storage"))).toBe(false);
    const up = await stack.up();
    expect(up.summary.result).toBe("succeeded");
    expect(up.outputs.status.value).toBe("passed");
    const state = JSON.stringify((await stack.exportStack()).deployment);
    expect(state).toContain("pulumi-understudy/dist/providers/dispatch.js");
  });

  it("this release refreshes it; `up` only gives live's other databases their PgBouncer entries, in place, and then changes nothing", async () => {
    usePackage(dir, "current");
    const refresh = await stack.refresh();
    expect(refresh.summary.result).toBe("succeeded");
    // What changes, on purpose (CHANGELOG 0.2.0, Compatibility): every database of live's
    // cluster now moves with a promotion, so the endpoint gets an entry for each and the
    // cut-over lists them. 0.1.0 knew one database. Nothing else differs, nothing is replaced.
    const events: EngineEvent[] = [];
    const preview = await stack.preview({ diff: true, onEvent: (e) => events.push(e) });
    const changed = events
      .map((e) => e.resourcePreEvent?.metadata)
      .filter((m) => m && m.op !== "same" && !m.type.startsWith("pulumi:providers:"))
      .map((m) => [m!.type.split(":").pop(), m!.op]);
    expect(changed, preview.stdout).toEqual([
      ["PgBouncerEndpoint", "update"],
      ["CutOver", "update"],
    ]);
    expect(preview.changeSummary, preview.stdout).toEqual({ same: preview.changeSummary.same, update: 2 });
    const bouncer = "/var/lib/understudy/pgbouncer/compat";
    const pidBefore = fs.readFileSync(`${bouncer}/pgbouncer.pid`, "utf8").trim();
    const up = await stack.up();
    expect(up.summary.result).toBe("succeeded");
    expect(up.outputs.status.value).toBe("passed");
    // In place: the same PgBouncer process serves, now with an entry for each database.
    expect(fs.readFileSync(`${bouncer}/pgbouncer.pid`, "utf8").trim()).toBe(pidBefore);
    const shown = sh(["psql", "-h", "127.0.0.1", "-p", "29790", "-U", "postgres", "-d", "app", "-Atc", "SELECT current_database()"]).trim();
    expect(shown).toBe("app");
    const viaPostgres = sh(["psql", "-h", "127.0.0.1", "-p", "29790", "-U", "postgres", "-d", "postgres", "-Atc", "SELECT current_database()"]).trim();
    expect(viaPostgres).toBe("postgres");
    // And from then on, `up` with no change changes nothing.
    const again = await stack.preview();
    expect(again.changeSummary, again.stdout).toEqual({ same: again.changeSummary.same });
  });

  it("this release promotes and rolls back what 0.1.0 deployed", async () => {
    await stack.setConfig("promote", { value: "true" });
    const p = await stack.up();
    expect(p.outputs.state.value).toBe("promoted");
    expect(p.outputs.target.value.port).toBe(29720);
    await stack.setConfig("promote", { value: "false" });
    const r = await stack.up();
    expect(r.outputs.state.value).toBe("rolled-back");
    expect(r.outputs.target.value.port).toBe(LIVE_PORT);
  });

  it("this release destroys it: only what the stack made is gone, live and its data stay", async () => {
    const d = await stack.destroy();
    expect(d.summary.result).toBe("succeeded");
    expect(datasetExists(`${POOL}/rehearsals/compat`)).toBe(false);
    expect(datasetExists(`${POOL}/scratch`)).toBe(false);
    expect(datasetExists(SRC)).toBe(true);
    // Left, by design: live's final snapshots of the promotion and its rolled-back new live (README: Promotion).
    expect(snapshotsOf(SRC).filter((s) => !s.includes("@understudy-final-"))).toEqual([]);
    expect(fs.existsSync("/etc/cron.d")).toBe(true);
    expect(fs.readdirSync("/etc/cron.d").filter((f) => f.includes("compat-hourly"))).toEqual([]);
  });
});
