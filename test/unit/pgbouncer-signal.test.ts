/**
 * PgBouncer's stop signals a pid only while it is still that PgBouncer: the script every look
 * and signal goes through, run for real by `sh` against real processes (no root needed).
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { afterEach, describe, expect, it } from "vitest";
import { SIGNAL_IF_OURS_SCRIPT } from "../../providers/endpoint/pgbouncer";

const INI = "/var/lib/understudy/pgbouncer/edge/pgbouncer.ini";
const started: ChildProcess[] = [];
afterEach(() => {
  for (const c of started.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
});

/** A process whose command line reads `args` (argv[0] set with bash's exec -a). */
function processNamed(args: string): ChildProcess {
  const c = spawn("bash", ["-c", `exec -a "${args}" sleep 30`], { stdio: "ignore" });
  started.push(c);
  return c;
}
const signalIfOurs = (pid: number, sig: string) => spawnSync("sh", ["-c", SIGNAL_IF_OURS_SCRIPT, "sh", String(pid), INI, sig]).status;
const exited = (c: ChildProcess) => new Promise<string | null>((r) => c.once("exit", (_code, signal) => r(signal)));
const settle = () => new Promise((r) => setTimeout(r, 200));

describe("PgBouncer's stop: a signal only to a pid that is still our pgbouncer", () => {
  it("signals our pgbouncer (its ini on the command line)", async () => {
    const ours = processNamed(`pgbouncer -d ${INI}`);
    await settle();
    expect(signalIfOurs(ours.pid!, "0")).toBe(0);
    const gone = exited(ours);
    expect(signalIfOurs(ours.pid!, "KILL")).toBe(0);
    expect(await gone).toBe("SIGKILL");
    expect(signalIfOurs(ours.pid!, "0")).toBe(3);
  });

  it("leaves alone a pid reused by another process (a PostgreSQL backend) or another PgBouncer, and says it is gone", async () => {
    const backend = processNamed("postgres: app app [local] idle");
    const other = processNamed("pgbouncer -d /var/lib/understudy/pgbouncer/other/pgbouncer.ini");
    await settle();
    for (const p of [backend, other]) {
      expect(signalIfOurs(p.pid!, "0")).toBe(3);
      expect(signalIfOurs(p.pid!, "KILL")).toBe(3);
    }
    await settle();
    expect(backend.exitCode === null && backend.signalCode === null).toBe(true);
    expect(other.exitCode === null && other.signalCode === null).toBe(true);
  });
});
