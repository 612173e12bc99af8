/**
 * The root program's stack configuration (config.ts): a bad value is refused with the
 * `understudy:` key and field it concerns, every problem at once, before any resource is
 * declared ("nothing was run").
 */
import { describe, expect, it } from "vitest";
import * as fs from "node:fs";
import * as path from "node:path";
import { parseConfig, stackConfigValue } from "../../config";
import { configProblems } from "../harness/unit-fixtures";

// js-yaml comes with @pulumi/pulumi (which reads stack files with it).
 
const yaml = require("js-yaml") as { load(text: string): unknown };

const base = () => ({
  source: { dataset: "tank/pg13", pgdata: "main", version: 13, port: 5432, socketDir: "/var/run/postgresql" },
  clone: { dataset: "tank/rehearsals/pg13-to-15" },
  to: 15,
  postgres: { port: 55432, database: "app" },
});

const problems = configProblems;

describe("parseConfig", () => {
  it("accepts a complete rehearsal and returns it typed", () => {
    const raw = {
      ...base(),
      toBinDir: "/usr/lib/postgresql/15/bin",
      mode: "link",
      steps: [
        { name: "drop-op", sql: "DROP OPERATOR !!! (bigint, NONE)", phase: "before-upgrade" },
        { name: "smoke", command: ["/opt/app/smoke"], database: "app" },
      ],
      checks: { rowCounts: "exact", checksumTables: ["public.orders_2025"], assertions: [{ name: "ok", sql: "SELECT true" }] },
      reportDir: "understudy-reports",
    };
    const c = parseConfig(raw);
    expect(c.to).toBe(15);
    expect(c.steps).toHaveLength(2);
    expect(c.source.dataset).toBe("tank/pg13");
  });

  it("accepts the demo stack's configuration, read as the root program reads it", () => {
    // Pulumi.demo.yaml: index.ts reads every `understudy:` key with stackConfigValue (JSON, else the plain string).
    const doc = yaml.load(fs.readFileSync(path.join(__dirname, "../../Pulumi.demo.yaml"), "utf8")) as { config: Record<string, unknown> };
    const raw: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(doc.config)) {
      if (k.startsWith("understudy:")) raw[k.slice("understudy:".length)] = typeof v === "string" ? stackConfigValue(v) : v;
    }
    const c = parseConfig(raw);
    expect(c.to).toBe(15);
    expect(c.source.version).toBe(13);
  });

  it("reads a plain word as a string, as `pulumi config set understudy:method logical` stores it", () => {
    // `npm run demo -- promote logical` sets these; getObject refused the plain word.
    expect(stackConfigValue("logical")).toBe("logical");
    expect(stackConfigValue("15")).toBe(15);
    expect(stackConfigValue("true")).toBe(true);
    expect(stackConfigValue('{"dataset":"tank/pg13"}')).toEqual({ dataset: "tank/pg13" });
    expect(stackConfigValue(undefined)).toBeUndefined();
    const doc = yaml.load(fs.readFileSync(path.join(__dirname, "../../Pulumi.demo.yaml"), "utf8")) as { config: Record<string, unknown> };
    const raw: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(doc.config)) {
      if (k.startsWith("understudy:")) raw[k.slice("understudy:".length)] = typeof v === "string" ? stackConfigValue(v) : v;
    }
    const c = parseConfig({ ...raw, promote: stackConfigValue("true"), method: stackConfigValue("logical"), logical: stackConfigValue('{"accept":["large-objects"]}') });
    expect(c.method).toBe("logical");
    expect(c.promote).toBe(true);
    expect(() => parseConfig({ ...raw, method: stackConfigValue("logcal") })).toThrow(/understudy:method/);
  });

  // The stack config as loose JSON, the way a user can get it wrong.
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  type Loose = Record<string, any>;
  const bad: Array<[string, (c: Loose) => void, string[]]> = [
    ["a version written as a word", (c) => (c.to = "fifteen"), ["understudy:to: Expected number, received string"]],
    ["a minor version", (c) => (c.to = 15.5), ["understudy:to: an integer major version"]],
    ["a target that is not newer", (c) => (c.to = 12), ["understudy:to: must be newer than source.version"]],
    ["a target version out of range", (c) => (c.to = 19), ["understudy:to: 18 or older"]],
    ["a path as a dataset", (c) => (c.source.dataset = "/srv/pg13"), ["understudy:source.dataset: a ZFS dataset name like tank/pg13"]],
    ["shell characters in the clone's dataset", (c) => (c.clone.dataset = "tank/x;reboot"), ["understudy:clone.dataset: a ZFS dataset name like tank/pg13"]],
    ["the live server's port for the clone", (c) => (c.postgres.port = 5432), ["understudy:postgres.port: must differ from source.port (the live server's port)"]],
    ["a privileged port", (c) => (c.postgres.port = 80), ["understudy:postgres.port: a port from 1024"]],
    ["a relative bin directory", (c) => (c.toBinDir = "usr/lib/postgresql/15/bin"), ["understudy:toBinDir: an absolute path"]],
    ["a bin directory with ..", (c) => (c.toBinDir = "/usr/lib/../../bin"), ["understudy:toBinDir: no .."]],
    ["an unknown transfer mode", (c) => (c.mode = "move"), ["understudy:mode: Invalid enum value. Expected 'link' | 'clone' | 'copy', received 'move'"]],
    ["a step with both sql and command", (c) => (c.steps = [{ name: "a", sql: "x", command: ["y"] }]), ["understudy:steps.0: give exactly one of sql, sqlFile, command"]],
    ["a step name with a space", (c) => (c.steps = [{ name: "my step", sql: "x" }]), ["understudy:steps.0.name: 1-40 letters, digits, - or _"]],
    ["a misspelt key", (c) => (c.postgres.prot = 5), ["understudy:postgres: Unrecognized key(s) in object: 'prot'"]],
    ["an unknown top-level key", (c) => (c.bogus = 1), ["understudy: Unrecognized key(s) in object: 'bogus'"]],
  ];
  for (const [what, change, expected] of bad) {
    it(`refuses ${what}, naming the field`, () => {
      const raw = base() as unknown as Loose;
      change(raw);
      expect(problems(raw)).toEqual(expected);
    });
  }

  it("lists every problem at once", () => {
    const raw = { ...base(), to: "fifteen", postgres: { port: 80 }, checks: { rowCounts: "some" } } as Record<string, unknown>;
    expect(problems(raw)).toEqual([
      "understudy:to: Expected number, received string",
      "understudy:postgres.port: a port from 1024",
      "understudy:checks.rowCounts: Invalid enum value. Expected 'exact' | 'none', received 'some'",
    ]);
  });

  it("names every missing required key", () => {
    expect(problems({})).toEqual(["understudy:source: Required", "understudy:clone: Required", "understudy:to: Required", "understudy:postgres: Required"]);
  });
});

describe("understudy:host", () => {
  it("takes a @pulumi/command-shaped connection, with a proxy", () => {
    const host = { host: "db1", user: "ops", privateKey: "k", proxy: { host: "bastion", port: 2200 } };
    expect(parseConfig({ ...base(), host }).host).toEqual(host);
  });

  it("rejects a misspelt field, naming it", () => {
    expect(() => parseConfig({ ...base(), host: { host: "db1", privatekey: "k" } })).toThrow(/understudy:host: Unrecognized key\(s\) in object: 'privatekey'/);
  });
});
