import * as pulumi from "@pulumi/pulumi";
import type { ConnectionArgs } from "../host/connection";
import { withHost } from "../host";
import { ZfsDriver } from "./driver";
import { newestSnapshotBefore } from "./schedule";
import { validateDataset } from "./names";
import { InputError } from "../errors";

export interface LookupSnapshotArgs {
  connection?: ConnectionArgs;
  dataset: string;
  /** Newest snapshot taken at or before this time (default: now). */
  before?: Date | string;
  /** Only snapshots whose name (after @) starts with this, e.g. a schedule's prefix. */
  prefix?: string;
}

export interface LookupSnapshotResult {
  snapshot: string;
  createdAt: string;
}

/**
 * Find the newest snapshot of a dataset before a given time — e.g. "the last hourly
 * snapshot before the failed deploy at 14:05" — to clone from. Runs when the program runs
 * (like a data source), read-only.
 *
 * @example
 * ```ts
 * const s = await lookupSnapshot({ dataset: "tank/pg13", before: "2026-11-24T14:05:00Z", prefix: "hourly" });
 * new ZfsClone("investigate", { snapshot: s.snapshot, dataset: "tank/investigate" });
 * ```
 */
export async function lookupSnapshot(args: LookupSnapshotArgs): Promise<LookupSnapshotResult> {
  validateDataset(args.dataset, "dataset");
  const before = args.before === undefined ? undefined : new Date(args.before);
  if (before && Number.isNaN(before.getTime())) throw new InputError("before", `${JSON.stringify(args.before)} is not a date`);
  return await withHost(args.connection, async (h) => {
    const found = await newestSnapshotBefore(new ZfsDriver(h), args.dataset, before, args.prefix);
    if (!found) {
      throw new Error(
        `no snapshot of ${args.dataset}${args.prefix ? ` named ${args.prefix}*` : ""} at or before ${(before ?? new Date()).toISOString()} on ${h.description}`,
      );
    }
    return { snapshot: found.name, createdAt: new Date(found.creation * 1000).toISOString() };
  });
}

/** {@link lookupSnapshot} for Pulumi inputs. */
export function lookupSnapshotOutput(args: pulumi.Input<LookupSnapshotArgs>): pulumi.Output<LookupSnapshotResult> {
  return pulumi.output(args).apply((a) => lookupSnapshot(a as LookupSnapshotArgs));
}
