/**
 * The switchover timeout (issue 10, item 5), without a host: the hold is bounded in
 * runPhases (no held phase starts after it; what ran is undone while clients are still
 * held), the Promotion validates it and sets PgBouncer's query_wait_timeout a minute above
 * it, and a promotion whose rehearsal predicted a longer pause is refused by the CutOver's
 * check (which the engine runs in preview).
 */
import { describe, expect, it } from "vitest";
import { runPhases, PhaseError, type Phase } from "../../providers/runner/phases";
import { resolvePromotionPlan, queryWaitTimeoutFor } from "../../providers/plan/promotion";
import { resolveRehearsalPlan } from "../../providers/plan/rehearsal";
import { InputErrors } from "../../providers/errors";
import { checkCutOver, type CutOverInputs } from "../../providers/promotion/cutover";
import { renderIni, resolveConfig } from "../../providers/endpoint/pgbouncer-config";
import { pgBouncerEndpointProvider } from "../../providers/endpoint/resource";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("runPhases: holdTimeoutMs", () => {
  const world = () => {
    const log: string[] = [];
    const phases: Phase<unknown>[] = [
      { name: "stop live", held: true, run: async () => void log.push("stop live"), undo: async () => void log.push("undo stop live") },
      { name: "slow step", held: true, run: async () => { log.push("slow step"); await sleep(80); }, undo: async () => void log.push("undo slow step") },
      { name: "switch", held: true, run: async () => void log.push("switch") },
    ];
    const hold = async (fn: () => Promise<void>) => {
      log.push("PAUSE");
      try {
        await fn();
      } finally {
        log.push("RESUME");
      }
      return { pauseWindowMs: 0, pauseMs: 0, resumeMs: 0 };
    };
    return { log, phases, hold };
  };

  it("starts no held phase after the timeout; what ran is undone before clients resume", async () => {
    const w = world();
    const err = await runPhases(w.phases, {}, { hold: w.hold, holdTimeoutMs: 40 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PhaseError);
    expect((err as PhaseError).message).toMatch(/switchover timeout \(40 ms\) was reached: clients were held \d+ ms, so "switch" was not started/);
    expect(w.log).toEqual(["PAUSE", "stop live", "slow step", "undo slow step", "undo stop live", "RESUME"]);
  });

  it("positive control: within the timeout (or without one) every phase runs", async () => {
    for (const holdTimeoutMs of [10_000, undefined]) {
      const w = world();
      await runPhases(w.phases, {}, { hold: w.hold, holdTimeoutMs });
      expect(w.log).toEqual(["PAUSE", "stop live", "slow step", "switch", "RESUME"]);
    }
  });
});

const rehearsal = resolveRehearsalPlan("r", {
  source: { dataset: "live/data", version: 13, port: 5432 },
  clone: { dataset: "clones/r" },
  to: 15,
  postgres: { port: 55432, database: "app" },
});
const opts = { sibling: (of: string, n: string) => [...of.split("/").slice(0, -1), n].join("/"), sanitize: (s: string) => s };
const endpoint = { name: "app", listenPort: 6432, database: "app", authType: "trust" as const };

function fields(switchoverTimeoutMs: unknown): string[] {
  try {
    resolvePromotionPlan("go", { endpoint, switchoverTimeoutMs: switchoverTimeoutMs as number }, rehearsal, opts);
    return [];
  } catch (e) {
    if (!(e instanceof InputErrors)) throw e;
    return e.errors.map((x) => x.field);
  }
}

describe("switchoverTimeoutMs", () => {
  it("defaults to 5 minutes and is bounded to 30 s .. 1 h, naming the field", () => {
    expect(resolvePromotionPlan("go", { endpoint }, rehearsal, opts).switchoverTimeoutMs).toBe(300_000);
    expect(fields(29_999)).toEqual(["switchoverTimeoutMs"]);
    expect(fields(3_600_001)).toEqual(["switchoverTimeoutMs"]);
    expect(fields("5m")).toEqual(["switchoverTimeoutMs"]);
    expect(fields(30_000)).toEqual([]);
    expect(fields(3_600_000)).toEqual([]);
  });

  it("sets PgBouncer's query_wait_timeout a minute above it", () => {
    expect(queryWaitTimeoutFor(300_000)).toBe(360);
    expect(queryWaitTimeoutFor(30_500)).toBe(91);
    const ini = renderIni(resolveConfig({ name: "e", listenPort: 6432, authType: "trust", queryWaitTimeoutMs: 360_000 }));
    expect(ini).toMatch(/^query_wait_timeout = 360$/m);
    // Not set: the line is absent (PgBouncer's own default), as endpoints made by 0.1.0 have it.
    expect(renderIni(resolveConfig({ name: "e", listenPort: 6432, authType: "trust" }))).not.toMatch(/query_wait_timeout/);
  });

  it("a promotion whose rehearsal predicted a longer pause is refused by the CutOver's check; a rehearsal within it, or promote: false, passes", () => {
    const errs = (promote: boolean, predictedCutoverMs: number, switchoverTimeoutMs = 300_000) => checkCutOver(cutOver(promote, predictedCutoverMs, switchoverTimeoutMs)).map((e) => e.message);
    expect(errs(true, 400_000)).toEqual([expect.stringMatching(/^switchoverTimeoutMs: 300000 ms is shorter than the pause the rehearsal r predicted \(400000 ms\)/)]);
    expect(errs(true, 200_000)).toEqual([]);
    expect(errs(false, 400_000)).toEqual([]);
    // Out of bounds: refused for that (and, here, for the prediction too).
    expect(errs(false, 1000, 10)).toEqual([expect.stringMatching(/^switchoverTimeoutMs: /)]);
  });

  it("an endpoint stored by 0.1.0 (no queryWaitTimeoutMs) shows no change for gaining it; a later change of it does", async () => {
    const config = { name: "app", listenPort: 6432, authType: "trust" as const };
    const stored = { label: "go-endpoint", config, pid: 1, configDir: "/x", address: "127.0.0.1:6432" };
    const d1 = await pgBouncerEndpointProvider.diff!("id", stored, { label: "go-endpoint", config: { ...config, queryWaitTimeoutMs: 360_000 } });
    expect(d1.changes).toBe(false);
    const d2 = await pgBouncerEndpointProvider.diff!("id", { ...stored, config: { ...config, queryWaitTimeoutMs: 360_000 } }, { label: "go-endpoint", config: { ...config, queryWaitTimeoutMs: 420_000 } });
    expect(d2.changes).toBe(true);
  });

  it("a CutOver stored by 0.1.0 shows no change for its endpoint gaining queryWaitTimeoutMs, nor for switchoverTimeoutMs", async () => {
    const { cutOverProvider } = await import("../../providers/promotion/cutover");
    const i = cutOver(false, 1000, 300_000);
    const { switchoverTimeoutMs: _s, ...stored010 } = i;
    const olds = { ...stored010, state: "serving-old", target: { host: "/var/run/postgresql", port: 5432, dbname: "app" }, events: [] };
    const news = { ...i, endpoint: { ...i.endpoint, queryWaitTimeoutMs: 360_000 } };
    expect((await cutOverProvider.diff!("id", olds, news)).changes).toBe(false);
    // Positive control: a real change of the endpoint is one.
    expect((await cutOverProvider.diff!("id", olds, { ...news, endpoint: { ...news.endpoint, listenPort: 6433 } })).changes).toBe(true);
  });
});

function cutOver(promote: boolean, predictedCutoverMs: number, switchoverTimeoutMs: number): CutOverInputs {
  return {
    label: "go",
    owner: "p/s/Promotion/go",
    stack: "s",
    promote,
    endpoint: { name: "app", listenPort: 6432, authType: "trust" },
    database: "app",
    pauseTimeoutMs: 10_000,
    switchoverTimeoutMs,
    live: { dataset: "live/data", pgdata: "main", version: 13, osUser: "postgres", port: 5432, socketDir: "/var/run/postgresql" },
    newLive: { dataset: "clones/go-live-pg15", port: 55442, socketDir: "/var/run/postgresql", listen: "" },
    to: 15,
    mode: "link",
    steps: [],
    assertions: [],
    rehearsal: { name: "r", status: "passed", predictedCutoverMs },
  };
}
