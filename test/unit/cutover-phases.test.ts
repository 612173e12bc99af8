/**
 * The cut-over's phases on fakes (no PostgreSQL, no PgBouncer, no ZFS here: the integration
 * tests run the real ones). Each phase is failed in turn — before it does anything and after
 * it did all of it — and every time: the undo of everything that ran happened in reverse,
 * live serves again, the endpoint points at live, clients are resumed, nothing the attempt
 * made is left (or it is marked for the next attempt), and the error names the phase.
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { MemoryStorage } from "../harness/memory-storage";
import { storageContract } from "../contract/storage-contract";
import { newLiveLogFile, preparePromotion, promote, recoverInterrupted, replayPhases, rollBack, replayedSteps, type CutoverEnv, type CutoverSpec, type NewServer, type PromoteState, FAILED_ATTEMPT } from "../../providers/runner/cutover";
import type { JournalEntry } from "../../providers/runner/journal";
import type { Phase } from "../../providers/runner/phases";
import { PhaseError } from "../../providers/runner/phases";
import { logTargetOf, newLiveLogFileFor, type LiveServer } from "../../providers/runner/live";
import type { DatabaseTarget } from "../../providers/endpoint/pgbouncer-config";
import { resolveRehearsalPlan, resolvePromotionPlan } from "../../providers/plan";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { LocalHost } from "../../providers/host/local";
import { pointLink, recordLink, restoreLink, type LinkRecord } from "../../providers/runner/newlive-service";

storageContract(
  "in-memory (the fake the phase tests use)",
  async () => {
    const s = new MemoryStorage();
    return {
      storage: s,
      makeSource: async (n) => (s.addSource(`live/${n}`), `live/${n}`),
      target: (n) => `clones/${n}`,
      writeFile: async (v, f, c) => void (s.vols.get(v)!.files[f] = c),
      readFile: async (v, f) => s.vols.get(v)?.files[f],
      pathIn: async (v) => `${s.vols.get(v)!.mountpoint}/x`,
      cleanup: async () => undefined,
    };
  },
  { data: true, badIds: ["/x", "A b", "x;y", "-x"] },
);

const SEQ = [["public.s", "42"]];

class FakeLive implements LiveServer {
  readonly description = "fake live";
  up = true;
  starts = 0;
  failStop?: "before" | "after";
  failStart = false;
  /** Live's log file as rememberStart() read it. */
  log?: string;
  logFile() {
    return this.log;
  }
  async running() {
    return this.up;
  }
  /** Each read that need not wait for clients' last writes (settings, how live was started): whether clients were held. */
  settingsReads: Array<[string, boolean]> = [];
  async rememberStart() {
    this.settingsReads.push(["rememberStart", this.heldNow()]);
  }
  async stop() {
    if (this.failStop === "before") throw new Error("stop refused");
    this.up = false;
    if (this.failStop === "after") throw new Error("live did not shut down cleanly");
  }
  async start() {
    if (this.failStart) throw new Error("cannot start live");
    this.up = true;
    this.starts++;
  }
  async sequences() {
    return SEQ;
  }
  async configuredSettings() {
    this.settingsReads.push(["configuredSettings", this.heldNow()]);
    return [["shared_buffers", "16384"]];
  }
  /** What a new cluster must match, as live reports it (a test changes it mid-way). */
  cluster = { encoding: "UTF8", lcCollate: "C.UTF-8", lcCtype: "C.UTF-8", localeProvider: "libc" as const, dataChecksums: true, walSegmentBytes: 16 << 20, superuser: "postgres" };
  async clusterSettings() {
    this.settingsReads.push(["clusterSettings", this.heldNow()]);
    return { ...this.cluster };
  }
  /** Each CHECKPOINT: whether clients were held at the time (set by the test). */
  checkpoints: boolean[] = [];
  heldNow: () => boolean = () => false;
  async checkpoint() {
    this.checkpoints.push(this.heldNow());
  }
}

class FakeServer implements NewServer {
  readonly up = new Set<string>();
  seq = SEQ;
  /**
   * newLive.dataDirLink on the real local filesystem (a temporary directory): start() points it
   * at the generation as the real one does; readLink/restoreLink are the real ones. Unset: no link.
   */
  link?: string;
  /** Where the link pointed at each stop (the user's stopCommand needs it on the generation it stops). */
  readonly linkAtStop: Array<string | undefined> = [];
  readonly linkLog: string[] = [];
  async checkReady() {}
  async running(d: string) {
    return this.up.has(d);
  }
  async stop(d: string) {
    if (this.link) this.linkAtStop.push(fs.lstatSync(this.link, { throwIfNoEntry: false })?.isSymbolicLink() ? fs.readlinkSync(this.link) : undefined);
    this.up.delete(d);
  }
  async start(d: string) {
    if (this.link) await pointLink(localHost, this.link, d, "root", (m) => this.linkLog.push(m));
    this.up.add(d);
  }
  async sequences() {
    return this.seq;
  }
  async value() {
    return "t";
  }
  /** For each CHECKPOINT asked of the new live: whether it was running and whether clients were held then. */
  readonly checkpoints: Array<{ running: boolean; held: boolean }> = [];
  checkpointFails = false;
  /** Whether the endpoint holds clients now (set by the test to its endpoint). */
  heldNow: () => boolean = () => false;
  async checkpoint() {
    this.checkpoints.push({ running: this.up.size > 0, held: this.heldNow() });
    if (this.checkpointFails) throw new Error("psql: connection refused");
  }
  /** What ran on the new live after the switch, in order (analyze, then the access block's removal). */
  readonly afterSwitch: string[] = [];
  revokeFails = false;
  async analyze() {
    this.afterSwitch.push("analyze");
  }
  async revokeOwnerAccess(d: string) {
    if (this.revokeFails) throw new Error("pg_ctl reload failed");
    this.afterSwitch.push(`revoke ${d}`);
    return true;
  }
  /** Clusters initdb'ed before the hold, and the ones removed again. */
  readonly staged: string[] = [];
  readonly unstaged: string[] = [];
  stageFails = false;
  /** Runs while stage() does (a test changes live's settings here). */
  whileStaging?: () => void;
  async stage() {
    if (this.stageFails) throw new Error("initdb: could not create directory");
    this.whileStaging?.();
    const dir = `/tmp/understudy-pg.fake${String(this.staged.length).padStart(4, "0")}`;
    this.staged.push(dir);
    return dir;
  }
  async unstage(dir: string) {
    this.unstaged.push(dir);
  }
  readLink?: () => Promise<LinkRecord | undefined> = async () => (this.link ? await recordLink(localHost, this.link) : undefined);
  restoreLink?: (rec: LinkRecord) => Promise<void> = async (rec) => void (await restoreLink(localHost, rec, "root", (m) => this.linkLog.push(m)));
}

const localHost = new LocalHost();

/** A PgBouncer-like hold over several entries: PAUSE all, run, restore the old targets on failure, RESUME. */
class FakeEndpoint {
  readonly description = "fake bouncer";
  targets: Record<string, DatabaseTarget>;
  /** Entries held by the last hold (every database of the cluster must be). */
  heldLast: string[] = [];
  isPaused = false;
  pauses = 0;
  liveStoppedWhileResumed = false;
  constructor(
    t: DatabaseTarget,
    private readonly live: FakeLive,
    others: string[] = [],
  ) {
    this.targets = Object.fromEntries([[t.dbname, t], ...others.map((d) => [d, { ...t, dbname: d }])]);
  }
  /** The main entry's target (app). */
  get targetNow(): DatabaseTarget {
    return this.targets.app;
  }
  set targetNow(t: DatabaseTarget) {
    this.targets = { ...this.targets, app: t };
  }
  async current(db: string) {
    return this.targets[db];
  }
  async hold(dbs: string[], fn: (ctl: { retarget(t: Record<string, DatabaseTarget>): Promise<unknown> }) => Promise<void>) {
    const before = this.targets;
    this.heldLast = [...dbs];
    this.isPaused = true;
    this.pauses++;
    try {
      await fn({ retarget: async (t) => void (this.targets = { ...this.targets, ...t }) });
    } catch (e) {
      this.targets = before;
      throw e;
    } finally {
      // Clients resume here: live must serve by now unless we promoted.
      if (!this.live.up && this.targets === before) this.liveStoppedWhileResumed = true;
      this.isPaused = false;
    }
    return { pauseWindowMs: 5, phases: { pauseMs: 1, resumeMs: 1 } };
  }
  async paused() {
    return this.isPaused;
  }
  async resume() {
    if (!this.live.up && this.targetNow.port === 5432) this.liveStoppedWhileResumed = true;
    this.isPaused = false;
  }
}

const rehearsal = resolveRehearsalPlan("r", {
  source: { dataset: "live/data", version: 13, port: 5432 },
  clone: { dataset: "clones/r" },
  to: 15,
  postgres: { port: 55432, database: "app" },
  steps: [{ name: "fix", sql: "SELECT 1", phase: "before-upgrade" }],
  checks: { assertions: [{ name: "a", sql: "SELECT true" }] },
});
const promotion = resolvePromotionPlan("go", { endpoint: { name: "app", listenPort: 6432, database: "app", users: [{ name: "app", password: "pw" }] } }, rehearsal, {
  sibling: (of, n) => [...of.split("/").slice(0, -1), n].join("/"),
  sanitize: (s) => s,
});
const OWNER = "p/s/Promotion/go";

/** The phases with `name` failing right before or right after its own work. */
const failAt = (name: string, when: "before" | "after") => (phases: Array<Phase<PromoteState>>) =>
  phases.map((p) =>
    p.name !== name
      ? p
      : {
          ...p,
          run: async (c: PromoteState) => {
            if (when === "before") throw new Error(`injected before ${name}`);
            await p.run(c);
            throw new Error(`injected after ${name}`);
          },
        },
  );

describe("replay cut-over phases (fakes)", () => {
  let storage: MemoryStorage;
  let live: FakeLive;
  let server: FakeServer;
  let endpoint: FakeEndpoint;
  let replayed: string[];
  /** What the replayed upgrade was given as the staged cluster (one entry per upgrade). */
  let stagedForUpgrade: Array<{ dir: string; superuser: string } | undefined>;
  let failReplay: string | undefined;
  let env: CutoverEnv;
  let journalFile: JournalEntry | undefined;
  const spec = (over: Partial<CutoverSpec> = {}): CutoverSpec => ({
    owner: OWNER,
    stack: "s",
    rehearsal: { name: rehearsal.name, status: "passed" },
    source: rehearsal.source,
    liveVolumes: ["live/data", "live/wal"],
    to: rehearsal.to,
    toBinDir: rehearsal.toBinDir,
    mode: rehearsal.mode,
    steps: rehearsal.steps,
    assertions: rehearsal.checks.assertions,
    database: promotion.endpoint.database,
    pauseTimeoutMs: promotion.endpoint.pauseTimeoutMs,
    newLive: promotion.newLive,
    ...over,
  });

  const beforeEachAgain = () => {
    storage = new MemoryStorage();
    storage.addSource("live/data", { PG_VERSION: "13" });
    storage.addSource("live/wal", { seg: "1" });
    live = new FakeLive();
    server = new FakeServer();
    endpoint = new FakeEndpoint({ host: "/var/run/postgresql", port: 5432, dbname: "app" }, live);
    server.heldNow = () => endpoint.isPaused;
    replayed = [];
    stagedForUpgrade = [];
    failReplay = undefined;
    journalFile = undefined;
    env = {
      journal: { load: async () => journalFile, save: async (e) => void (journalFile = JSON.parse(JSON.stringify(e))) },
      prepareClone: async () => undefined,
      storage,
      live,
      server,
      endpoint,
      log: () => undefined,
      replay: async (step, pg, state) => {
        if (failReplay === step.name) throw new Error(`replay of ${step.name} failed`);
        replayed.push(step.name);
        if (step.kind === "upgrade") stagedForUpgrade.push(state.staged ? { dir: state.staged.dir, superuser: pg.superuser ?? "?" } : undefined);
        if (step.kind === "start") await server.start(pg.newDataDir);
        return {};
      },
    };
  };
  beforeEach(beforeEachAgain);

  it("the new live logs like live: on its own volume when live's log is on live's, in live's log directory otherwise; never into live", async () => {
    // Live's log on its data volume (pg_ctl -l /mem/live/data/server.log): the same place on the new live's volume.
    live.log = "/mem/live/data/server.log";
    let r = await promote(env, spec());
    expect(r.newLiveLogFile).toBe("/mem/clones/go-live-pg15/server-pg15.log");
    expect(storage.vols.get("live/data")!.files).toEqual({ PG_VERSION: "13" });
    // Live's log in /var/log/postgresql (pg_ctlcluster): the same directory, the new major in the name.
    beforeEachAgain();
    live.log = "/var/log/postgresql/postgresql-13-main.log";
    r = await promote(env, spec());
    expect(r.newLiveLogFile).toBe("/var/log/postgresql/postgresql-15-main.log");
    // Not a file (journald): the data directory's default.
    beforeEachAgain();
    live.log = undefined;
    r = await promote(env, spec());
    expect(r.newLiveLogFile).toBeUndefined();
    // A logFile of the user's on live's volume is refused before anyone is held.
    beforeEachAgain();
    await expect(promote(env, spec({ newLive: { ...promotion.newLive, logFile: "/mem/live/wal/pg15.log" } }))).rejects.toThrow(/newLive\.logFile: \/mem\/live\/wal\/pg15\.log is on live's volume live\/wal/);
    expect(endpoint.pauses).toBe(0);
    expect(live.up).toBe(true);
    r = await promote(env, spec({ newLive: { ...promotion.newLive, logFile: "/var/log/pg15/new.log" } }));
    expect(r.newLiveLogFile).toBe("/var/log/pg15/new.log");
  });

  it("replays the rehearsal's cut-over steps, in order", () => {
    expect(replayedSteps(rehearsal.steps).map((s) => s.name)).toEqual(["fix", "upgrade", "start", "post-upgrade"]);
  });

  it("succeeds: clients end on the new live, live stopped and kept, a final snapshot of every live volume, phases timed", async () => {
    const r = await promote(env, spec());
    expect(endpoint.targetNow).toEqual({ host: "/var/run/postgresql", port: 55442, dbname: "app" });
    expect(endpoint.isPaused).toBe(false);
    expect(live.up).toBe(false);
    expect(storage.vols.has("live/data")).toBe(true);
    expect(r.newLiveVolumes).toEqual(["clones/go-live-pg15", "clones/go-live-pg15-wal"]);
    expect(await storage.findSnapshotSet(["live/data", "live/wal"], r.finalSnapshot)).toBeDefined();
    expect(replayed).toEqual(["fix", "upgrade", "start", "post-upgrade"]);
    expect(r.phases.map((p) => p.phase)).toEqual([
      "initdb the new cluster, CHECKPOINT on live, read its settings (before clients wait)",
      "PAUSE (in-flight transactions finish)",
      "read live sequences",
      "stop live cleanly",
      "final snapshot",
      "clone",
      "replay fix",
      "replay upgrade",
      "replay start",
      "replay post-upgrade",
      "verify",
      "switch endpoint",
      "RESUME",
      "analyze (after resume)",
      "live's pg_hba.conf on the new live (after resume)",
      "remove the staged cluster (after resume)",
    ]);
    expect(r.phases[0].held).toBe(false);
    // The block that let the replayed steps in by peer goes last: the new live runs with live's pg_hba.conf.
    expect(server.afterSwitch).toEqual(["analyze", `revoke ${r.newLiveDataDir}`]);
    // initdb ran before clients were held; the replayed upgrade copied that cluster, as live's superuser; then it was removed.
    expect(stagedForUpgrade).toEqual([{ dir: "/tmp/understudy-pg.fake0000", superuser: "postgres" }]);
    expect(server.unstaged).toEqual(["/tmp/understudy-pg.fake0000"]);
  });

  it("CHECKPOINT on live before clients are held (the clean stop then writes little); none with source.checkpoint: false", async () => {
    live.heldNow = () => endpoint.isPaused;
    await promote(env, spec());
    expect(live.checkpoints).toEqual([false]);
    beforeEachAgain();
    await promote(env, spec({ source: { ...rehearsal.source, checkpoint: false } }));
    expect(live.checkpoints).toEqual([]);
  });

  it("live's settings and how it was started are read before clients are held; only its sequences while they wait", async () => {
    live.heldNow = () => endpoint.isPaused;
    await promote(env, spec());
    expect(live.settingsReads).toEqual([
      ["clusterSettings", false], // for the staged cluster
      ["configuredSettings", false],
      ["clusterSettings", false], // the staged cluster still matches
      ["rememberStart", false],
    ]);
  });

  it("a cluster staged before live's settings changed is not used: the upgrade runs initdb held, as before; the staged one is removed", async () => {
    live.cluster.superuser = "admin";
    server.whileStaging = () => void (live.cluster.superuser = "dba");
    const logs: string[] = [];
    const r = await promote({ ...env, log: (m) => logs.push(m) }, spec());
    expect(endpoint.targetNow.port).toBe(55442);
    expect(stagedForUpgrade).toEqual([undefined]);
    expect(server.unstaged).toEqual(["/tmp/understudy-pg.fake0000"]);
    expect(logs.join("\n")).toMatch(/live's cluster settings changed since the new cluster was staged .*"admin".*"dba".*initdb runs again while clients are held/);
    expect(r.phases[0].status).toBe("ok");
  });

  it("staging that fails changes nothing but where initdb runs: the promotion goes on and initdb runs held", async () => {
    server.stageFails = true;
    const logs: string[] = [];
    await promote({ ...env, log: (m) => logs.push(m) }, spec());
    expect(endpoint.targetNow.port).toBe(55442);
    expect(stagedForUpgrade).toEqual([undefined]);
    expect(logs.join("\n")).toMatch(/warning: the new cluster could not be initialized before clients wait \(initdb: could not create directory\): initdb runs while they are held/);
  });

  it("a failed attempt removes the staged cluster too, after clients resumed", async () => {
    failReplay = "upgrade";
    await expect(promote(env, spec())).rejects.toThrow(/replay upgrade/);
    expect(live.up).toBe(true);
    expect(server.staged).toEqual(["/tmp/understudy-pg.fake0000"]);
    expect(server.unstaged).toEqual(["/tmp/understudy-pg.fake0000"]);
  });

  it("a failure to restore live's pg_hba.conf on the new live is reported; the promotion stands", async () => {
    server.revokeFails = true;
    const logs: string[] = [];
    const r = await promote({ ...env, log: (m) => logs.push(m) }, spec());
    expect(endpoint.targetNow).toEqual({ host: "/var/run/postgresql", port: 55442, dbname: "app" });
    expect(r.phases.find((p) => p.phase.startsWith("live's pg_hba.conf"))?.status).not.toBe("ok");
    expect(logs.join("\n")).toMatch(/peer block is still at the top of .*pg_hba\.conf/);
  });

  const names = ["read live sequences", "stop live cleanly", "final snapshot", "clone", "replay fix", "replay upgrade", "replay start", "replay post-upgrade", "verify", "switch endpoint"];
  for (const when of ["before", "after"] as const) {
    for (const name of names) {
      it(`a failure ${when} "${name}" undoes what ran; live serves, clients resume on live, nothing is left`, async () => {
        const e = await promote(env, spec(), failAt(name, when)).then(() => undefined, (x: unknown) => x);
        expect(e).toBeInstanceOf(PhaseError);
        expect((e as PhaseError).phase).toBe(name);
        expect((e as Error).message).toContain(`phase "${name}" failed: injected ${when} ${name}`);
        expect(live.up).toBe(true);
        expect(endpoint.targetNow).toEqual({ host: "/var/run/postgresql", port: 5432, dbname: "app" });
        expect(endpoint.isPaused).toBe(false);
        expect(endpoint.liveStoppedWhileResumed).toBe(false);
        expect([...storage.vols.keys()].sort()).toEqual(["live/data", "live/wal"]);
        expect([...storage.snaps.keys()]).toEqual([]);
        expect(server.up.size).toBe(0);
        expect((e as PhaseError).undoFailures).toEqual([]);
      });
    }
  }

  it("live that stopped uncleanly is started again before clients resume", async () => {
    live.failStop = "after";
    const e = (await promote(env, spec()).catch((x) => x)) as PhaseError;
    expect(e.phase).toBe("stop live cleanly");
    expect(live.up).toBe(true);
    expect(live.starts).toBe(1);
    expect(endpoint.liveStoppedWhileResumed).toBe(false);
  });

  it("a clone that cannot be removed is marked for the next attempt, and the error says so", async () => {
    failReplay = "upgrade";
    storage.failNext = { method: "destroyVolume", error: new Error("dataset is busy") };
    const e = (await promote(env, spec()).catch((x) => x)) as PhaseError;
    expect(e.undoFailures.map((u) => u.phase)).toEqual(["clone"]);
    expect(e.message).toMatch(/UNDO FAILED: clone: could not remove the half-made clone .*marked failed-attempt/);
    expect(await storage.getMark("clones/go-live-pg15", "promotion")).toBe(FAILED_ATTEMPT);
    expect(live.up).toBe(true);
    // The next attempt removes it and succeeds.
    failReplay = undefined;
    const r = await promote(env, spec());
    expect(r.newLiveVolumes[0]).toBe("clones/go-live-pg15");
    expect(endpoint.targetNow.port).toBe(55442);
  });

  it("refuses before holding anyone: a rehearsal that did not pass, a new-live volume that is not ours, an endpoint without the database", async () => {
    await expect(promote(env, spec({ rehearsal: { name: "r", status: "failed" } }))).rejects.toThrow(/has not passed.*nothing was done/);
    storage.addSource("clones/go-live-pg15");
    await expect(promote(env, spec())).rejects.toThrow(/not created by this promotion.*nothing was done/);
    expect(endpoint.pauses).toBe(0);
    expect(live.up).toBe(true);
  });

  it("roll-back: clients back on live; the new live stopped and kept; a failure puts the new live back", async () => {
    const r = await promote(env, spec());
    const newDir = r.newLiveDataDir;
    live.failStart = true;
    const e = (await rollBack(env, spec({ prior: { state: "promoted" } }), newDir).catch((x) => x)) as PhaseError;
    expect(e.phase).toBe("start old live");
    expect(server.up.has(newDir)).toBe(true);
    expect(endpoint.targetNow.port).toBe(55442);
    live.failStart = false;
    // Before clients are held, a CHECKPOINT on the new live (its clean stop then has little to write); a failed one only warns.
    server.checkpointFails = true;
    const r2 = await rollBack(env, spec({ prior: { state: "promoted" } }), newDir);
    expect(server.checkpoints.map((c) => c.held)).toEqual([false, false]);
    expect(server.checkpoints.every((c) => c.running)).toBe(true);
    expect(r2.phases.map((p) => `${p.phase}${p.held ? " (held)" : ""}`)).toEqual([
      "CHECKPOINT on the new live (before clients wait)",
      "stop new live cleanly (held)",
      "start old live (held)",
      "switch endpoint (held)",
    ]);
    expect(live.up).toBe(true);
    expect(server.up.has(newDir)).toBe(false);
    expect(endpoint.targetNow.port).toBe(5432);
    expect(storage.vols.has("clones/go-live-pg15")).toBe(true);
    // The next promotion takes the next generation's name: the rolled-back one holds writes.
    const again = await promote(env, spec({ prior: { state: "rolled-back" } }));
    expect(again.newLiveVolumes[0]).toBe("clones/go-live-pg15-2");
  });

  it("several databases: every entry is held, switched and resumed together; sequences are compared in each, a difference names the database", async () => {
    endpoint = new FakeEndpoint({ host: "/var/run/postgresql", port: 5432, dbname: "app" }, live, ["shop", "postgres"]);
    env = { ...env, endpoint };
    const seqOf = server.sequences.bind(server);
    server.sequences = async (db?: string) => (db === "shop" ? [["public.orders_id_seq", "7"]] : seqOf());
    const err = await promote(env, spec({ databases: ["app", "shop", "postgres"] })).catch((e) => e);
    expect(err).toBeInstanceOf(PhaseError);
    expect(err.message).toMatch(/sequences differ between live and the upgraded clone in database shop/);
    expect(endpoint.heldLast).toEqual(["app", "shop", "postgres"]);
    expect(Object.values(endpoint.targets).map((t) => t.port)).toEqual([5432, 5432, 5432]);
    expect(live.up).toBe(true);
    server.sequences = seqOf;
    await promote(env, spec({ databases: ["app", "shop", "postgres"] }));
    expect(endpoint.targets).toEqual({
      app: { host: "/var/run/postgresql", port: 55442, dbname: "app" },
      shop: { host: "/var/run/postgresql", port: 55442, dbname: "shop" },
      postgres: { host: "/var/run/postgresql", port: 55442, dbname: "postgres" },
    });
    expect(journalFile?.databases).toEqual(["app", "shop", "postgres"]);
  });

  describe("the engine dies mid-way (kill -9): nothing undone; the next run recovers from the journal and the host", () => {
    const names = ["initdb the new cluster, CHECKPOINT on live, read its settings (before clients wait)", "read live sequences", "stop live cleanly", "final snapshot", "clone", "replay fix", "replay upgrade", "replay start", "replay post-upgrade", "verify", "switch endpoint"];
    for (const [k, name] of names.entries()) {
      it(`after "${name}": clients never stay held, live serves or the switch is finished, the attempt's leftovers go`, async () => {
        const { st, entry } = await preparePromotion(env, spec());
        expect(journalFile?.finished).toBeUndefined();
        // PAUSE, then the phases up to this one, then nothing: the process is gone.
        endpoint.isPaused = true;
        st.retarget = async (t) => void (endpoint.targets = { ...endpoint.targets, ...t });
        for (const p of replayPhases(env, st).slice(0, k + 1)) await p.run(st);
        const rec = await recoverInterrupted(env, spec());
        // The cluster staged before the hold is in the journal, and recovery removes it.
        expect(journalFile?.staged).toBe("/tmp/understudy-pg.fake0000");
        expect(server.unstaged).toEqual(["/tmp/understudy-pg.fake0000"]);
        expect(endpoint.isPaused).toBe(false);
        expect(journalFile?.finished?.outcome).toBe("recovered");
        if (name === "switch endpoint") {
          expect(rec?.outcome).toBe("promoted");
          expect(endpoint.targetNow.port).toBe(55442);
          expect(server.up.size).toBe(1);
        } else {
          expect(rec?.outcome).toBe("restored");
          expect(live.up).toBe(true);
          expect(endpoint.targetNow.port).toBe(5432);
          expect(endpoint.liveStoppedWhileResumed).toBe(false);
          expect([...storage.vols.keys()].sort()).toEqual(["live/data", "live/wal"]);
          expect(await storage.findSnapshotSet(["live/data", "live/wal"], entry.finalSnapshot!)).toBeUndefined();
          expect(server.up.size).toBe(0);
          // ... and the next promotion goes through.
          const r = await promote(env, spec());
          expect(endpoint.targetNow.port).toBe(55442);
          expect(r.newLiveVolumes[0]).toBe("clones/go-live-pg15");
        }
        expect(await recoverInterrupted(env, spec())).toBeUndefined();
      });
    }

    it("a journal closed by a finished attempt is left alone", async () => {
      await promote(env, spec());
      expect(journalFile?.finished?.outcome).toBe("promoted");
      expect(await recoverInterrupted(env, spec())).toBeUndefined();
    });
  });

  describe("newLive.dataDirLink after an undone attempt (the real link in a temporary directory)", () => {
    let dir: string;
    let link: string;
    const linkNow = () => (fs.lstatSync(link, { throwIfNoEntry: false })?.isSymbolicLink() ? fs.readlinkSync(link) : fs.existsSync(link) ? "not a link" : undefined);
    beforeEach(() => {
      dir = fs.mkdtempSync(path.join(os.tmpdir(), "uslu-unit-"));
      link = `${dir}/15-main`;
      server.link = link;
    });
    // Also when a test fails.
    afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

    it("a promotion that succeeds leaves it on the new generation; the journal holds what it was before", async () => {
      const r = await promote(env, spec());
      expect(linkNow()).toBe(r.newLiveDataDir);
      expect(journalFile?.dataDirLink).toEqual({ path: link, before: { kind: "absent" } });
      fs.rmSync(dir, { recursive: true });
    });

    for (const before of ["absent", "a previous generation (relative target)"] as const) {
      for (const when of ["before", "after"] as const) {
        for (const name of ["replay start", "replay post-upgrade", "verify", "switch endpoint"]) {
          it(`${before}, a failure ${when} "${name}": the link is exactly as before; the new live was stopped while the link still pointed at it`, async () => {
            if (before !== "absent") fs.symlinkSync("gen1/main", link);
            const e = (await promote(env, spec(), failAt(name, when)).catch((x: unknown) => x)) as PhaseError;
            expect(e).toBeInstanceOf(PhaseError);
            expect(e.undoFailures).toEqual([]);
            expect(linkNow()).toBe(before === "absent" ? undefined : "gen1/main");
            expect(fs.existsSync(`${link}.understudy-new`)).toBe(false);
            expect(live.up).toBe(true);
            expect(endpoint.targetNow.port).toBe(5432);
            expect(server.up.size).toBe(0);
            if (name === "replay start" && when === "before") {
              // Never started: the link was never touched, and nothing is said about it.
              expect(server.linkLog).toEqual([]);
            } else {
              // Stopped before the link went back (the user's stopCommand runs through the link).
              expect(server.linkAtStop).toEqual(["/mem/clones/go-live-pg15/main.pg15"]);
              expect(server.linkLog.at(-1)).toMatch(before === "absent" ? /15-main removed/ : /15-main -> gen1\/main again/);
            }
            fs.rmSync(dir, { recursive: true });
          });
        }
      }
    }

    it("a failure before the start never touched the link: nothing is changed or said", async () => {
      fs.symlinkSync(`${dir}/gen1`, link);
      await promote(env, spec(), failAt("replay upgrade", "after")).catch(() => undefined);
      expect(linkNow()).toBe(`${dir}/gen1`);
      expect(server.linkLog).toEqual([]);
      fs.rmSync(dir, { recursive: true });
    });

    it("something else put at the path meanwhile (a directory) is left as it is, and said; the undo still succeeds", async () => {
      const wrap = (phases: Array<Phase<PromoteState>>) =>
        failAt("verify", "before")(phases).map((p) =>
          p.name !== "replay post-upgrade"
            ? p
            : {
                ...p,
                run: async (c: PromoteState) => {
                  await p.run(c);
                  fs.unlinkSync(link);
                  fs.mkdirSync(link);
                  fs.writeFileSync(`${link}/PG_VERSION`, "15\n");
                },
              },
        );
      const e = (await promote(env, spec(), wrap).catch((x: unknown) => x)) as PhaseError;
      expect(e.undoFailures).toEqual([]);
      expect(fs.readFileSync(`${link}/PG_VERSION`, "utf8")).toBe("15\n");
      expect(server.linkLog.join("\n")).toMatch(/15-main is no longer a symlink .* left as it is/);
      fs.rmSync(dir, { recursive: true });
    });

    const names = ["clone", "replay start", "replay post-upgrade", "verify", "switch endpoint"];
    for (const before of ["absent", "a previous generation"] as const) {
      for (const [k, name] of names.entries()) {
        it(`${before}, the engine dies after "${name}": recovery from the journal puts the link back unless the switch had happened`, async () => {
          const prev = `${dir}/go-live-pg15/main.pg15`;
          if (before !== "absent") fs.symlinkSync(prev, link);
          const { st } = await preparePromotion(env, spec());
          endpoint.isPaused = true;
          st.retarget = async (t) => void (endpoint.targets = { ...endpoint.targets, ...t });
          const all = replayPhases(env, st);
          for (const p of all.slice(0, all.findIndex((p) => p.name === name) + 1)) await p.run(st);
          expect(k < 1 || linkNow() === "/mem/clones/go-live-pg15/main.pg15").toBe(true);
          const rec = await recoverInterrupted(env, spec());
          if (name === "switch endpoint") {
            expect(rec?.outcome).toBe("promoted");
            expect(linkNow()).toBe("/mem/clones/go-live-pg15/main.pg15");
          } else {
            expect(rec?.outcome).toBe("restored");
            expect(linkNow()).toBe(before === "absent" ? undefined : prev);
            if (k >= 1) expect(server.linkAtStop).toEqual(["/mem/clones/go-live-pg15/main.pg15"]);
          }
          fs.rmSync(dir, { recursive: true });
        });
      }
    }

    it("a journal written before the link was recorded: recovery leaves the link as it is", async () => {
      const { st } = await preparePromotion(env, spec());
      endpoint.isPaused = true;
      const all = replayPhases(env, st);
      for (const p of all.slice(0, all.findIndex((p) => p.name === "replay start") + 1)) await p.run(st);
      delete journalFile!.dataDirLink;
      await recoverInterrupted(env, spec());
      expect(linkNow()).toBe("/mem/clones/go-live-pg15/main.pg15");
      fs.rmSync(dir, { recursive: true });
    });
  });
});

describe("the new live's log file, like live's", () => {
  it("renames live's major, or adds -pg<to>", () => {
    expect(newLiveLogFileFor("/var/log/postgresql/postgresql-13-main.log", 13, 15)).toBe("/var/log/postgresql/postgresql-15-main.log");
    expect(newLiveLogFileFor("/srv/p/pg13/server.log", 13, 15)).toBe("/srv/p/pg13/server-pg15.log");
    expect(newLiveLogFileFor("/var/log/pg/main-113.log", 13, 15)).toBe("/var/log/pg/main-113-pg15.log");
    expect(newLiveLogFileFor("/var/log/pg/postgres", 13, 15)).toBe("/var/log/pg/postgres-pg15");
  });
  it("maps a log on one of live's volumes to the new live's matching volume", () => {
    expect(newLiveLogFile("/srv/p/wal/log/pg.log", ["/srv/p/data", "/srv/p/wal"], ["/srv/p/new", "/srv/p/new-wal"], 13, 15)).toBe("/srv/p/new-wal/log/pg-pg15.log");
    expect(newLiveLogFile("/srv/p/data-other/x.log", ["/srv/p/data"], ["/srv/p/new"], 13, 15)).toBe("/srv/p/data-other/x-pg15.log");
    expect(newLiveLogFile("/srv/p/data/x.log", ["/srv/p/data"], [undefined], 13, 15)).toBeUndefined();
    expect(newLiveLogFile(undefined, ["/srv/p/data"], ["/srv/p/new"], 13, 15)).toBeUndefined();
  });
  it("takes only a plain file path from /proc/<pid>/fd/2", () => {
    expect(logTargetOf("/var/log/postgresql/postgresql-13-main.log\n")).toBe("/var/log/postgresql/postgresql-13-main.log");
    for (const bad of ["socket:[12345]", "pipe:[9]", "/dev/null", "/var/log/x.log (deleted)", "/var/log/a b.log", "/proc/1/fd/2", "/var/../etc/x", ""]) expect(logTargetOf(bad), bad).toBeUndefined();
  });
});
