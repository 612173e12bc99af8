import * as pulumi from "@pulumi/pulumi";
import type { ConnectionArgs } from "../providers/host/connection";
import type { StorageBackend } from "./storage/types";
import { ZfsStorage } from "./storage/zfs";

export interface SnapshotScheduleArgs {
  /** Where the dataset lives. Omit for this machine; SSH connection shaped like `@pulumi/command`'s. Ignored when `storage` is given. */
  connection?: pulumi.Input<ConnectionArgs>;
  /**
   * The storage: ZFS (a cron entry on the host) or EBS (a DLM policy).
   * @default `new ZfsStorage({ connection })`
   */
  storage?: StorageBackend;
  /** The volume to snapshot, e.g. the live database's `tank/pg13`. It is only ever snapshotted. */
  dataset: pulumi.Input<string>;
  /** How often: `15m`, `1h` (default), `6h`, `1d`. */
  every?: pulumi.Input<string>;
  /** Retention: the newest `hourly` snapshots (default 24) plus the newest of each of the last `daily` days (default 7). */
  keep?: pulumi.Input<{ hourly?: number; daily?: number }>;
  /** Snapshot name prefix (default `understudy`): names are `<prefix>-YYYYmmdd-HHMMSS` (UTC). */
  prefix?: pulumi.Input<string>;
  /**
   * A consistency hook run before each snapshot, as argv — e.g.
   * `["psql", "-h", "/var/run/postgresql", "-p", "5432", "-c", "CHECKPOINT"]` so that a clone
   * of the snapshot recovers in seconds. A failing hook is logged and the snapshot is taken anyway.
   */
  hook?: pulumi.Input<pulumi.Input<string>[]>;
  /** OS user for the hook (default `postgres` when a hook is given). */
  hookUser?: pulumi.Input<string>;
  /** On `pulumi destroy`, also destroy the snapshots it took (never ones with clones). Default true. */
  pruneOnDelete?: pulumi.Input<boolean>;
}

/**
 * Periodic snapshots with retention, installed on the host (a cron entry running a small
 * script), so they keep running without Pulumi. Snapshots carry the schedule's owner mark:
 * pruning never touches any other snapshot.
 *
 * @example
 * ```ts
 * const hourly = new SnapshotSchedule("pg13-hourly", {
 *   dataset: "tank/pg13",
 *   every: "1h",
 *   keep: { hourly: 24, daily: 7 },
 *   hook: ["psql", "-h", "/var/run/postgresql", "-c", "CHECKPOINT"],
 * });
 * ```
 */
export class SnapshotSchedule extends pulumi.ComponentResource {
  /** The cron expression installed. */
  readonly cron: pulumi.Output<string>;
  /** Where the schedule logs each run on the host (ZFS). */
  readonly logPath: pulumi.Output<string | undefined>;
  /** Snapshot name prefix (pass to `lookupSnapshot`). */
  readonly prefix: pulumi.Output<string>;
  /** The owner mark on the snapshots it takes. */
  readonly owner: pulumi.Output<string>;

  constructor(name: string, args: SnapshotScheduleArgs, opts?: pulumi.ComponentResourceOptions) {
    super("understudy:index:SnapshotSchedule", name, {}, opts);
    const storage = args.storage ?? new ZfsStorage({ connection: args.connection });
    const sched = storage.schedule(
      name,
      {
        volumes: pulumi.output(args.dataset).apply((d) => [d]),
        every: args.every,
        prefix: args.prefix,
        keep: args.keep,
        hook: args.hook,
        hookUser: args.hookUser,
        pruneOnDelete: args.pruneOnDelete,
      },
      { parent: this },
    );
    this.cron = sched.cron;
    this.logPath = sched.logPath;
    this.prefix = sched.prefix;
    this.owner = sched.owner;
    this.registerOutputs({ cron: this.cron, logPath: this.logPath, prefix: this.prefix, owner: this.owner });
  }
}
