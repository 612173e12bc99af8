/**
 * The `logical` cut-over method's settings, their defaults (declared once, here) and their
 * rules. See providers/runner/logical-cutover.ts for the phases that use them.
 */
import { InputError } from "../errors";

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

