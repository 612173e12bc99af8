/** Fixtures the unit tests share (no host, no engine). */
import { expect } from "vitest";
import { parseConfig } from "../../config";
import type { PgPlan } from "../../providers/plan/rehearsal";

/** The problems parseConfig lists for a refused stack configuration, one per line (fails the test when it is accepted). */
export function configProblems(raw: Record<string, unknown>): string[] {
  try {
    parseConfig(raw);
  } catch (e) {
    const lines = (e as Error).message.split("\n");
    expect(lines[0]).toBe("invalid stack configuration (nothing was run):");
    return lines.slice(1).map((l) => l.replace(/^ {2}- /, ""));
  }
  throw new Error("expected parseConfig to refuse the configuration");
}

/** A clone's PostgreSQL plan, 13 -> 15 with --link, for tests of the step runner on a scripted host. */
export const SAMPLE_PG_PLAN: PgPlan = {
  from: 13,
  to: 15,
  fromBinDir: "/usr/lib/postgresql/13/bin",
  toBinDir: "/usr/lib/postgresql/15/bin",
  osUser: "postgres",
  oldDataDir: "/srv/tank/clone/pg13",
  newDataDir: "/srv/tank/clone/pg15",
  port: 55440,
  tempPort: 55441,
  socketDir: "/tmp/us-sock",
  listen: "",
  mode: "link",
  database: "postgres",
};
