/**
 * The rehearsal's plan: built-in and user steps in order, and every rule on user steps,
 * each error naming the step and the field. Plus the UpgradeRehearsal constructor's own
 * input checks, run without an engine (pulumi.runtime.setMocks): it throws before any
 * custom resource is registered.
 */
import { beforeAll, describe, expect, it } from "vitest";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import { planSteps, UpgradeRehearsalArgs } from "../../components/upgrade-rehearsal";
import { NoHostZfs } from "../harness/no-host-storage";

const BUILTIN = ["recover", "check", "upgrade", "start", "post-upgrade", "analyze", "verify"];

describe("planSteps", () => {
  it("without user steps: the built-in steps in order", () => {
    const plan = planSteps();
    expect(plan.map((s) => s.name)).toEqual(BUILTIN);
    expect(plan.map((s) => s.kind)).toEqual(BUILTIN);
    expect(plan.find((s) => s.name === "upgrade")!.cutover).toBe(true);
    expect(plan.find((s) => s.name === "recover")!.cutover).toBe(false);
    expect(plan.find((s) => s.name === "verify")!.cutover).toBe(false);
  });

  it("puts before-upgrade steps after recover, after-upgrade steps (the default) before verify, each in the given order", () => {
    const plan = planSteps([
      { name: "smoke", sql: "SELECT 1" },
      { name: "drop-op", sql: "DROP OPERATOR !!! (bigint, NONE)", phase: "before-upgrade" },
      { name: "app", command: ["/opt/app/smoke", "--quick"] },
      { name: "fix_2", sql: "SELECT 2", phase: "before-upgrade", database: "app" },
    ]);
    expect(plan.map((s) => s.name)).toEqual(["recover", "drop-op", "fix_2", "check", "upgrade", "start", "post-upgrade", "analyze", "smoke", "app", "verify"]);
    const by = (n: string) => plan.find((s) => s.name === n)!;
    expect(by("drop-op")).toMatchObject({ kind: "sql", cutover: true }); // before the upgrade: replayed during a promotion
    expect(by("smoke")).toMatchObject({ kind: "sql", cutover: false });
    expect(by("app")).toMatchObject({ kind: "command", command: ["/opt/app/smoke", "--quick"], cutover: false });
    expect(by("fix_2").database).toBe("app");
    expect(by("smoke")).not.toHaveProperty("phase");
  });

  it("honours an explicit cutover and timeout", () => {
    const plan = planSteps([{ name: "warm", sql: "SELECT 1", cutover: true, timeoutMs: 5000 }]);
    expect(plan.find((s) => s.name === "warm")).toMatchObject({ cutover: true, timeoutMs: 5000 });
  });

  it("reads sqlFile when the program runs", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "understudy-plan-"));
    try {
      fs.writeFileSync(path.join(dir, "fix.sql"), "DROP OPERATOR !!! (bigint, NONE);\n");
      const plan = planSteps([{ name: "fix", sqlFile: path.join(dir, "fix.sql"), phase: "before-upgrade" }]);
      expect(plan[1]).toMatchObject({ name: "fix", kind: "sql", sql: "DROP OPERATOR !!! (bigint, NONE);\n" });
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  const bad: Array<[string, unknown[], RegExp]> = [
    ["a name with a space", [{ name: "my step", sql: "SELECT 1" }], /^steps\[0\] \(my step\)\.name: must be 1-40 letters, digits, - or _$/],
    ["a name with shell characters", [{ name: "x;rm", sql: "SELECT 1" }], /^steps\[0\] \(x;rm\)\.name: must be 1-40/],
    ["a missing name", [{ sql: "SELECT 1" }], /^steps\[0\]\.name: must be 1-40/],
    ["a 41-character name", [{ name: "a".repeat(41), sql: "SELECT 1" }], /\.name: must be 1-40/],
    ["a built-in name", [{ name: "upgrade", sql: "SELECT 1" }], /^steps\[0\] \(upgrade\)\.name: "upgrade" is a built-in step name$/],
    ["a name used twice", [{ name: "a", sql: "SELECT 1" }, { name: "a", sql: "SELECT 2" }], /^steps\[1\] \(a\)\.name: "a" is used twice$/],
    ["neither sql, sqlFile nor command", [{ name: "a" }], /^steps\[0\] \(a\): give exactly one of sql, sqlFile, command$/],
    ["both sql and command", [{ name: "a", sql: "SELECT 1", command: ["true"] }], /^steps\[0\] \(a\): give exactly one of/],
    ["empty sql", [{ name: "a", sql: "  \n" }], /^steps\[0\] \(a\)\.sql: is empty$/],
    ["an unreadable sqlFile", [{ name: "a", sqlFile: "/nonexistent/fix.sql" }], /^steps\[0\] \(a\)\.sqlFile: cannot read \/nonexistent\/fix\.sql: .*ENOENT/],
    ["an empty command", [{ name: "a", command: [] }], /^steps\[0\] \(a\)\.command: must be a non-empty argv array/],
    ["a command with a newline", [{ name: "a", command: ["sh", "-c", "x\ny"] }], /^steps\[0\] \(a\)\.command: must be a non-empty argv array of single-line strings/],
    ["a command that is a string", [{ name: "a", command: "rm -rf /" }], /^steps\[0\] \(a\)\.command: must be/],
    ["an unknown phase", [{ name: "a", sql: "SELECT 1", phase: "during" }], /^steps\[0\] \(a\)\.phase: must be before-upgrade or after-upgrade$/],
    ["a null step", [null], /^steps\[0\]: must be an object$/],
  ];
  for (const [what, steps, expected] of bad) {
    it(`refuses ${what}, naming the step and the field`, () => {
      expect(() => planSteps(steps as never)).toThrow(expected);
    });
  }
});

describe("UpgradeRehearsal input checks (no engine)", () => {
  const registered: string[] = [];
  beforeAll(async () => {
    await pulumi.runtime.setMocks(
      {
        newResource: (a) => {
          registered.push(a.type);
          // The last step's outputs carry the report, which the component renders.
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

  const args = (over: Partial<UpgradeRehearsalArgs> = {}): UpgradeRehearsalArgs => ({
    storage: new NoHostZfs(),
    source: { dataset: "tank/pg13", version: 13, port: 5432 },
    clone: { dataset: "tank/rehearsals/r" },
    to: 15,
    postgres: { port: 55432 },
    ...over,
  });

  // Each: the property path the SDK's InputPropertiesError carries, and the line of the message.
  const bad: Array<[string, Partial<UpgradeRehearsalArgs>, string, RegExp]> = [
    ["a version that is not a number", { to: "fifteen" as never }, "to", /\n {2}- to: "fifteen" is not a PostgreSQL major version/],
    ["a version that is not newer", { to: 13 }, "to", /\n {2}- to: 13 must be a major version newer than source\.version \(13\)$/m],
    ["a minor version", { to: 15.2 }, "to", /- to: 15\.2 is not a major version/],
    ["an unknown transfer mode", { mode: "move" as never }, "mode", /- mode: "move" is not one of link, clone, copy$/m],
    ["a checksum table that is not schema.table", { checks: { checksumTables: ["orders; DROP TABLE x"] } }, "checks.checksumTables", /checks\.checksumTables: "orders; DROP TABLE x" must be schema\.table or database\.schema\.table/],
    ["an assertion without sql", { checks: { assertions: [{ name: "x", sql: " " }] } }, "checks.assertions", /checks\.assertions: each needs a name and sql$/m],
    ["a bad user step", { steps: [{ name: "verify", sql: "SELECT 1" }] }, "steps[0] (verify).name", /steps\[0\] \(verify\)\.name: "verify" is a built-in step name$/m],
    ["a pgdata outside the dataset", { source: { dataset: "tank/pg13", version: 13, pgdata: "../etc" } }, "source.pgdata", /source\.pgdata: "\/\.\.\/etc" must not contain "\.\." components/],
    ["a socket directory PgBouncer could not take later", { postgres: { port: 55432, socketDir: "/run/pg+15" } }, "postgres.socketDir", /postgres\.socketDir: "\/run\/pg\+15" contains "\+"/],
  ];
  for (const [what, over, field, expected] of bad) {
    it(`refuses ${what} before any resource of ours is registered`, async () => {
      const { UpgradeRehearsal } = await import("../../components/upgrade-rehearsal");
      registered.length = 0;
      let err: unknown;
      try {
        new UpgradeRehearsal("r", args(over));
      } catch (e) {
        err = e;
      }
      expect(pulumi.InputPropertiesError.isInstance(err), String(err)).toBe(true);
      const e = err as InstanceType<typeof pulumi.InputPropertiesError>;
      expect(e.message).toMatch(expected);
      expect(e.message).toMatch(/^r: \d+ invalid arguments? \(nothing was declared or run\):/);
      expect(e.errors.map((x) => x.propertyPath)).toContain(field);
      expect(registered.filter((t) => t.startsWith("pulumi-nodejs:dynamic/"))).toEqual([]);
    });
  }

  it("a Promotion whose new live has a socket directory PgBouncer would refuse (/run/pg+15) fails at construction, naming newLive.socketDir: no endpoint, no cut-over declared", async () => {
    const { UpgradeRehearsal } = await import("../../components/upgrade-rehearsal");
    const { Promotion } = await import("../../components/promotion");
    const r = new UpgradeRehearsal("pr", args());
    registered.length = 0;
    let err: unknown;
    try {
      new Promotion("go-live", { rehearsal: r, promote: true, endpoint: { name: "app", listenPort: 6432, database: "app" }, newLive: { socketDir: "/run/pg+15" } });
    } catch (e) {
      err = e;
    }
    expect(pulumi.InputPropertiesError.isInstance(err) || pulumi.InputPropertyError.isInstance(err), String(err)).toBe(true);
    expect(String((err as Error).message)).toMatch(/newLive\.socketDir: "\/run\/pg\+15" contains "\+"/);
    await new Promise((res) => setTimeout(res, 200));
    expect(registered.filter((t) => /CutOver|PgBouncerEndpoint/.test(t))).toEqual([]);
  });

  it("registers the preflight first, then the snapshot, the clone and one step per planned step", async () => {
    const { UpgradeRehearsal } = await import("../../components/upgrade-rehearsal");
    registered.length = 0;
    const r = new UpgradeRehearsal("ok", args({ steps: [{ name: "smoke", sql: "SELECT 1" }] }));
    await new Promise((res) => r.port.apply(res));
    await new Promise((res) => setTimeout(res, 200));
    const ours = registered.filter((t) => t.startsWith("pulumi-nodejs:dynamic/understudy:")).map((t) => t.split(":").pop());
    expect(ours[0]).toBe("RehearsalPreflight");
    expect(ours.filter((t) => t === "RehearsalStep")).toHaveLength(8);
    expect(ours).toContain("ZfsSnapshot");
    expect(ours).toContain("ZfsClone");
  });
});
