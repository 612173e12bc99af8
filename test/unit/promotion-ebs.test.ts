/**
 * The Promotion component on EBS storage, under `pulumi.runtime.setMocks` (no engine, no AWS:
 * this machine cannot run the AWS provider plugin): the arguments a reviewer sees in
 * `pulumi preview` for the cut-over on AWS — live stopped through live's instance, the new
 * live's volumes made through the storage on the rehearsal instance (or one named), the swap
 * a Route53 record or PgBouncer on a named host — and the refusals, each naming its field,
 * before anything is declared. The cut-over itself runs in test/integration/promotion-aws-runner.test.ts.
 *
 * Live is never reached here: the storage's read-only discovery fails as when a host cannot be
 * reached (NoHostEbs), and the components fall back (one plain volume, the endpoint's database).
 */
import { beforeAll, describe, expect, it } from "vitest";
import * as pulumi from "@pulumi/pulumi";
import { EbsStorage, type EbsStorageArgs } from "../../components/storage/ebs";
import type { UpgradeRehearsalArgs } from "../../components/upgrade-rehearsal";

const unreachable = new Proxy({}, { get: () => () => Promise.reject(new Error("no host in this test")) });

class NoHostEbs extends EbsStorage {
  override withStorage<T>(fn: (s: never, h: never) => Promise<T>): pulumi.Output<T> {
    return pulumi.output(fn(unreachable as never, unreachable as never)) as unknown as pulumi.Output<T>;
  }
}

const registered: Array<{ type: string; name: string; inputs: Record<string, unknown> }> = [];

/** A secret input reaches the mock as `{ 4dabf18193072939515e22adb298388d: "1b47061264138c4ac30d75fd1eb44270", value }`. */
function unwrap<T>(v: unknown): T {
  const o = v as { value?: unknown } | undefined;
  return (o && typeof o === "object" && "4dabf18193072939515e22adb298388d" in o ? o.value : v) as T;
}

const LIVE_CONN = { host: "10.0.1.10", user: "admin", privateKey: "k" };
const REHEARSAL_CONN = { host: "10.0.1.20", user: "admin", privateKey: "k" };
const args = (over: Partial<EbsStorageArgs> = {}): EbsStorageArgs => ({
  region: "eu-west-1",
  live: { instanceId: "i-0123456789abcdef0", volumes: [{ volumeId: "vol-0aaaaaaaaaaaaaaa1", mountpoint: "/var/lib/postgresql" }] },
  rehearsal: { instanceId: "i-0fedcba9876543210", availabilityZone: "eu-west-1a", connection: REHEARSAL_CONN },
  liveConnection: LIVE_CONN,
  ...over,
});
const rehearsalArgs = (storage: EbsStorage): UpgradeRehearsalArgs => ({
  storage,
  source: { dataset: "vol-0aaaaaaaaaaaaaaa1", pgdata: "13/main", version: 13, port: 5432 },
  clone: { dataset: "rehearsal-pg13" },
  to: 15,
  postgres: { port: 55432, database: "app" },
});
const ROUTE53 = { route53: { zoneId: "Z0123456789ABC", name: "db.example.com", ttl: 30 }, liveAddress: "db1.internal.example.com", newLiveAddress: "rehearsal.internal.example.com", database: "app" };

const ours = (from: number) => registered.slice(from).filter((r) => /:(PgBouncerEndpoint|CutOver)$/.test(r.type));
/** Until the components' resources are registered (their outputs may wait on the mocked rehearsal forever). */
async function settle(..._outs: pulumi.Output<unknown>[]): Promise<void> {
  await new Promise((res) => setTimeout(res, 1500));
}
function refusal(fn: () => unknown): { paths: string[]; message: string } {
  try {
    fn();
  } catch (e) {
    const err = e as Error & { propertyPath?: string; errors?: Array<{ propertyPath: string }> };
    return { paths: err.errors ? err.errors.map((x) => x.propertyPath) : [err.propertyPath ?? "?"], message: err.message };
  }
  throw new Error("not refused");
}

beforeAll(async () => {
  await pulumi.runtime.setMocks(
    {
      newResource: (a) => {
        registered.push({ type: a.type, name: a.name, inputs: a.inputs });
        const report = {
          rehearsal: "r", status: "passed", host: "rehearsal", source: { dataset: "vol-0aaaaaaaaaaaaaaa1", snapshot: "s", version: 13 },
          clone: { dataset: "rehearsal-pg13" }, target: { version: 15 }, steps: [], checks: [],
          predictedCutover: { totalMs: 42_000, breakdown: [], note: "" }, generatedAt: "2026-01-01T00:00:00Z",
        };
        // What the EBS dynamic resources would output (a set, the clones), shaped as theirs.
        const i = a.inputs as { snapshotName?: string; volumes?: string[]; requests?: Array<{ target: string }> };
        const extra = a.type.endsWith(":RehearsalStep")
          ? { report }
          : a.type.endsWith(":EbsSnapshotSet")
            ? { set: { name: i.snapshotName, createdAt: "2026-01-01T00:00:00Z", members: (i.volumes ?? []).map((v) => ({ volume: v, id: "snap-0123456789abcdef0", createdAt: "2026-01-01T00:00:00Z" })) } }
            : a.type.endsWith(":EbsCloneSet")
              ? { owner: "o", volumes: (i.requests ?? []).map((r) => ({ id: r.target, mountpoint: "/var/lib/postgresql", marks: {}, properties: {} })) }
              : {};
        return { id: `${a.name}-id`, state: { ...a.inputs, ...extra } };
      },
      call: () => ({}),
    },
    "proj",
    "stk",
    false,
  );
});

describe("Promotion on EBS with a Route53 record as the swap (under mocks)", () => {
  it("declares one CutOver: live stopped through live's instance, the new live on the rehearsal instance, the record swapped; no PgBouncer", async () => {
    const { UpgradeRehearsal } = await import("../../components/upgrade-rehearsal");
    const { Promotion } = await import("../../components/promotion");
    const r = new UpgradeRehearsal("r1", rehearsalArgs(new NoHostEbs(args())));
    const from = registered.length;
    const p = new Promotion("go-live", { rehearsal: r, promote: true, endpoint: ROUTE53 });
    await settle(p.state, p.endpointAddress);
    const mine = ours(from);
    expect(mine.map((x) => x.type.split(":").pop())).toEqual(["CutOver"]);
    const cut = mine[0].inputs;
    // What a reviewer sees: where each part runs.
    expect(unwrap(cut.liveConnection)).toMatchObject({ host: "10.0.1.10" });
    expect(unwrap(cut.connection)).toMatchObject({ host: "10.0.1.20" });
    expect(cut.endpointConnection).toBeUndefined();
    expect(cut.storage).toMatchObject({ kind: "ebs", live: { instanceId: "i-0123456789abcdef0" }, rehearsal: { instanceId: "i-0fedcba9876543210", availabilityZone: "eu-west-1a" } });
    expect(unwrap(cut.endpoint)).toEqual({ kind: "route53", zoneId: "Z0123456789ABC", name: "db.example.com", ttl: 30 });
    expect(cut.serverHost).toBe("db1.internal.example.com");
    expect(cut.newServerHost).toBe("rehearsal.internal.example.com");
    // Clients keep connecting to db.example.com:5432: the new live listens on live's port, everywhere.
    expect(cut.newLive).toMatchObject({ port: 5432, listen: "*", dataset: "go-live-live-pg15" });
    expect(cut.method).toBe("replay");
    expect(cut.promote).toBe(true);
    expect(cut.live).toMatchObject({ dataset: "vol-0aaaaaaaaaaaaaaa1", pgdata: "13/main", port: 5432 });
    expect(cut.rehearsal).toMatchObject({ predictedCutoverMs: 42_000 });
    expect(await new Promise((res) => p.endpointAddress.apply(res))).toBe("db.example.com:5432");
  });

  it("makes the new live on an instance the user names (newLive.storage), live still stopped through live's instance", async () => {
    const { UpgradeRehearsal } = await import("../../components/upgrade-rehearsal");
    const { Promotion } = await import("../../components/promotion");
    const storage = new NoHostEbs(args());
    const r = new UpgradeRehearsal("r2", rehearsalArgs(storage));
    const from = registered.length;
    const onNew = storage.onInstance({ instanceId: "i-0aaaabbbbccccdddd", availabilityZone: "eu-west-1a", connection: { host: "10.0.1.30", user: "admin", privateKey: "k" } });
    const p = new Promotion("go-new", { rehearsal: r, promote: false, endpoint: { ...ROUTE53, newLiveAddress: "10.0.1.30" , route53: { ...ROUTE53.route53, type: "A" }, liveAddress: "10.0.1.10" }, newLive: { storage: onNew } });
    await settle(p.state);
    const cut = ours(from)[0].inputs;
    expect(unwrap(cut.connection)).toMatchObject({ host: "10.0.1.30" });
    expect(cut.storage).toMatchObject({ rehearsal: { instanceId: "i-0aaaabbbbccccdddd" } });
    expect(unwrap(cut.liveConnection)).toMatchObject({ host: "10.0.1.10" });
    expect(cut.newServerHost).toBe("10.0.1.30");
  });

  it("refuses, naming the field, before the cut-over is declared: a bad record value, a new live on another port, the logical method, a long TTL", async () => {
    const { UpgradeRehearsal } = await import("../../components/upgrade-rehearsal");
    const { Promotion } = await import("../../components/promotion");
    const r = new UpgradeRehearsal("r3", rehearsalArgs(new NoHostEbs(args())));
    const from = registered.length;
    expect(refusal(() => new Promotion("b1", { rehearsal: r, promote: true, endpoint: { ...ROUTE53, newLiveAddress: "$(reboot)" } })).paths).toEqual(["endpoint.newLiveAddress"]);
    expect(refusal(() => new Promotion("b2", { rehearsal: r, promote: true, endpoint: ROUTE53, newLive: { port: 5433 } })).paths).toEqual(["newLive.port"]);
    const logical = refusal(() => new Promotion("b3", { rehearsal: r, promote: true, endpoint: ROUTE53, method: "logical" }));
    expect(logical.paths).toEqual(["method"]);
    expect(logical.message).toMatch(/only "replay" is wired/);
    expect(refusal(() => new Promotion("b4", { rehearsal: r, promote: true, endpoint: { ...ROUTE53, route53: { ...ROUTE53.route53, ttl: 3600 } } })).paths).toEqual(["endpoint.route53.ttl"]);
    await settle();
    expect(ours(from)).toEqual([]);
  });
});

describe("Promotion on EBS with PgBouncer on a named host (under mocks)", () => {
  it("declares PgBouncer on that host, reaching live and the new live at their own addresses", async () => {
    const { UpgradeRehearsal } = await import("../../components/upgrade-rehearsal");
    const { Promotion } = await import("../../components/promotion");
    const r = new UpgradeRehearsal("r4", rehearsalArgs(new NoHostEbs(args())));
    const from = registered.length;
    const p = new Promotion("go-pgb", {
      rehearsal: r,
      promote: false,
      endpoint: { name: "app", listenPort: 6432, database: "app", users: pulumi.secret([{ name: "app", password: "pw" }]), serverHost: "10.0.1.10", newLiveServerHost: "10.0.1.20", connection: { host: "10.0.1.5", user: "admin", privateKey: "k" } },
      newLive: { port: 5432 },
    });
    await settle(p.state);
    const mine = ours(from);
    expect(mine.map((x) => x.type.split(":").pop()).sort()).toEqual(["CutOver", "PgBouncerEndpoint"]);
    const pgb = mine.find((x) => x.type.endsWith(":PgBouncerEndpoint"))!.inputs;
    expect(unwrap(pgb.connection)).toMatchObject({ host: "10.0.1.5" });
    expect(unwrap<{ databases: Record<string, { host: string; port: number }> }>(pgb.config).databases.app).toMatchObject({ host: "10.0.1.10", port: 5432 });
    const cut = mine.find((x) => x.type.endsWith(":CutOver"))!.inputs;
    expect(unwrap(cut.endpointConnection)).toMatchObject({ host: "10.0.1.5" });
    expect(cut.newServerHost).toBe("10.0.1.20");
    expect(cut.newLive).toMatchObject({ port: 5432, listen: "10.0.1.20" });
  });

  it("method logical: declares the CutOver with the TCP addresses; without them it is refused before anything is declared, naming each", async () => {
    const { UpgradeRehearsal } = await import("../../components/upgrade-rehearsal");
    const { Promotion } = await import("../../components/promotion");
    const r = new UpgradeRehearsal("r5", rehearsalArgs(new NoHostEbs(args())));
    const endpoint = { name: "app", listenPort: 6432, database: "app", users: pulumi.secret([{ name: "app", password: "pw" }]), serverHost: "10.0.1.10", newLiveServerHost: "10.0.1.20", connection: { host: "10.0.1.5", user: "admin", privateKey: "k" } };
    const from = registered.length;
    expect(refusal(() => new Promotion("lg1", { rehearsal: r, promote: true, method: "logical", endpoint })).paths).toEqual(["logical.liveHost", "logical.newLiveHost"]);
    expect(refusal(() => new Promotion("lg2", { rehearsal: r, promote: true, method: "logical", logical: { liveHost: "127.0.0.1", newLiveHost: "10.0.1.20" }, endpoint })).paths).toEqual(["logical.liveHost"]);
    await settle();
    expect(ours(from)).toEqual([]);
    const p = new Promotion("lg3", { rehearsal: r, promote: false, method: "logical", logical: { liveHost: "10.0.1.10", newLiveHost: "10.0.1.20" }, endpoint, newLive: { port: 5432 } });
    await settle(p.state);
    const cut = ours(from).find((x) => x.type.endsWith(":CutOver"))!.inputs;
    expect(cut.method).toBe("logical");
    expect(cut.logical).toMatchObject({ liveHost: "10.0.1.10", newLiveHost: "10.0.1.20" });
    expect(unwrap(cut.liveConnection)).toMatchObject({ host: "10.0.1.10" });
  });
});
