/**
 * Read EBS snapshot sets when the program runs (like a data source): an existing set by
 * name, or the newest set at or before a time (e.g. the last hourly DLM snapshot before a
 * failed deploy). Read-only: no command runs and nothing is created.
 */
import type { Host } from "../host/types";
import type { SnapshotSet } from "../storage/types";
import type { EbsStorageSpec } from "./spec";
import { EbsStorage } from "./storage";

/** Lookups run no command: a host that refuses. */
const NO_HOST: Host = {
  description: "no host (lookup)",
  run: async () => {
    throw new Error("a snapshot lookup runs no command");
  },
  runAs: async () => {
    throw new Error("a snapshot lookup runs no command");
  },
  writeFile: async () => {
    throw new Error("a snapshot lookup writes no file");
  },
  close: async () => undefined,
};

/** The set `name` over `volumes`; throws when it does not exist. */
export async function findEbsSnapshotSet(spec: EbsStorageSpec, volumes: string[], name: string, storage?: EbsStorage): Promise<SnapshotSet> {
  const s = storage ?? new EbsStorage(spec, NO_HOST);
  const set = await s.findSnapshotSet(volumes, s.validateSnapshotName(name, "snapshot"));
  if (!set) throw new Error(`no EBS snapshot set named ${name} of ${volumes.join(", ")} in ${spec.region}`);
  return set;
}

/**
 * The newest complete set over `volumes` taken at or before `before` (default now), whose
 * name starts with `prefix` when given (a schedule's prefix: DLM runs are named
 * `<prefix>-<YYYYMMDDTHHMMSSZ>`).
 */
export async function latestEbsSnapshotSet(
  spec: EbsStorageSpec,
  volumes: string[],
  opts: { before?: string | Date; prefix?: string } = {},
  storage?: EbsStorage,
): Promise<SnapshotSet> {
  const s = storage ?? new EbsStorage(spec, NO_HOST);
  const before = opts.before === undefined ? new Date() : new Date(opts.before);
  if (Number.isNaN(before.getTime())) throw new Error(`before: ${JSON.stringify(opts.before)} is not a date`);
  if (!volumes.length) throw new Error("volumes: at least one");
  const refs = (await s.listSnapshots(volumes[0])).filter((r) => Date.parse(r.createdAt) <= before.getTime()).reverse();
  for (const ref of refs) {
    const name = await s.setNameOf(ref);
    if (!name || (opts.prefix && !name.startsWith(opts.prefix))) continue;
    try {
      const set = await s.findSnapshotSet(volumes, name);
      if (set) return set;
    } catch {
      // incomplete for these volumes: try an older one
    }
  }
  throw new Error(`no complete EBS snapshot set of ${volumes.join(", ")}${opts.prefix ? ` named ${opts.prefix}*` : ""} at or before ${before.toISOString()} in ${spec.region}`);
}
