import type * as pulumi from "@pulumi/pulumi";
import { plain } from "./common";

/**
 * Resolves a resource kind to its implementation at run time (see shim.ts). Kinds are part
 * of the state format: never rename one, only add.
 */
const registry: Record<string, () => pulumi.dynamic.ResourceProvider> = {
  ZfsSnapshot: () => require("./zfs/resources").zfsSnapshotProvider,
  ZfsClone: () => require("./zfs/resources").zfsCloneProvider,
  ZfsSnapshotSchedule: () => require("./zfs/schedule-resource").zfsScheduleProvider,
  RehearsalStep: () => require("./rehearsal/step").rehearsalStepProvider,
  RehearsalPreflight: () => require("./rehearsal/preflight").preflightProvider,
  PostgresServer: () => require("./postgres/server-resource").postgresServerProvider,
  PgBouncerEndpoint: () => require("./endpoint/resource").pgBouncerEndpointProvider,
  CutOver: () => require("./promotion/cutover").cutOverProvider,
  EbsSnapshotSet: () => require("./ebs/resources").ebsSnapshotSetProvider,
  EbsCloneSet: () => require("./ebs/resources").ebsCloneSetProvider,
  EbsInstanceStop: () => require("./ebs/resources").ebsInstanceStopProvider,
};

export async function dispatch(kind: string, method: keyof pulumi.dynamic.ResourceProvider, args: unknown[]): Promise<unknown> {
  const load = registry[kind];
  if (!load) throw new Error(`pulumi-understudy: unknown resource kind ${JSON.stringify(kind)} (state written by a newer version?)`);
  const impl = load() as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>;
  const fn = impl[method];
  if (typeof fn !== "function") throw new Error(`pulumi-understudy: ${kind} has no ${String(method)}`);
  const result = await fn.apply(impl, args);
  // The engine stores results as protobuf Structs, which reject nested `undefined`s: send
  // plain JSON data only.
  return result === undefined ? undefined : plain(result);
}
