/**
 * The rehearsal's preflight (providers/rehearsal/preflight.ts): what it concludes from what
 * the host reports. The host here is a script of answers (this is a unit test: no ZFS or
 * PostgreSQL); test/integration/rehearsal.test.ts runs the same checks on the real host
 * (PostgreSQL 16 not installed, a missing bin directory, ports taken) and shows that
 * nothing is snapshotted or cloned when they fail.
 */
import { describe, expect, it } from "vitest";
import type { Host, RunOptions, RunResult } from "../../providers/host/types";
import { HostCommandError } from "../../providers/host/types";
import { PreflightInputs, preflightProvider, runPreflight } from "../../providers/rehearsal/preflight";

interface World {
  /** Bin directories that exist, with the version their `postgres --version` reports. */
  installs: Record<string, string>;
  /** Datasets: mountpoint and owner mark. */
  datasets: Record<string, { mountpoint?: string; owner?: string }>;
  snapshots?: string[];
  /** Files and their content. */
  files: Record<string, string>;
  /** Ports something listens on (TCP). */
  listening: number[];
  /** Live PIDs. */
  pids?: number[];
}

/** Answers the commands the preflight runs, from `world`; fails the test on anything else. */
class ScriptedHost implements Host {
  readonly description = "db1";
  readonly ran: string[] = [];
  constructor(private readonly w: World) {}

  private ok(stdout: string, exitCode = 0): RunResult {
    return { stdout, stderr: "", exitCode, durationMs: 1 };
  }

  async run(argv: readonly string[], o: RunOptions = {}): Promise<RunResult> {
    const a = [...argv];
    this.ran.push(a.join(" "));
    const allowed = (r: RunResult) => {
      if (!(o.okExitCodes ?? [0]).includes(r.exitCode)) throw new HostCommandError({ host: this.description, argv: a, exitCode: r.exitCode, stdout: r.stdout, stderr: r.stderr });
      return r;
    };
    if (a[0] === "stat") {
      const paths = a.slice(a.indexOf("--") + 1);
      const lines = paths.flatMap((p) => {
        const dir = Object.keys(this.w.installs).find((d) => p === d || p.startsWith(d + "/"));
        if (!dir) return [];
        return [p === dir ? `directory|755|${p}` : `regular file|755|${p}`];
      });
      return allowed(this.ok(lines.join("\n") + "\n", lines.length === paths.length ? 0 : 1));
    }
    if (a[0].endsWith("/postgres") && a[1] === "--version") {
      const dir = a[0].slice(0, -"/postgres".length);
      return this.ok(`postgres (PostgreSQL) ${this.w.installs[dir]} (Debian)\n`);
    }
    if (a[0] === "zfs" && a[1] === "get") {
      const name = a[a.length - 1];
      const ds = this.w.datasets[name];
      const isSnap = (this.w.snapshots ?? []).includes(name);
      if (!ds && !isSnap) throw new HostCommandError({ host: this.description, argv: a, exitCode: 1, stdout: "", stderr: `cannot open '${name}': dataset does not exist` });
      if (a.includes("all")) {
        const props = isSnap
          ? ["type\tsnapshot", "creation\t1", "used\t0", "referenced\t0", "understudy:owner\t-"]
          : ["type\tfilesystem", "creation\t1", "used\t0", "referenced\t0", `mountpoint\t${ds.mountpoint ?? "-"}`, `mounted\t${ds.mountpoint ? "yes" : "no"}`, `understudy:owner\t${ds.owner ?? "-"}`];
        return this.ok(props.join("\n") + "\n");
      }
      return this.ok(`${ds?.owner ?? "-"}\n`);
    }
    if (a[0] === "cat" || a[0] === "head") {
      const f = a[a.length - 1];
      return allowed(f in this.w.files ? this.ok(this.w.files[f]) : { stdout: "", stderr: "No such file", exitCode: 1, durationMs: 1 });
    }
    if (a[0] === "find") {
      const root = a[1];
      return this.ok(Object.keys(this.w.files).filter((f) => f.startsWith(root + "/") && f.endsWith("/postmaster.pid")).join("\n") + "\n");
    }
    if (a[0] === "kill" && a[1] === "-0") return allowed(this.ok("", (this.w.pids ?? []).includes(Number(a[2])) ? 0 : 1));
    if (a[0] === "ss") return this.ok(this.w.listening.map((p) => `LISTEN 0      244        127.0.0.1:${p}      0.0.0.0:*`).join("\n") + "\n");
    if (a[0] === "test" && a[1] === "-e") return allowed(this.ok("", a[2] in this.w.files ? 0 : 1));
    throw new Error(`the preflight ran an unexpected command: ${a.join(" ")}`);
  }
  async runAs(_u: string, argv: readonly string[], o?: RunOptions): Promise<RunResult> {
    return this.run(argv, o);
  }
  async writeFile(path: string): Promise<void> {
    throw new Error(`the preflight wrote ${path}: it must only read`);
  }
  async close(): Promise<void> {}
}

const OWNER = "prog/stk/ZfsClone/r-clone";
const inputs = (over: Partial<PreflightInputs> = {}): PreflightInputs => ({
  label: "r/preflight",
  from: { version: 13 },
  to: { version: 15 },
  osUser: "postgres",
  ports: [
    { field: "postgres.port", port: 55432 },
    { field: "postgres.tempPort", port: 55433 },
    { field: "postgres.tempPort+1 (pg_upgrade's old server)", port: 55434 },
    { field: "postgres.tempPort+2 (pg_upgrade's new server)", port: 55435 },
  ],
  socketDir: "/var/run/postgresql",
  source: { dataset: "tank/pg13", pgdata: "main" },
  clone: { dataset: "tank/rehearsals/r", owner: OWNER },
  ...over,
});

const world = (over: Partial<World> = {}): World => ({
  installs: { "/usr/lib/postgresql/13/bin": "13.16", "/usr/lib/postgresql/15/bin": "15.8" },
  datasets: { "tank/pg13": { mountpoint: "/srv/tank/pg13" }, "tank/rehearsals": { mountpoint: "/srv/tank/rehearsals" } },
  files: { "/srv/tank/pg13/main/PG_VERSION": "13\n" },
  listening: [5432],
  ...over,
});

describe("runPreflight", () => {
  it("passes on a ready host, reports both versions, and only reads", async () => {
    const host = new ScriptedHost(world());
    const r = await runPreflight(host, inputs());
    expect(r).toEqual({ problems: [], fromVersion: "13.16", toVersion: "15.8" });
    expect(host.ran.some((c) => c.startsWith("ss "))).toBe(true);
  });

  it("refuses a standby (or a cluster in archive recovery) as source, naming source.dataset", async () => {
    for (const f of ["standby.signal", "recovery.signal", "recovery.conf"]) {
      const host = new ScriptedHost(world({ files: { "/srv/tank/pg13/main/PG_VERSION": "13\n", [`/srv/tank/pg13/main/${f}`]: "" } }));
      const r = await runPreflight(host, inputs());
      expect(r.problems, f).toEqual([expect.stringMatching(new RegExp(`^source\\.dataset: /srv/tank/pg13/main on db1 holds ${f.replace(".", "\\.")}: the source is a standby`))]);
    }
    // Positive control: the checks ran on the primary too, and found nothing.
    const host = new ScriptedHost(world());
    expect((await runPreflight(host, inputs())).problems).toEqual([]);
    expect(host.ran).toContain("test -e /srv/tank/pg13/main/standby.signal");
  });

  it("lists every problem at once, each naming the config field", async () => {
    const host = new ScriptedHost(
      world({
        installs: { "/usr/lib/postgresql/13/bin": "13.16" },
        datasets: { "tank/pg13": { mountpoint: "/srv/tank/pg13" } },
        files: { "/srv/tank/pg13/main/PG_VERSION": "14\n", "/var/run/postgresql/.s.PGSQL.55432.lock": "" },
        listening: [55435],
      }),
    );
    const r = await runPreflight(host, inputs());
    expect(r.problems).toEqual([
      "to: 15 is not installed on db1: /usr/lib/postgresql/15/bin/pg_ctl not found (apt-get install postgresql-15, or set toBinDir)",
      "source.version: 13, but /srv/tank/pg13/main on db1 holds a PostgreSQL 14 cluster",
      "clone.dataset: its parent tank/rehearsals does not exist on db1",
      "postgres.port: port 55432 is already in use on db1",
      "postgres.tempPort+2 (pg_upgrade's new server): port 55435 is already in use on db1",
    ]);
  });

  it("names a missing bin directory, source dataset, data directory and snapshot", async () => {
    const host = new ScriptedHost(world({ datasets: { "tank/rehearsals": {} }, files: {} }));
    const r = await runPreflight(host, inputs({ to: { version: 15, binDir: "/opt/pg15/bin" }, source: { dataset: "tank/pg13", pgdata: "main", snapshot: "nightly" } }));
    expect(r.problems).toEqual(["toBinDir: /opt/pg15/bin does not exist on db1", "source.dataset: tank/pg13 does not exist on db1"]);
    const host2 = new ScriptedHost(world({ files: {} }));
    const r2 = await runPreflight(host2, inputs({ source: { dataset: "tank/pg13", pgdata: "data", snapshot: "nightly" } }));
    expect(r2.problems).toEqual([
      "source.pgdata: /srv/tank/pg13/data on db1 is not a PostgreSQL data directory (no PG_VERSION readable by postgres)",
      "snapshot: tank/pg13@nightly does not exist on db1",
    ]);
  });

  it("refuses a clone dataset that exists and is not ours", async () => {
    const w = world();
    w.datasets["tank/rehearsals/r"] = { mountpoint: "/srv/tank/rehearsals/r", owner: "other/stack/ZfsClone/x" };
    expect((await runPreflight(new ScriptedHost(w), inputs())).problems).toEqual([
      "clone.dataset: tank/rehearsals/r already exists on db1 (created by other/stack/ZfsClone/x); choose another name",
    ]);
    w.datasets["tank/rehearsals/r"] = { mountpoint: "/srv/tank/rehearsals/r" };
    expect((await runPreflight(new ScriptedHost(w), inputs())).problems).toEqual([
      "clone.dataset: tank/rehearsals/r already exists on db1 (not created by Understudy); choose another name",
    ]);
  });

  it("does not count a port held by the upgraded server on our own clone (a re-check after a config change)", async () => {
    const w = world({ listening: [55432], pids: [4242] });
    w.datasets["tank/rehearsals/r"] = { mountpoint: "/srv/tank/rehearsals/r", owner: OWNER };
    w.files["/srv/tank/rehearsals/r/main.pg15/postmaster.pid"] = "4242\n/srv/tank/rehearsals/r/main.pg15\n1764000000\n55432\n/var/run/postgresql\n";
    w.files["/var/run/postgresql/.s.PGSQL.55432.lock"] = "";
    expect((await runPreflight(new ScriptedHost(w), inputs())).problems).toEqual([]);
    // A dead server's leftover pid file does not excuse whoever holds the port now.
    w.pids = [];
    expect((await runPreflight(new ScriptedHost(w), inputs())).problems).toEqual(["postgres.port: port 55432 is already in use on db1"]);
  });
});

describe("preflight check (before anything runs, also in preview)", () => {
  const check = async (over: Partial<PreflightInputs>) => (await preflightProvider.check!({} as never, inputs(over) as never)).failures ?? [];

  it("accepts good inputs", async () => {
    expect(await check({})).toEqual([]);
  });

  it("refuses the same port used twice, naming both fields", async () => {
    const ports = [
      { field: "postgres.port", port: 55432 },
      { field: "postgres.tempPort", port: 55430 },
      { field: "postgres.tempPort+1 (pg_upgrade's old server)", port: 55431 },
      { field: "postgres.tempPort+2 (pg_upgrade's new server)", port: 55432 },
    ];
    expect(await check({ ports })).toEqual([
      { property: "ports", reason: "postgres.tempPort+2 (pg_upgrade's new server): port 55432 is also postgres.port; the rehearsal needs distinct ports" },
    ]);
  });

  it("refuses bad versions, paths, ports and names with the config field", async () => {
    const f = await check({
      to: { version: 16.1, binDir: "relative/bin" },
      ports: [{ field: "postgres.port", port: 80 }],
      socketDir: "/tmp/x y",
      clone: { dataset: "tank/x;y", owner: OWNER },
    });
    expect(f.map((x) => x.reason)).toEqual([
      "to: 16.1 is not a major version: since PostgreSQL 10 the major is one number (use 16)",
      'toBinDir: "relative/bin" must be an absolute path',
      'postgres.socketDir: "/tmp/x y" contains " "; a socket directory may only use letters, digits and _ . - (it is passed through shells and ini files)',
      "postgres.port: 80 is not a port in 1024..65535",
      'clone.dataset: "tank/x;y" is not a valid ZFS name: dataset component contains ";"; only letters, digits and _ - . : are allowed',
    ]);
  });
});
