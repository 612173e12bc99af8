/**
 * How often the driver looks at an installation: once per bin directory and major (whichever
 * field asks), shared by drivers given the same cache; a missing or mismatched installation is
 * looked at again. A scripted host (no PostgreSQL needed): it answers `stat` and
 * `postgres --version` and counts them.
 */
import { describe, expect, it } from "vitest";
import type { Host, RunOptions, RunResult } from "../../providers/host/types";
import { PostgresDriver } from "../../providers/postgres/driver";

class InstallHost implements Host {
  readonly description = "scripted";
  readonly ran: string[][] = [];
  /** What `postgres --version` of the 15 directory reports. */
  version15 = "15.8";
  async run(argv: readonly string[], o?: RunOptions): Promise<RunResult> {
    return this.runAs("root", argv, o);
  }
  async runAs(_u: string, argv: readonly string[], _o?: RunOptions): Promise<RunResult> {
    const a = [...argv];
    this.ran.push(a);
    const ok = (stdout = ""): RunResult => ({ stdout, stderr: "", exitCode: 0 }) as RunResult;
    if (a[0] === "stat") return ok(a.slice(5).map((p, i) => `${i === 0 ? "directory" : "regular file"}|755|${p}`).join("\n"));
    if (a[0].endsWith("/postgres") && a[1] === "--version") return ok(`postgres (PostgreSQL) ${a[0].includes("/13/") ? "13.16" : this.version15}\n`);
    throw new Error(`unscripted: ${a.join(" ")}`);
  }
  async writeFile(): Promise<void> {}
  async close(): Promise<void> {}
  looks(): number {
    return this.ran.filter((a) => a[0] === "stat").length;
  }
}

describe("installation checks", () => {
  it("one look per bin directory, whichever field asks; a driver made by as() shares it", async () => {
    const h = new InstallHost();
    const pg = new PostgresDriver(h);
    await pg.resolveInstall({ version: 15, field: "to" }, ["pg_ctl"]);
    await pg.resolveInstall({ version: 15 }, ["psql"]);
    await pg.as("admin").resolveInstall({ version: 15, field: "to" }, ["pg_isready"]);
    expect(h.looks()).toBe(1);
    await pg.resolveInstall({ version: 13, field: "from" });
    expect(h.looks()).toBe(2);
  });

  it("drivers given the same shared cache (one deployment's steps on one host) look once in all", async () => {
    const key = `test-${Date.now()}-${Math.random()}`;
    const h1 = new InstallHost();
    const h2 = new InstallHost();
    await new PostgresDriver(h1, {}, PostgresDriver.sharedInstallChecks(key)).resolveInstall({ version: 15, field: "to" });
    await new PostgresDriver(h2, {}, PostgresDriver.sharedInstallChecks(key)).resolveInstall({ version: 15 });
    expect([h1.looks(), h2.looks()]).toEqual([1, 0]);
    // Another host's key: its own look.
    const h3 = new InstallHost();
    await new PostgresDriver(h3, {}, PostgresDriver.sharedInstallChecks(`${key}-other`)).resolveInstall({ version: 15 });
    expect(h3.looks()).toBe(1);
  });

  it("another version is refused naming each caller's field, and looked at again (it may be fixed meanwhile)", async () => {
    const h = new InstallHost();
    h.version15 = "16.1";
    const pg = new PostgresDriver(h);
    await expect(pg.resolveInstall({ version: 15, field: "to" })).rejects.toThrow(/to\.version.*holds PostgreSQL 16\.1, not 15/);
    await expect(pg.resolveInstall({ version: 15, field: "target" })).rejects.toThrow(/target\.version.*holds PostgreSQL 16\.1, not 15/);
    expect(h.looks()).toBe(2);
    h.version15 = "15.8";
    await expect(pg.resolveInstall({ version: 15, field: "to" })).resolves.toMatchObject({ major: 15, fullVersion: "15.8" });
    expect(h.looks()).toBe(3);
    await pg.resolveInstall({ version: 15, field: "to" });
    expect(h.looks()).toBe(3);
  });
});
