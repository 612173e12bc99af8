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

/** A PgBouncer endpoint for the ready-made program's stack configuration (trust on loopback). */
export const SAMPLE_ENDPOINT = { name: "app", listenPort: 6432, database: "app", authType: "trust" };

/** A whole stack configuration for the ready-made program: live 13 on tank/pg13 to 15, with the endpoint above (a new object each call). */
export const sampleStackConfig = (): Record<string, unknown> => ({
  source: { dataset: "tank/pg13", pgdata: "main", version: 13, port: 5432, socketDir: "/var/run/postgresql" },
  clone: { dataset: "tank/rehearsals/pg13-to-15" },
  to: 15,
  postgres: { port: 55432, database: "app" },
  endpoint: SAMPLE_ENDPOINT,
});

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
