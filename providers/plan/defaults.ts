/**
 * Every default of Understudy, declared once. Components document them with `@default`,
 * the plan resolvers apply them, and nothing else invents one. Derived names (a version's
 * bin directory, the upgraded cluster's directory) are computed here and only here.
 */
import { sanitize } from "../names";

export const DEFAULTS = {
  /** Unix socket directory of live and of the servers we start (Debian's). */
  socketDir: "/var/run/postgresql",
  /** OS user owning data directories and running servers. */
  osUser: "postgres",
  /** The data directory's path inside its volume (Debian: /var/lib/postgresql/13/main). */
  pgdata: "main",
  /** Live's port. */
  livePort: 5432,
  /** CHECKPOINT on live right before a new snapshot (the clone then recovers in seconds). */
  checkpoint: true,
  /** What to clone: a new snapshot. */
  snapshot: "new",
  /** pg_upgrade's transfer mode: seconds whatever the size; the clone's old cluster is then unusable. */
  mode: "link",
  /** Database for steps, checks and assertions. */
  database: "postgres",
  /** Report directory, relative to the program. */
  reportDir: "understudy-reports",
  /** Row counts in verification. */
  rowCounts: "exact",
  /** A private server's port is the upgraded server's + this; pg_upgrade uses the two after it. */
  tempPortOffset: 1,
  /** The new live's port is the rehearsal's upgraded server's + this. */
  newLivePortOffset: 10,
  /** PgBouncer: listen address, pool mode, auth. */
  endpointListenAddr: "127.0.0.1",
  poolMode: "transaction",
  authType: "scram-sha-256",
  /** How long PAUSE may wait for transactions in flight before the cut-over gives up (nothing changed). */
  pauseTimeoutMs: 10_000,
  /** How long a promotion may hold clients in all (PgBouncer's query_wait_timeout is set a minute above it). */
  switchoverTimeoutMs: 300_000,
  /** How a promotion moves clients. */
  method: "replay" as "replay" | "logical",
  /** PgBouncer stays when the stack is destroyed (clients depend on it). */
  retainEndpoint: true,
} as const;

/** Debian's layout: `/usr/lib/postgresql/<major>/bin`. */
export function debianBinDir(major: number): string {
  return `/usr/lib/postgresql/${major}/bin`;
}

/** The upgraded cluster's data directory on a clone mounted at `mountpoint`. */
export function upgradedDataDir(mountpoint: string, pgdata: string, to: number): string {
  return `${mountpoint}/${sanitize(pgdata)}.pg${to}`;
}

/** The default name of a new snapshot of live for a rehearsal/clone. */
export function defaultSnapshotName(stack: string, name: string): string {
  return sanitize(`understudy-${stack}-${name}`);
}
