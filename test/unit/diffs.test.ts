/**
 * Every resource kind's diff, as a table: which inputs replace (a clone made again, a step
 * run again), which change in place, which never matter. The kinds come from the dispatch
 * registry, their inputs from registering each resource with every argument set
 * (pulumi.runtime.setMocks): an input nobody declared fails here, and (see the last test)
 * replaces rather than being ignored if it ever slips through.
 */
import { beforeAll, describe, expect, it } from "vitest";
import * as pulumi from "@pulumi/pulumi";
import { canonical, declaredDiff, declaredKeys, type DiffSpec } from "../../providers/diff";
import { dispatch, kinds, providerOf } from "../../providers/dispatch";
import { SNAPSHOT_DIFF, CLONE_DIFF } from "../../providers/zfs/resources";
import { SCHEDULE_DIFF } from "../../providers/zfs/schedule-resource";
import { STEP_DIFF } from "../../providers/rehearsal/step";
import { PREFLIGHT_DIFF } from "../../providers/rehearsal/preflight";
import { LOGICAL_REHEARSAL_DIFF } from "../../providers/rehearsal/logical";
import { SERVER_DIFF } from "../../providers/postgres/server-resource";
import { ENDPOINT_DIFF } from "../../providers/endpoint/resource";
import { CUTOVER_DIFF } from "../../providers/promotion/cutover";
import { EBS_CLONE_SET_DIFF, EBS_INSTANCE_STOP_DIFF, EBS_SNAPSHOT_SET_DIFF } from "../../providers/ebs/resources";

const SPECS: Record<string, DiffSpec> = {
  ZfsSnapshot: SNAPSHOT_DIFF,
  ZfsClone: CLONE_DIFF,
  ZfsSnapshotSchedule: SCHEDULE_DIFF,
  RehearsalStep: STEP_DIFF,
  RehearsalPreflight: PREFLIGHT_DIFF,
  LogicalRehearsal: LOGICAL_REHEARSAL_DIFF,
  PostgresServer: SERVER_DIFF,
  PgBouncerEndpoint: ENDPOINT_DIFF,
  CutOver: CUTOVER_DIFF,
  EbsSnapshotSet: EBS_SNAPSHOT_SET_DIFF,
  EbsCloneSet: EBS_CLONE_SET_DIFF,
  EbsInstanceStop: EBS_INSTANCE_STOP_DIFF,
};

const inputsOf: Record<string, Record<string, unknown>> = {};

beforeAll(async () => {
  await pulumi.runtime.setMocks(
    {
      newResource: (a) => {
        const kind = a.type.split(":").pop()!;
        // As a provider receives them: secrets unwrapped (the mock shows them wrapped).
        const unwrap = (v: unknown): unknown => (v && typeof v === "object" && "4dabf18193072939515e22adb298388d" in v ? (v as unknown as { value: unknown }).value : v);
        if (a.type.startsWith("pulumi-nodejs:dynamic/understudy:")) inputsOf[kind] = Object.fromEntries(Object.entries(a.inputs).map(([k, v]) => [k, unwrap(v)]));
        return { id: `${a.name}-id`, state: a.inputs };
      },
      call: () => ({}),
    },
    "proj",
    "stk",
    false,
  );
  const u = await import("../../understudy");
  const { Preflight } = await import("../../providers/rehearsal/preflight");
  const { RehearsalStep } = await import("../../providers/rehearsal/step");
  const conn = { host: "db1", privateKey: "k" };
  const res: pulumi.Resource[] = [
    new u.ZfsSnapshot("s", { connection: conn, dataset: "tank/a", members: ["tank/b"], name: "n", properties: { "x:y": "1" }, adopt: true, hook: ["true"], hookUser: "postgres" }),
    new u.ZfsClone("c", { connection: conn, snapshot: "tank/a@n", dataset: "tank/c", properties: { mountpoint: "/srv/c" }, adopt: true, members: [{ snapshot: "tank/b@n", dataset: "tank/c-b" }] }),
    new u.ZfsSnapshotSchedule("h", { connection: conn, dataset: "tank/a", every: "1h", prefix: "p", keepHourly: 1, keepDaily: 1, hook: ["true"], hookUser: "postgres", pruneOnDelete: true }),
    new u.PostgresServer("pg", { connection: conn, dataDir: "/srv/c/main", version: 13, binDir: "/b", osUser: "postgres", port: 5433, socketDir: "/run/x", listen: "127.0.0.1" }),
    new u.PgBouncerEndpointResource("ep", { connection: conn, config: { name: "e", listenPort: 6432 } }),
    new Preflight("pf", { connection: conn, storage: { kind: "zfs" }, label: "l", from: { version: 13 }, to: { version: 15 }, osUser: "postgres", ports: [], socketDir: "/run/x", source: { dataset: "tank/a", pgdata: "main" }, clone: { dataset: "tank/c", owner: "o" } }),
  ];
  const step = {
    connection: conn, storage: { kind: "zfs" }, label: "l", rehearsal: "r", index: 1, name: "smoke", kind: "sql" as const, cutover: false,
    clone: { dataset: "tank/c", mountpoint: "/srv/c", owner: "o", volumes: ["tank/c"] }, source: { dataset: "tank/a", snapshot: "tank/a@n" },
    pg: { from: 13, to: 15, fromBinDir: "/b13", toBinDir: "/b15", osUser: "postgres", oldDataDir: "/srv/c/main", newDataDir: "/srv/c/main.pg15", port: 5433, tempPort: 5434, socketDir: "/run/x", listen: "", mode: "link" as const, database: "app" },
    sql: "SELECT 1", command: ["true"], database: "app", timeoutMs: 1000, verify: { rowCounts: "exact" as const, checksumTables: [], assertions: [] },
    prev: { snapshot: "tank/c@s00", serverAfter: "none" as const, finishedAt: "t", name: "p" }, history: [], baseline: undefined, updateExtensionsSql: "/x.sql", reportDir: "/r",
  };
  res.push(new RehearsalStep("st", { ...step, baseline: { databases: [], rowCounts: {}, checksums: {}, sequences: {}, extensions: {}, largeObjects: {} } }));
  const { LogicalRehearsal } = await import("../../providers/rehearsal/logical");
  res.push(
    new LogicalRehearsal("lr", {
      connection: conn, storage: { kind: "zfs" }, label: "l", clone: step.clone, layout: { volumes: [] } as never, pg: step.pg,
      live: { version: 13, binDir: "/b13", socketDir: "/run/x", port: 5432 }, fromSnapshot: "tank/c@s02-check", after: "2026-12-03T15:00:00Z",
      settings: { liveSampleMs: 3000, backlogMs: 3000, measureMs: 5000, minWriteBytesPerSecond: 262144, applyTimeoutMs: 5000, accept: [] },
      report: { rehearsal: "r", status: "passed", host: "h", source: { dataset: "tank/a", snapshot: "s", version: 13 }, clone: { dataset: "tank/c" }, target: { version: 15 }, steps: [], checks: [], predictedCutover: { totalMs: 0, breakdown: [], note: "" }, generatedAt: "t" },
      reportDir: "/r",
    }),
  );
  res.push(
    new u.CutOver("co", {
      connection: conn, storage: { kind: "zfs" }, label: "l", owner: "o", stack: "s", promote: false, endpoint: { name: "e", listenPort: 6432 }, database: "app", pauseTimeoutMs: 1000,
      live: { dataset: "tank/a", pgdata: "main", version: 13, binDir: "/b", osUser: "postgres", port: 5432, socketDir: "/run/x", startCommand: ["true"], stopCommand: ["true"], volumes: ["tank/a"] },
      newLive: { dataset: "tank/n", port: 5442, socketDir: "/run/x", listen: "" }, to: 15, toBinDir: "/b15", mode: "link", steps: [], assertions: [], rehearsal: { name: "r", status: "passed", predictedCutoverMs: 1 },
    }),
  );
  const { EbsSnapshotSet, EbsCloneSet } = await import("../../providers/ebs/resources");
  const { UnderstudyResource } = await import("../../providers/shim");
  const spec = {
    kind: "ebs" as const,
    region: "eu-west-1",
    endpoint: "http://127.0.0.1:1",
    live: { instanceId: "i-0123456789abcdef0", volumes: [{ volumeId: "vol-0123456789abcdef0", mountpoint: "/var/lib/postgresql" }] },
    rehearsal: { instanceId: "i-0123456789abcdef1", availabilityZone: "eu-west-1a" },
  };
  res.push(new EbsSnapshotSet("es", { spec, connection: conn, hookConnection: conn, volumes: ["vol-0123456789abcdef0"], snapshotName: "n", hook: ["true"], hookUser: "postgres" }));
  res.push(new EbsCloneSet("ec", { spec, connection: conn, set: { name: "n", members: [], createdAt: "" }, requests: [{ source: "vol-0123456789abcdef0", target: "c" }] }));
  // EbsInstanceStop's class is private to its component: the same registration by kind.
  class Stop extends UnderstudyResource {
    constructor(n: string, a: Record<string, unknown>) {
      super("EbsInstanceStop", n, { ...a, label: n });
    }
  }
  res.push(new Stop("stop", { region: "eu-west-1", endpoint: "http://127.0.0.1:1", instanceId: "i-0123456789abcdef1", owner: "o", liveInstanceId: "i-0123456789abcdef0" }));
  await Promise.all(res.map((r) => new Promise((ok) => r.urn.apply(ok))));
  await new Promise((r) => setTimeout(r, 100));
});

/** A different value of the same kind of thing. */
function changed(v: unknown): unknown {
  if (typeof v === "string") return v + "-changed";
  if (typeof v === "number") return v + 1;
  if (typeof v === "boolean") return !v;
  if (Array.isArray(v)) return [...v, "extra"];
  if (v && typeof v === "object") return { ...(v as object), changedField: 1 };
  return "set";
}

function setPath(o: Record<string, unknown>, p: string, v: unknown): Record<string, unknown> {
  const [k, ...rest] = p.split(".");
  if (!rest.length) return { ...o, [k]: v };
  return { ...o, [k]: setPath((o[k] ?? {}) as Record<string, unknown>, rest.join("."), v) };
}

function getPath(o: Record<string, unknown>, p: string): unknown {
  return p.split(".").reduce<unknown>((x, k) => (x && typeof x === "object" ? (x as Record<string, unknown>)[k] : undefined), o);
}

describe("declared diffs", () => {
  it("every registered kind has a declaration, and every input of every kind is declared", () => {
    expect(Object.keys(SPECS).sort()).toEqual(kinds().sort());
    for (const kind of kinds()) {
      const inputs = inputsOf[kind];
      expect(inputs, `no resource of kind ${kind} was registered by the test`).toBeDefined();
      const declared = declaredKeys(SPECS[kind]);
      const undeclared = Object.keys(inputs).filter((k) => k !== "__provider" && !declared.has(k));
      expect(undeclared, `${kind}: inputs without a declared diff`).toEqual([]);
    }
  });

  for (const [kind, spec] of Object.entries(SPECS)) {
    describe(kind, () => {
      const cases: Array<[string, "replace" | "update" | "none"]> = [
        ...spec.replace.map((k): [string, "replace"] => [k, "replace"]),
        ...spec.update.map((k): [string, "update"] => [k, "update"]),
        ...(spec.ignore ?? []).map((k): [string, "none"] => [k, "none"]),
      ];
      for (const [key, expected] of cases) {
        it(`${key}: ${expected}`, async () => {
          const olds = inputsOf[kind];
          const news = setPath(olds, key, changed(getPath(olds, key)));
          const viaProvider = (await providerOf(kind).diff!("id", olds, news)) as pulumi.dynamic.DiffResult;
          expect(viaProvider).toEqual(declaredDiff(spec)(olds, news));
          if (expected === "replace") expect(viaProvider.replaces).toContain(key);
          if (expected === "update") {
            expect(viaProvider.changes).toBe(true);
            // A key nested under a replacing one (PgBouncer's config.name) is covered by its own case.
            expect(viaProvider.replaces?.filter((r) => !r.startsWith(`${key}.`) && r !== key)).toEqual([]);
          }
          if (expected === "none") expect(viaProvider.changes).toBe(false);
        });
      }
      it("nothing changed: no change", async () => {
        const olds = inputsOf[kind];
        const r = (await providerOf(kind).diff!("id", olds, JSON.parse(JSON.stringify(olds)))) as pulumi.dynamic.DiffResult;
        expect(r.changes, JSON.stringify(r)).toBe(false);
      });
      it("another host replaces; a rotated key alone changes in place", async () => {
        if (spec.connection === null) return; // a kind with no host (an AWS API call only)
        const olds = inputsOf[kind];
        const other = (await providerOf(kind).diff!("id", olds, { ...olds, connection: { host: "db2", privateKey: "k" } })) as pulumi.dynamic.DiffResult;
        expect(other.replaces).toContain("connection");
        const rotated = (await providerOf(kind).diff!("id", olds, { ...olds, connection: { host: "db1", privateKey: "rotated" } })) as pulumi.dynamic.DiffResult;
        expect(rotated).toMatchObject({ changes: true, replaces: [] });
      });
    });
  }

  it("an input nobody declared replaces (a new field re-runs the step that uses it)", () => {
    const d = declaredDiff(STEP_DIFF);
    const olds = inputsOf.RehearsalStep;
    expect(d(olds, { ...olds, someNewField: "x" }).replaces).toEqual(["someNewField"]);
  });

  it("check takes a null input as not given (an optional Output computed from a secret connection arrives as null)", async () => {
    const news = { connection: { host: "db1.example.com", user: "root" }, dataset: "tank/pg13", name: "pre-upgrade", members: null, properties: null, hook: null };
    const r = (await dispatch("ZfsSnapshot", "check", [{}, news])) as pulumi.dynamic.CheckResult;
    expect(r.failures).toEqual([]);
    expect(Object.keys(r.inputs ?? {}).sort()).toEqual(["connection", "dataset", "name"]);
    const clone = (await dispatch("ZfsClone", "check", [{}, { connection: news.connection, snapshot: "tank/pg13@pre-upgrade", dataset: "tank/clones/a", members: null, properties: null }])) as pulumi.dynamic.CheckResult;
    expect(clone.failures).toEqual([]);
    // A value that is there and wrong is still refused, naming the field.
    const bad = (await dispatch("ZfsSnapshot", "check", [{}, { ...news, members: "tank/wal" }])) as pulumi.dynamic.CheckResult;
    expect(bad.failures?.map((f) => f.property)).toEqual(["members"]);
  });

  it("values that mean the same compare equal (absent, undefined, null; key order)", () => {
    expect(canonical({ a: 1, b: undefined, c: null })).toBe(canonical({ a: 1 }));
    expect(canonical({ b: 2, a: 1 })).toBe(canonical({ a: 1, b: 2 }));
  });
});
