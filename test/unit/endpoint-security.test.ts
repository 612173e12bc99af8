/**
 * The endpoint's security rules, without a host (issue 10, item 10): trust only on loopback
 * (PgBouncer's own config check, the Promotion's plan, the CutOver's check), a generated admin
 * password read back from the userlist, scram configs that pass their own checks, and
 * `serverHost`. The Promotion component runs under pulumi.runtime.setMocks (no engine): it
 * must throw the SDK's InputPropertiesError before any resource of ours is registered.
 */
import { beforeAll, describe, expect, it } from "vitest";
import * as pulumi from "@pulumi/pulumi";
import {
  assertTrustOnLoopback,
  checkConfig,
  isLoopback,
  parseUserlist,
  renderUserlist,
  resolveConfig,
} from "../../providers/endpoint/pgbouncer-config";
import { generatePassword, pgBouncerEndpointProvider } from "../../providers/endpoint/resource";
import { checkCutOver, type CutOverInputs } from "../../providers/promotion/cutover";
import { liveTarget, newLiveTarget } from "../../providers/runner/cutover";
import { specOf } from "../../providers/promotion/cutover";
import { resolvePromotionPlan } from "../../providers/plan/promotion";
import { resolveRehearsalPlan } from "../../providers/plan/rehearsal";
import { InputErrors } from "../../providers/errors";
import type { UpgradeRehearsalArgs } from "../../components/upgrade-rehearsal";
import { NoHostZfs } from "../harness/no-host-storage";

const rehearsal = resolveRehearsalPlan("r", {
  source: { dataset: "live/data", version: 13, port: 5432 },
  clone: { dataset: "clones/r" },
  to: 15,
  postgres: { port: 55432, database: "app" },
});
const opts = { sibling: (of: string, n: string) => [...of.split("/").slice(0, -1), n].join("/"), sanitize: (s: string) => s };
const USERS = [{ name: "app", password: "app-Secret-1" }];

function planErrors(endpoint: Record<string, unknown>, newLive?: Record<string, unknown>): Array<{ field: string; message: string }> {
  try {
    resolvePromotionPlan("go", { endpoint: { name: "app", listenPort: 6432, database: "app", ...endpoint } as never, ...(newLive ? { newLive } : {}) }, rehearsal, opts);
    return [];
  } catch (e) {
    if (!(e instanceof InputErrors)) throw e;
    return e.errors.map((x) => ({ field: x.field, message: x.message }));
  }
}

describe("trust only on loopback", () => {
  it("knows loopback addresses", () => {
    for (const a of ["127.0.0.1", "127.0.1.1", "::1", "localhost", "127.0.0.1,::1"]) expect(isLoopback(a), a).toBe(true);
    for (const a of ["*", "0.0.0.0", "::", "10.0.0.5", "db.example.com", "127.0.0.1,10.0.0.5", ""]) expect(isLoopback(a), a).toBe(false);
  });

  it("PgBouncer's own config check refuses trust on a non-loopback listenAddr, naming listenAddr", () => {
    for (const listenAddr of ["*", "0.0.0.0", "192.168.1.10"]) {
      expect(() => resolveConfig({ name: "e", listenPort: 6432, authType: "trust", listenAddr }), listenAddr).toThrow(/^listenAddr: .* with authType "trust" would let anyone/);
    }
    // Positive controls: trust on loopback (the default address), scram anywhere.
    expect(resolveConfig({ name: "e", listenPort: 6432, authType: "trust" }).listenAddr).toBe("127.0.0.1");
    expect(resolveConfig({ name: "e", listenPort: 6432, authType: "trust", listenAddr: "::1" }).authType).toBe("trust");
    expect(resolveConfig({ name: "e", listenPort: 6432, listenAddr: "*", adminPassword: "x-y-z" }).authType).toBe("scram-sha-256");
    expect(() => assertTrustOnLoopback("md5", "*")).not.toThrow();
  });

  it("the Promotion's plan refuses it, naming endpoint.listenAddr", () => {
    expect(planErrors({ authType: "trust", listenAddr: "*" })).toEqual([expect.objectContaining({ field: "endpoint.listenAddr" })]);
    expect(planErrors({ authType: "trust" })).toEqual([]);
    expect(planErrors({ authType: "trust", listenAddr: "127.0.0.1" })).toEqual([]);
    expect(planErrors({ listenAddr: "*", users: USERS })).toEqual([]);
  });

  it("the CutOver's check refuses it", () => {
    const n = cutOverInputs({ authType: "trust", listenAddr: "0.0.0.0" });
    const errs = checkCutOver(n);
    expect(errs.map((e) => e.message).join("\n")).toMatch(/listenAddr: "0\.0\.0\.0" with authType "trust"/);
    expect(checkCutOver(cutOverInputs({ authType: "trust" }))).toEqual([]);
  });
});

describe("passwords", () => {
  it("a Promotion with scram (the default) or md5 needs users, naming endpoint.users", () => {
    expect(planErrors({})).toEqual([expect.objectContaining({ field: "endpoint.users" })]);
    expect(planErrors({ authType: "md5" })).toEqual([expect.objectContaining({ field: "endpoint.users" })]);
    expect(planErrors({ users: USERS })).toEqual([]);
  });

  it("the generated admin password: 32 characters, letters and digits, never twice the same", () => {
    const seen = new Set<string>();
    for (let i = 0; i < 200; i++) {
      const p = generatePassword();
      expect(p).toMatch(/^[A-Za-z0-9]{32}$/);
      seen.add(p);
    }
    expect(seen.size).toBe(200);
  });

  it("the userlist is read back as written (quotes included)", () => {
    const c = resolveConfig({ name: "e", listenPort: 6432, adminPassword: 'a"b c', users: [{ name: "app", password: 'x""y' }, { name: "ro", password: "SCRAM-SHA-256$4096:abc=$def=:ghi=" }] });
    const m = parseUserlist(renderUserlist(c));
    expect(m.get("understudy_admin")).toBe('a"b c');
    expect(m.get("app")).toBe('x""y');
    expect(m.get("ro")).toBe("SCRAM-SHA-256$4096:abc=$def=:ghi=");
  });

  it("the README's scram endpoint passes its own checks (the resource's and the CutOver's) without an admin password", async () => {
    const config = {
      name: "app", listenPort: 6432, authType: "scram-sha-256" as const, users: USERS,
      databases: { app: { host: "/var/run/postgresql", port: 5432, dbname: "app" } },
    };
    expect(() => resolveConfig(config)).toThrow(/adminPassword: is required/); // the driver alone still needs one
    expect(checkConfig(config).adminPassword).toBeDefined();
    const r = await pgBouncerEndpointProvider.check!({}, { label: "app", config });
    expect(r.failures).toEqual([]);
    expect(checkCutOver(cutOverInputs({ authType: "scram-sha-256", users: USERS }))).toEqual([]);
    expect(planErrors({ authType: "scram-sha-256", users: USERS, pauseTimeoutMs: 10_000 })).toEqual([]);
  });
});

describe("serverHost", () => {
  it("points both targets at it, and makes the new live listen there", () => {
    const plan = resolvePromotionPlan("go", { endpoint: { name: "app", listenPort: 6432, database: "app", users: USERS, serverHost: "127.0.0.1" } }, rehearsal, opts);
    expect(plan.newLive.listen).toBe("127.0.0.1");
    const spec = specOf(cutOverInputs({ users: USERS }, "127.0.0.1"));
    expect(liveTarget(spec)).toEqual({ host: "127.0.0.1", port: 5432, dbname: "app" });
    expect(newLiveTarget(spec)).toEqual({ host: "127.0.0.1", port: 55442, dbname: "app" });
    // Without it: the unix sockets, as in 0.1.0.
    const plain = specOf(cutOverInputs({ users: USERS }));
    expect(liveTarget(plain).host).toBe("/var/run/postgresql");
  });

  it("refuses a serverHost the new live would not listen on, and a malformed one", () => {
    expect(planErrors({ users: USERS, serverHost: "127.0.0.1" }, { listen: "10.0.0.1" })).toEqual([expect.objectContaining({ field: "newLive.listen" })]);
    expect(planErrors({ users: USERS, serverHost: "127.0.0.1" }, { listen: "*" })).toEqual([]);
    expect(planErrors({ users: USERS, serverHost: "bad host;" })).toEqual([expect.objectContaining({ field: "endpoint.serverHost" })]);
  });
});

/** The SDK's wire form of a secret value. */
const SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270";
function isSecret(v: unknown): boolean {
  return !!v && typeof v === "object" && (v as Record<string, unknown>)["4dabf18193072939515e22adb298388d"] === SECRET_SIG;
}
function unwrap<T>(v: unknown): T {
  return (isSecret(v) ? (v as { value: unknown }).value : v) as T;
}

function cutOverInputs(endpoint: Record<string, unknown>, serverHost?: string): CutOverInputs {
  return {
    label: "go",
    owner: "p/s/Promotion/go",
    stack: "s",
    promote: false,
    endpoint: { name: "app", listenPort: 6432, ...endpoint } as CutOverInputs["endpoint"],
    database: "app",
    pauseTimeoutMs: 10_000,
    ...(serverHost ? { serverHost } : {}),
    live: { dataset: "live/data", pgdata: "main", version: 13, osUser: "postgres", port: 5432, socketDir: "/var/run/postgresql" },
    newLive: { dataset: "clones/go-live-pg15", port: 55442, socketDir: "/var/run/postgresql", listen: serverHost ?? "" },
    to: 15,
    mode: "link",
    steps: [],
    assertions: [],
    rehearsal: { name: "r", status: "passed", predictedCutoverMs: 1000 },
  };
}

describe("Promotion input checks (no engine)", () => {
  const registered: Array<{ type: string; inputs: Record<string, unknown> }> = [];
  beforeAll(async () => {
    await pulumi.runtime.setMocks(
      {
        newResource: (a) => {
          registered.push({ type: a.type, inputs: a.inputs });
          const report = {
            rehearsal: "ok", status: "passed", host: "local", source: { dataset: "tank/pg13", snapshot: "tank/pg13@s", version: 13 },
            clone: { dataset: "tank/rehearsals/r" }, target: { version: 15 }, steps: [], checks: [],
            predictedCutover: { totalMs: 0, breakdown: [], note: "" }, generatedAt: "2026-01-01T00:00:00Z",
          };
          return { id: `${a.name}-id`, state: a.type.endsWith(":RehearsalStep") ? { ...a.inputs, report } : a.inputs };
        },
        call: () => ({}),
      },
      "proj",
      "stk",
      false,
    );
  });
  const rehearsalArgs = (): UpgradeRehearsalArgs => ({
    storage: new NoHostZfs(),
    source: { dataset: "tank/pg13", version: 13, port: 5432 },
    clone: { dataset: "tank/rehearsals/r" },
    to: 15,
    postgres: { port: 55432, database: "app" },
  });
  const ours = () => registered.filter((r) => /:(PgBouncerEndpoint|CutOver)$/.test(r.type)).map((r) => r.type.split(":").pop());

  it("trust on '*' fails before the endpoint or the cut-over is declared, naming endpoint.listenAddr", async () => {
    const { UpgradeRehearsal } = await import("../../components/upgrade-rehearsal");
    const { Promotion } = await import("../../components/promotion");
    const r = new UpgradeRehearsal("r1", rehearsalArgs());
    registered.length = 0;
    let err: unknown;
    try {
      new Promotion("go", { rehearsal: r, promote: false, endpoint: { name: "app", listenPort: 6432, database: "app", authType: "trust", listenAddr: "*" } });
    } catch (e) {
      err = e;
    }
    expect(pulumi.InputPropertiesError.isInstance(err), String(err)).toBe(true);
    const e = err as InstanceType<typeof pulumi.InputPropertiesError>;
    expect(e.errors.map((x) => x.propertyPath)).toEqual(["endpoint.listenAddr"]);
    expect(e.message).toMatch(/endpoint\.listenAddr: "\*" with authType "trust"/);
    expect(ours()).toEqual([]);
  });

  it("positive control: trust on loopback and scram with users declare both", async () => {
    const { UpgradeRehearsal } = await import("../../components/upgrade-rehearsal");
    const { Promotion } = await import("../../components/promotion");
    const r = new UpgradeRehearsal("r2", rehearsalArgs());
    registered.length = 0;
    const p1 = new Promotion("go1", { rehearsal: r, promote: false, endpoint: { name: "a1", listenPort: 6432, database: "app", authType: "trust" } });
    const p2 = new Promotion("go2", {
      rehearsal: r, promote: false,
      endpoint: { name: "a2", listenPort: 6433, database: "app", users: pulumi.secret(USERS), serverHost: "127.0.0.1" },
      newLive: { port: 55450 },
    });
    await new Promise((res) => pulumi.all([p1.state, p2.state]).apply(res));
    await new Promise((res) => setTimeout(res, 200));
    expect(ours().sort()).toEqual(["CutOver", "CutOver", "PgBouncerEndpoint", "PgBouncerEndpoint"]);
    // Inputs that can carry a password reach the engine as secrets (issue 10, item 11).
    const endpoints = registered.filter((x) => x.type.endsWith(":PgBouncerEndpoint"));
    const cuts = registered.filter((x) => x.type.endsWith(":CutOver"));
    for (const x of endpoints) expect(isSecret(x.inputs.config), "PgBouncerEndpoint.config").toBe(true);
    for (const x of cuts) expect(isSecret(x.inputs.endpoint), "CutOver.endpoint").toBe(true);
    expect(isSecret(cuts[0].inputs.database)).toBe(false); // positive control: a plain input stays plain
    const ep2 = endpoints.find((x) => unwrap<{ name: string }>(x.inputs.config).name === "a2")!;
    expect(unwrap<{ databases: Record<string, { host: string }> }>(ep2.inputs.config).databases.app.host).toBe("127.0.0.1");
    const cut2 = cuts.find((x) => unwrap<{ name: string }>(x.inputs.endpoint).name === "a2")!;
    expect(cut2.inputs.serverHost).toBe("127.0.0.1");
    expect((cut2.inputs.newLive as { listen: string }).listen).toBe("127.0.0.1");
  });
});

describe("newLive.logFile", () => {
  it("is checked in the plan like every path: absolute, no shell metacharacters", () => {
    expect(planErrors({ users: USERS }, { logFile: "/var/log/postgresql/postgresql-15-main.log" })).toEqual([]);
    expect(planErrors({ users: USERS }, { logFile: "logs/pg.log" })).toEqual([expect.objectContaining({ field: "newLive.logFile" })]);
    expect(planErrors({ users: USERS }, { logFile: "/var/log/$(reboot).log" })).toEqual([expect.objectContaining({ field: "newLive.logFile" })]);
  });
});
