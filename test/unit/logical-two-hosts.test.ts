/**
 * The logical method with live and the new live on two machines (EBS: live's instance and
 * the rehearsal instance): the TCP addresses it needs (`logical.liveHost`,
 * `logical.newLiveHost`), refused naming the field when missing or malformed, before anything
 * runs; and LogicalReplication sending each statement through the driver of the machine that
 * runs the server it names (fake drivers that only say who was asked). The cut-over itself
 * runs in test/integration/ebs-logical.test.ts.
 */
import { describe, expect, it } from "vitest";
import { checkLogicalSettings, checkLogicalTwoHosts } from "../../providers/plan/logical";
import { LogicalReplication, validatePlan } from "../../providers/postgres/logical";
import type { PostgresDriver } from "../../providers/postgres/driver";
import { resolveDnsPromotionPlan, resolvePromotionPlan } from "../../providers/plan/promotion";
import { InputErrors } from "../../providers/errors";
import type { RehearsalPlan } from "../../providers/plan/rehearsal";
import { checkCutOver, type CutOverInputs } from "../../providers/promotion/cutover";

const fields = (errors: Array<{ field: string }>) => errors.map((e) => e.field);

describe("logical.liveHost / newLiveHost", () => {
  it("are optional, but come as a pair, and each must be a host name or an IP address", () => {
    expect(checkLogicalSettings({})).toEqual([]);
    expect(checkLogicalSettings({ liveHost: "10.0.1.10", newLiveHost: "db2.internal" })).toEqual([]);
    expect(fields(checkLogicalSettings({ liveHost: "10.0.1.10" }))).toEqual(["logical.newLiveHost"]);
    expect(fields(checkLogicalSettings({ newLiveHost: "10.0.1.20" }))).toEqual(["logical.liveHost"]);
    expect(fields(checkLogicalSettings({ liveHost: "10.0.1.10 sslmode=disable", newLiveHost: "10.0.1.20" }))).toEqual(["logical.liveHost"]);
    expect(fields(checkLogicalSettings({ liveHost: "10.0.1.10", newLiveHost: "$(reboot)" }))).toEqual(["logical.newLiveHost"]);
    expect(fields(checkLogicalSettings({ liveHost: "/var/run/postgresql", newLiveHost: "10.0.1.20" }))).toEqual(["logical.liveHost"]);
    expect(fields(checkLogicalSettings({ liveHost: 5 as unknown as string, newLiveHost: "10.0.1.20" }))).toEqual(["logical.liveHost"]);
  });

  it("the role, pgpass file and sslmode of those connections are checked too", () => {
    const base = { liveHost: "10.0.1.10", newLiveHost: "10.0.1.20" };
    expect(checkLogicalSettings({ ...base, replicationUser: "repl", passfile: "/etc/understudy/pgpass", sslmode: "verify-full" })).toEqual([]);
    expect(fields(checkLogicalSettings({ ...base, replicationUser: "repl' or 1=1" }))).toEqual(["logical.replicationUser"]);
    expect(fields(checkLogicalSettings({ ...base, passfile: "" }))).toEqual(["logical.passfile"]);
    expect(fields(checkLogicalSettings({ ...base, sslmode: "sometimes" as never }))).toEqual(["logical.sslmode"]);
  });

  it("on two machines both are required, and a loopback address is refused (from the other machine it is that machine)", () => {
    expect(checkLogicalTwoHosts({ liveHost: "10.0.1.10", newLiveHost: "10.0.1.20" })).toEqual([]);
    expect(fields(checkLogicalTwoHosts(undefined))).toEqual(["logical.liveHost", "logical.newLiveHost"]);
    expect(fields(checkLogicalTwoHosts({ newLiveHost: "10.0.1.20" }))).toEqual(["logical.liveHost"]);
    const loop = checkLogicalTwoHosts({ liveHost: "127.0.0.1", newLiveHost: "localhost" });
    expect(fields(loop)).toEqual(["logical.liveHost", "logical.newLiveHost"]);
    expect(loop[0].message).toMatch(/loopback/);
  });
});

const rehearsal = {
  name: "r",
  source: { dataset: "vol-0aaaaaaaaaaaaaaa1", pgdata: "13/main", version: 13, port: 5432, socketDir: "/var/run/postgresql", osUser: "postgres" },
  clone: { dataset: "rehearsal-pg13" },
  to: 15,
  postgres: { port: 55432, listen: "" },
} as unknown as RehearsalPlan;
const syntax = { sibling: (of: string, n: string) => `${of}-${n}`, sanitize: (s: string) => s };
const bouncer = { name: "app", listenPort: 6432, database: "app", authType: "trust" as const, serverHost: "10.0.1.10", newServerHost: "10.0.1.20" };

function refused(fn: () => unknown): string[] {
  try {
    fn();
  } catch (e) {
    if (e instanceof InputErrors) return e.errors.map((x) => x.field);
    throw e;
  }
  return [];
}

describe("the promotion's plan with method logical", () => {
  it("PgBouncer with live on another machine: refused without the addresses, naming them; accepted with them", () => {
    const plan = (logical?: object) => () => resolvePromotionPlan("p", { endpoint: bouncer, method: "logical", ...(logical ? { logical } : {}) }, rehearsal, { ...syntax, liveElsewhere: true });
    expect(refused(plan())).toEqual(["logical.liveHost", "logical.newLiveHost"]);
    expect(refused(plan({ liveHost: "10.0.1.10" }))).toEqual(["logical.newLiveHost"]);
    expect(refused(plan({ liveHost: "10.0.1.10", newLiveHost: "10.0.1.20" }))).toEqual([]);
    // One machine: the sockets serve, nothing to give.
    expect(refused(() => resolvePromotionPlan("p", { endpoint: bouncer, method: "logical" }, rehearsal, syntax))).toEqual([]);
    // replay needs no address at all.
    expect(refused(() => resolvePromotionPlan("p", { endpoint: bouncer }, rehearsal, { ...syntax, liveElsewhere: true }))).toEqual([]);
  });

  it("a DNS record: refused, saying why (clients cannot be held while live's last transactions are captured)", () => {
    try {
      resolveDnsPromotionPlan("p", { database: "app", liveAddress: "10.0.1.10", newLiveAddress: "10.0.1.20", method: "logical" }, rehearsal, syntax);
      throw new Error("not refused");
    } catch (e) {
      expect(e).toBeInstanceOf(InputErrors);
      const err = (e as InputErrors).errors.find((x) => x.field === "method");
      expect(err?.message).toMatch(/cannot hold clients/);
      expect(err?.message).toMatch(/PgBouncer/);
    }
  });
});

/** A driver that only says which machine was asked. */
function fakeDriver(name: string): PostgresDriver {
  const refuse = async () => {
    throw new Error(`asked ${name}`);
  };
  return { superuser: "postgres", osUser: "postgres", host: { description: name, run: refuse, runAs: refuse }, adminQuery: refuse, resolveInstall: refuse } as unknown as PostgresDriver;
}
const LIVE = { version: 13, socketDir: "/var/run/postgresql", port: 5432 };
const NEW = { version: 15, socketDir: "/var/run/postgresql", port: 5432 };

describe("LogicalReplication on two machines", () => {
  it("sends live's statements to live's host and the new side's (the clone, the new live) to the new live's host", async () => {
    const live = fakeDriver("live's host");
    const side = fakeDriver("the new live's host");
    const lr = new LogicalReplication(live, { tag: "t1", databases: ["app"], live: LIVE, liveSource: { host: "10.0.1.10", port: 5432, user: "postgres" }, targetSource: { host: "10.0.1.20", port: 5432, user: "postgres" } }, side);
    await expect(lr.makeReadOnly()).rejects.toThrow("asked live's host");
    await expect(lr.createWalKeeper()).rejects.toThrow("asked live's host");
    await expect(lr.convertClone({ dataDir: "/srv/new/13/main", version: 13, port: 5433 }, { lsn: "0/3000000" } as never)).rejects.toThrow("asked the new live's host");
    const lr2 = lr.withTarget(NEW);
    await expect(lr2.targetReadiness()).rejects.toThrow("asked the new live's host");
    await expect(lr2.stopReverse()).rejects.toThrow("asked live's host");
    // The way back connects to the address given before the target was known.
    expect(lr2.plan.targetSource).toMatchObject({ host: "10.0.1.20" });
    expect(lr2.plan.liveSource).toMatchObject({ host: "10.0.1.10" });
  });

  it("the same port and socket directory on two machines are two servers; on one machine they are refused as the same", () => {
    expect(() => validatePlan({ tag: "t1", databases: ["app"], live: LIVE, target: NEW }, "postgres")).toThrow(/same server as live/);
    expect(() => validatePlan({ tag: "t1", databases: ["app"], live: LIVE, target: NEW }, "postgres", { twoHosts: true })).not.toThrow();
  });
});

describe("the CutOver provider's checks (checkCutOver), the same rules", () => {
  const base: CutOverInputs = {
    label: "p",
    owner: "o",
    stack: "s",
    promote: true,
    liveConnection: { host: "10.0.1.10" },
    endpoint: { name: "app", listenPort: 6432, authType: "trust", users: [{ name: "postgres" }], databases: { app: { host: "/var/run/postgresql", port: 5432, dbname: "app" } } },
    database: "app",
    pauseTimeoutMs: 10_000,
    newServerHost: "10.0.1.20",
    live: { dataset: "vol-0aaaaaaaaaaaaaaa1", pgdata: "13/main", version: 13, osUser: "postgres", port: 5432, socketDir: "/var/run/postgresql" },
    newLive: { dataset: "go-live", port: 5442, socketDir: "/var/run/postgresql", listen: "*" },
    to: 15,
    mode: "link",
    steps: [],
    assertions: [],
    rehearsal: { name: "r", status: "passed", predictedCutoverMs: 500 },
    method: "logical",
    logical: { liveHost: "10.0.1.10", newLiveHost: "10.0.1.20" },
  };
  it("PgBouncer with live on its own connection: accepted with both addresses, refused naming each missing one, once", () => {
    expect(checkCutOver(base)).toEqual([]);
    expect(fields(checkCutOver({ ...base, logical: {} }))).toEqual(["logical.liveHost", "logical.newLiveHost"]);
    expect(fields(checkCutOver({ ...base, logical: { liveHost: "10.0.1.10" } }))).toEqual(["logical.newLiveHost"]);
    expect(fields(checkCutOver({ ...base, logical: { liveHost: "::1", newLiveHost: "10.0.1.20" } }))).toEqual(["logical.liveHost"]);
    expect(checkCutOver({ ...base, liveConnection: undefined, logical: {} })).toEqual([]);
  });
  it("a Route53 record with method logical: refused naming method", () => {
    const dns = { ...base, endpoint: { kind: "route53" as const, zoneId: "Z0123456789ABC", name: "db.example.com" }, serverHost: "10.0.1.10", newLive: { ...base.newLive, port: 5432 } };
    expect(fields(checkCutOver({ ...dns, method: "replay", logical: undefined }))).toEqual([]);
    const e = checkCutOver(dns).find((x) => x.field === "method");
    expect(e?.message).toMatch(/cannot hold clients/);
  });
});
