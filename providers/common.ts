import * as pulumi from "@pulumi/pulumi";
import type { ConnectionArgs } from "./host/connection";
import { resolveConnection } from "./host/connection";
import { InputError } from "./errors";

/** What the engine sends for a value not known yet during preview. */
export const UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9";

export function isUnknown(v: unknown): boolean {
  if (v === UNKNOWN) return true;
  if (Array.isArray(v)) return v.some(isUnknown);
  if (v && typeof v === "object") return Object.values(v).some(isUnknown);
  return false;
}

/**
 * Progress line from inside a provider. The engine shows a dynamic provider's output live
 * as a diagnostic of the stack, so long steps stay visible in `pulumi up`.
 */
export function progress(label: string, message: string): void {
  console.error(`[understudy] ${label}: ${message}`);
}

/**
 * Run a validation; turn its {@link InputError} into a check failure. The failure is on the
 * input `property` when given, else on the top-level input the error's field names (the
 * reason keeps the whole dotted field). Anything that is not an InputError is a bug and is
 * re-thrown.
 */
export function failure(property: string | undefined, fn: () => unknown): pulumi.dynamic.CheckFailure[] {
  try {
    fn();
    return [];
  } catch (e) {
    if (!InputError.is(e)) throw e;
    return [{ property: property ?? e.field.split(/[.[]/)[0], reason: e.message }];
  }
}

export { sanitize } from "./names";

/** Check failures for a `connection` input: none when it is absent or not known yet (preview). */
export function checkConnection(connection: unknown): pulumi.dynamic.CheckFailure[] {
  if (connection === undefined || connection === null || isUnknown(connection)) return [];
  return failure("connection", () => resolveConnection(connection as ConnectionArgs));
}

/** Everything a provider needs to tell which stack owns a thing. */
export function ownerId(typeName: string, name: string): string {
  return `${pulumi.getProject()}/${pulumi.getStack()}/${typeName}/${name}`;
}

/** The identity of a host for replace decisions: credentials are not part of it. */
export function hostIdentity(c: ConnectionArgs | undefined | null): string {
  if (!c) return "local";
  return `${c.user ?? "root"}@${c.host}:${c.port ?? 22}`;
}

export { errorMessage } from "./errors";

/** Outputs as the engine can store them: nested `undefined` values dropped (protobuf Structs reject them). */
export function plain<T>(value: T): T {
  return JSON.parse(JSON.stringify(value)) as T;
}
