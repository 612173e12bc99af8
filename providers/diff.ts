/**
 * Declared diffs: per resource kind, which inputs replace the resource (for a step: run it
 * again), which change in place, and which never matter. One helper for every provider, so
 * that whether `pulumi up` replaces a clone or re-runs pg_upgrade is written down once per
 * kind and tested as a table (test/unit/diffs.test.ts).
 *
 * An input that is not declared at all REPLACES: a field added to a resource's inputs and
 * forgotten here re-runs the resource instead of being silently ignored. The unit tests also
 * check that every input of every kind is declared, so the safe default is never relied on.
 */
import type * as pulumi from "@pulumi/pulumi";
import { hostIdentity, isUnknown } from "./common";
import type { ConnectionArgs } from "./host/connection";

export interface DiffSpec {
  /** Inputs whose change replaces the resource. */
  replace: readonly string[];
  /** Inputs whose change is applied in place (update). */
  update: readonly string[];
  /** Inputs that never cause a change (labels, report metadata carried for display only). */
  ignore?: readonly string[];
  /**
   * The input holding the SSH connection (default `connection`): a different host replaces,
   * different credentials (a rotated key) update in place.
   */
  connection?: string | null;
  /** Default true: the old one goes first (ZFS names, ports and directories are reused). */
  deleteBeforeReplace?: boolean;
  /** Stored outputs that mean "not as declared any more" (refresh saw a server stopped): an update puts it back. */
  drift?: (olds: Record<string, unknown>) => boolean;
}

/** `a.b.c` inside an object (keys in lists may be dotted paths into an input). */
function at(obj: Record<string, unknown>, path: string): unknown {
  let v: unknown = obj;
  for (const k of path.split(".")) v = v && typeof v === "object" ? (v as Record<string, unknown>)[k] : undefined;
  return v;
}

/** Sorted keys, `undefined`/`null` dropped: two values that mean the same compare equal. */
export function canonical(v: unknown): string {
  return JSON.stringify(normalize(v));
}

function normalize(v: unknown): unknown {
  if (v === null || v === undefined) return undefined;
  if (Array.isArray(v)) return v.map((x) => normalize(x) ?? null);
  if (typeof v === "object") {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(v as Record<string, unknown>).sort()) {
      const n = normalize((v as Record<string, unknown>)[k]);
      if (n !== undefined) out[k] = n;
    }
    return out;
  }
  return v;
}

/** Every input key the spec classifies. */
export function declaredKeys(spec: DiffSpec): Set<string> {
  const conn = spec.connection === undefined ? "connection" : spec.connection;
  return new Set([...spec.replace, ...spec.update, ...(spec.ignore ?? []), ...(conn ? [conn] : [])].map((k) => k.split(".")[0]));
}

/** The engine's diff for a kind, from its declaration. `olds` are the stored outputs (a superset of the old inputs). */
export function declaredDiff(spec: DiffSpec) {
  const conn = spec.connection === undefined ? "connection" : spec.connection;
  const known = declaredKeys(spec);
  const ignore = new Set(spec.ignore ?? []);
  return (olds: Record<string, unknown>, news: Record<string, unknown>): pulumi.dynamic.DiffResult => {
    const replaces: string[] = [];
    let changes = false;
    const differs = (k: string) => isUnknown(at(news, k)) || canonical(at(olds, k)) !== canonical(at(news, k));
    for (const k of spec.replace) if (differs(k)) replaces.push(k);
    for (const k of spec.update) if (differs(k)) changes = true;
    // Not declared: replace (the safe default). Keys only in the stored outputs are outputs, not inputs.
    for (const k of Object.keys(news)) {
      if (k === "__provider" || known.has(k) || ignore.has(k)) continue;
      if (differs(k)) replaces.push(k);
    }
    if (conn) {
      const o = olds[conn] as ConnectionArgs | undefined;
      const n = news[conn] as ConnectionArgs | undefined;
      if (isUnknown(n)) changes = true;
      else if (hostIdentity(o) !== hostIdentity(n)) replaces.push(conn);
      else if (canonical(o) !== canonical(n)) changes = true;
    }
    if (spec.drift?.(olds)) changes = true;
    return { changes: changes || replaces.length > 0, replaces, deleteBeforeReplace: spec.deleteBeforeReplace ?? true };
  };
}
