/**
 * Restricted local authentication, the pure parts and what the steps run: the peer block
 * added to a clone's pg_hba.conf / pg_ident.conf and removed again byte for byte, the parse
 * of a single-user backend's answer, the role every step command connects as (read from the
 * clone, never assumed; psql and vacuumdb never wait for a password), and a superuser name
 * that is refused, naming its field, before anything runs.
 */
import { describe, expect, it } from "vitest";
import type { Host, RunOptions, RunResult } from "../../providers/host/types";
import { PostgresDriver } from "../../providers/postgres/driver";
import {
  BLOCK_BEGIN,
  BLOCK_END,
  OWNER_MAP,
  ownerHbaBlock,
  ownerIdentBlock,
  parseSingleUserRolname,
  withOwnerBlock,
  withoutOwnerBlock,
} from "../../providers/postgres/owner-access";
import { resolveRehearsalPlan, type PgPlan } from "../../providers/plan/rehearsal";
import { runStep, stepSuperuser, SUPERUSER_FILE, type RunnerEnv } from "../../providers/runner/steps";
import type { Storage } from "../../providers/storage/types";
import { InputErrors } from "../../providers/errors";
import { SAMPLE_PG_PLAN } from "../harness/unit-fixtures";

const LIVE_HBA = [
  "# TYPE  DATABASE        USER            ADDRESS                 METHOD",
  "local   all             all                                     scram-sha-256",
  "host    all             all             127.0.0.1/32            scram-sha-256",
  "",
].join("\n");

describe("the peer block", () => {
  it("renders a local peer line for the superuser through the map, and the map line for the OS user", () => {
    expect(ownerHbaBlock("admin")).toBe(`${BLOCK_BEGIN}\nlocal   all   "admin"   peer   map=${OWNER_MAP}\n${BLOCK_END}\n`);
    expect(ownerIdentBlock("postgres", "admin")).toBe(`${BLOCK_BEGIN}\n${OWNER_MAP}   "postgres"   "admin"\n${BLOCK_END}\n`);
    // Quoted: a role called `all` is a name, not the keyword.
    expect(ownerHbaBlock("all")).toMatch(/^local {3}all {3}"all" {3}peer/m);
  });

  it("goes first in pg_hba.conf (the first matching line decides) and comes out byte for byte", () => {
    const withBlock = withOwnerBlock(LIVE_HBA, ownerHbaBlock("admin"));
    expect(withBlock.split("\n").find((l) => l.startsWith("local"))).toMatch(/^local\s+all\s+"admin"\s+peer\s+map=understudy_owner$/);
    expect(withoutOwnerBlock(withBlock)).toBe(LIVE_HBA);
    // Idempotent: granting twice leaves one block; a changed superuser replaces it.
    expect(withOwnerBlock(withBlock, ownerHbaBlock("admin"))).toBe(withBlock);
    const other = withOwnerBlock(withBlock, ownerHbaBlock("dba"));
    expect(other.match(/BEGIN understudy/g)).toHaveLength(1);
    expect(withoutOwnerBlock(other)).toBe(LIVE_HBA);
  });

  it("keeps files without a trailing newline, with CRLF lines, or empty, byte for byte", () => {
    for (const t of ["local all all md5", "local all all md5\r\nhost all all ::1/128 md5\r\n", ""]) {
      expect(withoutOwnerBlock(withOwnerBlock(t, ownerHbaBlock("admin")))).toBe(t);
      expect(withoutOwnerBlock(withOwnerBlock(t, ownerIdentBlock("postgres", "admin")))).toBe(t);
    }
  });

  it("leaves a file alone whose marker lines are not ours (no END, or BEGIN inside a line)", () => {
    const noEnd = `${BLOCK_BEGIN}\nlocal all all trust\n${LIVE_HBA}`;
    expect(withoutOwnerBlock(noEnd)).toBe(noEnd);
    const inLine = `# see ${BLOCK_BEGIN}\n${BLOCK_END}\n`;
    expect(withoutOwnerBlock(inLine)).toBe(inLine);
  });

  it("refuses names that are not plain identifiers, naming the field", () => {
    expect(() => ownerHbaBlock('admin" trust')).toThrow(/postgres\.superuser/);
    expect(() => ownerHbaBlock("admin\nlocal all all trust")).toThrow(/postgres\.superuser/);
    expect(() => ownerIdentBlock("root; id", "admin")).toThrow(/postgres\.osUser/);
  });
});

describe("the single-user backend's answer", () => {
  const out = [
    "",
    "PostgreSQL stand-alone backend 13.16",
    'backend> \t 1: rolname\t(typeid = 19, len = 64, typmod = -1, byval = f)',
    "\t----",
    '\t 1: rolname = "admin"\t(typeid = 19, len = 64, typmod = -1, byval = f)',
    "\t----",
    "backend> ",
  ].join("\n");
  it("gives the name of the role with OID 10", () => {
    expect(parseSingleUserRolname(out)).toBe("admin");
    expect(parseSingleUserRolname(out.replace('"admin"', '"Dba_1"'))).toBe("Dba_1");
  });
  it("gives nothing when no row came back", () => {
    expect(parseSingleUserRolname("PostgreSQL stand-alone backend 15.8\nbackend> \t 1: rolname\t(typeid = 19, len = 64, typmod = -1, byval = f)\n\t----\nbackend> ")).toBeUndefined();
    expect(parseSingleUserRolname("")).toBeUndefined();
  });
});

/** A host that answers the few commands a step runs on a running upgraded server, and records them all. */
class ScriptedHost implements Host {
  readonly description = "scripted";
  readonly ran: string[][] = [];
  constructor(private readonly kept: string | undefined) {}
  async run(argv: readonly string[], o?: RunOptions): Promise<RunResult> {
    return this.runAs("root", argv, o);
  }
  async runAs(_u: string, argv: readonly string[], o?: RunOptions): Promise<RunResult> {
    const a = [...argv];
    this.ran.push(a);
    const ok = (stdout = ""): RunResult => ({ stdout, stderr: "", exitCode: 0 }) as RunResult;
    if (a[0] === "cat" && a[2]?.endsWith(`/${SUPERUSER_FILE}`)) return this.kept === undefined ? ({ stdout: "", stderr: "No such file", exitCode: 1 } as RunResult) : ok(`${this.kept}\n`);
    if (a[0] === "stat") return ok(a.slice(5).map((p, i) => `${i === 0 ? "directory" : "regular file"}|755|${p}`).join("\n"));
    if (a[0].endsWith("/postgres") && a[1] === "--version") return ok(`postgres (PostgreSQL) ${a[0].includes("/13/") ? "13.16" : "15.8"}\n`);
    if (a[0] === "cat" && a[2]?.endsWith("/PG_VERSION")) return ok(a[2].includes("pg15") ? "15\n" : "13\n");
    if (a[0] === "env" && (a[2]?.endsWith("/psql") || a[2]?.endsWith("/vacuumdb"))) return ok("admin\tadmin\n");
    if (a[0] === "test" || a[0] === "cat") return { stdout: "", stderr: "", exitCode: 1 } as RunResult;
    if (o?.okExitCodes?.includes(1)) return { stdout: "", stderr: "", exitCode: 1 } as RunResult;
    throw new Error(`unexpected command: ${a.join(" ")}`);
  }
  async writeFile(): Promise<void> {}
  async close(): Promise<void> {}
}

const PLAN: PgPlan = SAMPLE_PG_PLAN;

/** The argv of `bin` (psql, vacuumdb) among what ran. */
const runsOf = (h: ScriptedHost, bin: string) => h.ran.filter((a) => a[0] === "env" && a[2]?.endsWith(`/${bin}`));

describe("the role step commands connect as", () => {
  const env = (h: Host): RunnerEnv => ({ host: h, storage: {} as Storage, pg: new PostgresDriver(h), log: () => undefined });

  it("is the bootstrap superuser the recover step kept on the clone, never the OS user's name; psql never waits for a password", async () => {
    const h = new ScriptedHost("admin");
    const r = await runStep(env(h), { step: { name: "who", kind: "sql", cutover: false, sql: "SELECT current_user" }, index: 5, pg: PLAN, prevServer: "new" });
    expect(r.superuser).toBe("admin");
    const psql = runsOf(h, "psql");
    expect(psql).toHaveLength(1);
    expect(psql[0]).toEqual(expect.arrayContaining(["-U", "admin", "-w"]));
    expect(psql[0][psql[0].indexOf("-U") + 1]).toBe("admin");
  });

  it("a command step gets PGUSER=<superuser> (the role read from the clone)", async () => {
    const h = new ScriptedHost("admin");
    const seen: Array<Record<string, string> | undefined> = [];
    const host: Host = { ...h, description: h.description, run: h.run.bind(h), writeFile: h.writeFile.bind(h), close: h.close.bind(h), runAs: async (u, a, o) => (a[0] === "smoke" ? (seen.push(o?.env), { stdout: "", stderr: "", exitCode: 0 } as RunResult) : h.runAs(u, a, o)) };
    await runStep(env(host), { step: { name: "smoke", kind: "command", cutover: false, command: ["smoke", "--fast"] }, index: 6, pg: PLAN, prevServer: "new" });
    expect(seen[0]?.PGUSER).toBe("admin");
  });

  it("post-upgrade and analyze run psql and vacuumdb as that role, with -w", async () => {
    const h = new ScriptedHost("admin");
    await runStep(env(h), { step: { name: "analyze", kind: "analyze", cutover: false }, index: 6, pg: PLAN, prevServer: "new" });
    const v = runsOf(h, "vacuumdb");
    expect(v).toHaveLength(1);
    expect(v[0]).toEqual(expect.arrayContaining(["-w", "-U", "admin"]));
  });

  it("the plan's source.superuser wins over what the clone says", async () => {
    const h = new ScriptedHost("admin");
    expect(await stepSuperuser(env(h), { ...PLAN, superuser: "dba" })).toBe("dba");
    await runStep(env(h), { step: { name: "who", kind: "sql", cutover: false, sql: "SELECT 1" }, index: 5, pg: { ...PLAN, superuser: "dba" }, prevServer: "new" });
    const psql = runsOf(h, "psql");
    expect(psql[0][psql[0].indexOf("-U") + 1]).toBe("dba");
  });
});

describe("a superuser name with shell metacharacters", () => {
  const args = (superuser: string) => ({
    source: { dataset: "tank/live", version: 13, superuser },
    clone: { dataset: "tank/clone" },
    to: 15,
    postgres: { port: 55440 },
  });
  for (const bad of ["admin; rm -rf /", "$(id)", "a b", "admin'--", "`id`", "x\ny", ""]) {
    it(`${JSON.stringify(bad)} is refused as source.superuser before anything runs`, () => {
      let err: unknown;
      try {
        resolveRehearsalPlan("r", args(bad), { cwd: "/tmp" });
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(InputErrors);
      expect((err as InputErrors).errors.map((e) => e.field)).toContain("source.superuser");
    });
  }
  it("a good name reaches the steps' plan", () => {
    expect(resolveRehearsalPlan("r", args("admin"), { cwd: "/tmp" }).source.superuser).toBe("admin");
  });
  it("the driver refuses it too, naming postgres.superuser, and runs nothing", () => {
    const h = new ScriptedHost(undefined);
    expect(() => new PostgresDriver(h, { superuser: "admin; id" })).toThrow(/postgres\.superuser/);
    expect(() => new PostgresDriver(h).as("$(id)")).toThrow(/postgres\.superuser/);
    expect(h.ran).toEqual([]);
  });
});
