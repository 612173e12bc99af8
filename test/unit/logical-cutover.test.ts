/**
 * The logical cut-over's phases on fakes (no PostgreSQL, no PgBouncer, no ZFS: the
 * integration test test/integration/promotion-logical.test.ts runs the real ones). The fake
 * replication machinery records what of ours exists on live and on the new side. Each phase
 * is failed in turn, before it does anything and after it did all of it, and every time:
 * clients end on live (every database), resumed; live never stopped; nothing of ours is left
 * on live; the attempt's clone and snapshot are gone; the error names the phase.
 */
import { beforeEach, describe, expect, it } from "vitest";
import { MemoryStorage } from "../harness/memory-storage";
import { type CutoverEnv, type CutoverSpec, type NewServer } from "../../providers/runner/cutover";
import { logicalPhases, promoteLogical, rollBackLogical, type LogicalOps, type LogicalState } from "../../providers/runner/logical-cutover";
import type { JournalEntry } from "../../providers/runner/journal";
import { PhaseError, type Phase } from "../../providers/runner/phases";
import type { LiveServer } from "../../providers/runner/live";
import type { DatabaseTarget } from "../../providers/endpoint/pgbouncer-config";
import { resolveRehearsalPlan, resolvePromotionPlan } from "../../providers/plan";

class FakeLive implements LiveServer {
  readonly description = "fake live";
  up = true;
  stops = 0;
  async running() {
    return this.up;
  }
  async rememberStart() {}
  async stop() {
    this.stops++;
    this.up = false;
  }
  async start() {
    this.up = true;
  }
  async sequences() {
    return [];
  }
  async configuredSettings() {
    return [["wal_level", "logical"]];
  }
}

class FakeServer implements NewServer {
  readonly up = new Set<string>();
  async checkReady() {}
  async running(d: string) {
    return this.up.has(d);
  }
  async stop(d: string) {
    this.up.delete(d);
  }
  async start(d: string) {
    this.up.add(d);
  }
  async sequences() {
    return [];
  }
  async value() {
    return "t";
  }
  async analyze() {}
}

class FakeEndpoint {
  readonly description = "fake bouncer";
  targets: Record<string, DatabaseTarget>;
  paused = new Set<string>();
  constructor(dbs: string[]) {
    this.targets = Object.fromEntries(dbs.map((d) => [d, { host: "/run/pg", port: 5432, dbname: d }]));
  }
  async current(db: string) {
    return this.targets[db];
  }
  async hold(dbs: string[], fn: (ctl: { retarget(t: Record<string, DatabaseTarget>): Promise<unknown> }) => Promise<void>) {
    const before = this.targets;
    for (const d of dbs) this.paused.add(d);
    try {
      await fn({ retarget: async (t) => void (this.targets = { ...this.targets, ...t }) });
    } catch (e) {
      this.targets = before;
      throw e;
    } finally {
      for (const d of dbs) this.paused.delete(d);
    }
    return { pauseWindowMs: 5, phases: { pauseMs: 1, resumeMs: 1 } };
  }
  async isPaused(db: string) {
    return this.paused.has(db);
  }
  async resume(db: string) {
    this.paused.delete(db);
  }
}

/** What of ours exists on each side; the fake logical machinery adds and removes it. */
class FakeLogical {
  live = new Set<string>();
  target = new Set<string>();
  notReady = false;
  unpublished: string[] = [];
  schemaChanged = false;
  ops(): LogicalOps {
    return fakeOps(this);
  }
}

function fakeOps(f: FakeLogical): LogicalOps {
  {
    const ops = {
      async readiness() {
        return f.notReady
          ? { ok: false, problems: [{ code: "replica-identity", severity: "error", objects: ["public.t"], message: "app: public.t has no key" }], items: [] }
          : { ok: true, problems: [], items: [] };
      },
      async createWalKeeper() {
        f.live.add("wal keeper");
        return { slot: "w", restartLsn: "0/1" };
      },
      async dropWalKeeper() {
        f.live.delete("wal keeper");
        return [];
      },
      async createSlots() {
        f.live.add("slots");
        f.live.add("publications");
        return { lsn: "0/2", slots: [] };
      },
      async dropForward() {
        f.live.delete("slots");
        f.live.delete("publications");
        return [];
      },
      async convertClone() {
        return { fingerprints: [] };
      },
      async subscribe() {
        f.target.add("subscriptions");
      },
      async unsubscribe() {
        f.target.delete("subscriptions");
      },
      async waitCaughtUp() {
        return { maxLagBytes: 0, databases: [] };
      },
      watchRetainedWal() {
        return { stop: async () => undefined, throwIfTripped: () => undefined, check: async () => ({}) };
      },
      async checkSchema() {
        if (f.schemaChanged) throw new Error("the schema changed on live since the snapshot");
      },
      async prepareReverse() {
        f.target.add("reverse slots");
        return [];
      },
      async dropReverse() {
        f.target.delete("reverse slots");
        return [];
      },
      async capture(direction: string) {
        return { direction, databases: [], durationMs: 1 };
      },
      async finish(c: { direction: string }) {
        if (c.direction === "back") f.live.delete("read-only");
        else f.target.add("forward finished");
        return { direction: c.direction, resumeLsn: "0/3", sequencesSet: 0, durationMs: 1 };
      },
      async unfinish(direction: string) {
        if (direction === "back") f.live.add("read-only");
        else f.target.delete("forward finished");
      },
      async startReverse() {
        f.live.add("reverse subscriptions");
      },
      async makeReadOnly() {
        f.live.add("read-only");
        return [];
      },
      async retireForward() {
        f.target.delete("subscriptions");
        f.live.delete("slots");
        f.live.delete("publications");
        f.live.delete("wal keeper");
        return [];
      },
      async retireReverse() {
        f.live.delete("reverse subscriptions");
        f.target.delete("reverse slots");
        return [];
      },
      async cleanup(o: { target?: boolean; keepReadOnly?: boolean } = {}) {
        const ro = f.live.has("read-only") && o.keepReadOnly;
        f.live.clear();
        if (ro) f.live.add("read-only");
        if (o.target ?? true) f.target.clear();
        return { removed: [], remaining: [] };
      },
      async leftovers() {
        return [...f.live];
      },
      names: { tag: "t" },
      withTarget: () => ops,
    };
    return ops as unknown as LogicalOps;
  }
}

const rehearsal = resolveRehearsalPlan("r", {
  source: { dataset: "live/data", version: 13, port: 5432, socketDir: "/run/pg" },
  clone: { dataset: "clones/r" },
  to: 15,
  postgres: { port: 55432, database: "app" },
});
const promotion = resolvePromotionPlan("go", { endpoint: { name: "app", listenPort: 6432, database: "app", authType: "trust" }, method: "logical" }, rehearsal, {
  sibling: (of, n) => [...of.split("/").slice(0, -1), n].join("/"),
  sanitize: (s) => s,
});
const DBS = ["app", "postgres", "shop"];

describe("logical cut-over phases (fakes)", () => {
  let storage: MemoryStorage;
  let live: FakeLive;
  let server: FakeServer;
  let endpoint: FakeEndpoint;
  let logical: FakeLogical;
  let env: CutoverEnv;
  let journal: JournalEntry | undefined;
  const spec: CutoverSpec = {
    owner: "p/s/Promotion/go",
    stack: "s",
    rehearsal: { name: "r", status: "passed" },
    source: rehearsal.source,
    liveVolumes: ["live/data"],
    to: 15,
    toBinDir: rehearsal.toBinDir,
    mode: rehearsal.mode,
    steps: rehearsal.steps,
    assertions: [],
    database: "app",
    databases: DBS,
    method: "logical",
    pauseTimeoutMs: 1000,
    newLive: promotion.newLive,
  };
  const onLive = () => Object.values(endpoint.targets).every((t) => t.port === 5432);
  const onNew = () => Object.values(endpoint.targets).every((t) => t.port === promotion.newLive.port);

  beforeEach(() => {
    storage = new MemoryStorage();
    storage.addSource("live/data", { PG_VERSION: "13" });
    live = new FakeLive();
    server = new FakeServer();
    endpoint = new FakeEndpoint(DBS);
    logical = new FakeLogical();
    journal = undefined;
    env = {
      journal: { load: async () => journal, save: async (e) => void (journal = JSON.parse(JSON.stringify(e))) },
      prepareClone: async () => undefined,
      storage,
      live,
      server,
      endpoint: { ...endpoint, description: endpoint.description, current: (d) => endpoint.current(d), hold: (d, f) => endpoint.hold(d, f), paused: (d) => endpoint.isPaused(d), resume: (d) => endpoint.resume(d) },
      log: () => undefined,
      replay: async (step, pg) => {
        if (step.kind === "start") await server.start(pg.newDataDir);
        return {};
      },
      logical: {
        clusterDatabases: async () => DBS,
        open: () => logical.ops(),
        checkpoint: async () => undefined,
        ensureTargetSettings: async () => [],
        unpublishedTables: async (_tag, dbs) => dbs.map((d) => ({ database: d, tables: d === "app" ? logical.unpublished : [] })),
      },
    };
  });

  it("promotes: live never stops, every database switched, the way back started, the old live read-only, the way forward retired", async () => {
    const r = await promoteLogical(env, spec);
    expect(onNew()).toBe(true);
    expect(endpoint.paused.size).toBe(0);
    expect(live.stops).toBe(0);
    expect([...logical.live].sort()).toEqual(["read-only", "reverse subscriptions"]);
    expect([...logical.target].sort()).toEqual(["forward finished", "reverse slots"]);
    expect(r.clusterDatabases).toEqual(DBS);
    expect(journal?.finished?.outcome).toBe("promoted");
    expect(journal?.logical?.databases).toEqual(DBS);
    const held = r.phases.filter((p) => p.held).map((p) => p.phase);
    expect(held).toEqual(["PAUSE (in-flight transactions finish)", "capture on live (markers, sequences, schema)", "applied on the new live (bounded), sequences, subscriptions off", "switch endpoint", "RESUME"]);
    // Roll-back: every entry back on live, its read-only lifted, nothing of ours anywhere, the new live stopped and kept.
    const b = await rollBackLogical(env, spec, { tag: r.tag, clusterDatabases: DBS, newLiveDataDir: r.newLiveDataDir, newVolumes: r.newLiveVolumes });
    expect(b.warnings).toEqual([]);
    expect(onLive()).toBe(true);
    expect([...logical.live]).toEqual([]);
    expect([...logical.target]).toEqual([]);
    expect(server.up.size).toBe(0);
    expect(storage.vols.has(r.newLiveVolumes[0])).toBe(true);
  });

  it("readiness that fails refuses before anything is made, naming the object", async () => {
    logical.notReady = true;
    const e = await promoteLogical(env, spec).catch((x) => x);
    expect(e.message).toMatch(/phase "readiness" failed: .*public\.t/s);
    expect([...logical.live]).toEqual([]);
    expect([...storage.vols.keys()]).toEqual(["live/data"]);
  });

  it("DDL on live during catch-up: refused before clients are held; nothing of ours left", async () => {
    logical.schemaChanged = true;
    const e = await promoteLogical(env, spec).catch((x) => x);
    expect(e.message).toMatch(/phase "catch up" failed: the schema changed/);
    expect(onLive()).toBe(true);
    expect([...logical.live]).toEqual([]);
    expect([...storage.vols.keys()]).toEqual(["live/data"]);
    expect(journal?.finished?.outcome).toBe("undone");
  });

  it("a table created on live while the publications were made (on the clone, not published): refused before subscribing, naming it", async () => {
    logical.unpublished = ["public.created_meanwhile"];
    const e = await promoteLogical(env, spec).catch((x) => x);
    expect(e.message).toMatch(/phase "subscribe" failed: the schema changed on live while the clone was prepared .*app: public\.created_meanwhile/);
    expect(onLive()).toBe(true);
    expect([...logical.live]).toEqual([]);
    expect([...logical.target]).toEqual([]);
  });

  const names = [
    "readiness",
    "WAL keeper",
    "checkpoint",
    "snapshot",
    "clone",
    "publications and slots",
    "convert the clone",
    "drop WAL keeper",
    "replay upgrade",
    "replay start",
    "replay post-upgrade",
    "new live's replication settings",
    "subscribe",
    "catch up",
    "prepare the way back",
    "capture on live (markers, sequences, schema)",
    "applied on the new live (bounded), sequences, subscriptions off",
    "switch endpoint",
  ];
  it("the phases are these, in this order", () => {
    const st = { spec, finalSnapshot: "f", newVolumes: [], server: "none", switched: false, lr: logical.ops(), clusterDbs: DBS, warnings: [] } as unknown as LogicalState;
    expect(logicalPhases(env, st).map((p) => p.name).filter((n) => !n.includes("after resume"))).toEqual(names);
  });
  for (const when of ["before", "after"] as const) {
    for (const name of names) {
      it(`fails ${when} "${name}": clients on live (every database), resumed; live never stopped; nothing of ours on live; the clone and snapshot gone`, async () => {
        const wrap = (ps: Array<Phase<LogicalState>>) =>
          ps.map((p) =>
            p.name !== name
              ? p
              : {
                  ...p,
                  run: async (c: LogicalState) => {
                    if (when === "before") throw new Error(`injected before ${name}`);
                    await p.run(c);
                    throw new Error(`injected after ${name}`);
                  },
                },
          );
        const e = await promoteLogical(env, spec, wrap).catch((x) => x);
        expect(e).toBeInstanceOf(PhaseError);
        expect(e.message).toContain(`phase "${name}" failed: injected ${when} ${name}`);
        expect(onLive()).toBe(true);
        expect(endpoint.paused.size).toBe(0);
        expect(live.stops).toBe(0);
        expect([...logical.live]).toEqual([]);
        expect([...storage.vols.keys()]).toEqual(["live/data"]);
        expect(await storage.findSnapshotSet(["live/data"], journal!.finalSnapshot!)).toBeUndefined();
        expect(server.up.size).toBe(0);
        expect(journal?.finished?.outcome).toBe("undone");
      });
    }
  }
});
