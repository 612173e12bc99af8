/**
 * The root program's stack configuration (config.ts), the keys a DBA reaches for next:
 * `understudy:endpoint.poolMode` and `endpoint.retainOnDelete` (checked with the provider's
 * own rules and followed into the provider's plan), `endpoint.newLiveServerHost` (refused by
 * name: the program declares ZFS storage, one host), and a warning for every `understudy:` key
 * the program does not read, naming the nearest known key. readStackConfig is what index.ts
 * calls with `pulumi.runtime.allConfig()`: the map is built here the way Pulumi hands it over
 * (`namespace:key` to its text; objects as JSON).
 */
import { describe, expect, it } from "vitest";
import * as fs from "node:fs";
import * as path from "node:path";
import { NEW_LIVE_SERVER_HOST_REFUSAL, configKeys, parseConfig, promotionSettings, readStackConfig, unknownConfigKeys } from "../../config";
import { resolvePromotionPlan } from "../../providers/plan/promotion";
import { resolveRehearsalPlan } from "../../providers/plan/rehearsal";
import { POOL_MODES } from "../../providers/endpoint/pgbouncer-config";
import { InputErrors } from "../../providers/errors";
import { configProblems as problems, SAMPLE_ENDPOINT, sampleStackConfig } from "../harness/unit-fixtures";

const endpoint = SAMPLE_ENDPOINT;
const base = sampleStackConfig;

/** The whole configuration map as `pulumi.runtime.allConfig()` returns it: every value as text (JSON for objects and numbers). */
function allConfig(raw: Record<string, unknown>, extra: Record<string, string> = {}): Record<string, string> {
  const all: Record<string, string> = { "aws:region": "eu-west-1" };
  for (const [k, v] of Object.entries(raw)) all[`understudy:${k}`] = typeof v === "string" ? v : JSON.stringify(v);
  return { ...all, ...extra };
}

/** The provider's plan for the configuration, with the endpoint passed on as index.ts passes it (the whole object, users aside). */
function planOf(raw: Record<string, unknown>) {
  const c = parseConfig(raw);
  const rehearsal = resolveRehearsalPlan("r", { source: c.source, clone: c.clone, to: c.to, postgres: c.postgres });
  const opts = { sibling: (of: string, n: string) => [...of.split("/").slice(0, -1), n].join("/"), sanitize: (s: string) => s };
  return resolvePromotionPlan("go", { endpoint: { ...c.endpoint!, users: c.endpoint!.users ?? [] }, ...promotionSettings(c) }, rehearsal, opts);
}

describe("understudy:endpoint.poolMode and endpoint.retainOnDelete", () => {
  for (const poolMode of POOL_MODES) {
    it(`poolMode ${poolMode} reaches the provider's plan`, () => {
      expect(planOf({ ...base(), endpoint: { ...endpoint, poolMode } }).endpoint.poolMode).toBe(poolMode);
    });
  }

  it("not given: the provider's defaults (transaction, PgBouncer kept on destroy)", () => {
    const p = planOf(base());
    expect(p.endpoint).toMatchObject({ poolMode: "transaction", retainOnDelete: true });
  });

  it("retainOnDelete false reaches the provider's plan (the resource option the Promotion sets from it)", () => {
    expect(planOf({ ...base(), endpoint: { ...endpoint, retainOnDelete: false } }).endpoint.retainOnDelete).toBe(false);
  });

  it("refuses a pool mode PgBouncer does not have, with the provider's own message, naming the field", () => {
    expect(problems({ ...base(), endpoint: { ...endpoint, poolMode: "sesion" } })).toEqual(['understudy:endpoint.poolMode: "sesion" is not transaction, session or statement']);
    // The same message as the Promotion's own check (one rule): the plan refuses it alike.
    const rehearsal = resolveRehearsalPlan("r", { source: { dataset: "tank/pg13", version: 13 }, clone: { dataset: "tank/c" }, to: 15, postgres: { port: 55432 } });
    const opts = { sibling: (_of: string, n: string) => `tank/${n}`, sanitize: (s: string) => s };
    try {
      resolvePromotionPlan("go", { endpoint: { ...endpoint, authType: "trust", poolMode: "sesion" as never } }, rehearsal, opts);
      expect.unreachable();
    } catch (e) {
      expect((e as InputErrors).errors.map((x) => `${x.field}: ${x.reason}`)).toContain('endpoint.poolMode: "sesion" is not transaction, session or statement');
    }
  });

  it("refuses a pool mode given as something else than a word", () => {
    expect(problems({ ...base(), endpoint: { ...endpoint, poolMode: 1 } })).toEqual(["understudy:endpoint.poolMode: Expected string, received number"]);
  });

  it("refuses retainOnDelete that is not true or false (a quoted \"false\" is not false)", () => {
    expect(problems({ ...base(), endpoint: { ...endpoint, retainOnDelete: "false" } })).toEqual(["understudy:endpoint.retainOnDelete: must be true or false"]);
  });

  it("cannot be given without understudy:endpoint: the endpoint's own required fields are named", () => {
    // `pulumi config set --path understudy:endpoint.poolMode session` on a stack without an endpoint.
    const raw = { ...base(), endpoint: { poolMode: "session", retainOnDelete: false } };
    expect(problems(raw)).toEqual(["understudy:endpoint.name: Required", "understudy:endpoint.listenPort: Required", "understudy:endpoint.database: Required"]);
  });
});

describe("understudy:endpoint.newLiveServerHost is refused by name (the program's storage is ZFS: one host)", () => {
  it("refuses it with the reason, whatever its value", () => {
    for (const v of ["10.0.1.20", "", 5]) {
      expect(problems({ ...base(), endpoint: { ...endpoint, newLiveServerHost: v } })).toEqual([`understudy:endpoint.newLiveServerHost: ${NEW_LIVE_SERVER_HOST_REFUSAL}`]);
    }
  });

  it("says why and what to use instead", () => {
    expect(NEW_LIVE_SERVER_HOST_REFUSAL).toMatch(/EBS/);
    expect(NEW_LIVE_SERVER_HOST_REFUSAL).toMatch(/ZFS storage, where the new live runs on live's host/);
    expect(NEW_LIVE_SERVER_HOST_REFUSAL).toMatch(/endpoint\.serverHost/);
  });

  it("is what it guards against: given to the provider, it switches off the check that the new live's port differs from live's", () => {
    // On one host this plan would start the new live on live's own port; without newServerHost it is refused.
    const raw = { ...base(), newLive: { port: 5432 } };
    expect(() => planOf(raw)).toThrow(/newLive\.port: port 5432 is also source\.port \(live\)/);
    const c = parseConfig(raw);
    const rehearsal = resolveRehearsalPlan("r", { source: c.source, clone: c.clone, to: c.to, postgres: c.postgres });
    const opts = { sibling: (_of: string, n: string) => `tank/${n}`, sanitize: (s: string) => s };
    expect(() => resolvePromotionPlan("go", { endpoint: { ...c.endpoint!, serverHost: "127.0.0.1", newServerHost: "127.0.0.2", users: [] }, ...promotionSettings(c) }, rehearsal, opts)).not.toThrow();
  });
});

describe("an understudy: key the program does not read: a warning naming the nearest known key", () => {
  const warn = (key: string) => unknownConfigKeys([`understudy:${key}`]);

  it("a known key is not warned about, nor a key of another namespace", () => {
    expect(unknownConfigKeys([...configKeys.map((k) => `understudy:${k}`), "aws:region", "understudy-promote:promote", "pulumi:template"])).toEqual([]);
  });

  const typos: Array<[string, string]> = [
    ["newlive", "understudy:newLive"],
    ["switchoverTimeout", "understudy:switchoverTimeoutMs"],
    ["promte", "understudy:promote"],
    ["endpiont", "understudy:endpoint"],
    ["liveStopCmd", "understudy:liveStopCommand"],
    ["acknowledgeReplicationLosses", "understudy:acknowledgeReplicationLoss"],
    ["poolMode", "understudy:endpoint.poolMode"],
    ["retainOnDelete", "understudy:endpoint.retainOnDelete"],
    ["dataDirLink", "understudy:newLive.dataDirLink"],
  ];
  for (const [typo, meant] of typos) {
    it(`understudy:${typo}: did you mean ${meant}?`, () => {
      expect(warn(typo)).toEqual([`understudy:${typo} is not a key this program reads, ignored; did you mean ${meant}?`]);
    });
  }

  it("lists every field of that name when several objects have one", () => {
    expect(warn("socketDir")).toEqual(["understudy:socketDir is not a key this program reads, ignored; did you mean understudy:source.socketDir, understudy:postgres.socketDir or understudy:newLive.socketDir?"]);
  });

  it("a refused field is not offered (newLiveServerHost is refused by name)", () => {
    expect(warn("newLiveServerHost")).toEqual(['understudy:newLiveServerHost is not a key this program reads, ignored (the keys it reads: README.md, "The ready-made program")']);
  });

  it("nothing near: says where the keys are listed", () => {
    expect(warn("colour")).toEqual(['understudy:colour is not a key this program reads, ignored (the keys it reads: README.md, "The ready-made program")']);
  });

  it("a field set without --path (a key of its own with a dot in its name): says how to set it", () => {
    expect(warn("endpoint.poolMode")).toEqual([
      "understudy:endpoint.poolMode is not read: set without --path, it is a key of its own, not a field of understudy:endpoint. " +
        "Remove it (pulumi config rm 'understudy:endpoint.poolMode') and set the field with: pulumi config set --path 'understudy:endpoint.poolMode' <value>",
    ]);
    // A misspelt field: the command names the field it meant.
    expect(warn("newLive.datadirlnk")[0]).toMatch(/pulumi config rm 'understudy:newLive\.datadirlnk'\) and set the field with: pulumi config set --path 'understudy:newLive\.dataDirLink' <value>$/);
  });
});

describe("readStackConfig: what index.ts reads from pulumi.runtime.allConfig()", () => {
  it("reads the known keys (objects as JSON, plain words as text) and warns about the others", () => {
    const { config, warnings } = readStackConfig(allConfig({ ...base(), method: "logical", endpoint: { ...endpoint, poolMode: "session" } }, { "understudy:newlive": '{"port":5433}' }));
    expect(config.method).toBe("logical");
    expect(config.endpoint?.poolMode).toBe("session");
    expect(config.newLive).toBeUndefined();
    expect(warnings).toEqual(["understudy:newlive is not a key this program reads, ignored; did you mean understudy:newLive?"]);
  });

  it("a stack with only keys earlier releases read: no warning, same configuration as parseConfig", () => {
    const { config, warnings } = readStackConfig(allConfig(base()));
    expect(warnings).toEqual([]);
    expect(config).toEqual(parseConfig(base()));
  });

  it("a refused configuration lists the unknown keys in the same error (a typo explains a missing key)", () => {
    const raw = base();
    const source = raw.source;
    delete raw.source;
    expect(() => readStackConfig(allConfig(raw, { "understudy:sorce": JSON.stringify(source) }))).toThrow(
      "invalid stack configuration (nothing was run):\n  - understudy:source: Required\n  - understudy:sorce is not a key this program reads, ignored; did you mean understudy:source?",
    );
  });
});

describe("README: the ready-made program's configuration table", () => {
  const readme = fs.readFileSync(path.join(__dirname, "../../README.md"), "utf8");
  const rows = readme.split("\n").filter((l) => l.startsWith("| `understudy:"));

  it("has a row for every key the program reads, and the endpoint row names poolMode, retainOnDelete and the refused newLiveServerHost", () => {
    for (const k of configKeys) expect(rows.some((r) => r.includes(`\`understudy:${k}\``)), k).toBe(true);
    const ep = rows.find((r) => r.startsWith("| `understudy:endpoint` |"))!;
    expect(ep).toMatch(/poolMode, retainOnDelete \}/);
    expect(ep).toMatch(/Not here: `newLiveServerHost`/);
  });

  it("quotes the unknown-key warning as the program words it", () => {
    expect(readme).toContain(`(\`${unknownConfigKeys(["understudy:newlive"])[0]}\`)`);
  });
});
