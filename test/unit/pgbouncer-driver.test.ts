/**
 * The driver's command composition, against a scripted fake Host (no PgBouncer, no
 * PostgreSQL): what runs, as whom, in which order, and where secrets go. The real thing is
 * exercised in test/integration/pgbouncer-driver.test.ts.
 */
import { describe, expect, it } from "vitest";
import type { Host, RunOptions, RunResult } from "../../providers/host/types";
import { HostCommandError } from "../../providers/host/types";
import { PgBouncerEndpoint, PgBouncerError } from "../../providers/endpoint/pgbouncer";

interface Call {
  user: string | null;
  argv: string[];
  input?: string;
}

type Responder = (c: Call) => Partial<RunResult> | undefined;

class FakeHost implements Host {
  readonly description = "fake-host";
  calls: Call[] = [];
  constructor(private readonly respond: Responder) {}
  private exec(user: string | null, argv: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
    const call: Call = { user, argv: [...argv], input: opts.input === undefined ? undefined : String(opts.input) };
    this.calls.push(call);
    const r = { stdout: "", stderr: "", exitCode: 0, durationMs: 1, ...(this.respond(call) ?? {}) };
    if (!(opts.okExitCodes ?? [0]).includes(r.exitCode)) {
      return Promise.reject(new HostCommandError({ host: this.description, argv, exitCode: r.exitCode, stdout: r.stdout, stderr: r.stderr, redact: opts.redact }));
    }
    return Promise.resolve(r);
  }
  run(argv: readonly string[], opts?: RunOptions) {
    return this.exec(null, argv, opts);
  }
  runAs(user: string, argv: readonly string[], opts?: RunOptions) {
    return this.exec(user, argv, opts);
  }
  async writeFile(): Promise<void> {
    throw new Error("the driver writes through runAs, not writeFile");
  }
  async close(): Promise<void> {}
}

/** A host where the config dir does not exist yet and `ss` prints `ss`. */
function freshHost(ss: string): FakeHost {
  return new FakeHost((c) => {
    const a = c.argv;
    if (a[0] === "test") return { exitCode: 1 };
    if (a[0] === "ss") return { stdout: ss };
    if (a[0] === "sh" && a[2]?.includes("exit 3")) return { exitCode: 3 };
    return undefined;
  });
}

const cfg = {
  name: "edge",
  configDir: "/srv/pgb/edge",
  listenPort: 55599,
  authType: "scram-sha-256" as const,
  adminPassword: "Adm1n-Secret",
  users: [{ name: "app", password: "App-Secret-9" }],
  databases: { app: { host: "127.0.0.1", port: 5432, dbname: "app" } },
  startTimeoutMs: 10_000, // the third dead check decides long before; a loaded machine needs the room
};

describe("PgBouncerEndpoint command composition", () => {
  it("a port in use stops ensure() before anything is created or started", async () => {
    const host = freshHost('LISTEN 0 244 127.0.0.1:55599 0.0.0.0:* users:(("postgres",pid=4242,fd=6))\n');
    const ep = new PgBouncerEndpoint(host, cfg);
    await expect(ep.ensure()).rejects.toThrow(
      /^listenPort: port 55599 on fake-host is already in use \(by postgres pid 4242\); choose another listenPort .* Nothing was started\.$/,
    );
    const verbs = host.calls.map((c) => c.argv[0]);
    expect(verbs).not.toContain("mkdir");
    expect(verbs).not.toContain("/usr/sbin/pgbouncer");
    expect(host.calls.some((c) => c.input !== undefined)).toBe(false);
  });

  it("creates the dir as root, writes files as postgres through stdin with umask 077, starts as postgres", async () => {
    const host = freshHost("");
    const ep = new PgBouncerEndpoint(host, cfg);
    // Nothing answers on the admin console here: ensure() ends with a clear start error.
    const e = await ep.ensure().then(
      () => undefined,
      (x: unknown) => x as Error,
    );
    expect(e).toBeInstanceOf(PgBouncerError);
    expect(e?.message).toMatch(/PgBouncer "edge" on fake-host \(port 55599\) exited right after start/);

    const mkdir = host.calls.findIndex((c) => c.argv[0] === "mkdir" && c.argv.includes("/srv/pgb/edge"));
    expect(host.calls[mkdir]).toEqual({ user: "root", argv: ["mkdir", "-m", "0755", "--", "/srv/pgb/edge"], input: undefined });
    expect(host.calls[mkdir + 1]).toEqual({ user: "root", argv: ["chown", "--", "postgres:", "/srv/pgb/edge"], input: undefined });

    const writes = host.calls.filter((c) => c.input !== undefined);
    const byTarget = new Map(writes.map((w) => [w.argv[w.argv.length - 1], w]));
    expect([...byTarget.keys()].sort()).toEqual([
      "/srv/pgb/edge/.understudy-pgbouncer",
      "/srv/pgb/edge/databases.ini",
      "/srv/pgb/edge/pgbouncer.ini",
      "/srv/pgb/edge/userlist.txt",
    ]);
    for (const w of writes) {
      expect(w.user).toBe("postgres");
      expect(w.argv.slice(0, 2)).toEqual(["sh", "-c"]);
      expect(w.argv[2]).toMatch(/^umask 077 && cat > "\$1"/);
    }
    const ul = byTarget.get("/srv/pgb/edge/userlist.txt")!;
    expect(ul.argv).toContain("0600");
    expect(ul.input).toBe(`"understudy_admin" "Adm1n-Secret"\n"app" "App-Secret-9"\n`);
    // Secrets travel on stdin only: never in any argv.
    for (const c of host.calls) {
      expect(c.argv.join(" ")).not.toContain("Secret");
    }
    expect(byTarget.get("/srv/pgb/edge/pgbouncer.ini")!.input).toContain("%include /srv/pgb/edge/databases.ini");

    const start = host.calls.find((c) => c.argv[0] === "/usr/sbin/pgbouncer");
    expect(start).toEqual({ user: "postgres", argv: ["/usr/sbin/pgbouncer", "-d", "/srv/pgb/edge/pgbouncer.ini"], input: undefined });
    // The marker is written before anything else in the new directory.
    const firstWrite = host.calls.findIndex((c) => c.input !== undefined);
    expect(host.calls[firstWrite].argv.at(-1)).toBe("/srv/pgb/edge/.understudy-pgbouncer");
  });

  it("destroy() of a directory without our marker refuses and removes nothing", async () => {
    const host = new FakeHost((c) => {
      if (c.argv[0] === "test") return { exitCode: 0 };
      if (c.argv[0] === "sh" && c.argv[2]?.includes("exit 3")) return { exitCode: 3 };
      return undefined;
    });
    const ep = new PgBouncerEndpoint(host, cfg);
    await expect(ep.destroy()).rejects.toThrow(/\/srv\/pgb\/edge exists but was not created by this driver for instance "edge".*refusing to touch it/);
    expect(host.calls.map((c) => c.argv[0])).not.toContain("rm");
    expect(host.calls.map((c) => c.argv[0])).not.toContain("kill");
  });

  it("destroy() of our directory stops nothing that is not running and removes exactly that directory", async () => {
    const host = new FakeHost((c) => {
      if (c.argv[0] === "test") return { exitCode: 0 };
      if (c.argv[0] === "sh" && c.argv[4] === "/srv/pgb/edge/.understudy-pgbouncer") return { stdout: "understudy-pgbouncer\ninstance=edge\n" };
      return undefined; // status script prints nothing: not running
    });
    const ep = new PgBouncerEndpoint(host, cfg);
    expect(await ep.destroy()).toBe(true);
    const rm = host.calls.filter((c) => c.argv[0] === "rm");
    expect(rm).toEqual([{ user: "root", argv: ["rm", "-rf", "--", "/srv/pgb/edge"], input: undefined }]);
    expect(host.calls.map((c) => c.argv[0])).not.toContain("kill");
  });

  it("a marker for another instance name is not ours", async () => {
    const host = new FakeHost((c) => {
      if (c.argv[0] === "test") return { exitCode: 0 };
      if (c.argv[0] === "sh" && c.argv[4] === "/srv/pgb/edge/.understudy-pgbouncer") return { stdout: "understudy-pgbouncer\ninstance=edge2\n" };
      return undefined;
    });
    await expect(new PgBouncerEndpoint(host, cfg).destroy()).rejects.toThrow(/not created by this driver/);
    expect(host.calls.map((c) => c.argv[0])).not.toContain("rm");
  });
});
