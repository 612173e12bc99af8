/**
 * The Promotion's new-live, live-command and switchover-timeout fields through the root
 * program's stack configuration (config.ts): `understudy:newLive`, `understudy:liveStartCommand`,
 * `understudy:liveStopCommand`, `understudy:switchoverTimeoutMs`. Each refusal names the
 * `understudy:` field; each mapping is followed into the provider's own plan
 * (resolvePromotionPlan, what the Promotion component resolves before declaring anything).
 */
import { describe, expect, it } from "vitest";
import * as fs from "node:fs";
import * as path from "node:path";
import { configKeys, parseConfig, promotionSettings, stackConfigValue } from "../../config";
import { resolvePromotionPlan } from "../../providers/plan/promotion";
import { resolveRehearsalPlan } from "../../providers/plan/rehearsal";
import { MAX_SOCKET_DIR } from "../../providers/validate";
import { configProblems, sampleStackConfig } from "../harness/unit-fixtures";

// js-yaml comes with @pulumi/pulumi (which reads stack files with it).
const yaml = require("js-yaml") as { load(text: string): unknown };

const base = sampleStackConfig;
const start = ["pg_ctlcluster", "15", "main", "start"];
const stop = ["pg_ctlcluster", "15", "main", "stop"];
const link = "/var/lib/postgresql/15/main";

const problems = configProblems;

/** The provider's plan for the configuration, as the Promotion component resolves it (the rehearsal's plan from the same config). */
function planOf(raw: Record<string, unknown>) {
  const c = parseConfig(raw);
  const rehearsal = resolveRehearsalPlan("r", { source: c.source, clone: c.clone, to: c.to, postgres: c.postgres });
  const opts = { sibling: (of: string, n: string) => [...of.split("/").slice(0, -1), n].join("/"), sanitize: (s: string) => s };
  const { name, listenPort, database, authType, serverHost } = c.endpoint!;
  return resolvePromotionPlan("go", { endpoint: { name, listenPort, database, authType, serverHost, users: c.endpoint!.users ?? [] }, ...promotionSettings(c) }, rehearsal, opts);
}

describe("understudy:newLive and the live commands: refusals, naming the field", () => {
  const refused: Array<[string, Record<string, unknown>, Array<string | RegExp>]> = [
    // The provider's rule (checkNewLiveService), reused: a command finds the new live only through the link.
    ["newLive.startCommand without newLive.dataDirLink", { newLive: { startCommand: start } }, ["understudy:newLive.dataDirLink: required with newLive.startCommand"]],
    ["newLive.stopCommand without newLive.dataDirLink", { newLive: { stopCommand: stop } }, ["understudy:newLive.dataDirLink: required with newLive.stopCommand"]],
    ["a command as one shell string", { newLive: { dataDirLink: link, startCommand: "pg_ctlcluster 15 main start" } }, ['understudy:newLive.startCommand: an argv array such as ["pg_ctlcluster", "15", "main", "start"] (it runs without a shell)']],
    ["an empty argv", { newLive: { dataDirLink: link, stopCommand: [] } }, ["understudy:newLive.stopCommand: a non-empty argv array (it runs without a shell)"]],
    ["an empty argument", { newLive: { dataDirLink: link, startCommand: ["pg_ctlcluster", "", "main", "start"] } }, ["understudy:newLive.startCommand.1: an empty argument"]],
    ["an argument over two lines", { liveStopCommand: ["pg_ctlcluster", "13\nmain", "stop"] }, ["understudy:liveStopCommand.1: one line (no newline or NUL)"]],
    ["an empty liveStartCommand", { liveStartCommand: [] }, ["understudy:liveStartCommand: a non-empty argv array (it runs without a shell)"]],
    ["a relative dataDirLink", { newLive: { dataDirLink: "var/lib/postgresql/15/main" } }, ['understudy:newLive.dataDirLink: "var/lib/postgresql/15/main" must be an absolute path']],
    ["a dataDirLink with ..", { newLive: { dataDirLink: "/var/lib/postgresql/../15/main" } }, ['understudy:newLive.dataDirLink: "/var/lib/postgresql/../15/main" must not contain ".." components']],
    ["/ as dataDirLink", { newLive: { dataDirLink: "/" } }, ['understudy:newLive.dataDirLink: "/" is not allowed as a link path']],
    ["a logFile with a space", { newLive: { logFile: "/var/log/postgresql/pg 15.log" } }, ['understudy:newLive.logFile: "/var/log/postgresql/pg 15.log" contains " "; a log file may only use letters, digits and _ . - (it is passed through shells and ini files)']],
    ["a socketDir too long for a unix socket", { newLive: { socketDir: "/" + "s".repeat(100) } }, [new RegExp(`^understudy:newLive\\.socketDir: "/s+…" is too long for a unix socket directory \\(at most ${MAX_SOCKET_DIR} characters\\)$`)]],
    ["a listen that is not an address", { newLive: { listen: "db.example.com" } }, ['understudy:newLive.listen: "db.example.com" is not "", "*", "localhost" or an IP address']],
    ["a privileged newLive.port", { newLive: { port: 543 } }, ["understudy:newLive.port: a port from 1024"]],
    ["a path as newLive.dataset", { newLive: { dataset: "/tank/pg15" } }, ["understudy:newLive.dataset: a ZFS dataset name like tank/pg13"]],
    ["the source's dataset as newLive.dataset", { newLive: { dataset: "tank/pg13" } }, ["understudy:newLive.dataset: must differ from source.dataset and clone.dataset"]],
    // EBS-only: the storage backend is an object of the component, not stack configuration.
    ["newLive.storage", { newLive: { storage: { kind: "ebs" } } }, ["understudy:newLive: Unrecognized key(s) in object: 'storage'"]],
    ["a switchoverTimeoutMs under 30 s", { switchoverTimeoutMs: 29_999 }, ["understudy:switchoverTimeoutMs: at least 30000 (30 s)"]],
    ["a switchoverTimeoutMs over 1 h", { switchoverTimeoutMs: 3_600_001 }, ["understudy:switchoverTimeoutMs: at most 3600000 (1 h)"]],
    ["a fractional switchoverTimeoutMs", { switchoverTimeoutMs: 60_000.5 }, ["understudy:switchoverTimeoutMs: an integer (milliseconds)"]],
  ];
  for (const [what, extra, expected] of refused) {
    it(`refuses ${what}`, () => {
      const got = problems({ ...base(), ...extra });
      expect(got).toHaveLength(expected.length);
      // The provider's message for the link goes on to say why; its start names the field and the rule.
      got.forEach((g, i) => {
        const want = expected[i]!;
        if (want instanceof RegExp) expect(g).toMatch(want);
        else expect(g.slice(0, want.length)).toBe(want);
      });
    });
  }

  for (const key of ["newLive", "liveStartCommand", "liveStopCommand", "switchoverTimeoutMs"]) {
    it(`refuses understudy:${key} without understudy:endpoint (no Promotion would read it)`, () => {
      const value = { newLive: { port: 5433 }, liveStartCommand: ["pg_ctlcluster", "13", "main", "start"], liveStopCommand: ["pg_ctlcluster", "13", "main", "stop"], switchoverTimeoutMs: 600_000 }[key];
      const raw = { ...base(), [key]: value };
      delete raw.endpoint;
      expect(problems(raw)).toEqual([`understudy:${key}: is for the promotion: it needs understudy:endpoint (without one no Promotion is declared)`]);
    });
  }

  it("lists each problem once: a bad link path with a command is the path's problem, not also 'required'", () => {
    expect(problems({ ...base(), newLive: { dataDirLink: "relative", startCommand: start, stopCommand: [] } })).toEqual([
      'understudy:newLive.dataDirLink: "relative" must be an absolute path',
      "understudy:newLive.stopCommand: a non-empty argv array (it runs without a shell)",
    ]);
  });
});

describe("understudy:newLive and the live commands: mapped into the Promotion's args and the provider's plan", () => {
  it("the program reads the new keys (index.ts reads every key of the schema)", () => {
    expect(configKeys).toEqual(expect.arrayContaining(["newLive", "liveStartCommand", "liveStopCommand", "switchoverTimeoutMs", "endpoint", "method", "logical"]));
  });

  it("nothing given: no key reaches the Promotion (the provider's defaults apply)", () => {
    expect(promotionSettings(parseConfig(base()))).toEqual({});
    const p = planOf(base());
    expect(p.switchoverTimeoutMs).toBe(300_000);
    expect(p.live).toEqual({});
    expect(p.newLive).not.toHaveProperty("dataDirLink");
  });

  it("newLive.dataDirLink, startCommand and stopCommand", () => {
    const raw = { ...base(), newLive: { dataDirLink: link, startCommand: start, stopCommand: stop } };
    expect(promotionSettings(parseConfig(raw))).toEqual({ newLive: { dataDirLink: link, startCommand: start, stopCommand: stop } });
    expect(planOf(raw).newLive).toMatchObject({ dataDirLink: link, startCommand: start, stopCommand: stop });
  });

  it("newLive.port, socketDir, listen, logFile and dataset", () => {
    const newLive = { port: 5433, socketDir: "/run/postgresql", listen: "127.0.0.1", logFile: "/var/log/postgresql/postgresql-15-main.log", dataset: "tank/pg15-live" };
    const raw = { ...base(), newLive };
    expect(promotionSettings(parseConfig(raw))).toEqual({ newLive });
    expect(planOf(raw).newLive).toMatchObject(newLive);
  });

  it("liveStartCommand and liveStopCommand", () => {
    const liveStartCommand = ["pg_ctlcluster", "13", "main", "start"];
    const liveStopCommand = ["pg_ctlcluster", "13", "main", "stop"];
    const raw = { ...base(), liveStartCommand, liveStopCommand };
    expect(promotionSettings(parseConfig(raw))).toEqual({ liveStartCommand, liveStopCommand });
    expect(planOf(raw).live).toEqual({ startCommand: liveStartCommand, stopCommand: liveStopCommand });
  });

  it("switchoverTimeoutMs is the Promotion's own; logical.switchoverTimeoutMs stays the logical catch-up's", () => {
    const raw = { ...base(), switchoverTimeoutMs: 600_000, method: "logical", logical: { switchoverTimeoutMs: 900_000 } };
    expect(promotionSettings(parseConfig(raw))).toEqual({ switchoverTimeoutMs: 600_000, method: "logical", logical: { switchoverTimeoutMs: 900_000 } });
    const p = planOf(raw);
    expect(p.switchoverTimeoutMs).toBe(600_000);
    expect(p.logical?.switchoverTimeoutMs).toBe(900_000);
    const only = planOf({ ...base(), switchoverTimeoutMs: 45_000 });
    expect(only.switchoverTimeoutMs).toBe(45_000);
    expect(only.logical).toBeUndefined();
  });

  it("the README's Debian stanza, read as the root program reads it, is accepted and reaches the plan", () => {
    const readme = fs.readFileSync(path.join(__dirname, "../../README.md"), "utf8");
    const block = [...readme.matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => m[1]!).find((b) => b.includes("understudy:newLive"));
    expect(block).toBeDefined();
    const doc = yaml.load(block!) as { config: Record<string, unknown> };
    const raw: Record<string, unknown> = {};
    // Pulumi hands the program a non-string value as JSON text; index.ts reads it back with stackConfigValue.
    for (const [k, v] of Object.entries(doc.config)) raw[k.slice("understudy:".length)] = stackConfigValue(typeof v === "string" ? v : JSON.stringify(v));
    const p = planOf(raw);
    expect(p.newLive).toMatchObject({ port: 5433, listen: "127.0.0.1", dataDirLink: link, startCommand: start, stopCommand: stop });
    expect(p.live).toEqual({ startCommand: ["pg_ctlcluster", "13", "main", "start"], stopCommand: ["pg_ctlcluster", "13", "main", "stop"] });
    expect(p.switchoverTimeoutMs).toBe(600_000);
  });
});

describe("understudy:acknowledgeReplicationLoss", () => {
  it("reaches the Promotion as given", () => {
    const ids = ["slot:cdc_consumer", "standby:replica 1", "subscription:app.from_billing"];
    expect(promotionSettings(parseConfig({ ...base(), acknowledgeReplicationLoss: ids }))).toEqual({ acknowledgeReplicationLoss: ids });
  });

  it("refuses an id of an unknown kind, naming the key and the index", () => {
    expect(problems({ ...base(), acknowledgeReplicationLoss: ["slot:ok", "cdc_consumer"] })).toEqual([
      'understudy:acknowledgeReplicationLoss.1: an id as a refused preview lists it: "slot:<name>", "standby:<name>" or "subscription:<database>.<name>"',
    ]);
  });

  it("refuses it without understudy:endpoint (no Promotion would read it)", () => {
    const raw: Record<string, unknown> = { ...base(), acknowledgeReplicationLoss: ["slot:x"] };
    delete raw.endpoint;
    expect(problems(raw)).toEqual(["understudy:acknowledgeReplicationLoss: is for the promotion: it needs understudy:endpoint (without one no Promotion is declared)"]);
  });
});
