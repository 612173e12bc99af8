/**
 * The `logical` cut-over method's settings, their defaults (declared once, here) and their
 * rules. See providers/runner/logical-cutover.ts for the phases that use them.
 */
import { InputError, collectInputError } from "../errors";
import { isLoopback, validateNetworkHost } from "../endpoint/pgbouncer-config";
import { validateRole } from "../postgres/logical-sql";
import { validatePath } from "../validate";

/** The logical method's settings (every default declared here once). */
export interface LogicalSettings {
  /** Clients are held only once every database's replication lag is at most this (bytes). Default 1 MiB. */
  maxLagBytes?: number;
  /** The switchover timeout: from the subscriptions to the pause, catch-up may take this long, else everything is undone. Default 300 000 (5 min, like RDS Blue/Green's default). */
  switchoverTimeoutMs?: number;
  /** While clients are held: how long the new live may take to apply the last transactions (bounded; then undone, clients resume on live). Default 5000. */
  applyTimeoutMs?: number;
  /** Stop (and drop our slots) before they retain this much WAL on live. Default 10 GiB. */
  retainedWalLimitBytes?: number;
  /**
   * Where the new live's machine reaches live over TCP (a host name or IP address, e.g. live's
   * private address): the clone's WAL stream and the subscriptions connect there, on live's
   * port. Required when live runs on another machine than the new live (EBS: live's
   * instance); absent on one machine: live's unix socket.
   */
  liveHost?: string;
  /**
   * Where live's machine reaches the new live over TCP, on the new live's port: the way back
   * (the old live's subscriptions that keep a roll-back's writes) connects there. Required
   * with `liveHost`.
   */
  newLiveHost?: string;
  /** The role those connections log in as (REPLICATION; in practice a superuser). Default: the PostgreSQL OS user's role. */
  replicationUser?: string;
  /** A pgpass file for those connections, on each subscriber's machine (a password is never stored in a subscription). */
  passfile?: string;
  /** `sslmode` of those connections. */
  sslmode?: "disable" | "allow" | "prefer" | "require" | "verify-ca" | "verify-full";
  /** Readiness findings accepted by name (`large-objects`, `unlogged-tables`, `live-subscriptions`, `materialized-views`, `foreign-tables`). */
  accept?: string[];
}

export const LOGICAL_DEFAULTS = {
  maxLagBytes: 1024 * 1024,
  switchoverTimeoutMs: 300_000,
  applyTimeoutMs: 5000,
  retainedWalLimitBytes: 10 * 1024 * 1024 * 1024,
} as const;

/** Every rule on the logical settings (errors name the field). */
export function checkLogicalSettings(l: LogicalSettings | undefined, field = "logical"): InputError[] {
  const errors: InputError[] = [];
  if (l === undefined) return errors;
  if (!l || typeof l !== "object") return [new InputError(field, "must be an object")];
  const int = (v: unknown, name: string, min: number, max: number) => {
    if (v !== undefined && (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max)) errors.push(new InputError(`${field}.${name}`, `${JSON.stringify(v)} is not a whole number in ${min}..${max}`));
  };
  int(l.maxLagBytes, "maxLagBytes", 0, 1024 ** 4);
  int(l.switchoverTimeoutMs, "switchoverTimeoutMs", 30_000, 3_600_000);
  int(l.applyTimeoutMs, "applyTimeoutMs", 100, 600_000);
  int(l.retainedWalLimitBytes, "retainedWalLimitBytes", 16 * 1024 * 1024, 1024 ** 5);
  const host = (v: unknown, name: string) => collectInputError(errors, () => validateNetworkHost(v, `${field}.${name}`));
  if (l.liveHost !== undefined) host(l.liveHost, "liveHost");
  if (l.newLiveHost !== undefined) host(l.newLiveHost, "newLiveHost");
  if ((l.liveHost === undefined) !== (l.newLiveHost === undefined)) {
    const [given, missing] = l.liveHost === undefined ? ["newLiveHost", "liveHost"] : ["liveHost", "newLiveHost"];
    errors.push(new InputError(`${field}.${missing}`, `required with ${field}.${given}: replication runs both ways over TCP (forward to the new live, back to live for a roll-back)`));
  }
  if (l.replicationUser !== undefined) collectInputError(errors, () => validateRole(l.replicationUser, `${field}.replicationUser`));
  if (l.passfile !== undefined) collectInputError(errors, () => validatePath(l.passfile, `${field}.passfile`, "file"));
  if (l.sslmode !== undefined && !["disable", "allow", "prefer", "require", "verify-ca", "verify-full"].includes(l.sslmode)) {
    errors.push(new InputError(`${field}.sslmode`, `${JSON.stringify(l.sslmode)} is not one of disable, allow, prefer, require, verify-ca, verify-full`));
  }
  if (l.accept !== undefined) {
    if (!Array.isArray(l.accept)) errors.push(new InputError(`${field}.accept`, "must be a list of finding codes"));
    else
      l.accept.forEach((c, i) => {
        if (!["large-objects", "unlogged-tables", "live-subscriptions", "materialized-views", "foreign-tables"].includes(c)) {
          errors.push(new InputError(`${field}.accept[${i}]`, `${JSON.stringify(c)} cannot be accepted (acceptable: large-objects, unlogged-tables, live-subscriptions, materialized-views, foreign-tables)`));
        }
      });
  }
  return errors;
}


/**
 * With live and the new live on two machines, the logical method connects them over TCP:
 * `logical.liveHost` and `logical.newLiveHost` are required, and neither may be a loopback
 * address (from the other machine it would be that machine itself). Errors name the field.
 */
export function checkLogicalTwoHosts(l: LogicalSettings | undefined, field = "logical"): InputError[] {
  const errors: InputError[] = [];
  const why = "live and the new live run on two machines (live through its own connection), so replication connects them over TCP";
  for (const [name, what] of [
    ["liveHost", "where the new live's machine reaches live, e.g. live's private address"],
    ["newLiveHost", "where live's machine reaches the new live (the way back of a roll-back)"],
  ] as const) {
    const v = l?.[name];
    if (v === undefined) errors.push(new InputError(`${field}.${name}`, `required with method "logical" here: ${why}; give ${what}`));
    else if (typeof v === "string" && isLoopback(v)) errors.push(new InputError(`${field}.${name}`, `${v} is a loopback address: from the other machine it is that machine itself (${why})`));
  }
  return errors;
}

/** Why a DNS record cannot be the swap of the logical method (refused naming `method`). */
export const DNS_LOGICAL_REFUSAL =
  'with a DNS endpoint only "replay" is wired. A DNS record cannot hold clients, and the logical method captures live\'s last transactions while clients are held: ' +
  'a write reaching live between that capture and the swap would never reach the new live. Use PgBouncer on a host you name (endpoint.connection) for method "logical"';
