/**
 * The rehearsal's check step initdb's the new cluster outside the clone and copies it in, as a
 * promotion does; when staging cannot run it falls back to initdb in the clone (a warning, not
 * a failure). A scripted host (no PostgreSQL here): it answers the commands up to the check
 * step's pg_upgrade path and records what ran; the first command it does not script ends the
 * run, which is where these tests stop looking.
 */
import { describe, expect, it } from "vitest";
import type { Host, RunOptions, RunResult } from "../../providers/host/types";
import { PostgresDriver } from "../../providers/postgres/driver";
import type { PgPlan } from "../../providers/plan/rehearsal";
import { runStep, type RunnerEnv } from "../../providers/runner/steps";
import type { Storage } from "../../providers/storage/types";
import { SAMPLE_PG_PLAN } from "../harness/unit-fixtures";

const PLAN: PgPlan = SAMPLE_PG_PLAN;

const CLUSTER = { encoding: "UTF8", lcCollate: "C.UTF-8", lcCtype: "C.UTF-8", localeProvider: "libc", dataChecksums: true, walSegmentBytes: 16 << 20, superuser: "postgres" };

class ScriptedHost implements Host {
  readonly description = "scripted";
  readonly ran: string[][] = [];
  constructor(private readonly o: { mktempFails?: boolean; clusterFile?: string }) {}
  async run(argv: readonly string[]): Promise<RunResult> {
    return this.runAs("root", argv);
  }
  async runAs(_u: string, argv: readonly string[], _o?: RunOptions): Promise<RunResult> {
    const a = [...argv];
    this.ran.push(a);
    const ok = (stdout = ""): RunResult => ({ stdout, stderr: "", exitCode: 0 }) as RunResult;
    const no = (stderr = ""): RunResult => ({ stdout: "", stderr, exitCode: 1 }) as RunResult;
    if (a[0] === "cat" && a[2]?.endsWith("/understudy-superuser")) return ok("postgres\n");
    if (a[0] === "cat" && a[2]?.endsWith("/understudy-cluster-settings.json")) return this.o.clusterFile === undefined ? no("No such file") : ok(this.o.clusterFile);
    if (a[0] === "test" && a[1] === "-e" && a[2] === PLAN.newDataDir) return no();
    if (a[0] === "mktemp") return this.o.mktempFails ? no("mktemp: failed to create directory via template '/tmp/understudy-pg.XXXXXXXX': No space left on device") : ok("/tmp/understudy-pg.abcd1234\n");
    if (a[0] === "stat") return ok(a.slice(5).map((p, i) => `${i === 0 ? "directory" : "regular file"}|755|${p}`).join("\n"));
    if (a[0].endsWith("/postgres") && a[1] === "--version") return ok(`postgres (PostgreSQL) ${a[0].includes("/13/") ? "13.16" : "15.8"}\n`);
    if (a[0] === "cat" && a[2]?.startsWith("/tmp/")) return no("No such file");
    if (a[0] === "cat" && a[2]?.endsWith("/PG_VERSION")) return ok(a[2].includes("pg15") ? "15\n" : "13\n");
    if (a[0] === "test" || (a[0] === "mkdir" && a.includes("/tmp/understudy-pg.abcd1234/pgdata"))) return ok();
    if (a[0] === "env" && a[2]?.endsWith("/initdb")) return ok();
    if (a[0] === "cp" || (a[0] === "rm" && a[1] === "-rf")) return ok();
    throw new Error(`unscripted: ${a.join(" ")}`);
  }
  async writeFile(): Promise<void> {}
  async close(): Promise<void> {}
}

async function check(h: ScriptedHost): Promise<{ error: string; log: string[] }> {
  const log: string[] = [];
  const env: RunnerEnv = { host: h, storage: {} as Storage, pg: new PostgresDriver(h), log: (m) => log.push(m) };
  const error = await runStep(env, { step: { name: "check", kind: "check", cutover: false }, index: 2, pg: PLAN, prevServer: "none" }).then(
    () => "",
    (e: unknown) => String(e),
  );
  return { error, log };
}

describe("the check step's new cluster", () => {
  it("is staged outside the clone (mktemp, then initdb there) when the recover step kept the cluster's settings", async () => {
    const h = new ScriptedHost({ clusterFile: JSON.stringify(CLUSTER) });
    const r = await check(h);
    const ran = h.ran.map((a) => a.join(" "));
    const initdb = ran.findIndex((c) => /\/15\/bin\/initdb -D \/tmp\/understudy-pg\.abcd1234\/pgdata /.test(c));
    const cp = ran.indexOf("cp -a -- /tmp/understudy-pg.abcd1234/pgdata /srv/tank/clone/pg15");
    const rm = ran.indexOf("rm -rf -- /tmp/understudy-pg.abcd1234");
    expect(initdb).toBeGreaterThan(ran.indexOf("mktemp -d /tmp/understudy-pg.XXXXXXXX"));
    expect(cp).toBeGreaterThan(initdb);
    expect(rm).toBeGreaterThan(cp);
    expect(r.log.join("\n")).not.toMatch(/warning/);
    // Then pg_upgrade --check's own preparation (unscripted here: where this test stops looking).
    expect(r.error).toMatch(/unscripted: .*\/13\/bin\/pg_ctl status -D \/srv\/tank\/clone\/pg13/);
  });

  it("falls back to initdb in the clone when staging cannot run: a warning, then the check goes on", async () => {
    const h = new ScriptedHost({ clusterFile: JSON.stringify(CLUSTER), mktempFails: true });
    const r = await check(h);
    expect(r.log.join("\n")).toMatch(/warning: the new cluster could not be initialized outside the clone \(.*mktemp.*\): initdb runs in the clone/);
    // Past staging: pg_upgrade --check's own preparation (the old cluster's status) is what runs next.
    expect(r.error).toMatch(/unscripted: .*\/13\/bin\/pg_ctl status -D \/srv\/tank\/clone\/pg13/);
    expect(h.ran.some((a) => a[0] === "cp")).toBe(false);
  });

  it("without the kept settings (a clone made before they were kept) nothing is staged", async () => {
    const h = new ScriptedHost({});
    await check(h);
    expect(h.ran.some((a) => a[0] === "mktemp")).toBe(false);
  });
});
