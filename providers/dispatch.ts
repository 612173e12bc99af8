import type * as pulumi from "@pulumi/pulumi";
import { plain } from "./common";
import { zfsCloneProvider, zfsSnapshotProvider } from "./zfs/resources";
import { zfsScheduleProvider } from "./zfs/schedule-resource";
import { rehearsalStepProvider } from "./rehearsal/step";
import { preflightProvider } from "./rehearsal/preflight";
import { logicalRehearsalProvider } from "./rehearsal/logical";
import { postgresServerProvider } from "./postgres/server-resource";
import { pgBouncerEndpointProvider } from "./endpoint/resource";
import { cutOverProvider } from "./promotion/cutover";
import { ebsCloneSetProvider, ebsInstanceStopProvider, ebsSnapshotSetProvider } from "./ebs/resources";

/**
 * Resolves a resource kind to its implementation at run time (see shim.ts). This file's
 * path, `pulumi-understudy/dist/providers/dispatch.js`, is stored in every stack's state:
 * it is pinned by an explicit `exports` entry in package.json and must never move. Kinds
 * are part of the state format too: never rename one, only add.
 *
 * State written by an earlier release is brought to the current shape by the kind's
 * `migrate` before any method sees it (olds in check/diff/update, props in read/delete).
 */
export interface UnderstudyProvider extends pulumi.dynamic.ResourceProvider {
  /** Stored outputs of any earlier release -> the current shape. Must be idempotent. */
  migrate?(props: Record<string, unknown>): Record<string, unknown>;
}

// Static imports: none of these modules loads a native or network module at import time
// (ssh2, pg and the AWS SDK are required inside the methods that use them).
const registry: Record<string, () => UnderstudyProvider> = {
  ZfsSnapshot: () => zfsSnapshotProvider,
  ZfsClone: () => zfsCloneProvider,
  ZfsSnapshotSchedule: () => zfsScheduleProvider,
  RehearsalStep: () => rehearsalStepProvider,
  RehearsalPreflight: () => preflightProvider,
  LogicalRehearsal: () => logicalRehearsalProvider,
  PostgresServer: () => postgresServerProvider,
  PgBouncerEndpoint: () => pgBouncerEndpointProvider,
  CutOver: () => cutOverProvider,
  EbsSnapshotSet: () => ebsSnapshotSetProvider,
  EbsCloneSet: () => ebsCloneSetProvider,
  EbsInstanceStop: () => ebsInstanceStopProvider,
};

/** Which argument of each method holds stored state (to migrate). */
const STORED_ARG: Partial<Record<keyof pulumi.dynamic.ResourceProvider, number>> = { check: 0, diff: 1, update: 1, read: 1, delete: 1 };

/** The kinds this release knows (for tests: every kind has a declared diff and a migration test). */
export function kinds(): string[] {
  return Object.keys(registry);
}

export function providerOf(kind: string): UnderstudyProvider {
  const load = registry[kind];
  if (!load) throw new Error(`pulumi-understudy: unknown resource kind ${JSON.stringify(kind)} (state written by a newer version?)`);
  return load();
}

/**
 * The new inputs without top-level `null`s. An optional input computed by an `apply` that
 * returns `undefined` arrives as `undefined` (dropped) when it is plain, but as `null` when
 * the output is secret (e.g. a clone's `members` derived from a secret `connection`): the
 * engine keeps a secret even when it holds nothing. A `null` means "not given" for every
 * input of ours, and the inputs `check` returns are the ones the engine stores and passes on.
 */
export function withoutNulls(news: unknown): unknown {
  if (!news || typeof news !== "object" || Array.isArray(news)) return news;
  return Object.fromEntries(Object.entries(news as Record<string, unknown>).filter(([, v]) => v !== null));
}

export async function dispatch(kind: string, method: keyof pulumi.dynamic.ResourceProvider, args: unknown[]): Promise<unknown> {
  const impl = providerOf(kind) as unknown as Record<string, unknown> & UnderstudyProvider;
  const fn = impl[method];
  if (typeof fn !== "function") throw new Error(`pulumi-understudy: ${kind} has no ${String(method)}`);
  const at = STORED_ARG[method];
  const callArgs = [...args];
  if (method === "check") callArgs[1] = withoutNulls(callArgs[1]);
  if (at !== undefined && impl.migrate && callArgs[at] && typeof callArgs[at] === "object") {
    callArgs[at] = impl.migrate(callArgs[at] as Record<string, unknown>);
  }
  const result = await (fn as (...a: unknown[]) => Promise<unknown>).apply(impl, callArgs);
  // The engine stores results as protobuf Structs, which reject nested `undefined`s: send
  // plain JSON data only.
  return result === undefined ? undefined : plain(result);
}
