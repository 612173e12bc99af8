/**
 * ZFS as the components' storage argument: snapshot sets are {@link ZfsSnapshot}s (with
 * `members` for a cluster on several datasets), clone sets are {@link ZfsClone}s (with
 * `members`), schedules are cron entries on the host. The default storage of every
 * component (on this machine, or on the host of `connection`).
 */
import * as pulumi from "@pulumi/pulumi";
import type { ConnectionArgs } from "../../providers/host/connection";
import { ZfsClone, ZfsSnapshot } from "../../providers/zfs/resources";
import { lookupSnapshotOutput } from "../../providers/zfs/lookup";
import { ZfsSnapshotSchedule } from "../../providers/zfs/schedule-resource";
import { validateDataset } from "../../providers/zfs/names";
import { createStorage, zfsCloneTargets, zfsSibling } from "../../providers/zfs/storage";
import { withHost } from "../../providers/host";
import type { Host } from "../../providers/host/types";
import { ownerId } from "../../providers/common";
import type { CloneRequest, SnapshotSet, Storage, StorageSpec, VolumeInfo } from "../../providers/storage/types";
import type { CloneSetArgs, DeclaredCloneSet, DeclaredSchedule, DeclaredSnapshotSet, ScheduleArgs, SnapshotSetArgs, StorageBackend } from "./types";

export interface ZfsStorageArgs {
  /** Where `zfs` runs and the clones are mounted: omit for this machine, or an SSH connection shaped like `@pulumi/command`'s (stored as a secret). */
  connection?: pulumi.Input<ConnectionArgs>;
  /** The `zfs` command. @default "zfs" (from the PATH) */
  zfsCommand?: string;
}

const setOf = (name: string, volumes: string[], createdAt = ""): SnapshotSet => ({
  name,
  members: volumes.map((v) => ({ volume: v, id: `${v}@${name}`, createdAt })),
  createdAt,
});

/**
 * ZFS datasets on this machine or over SSH.
 *
 * @example
 * ```ts
 * const storage = new ZfsStorage({ connection: { host: "db1", privateKey } });
 * new UpgradeRehearsal("pg13-to-15", { storage, source: { dataset: "tank/pg13", version: 13 }, ... });
 * ```
 */
export class ZfsStorage implements StorageBackend {
  readonly kind = "zfs";
  readonly connection?: pulumi.Input<ConnectionArgs>;
  readonly spec: StorageSpec;

  constructor(args: ZfsStorageArgs = {}) {
    this.connection = args.connection;
    this.spec = args.zfsCommand ? { kind: "zfs", zfsCommand: args.zfsCommand } : { kind: "zfs" };
  }

  validateVolumeId(id: string, field: string): string {
    return validateDataset(id, field);
  }

  cloneOwner(name: string): string {
    return ownerId("ZfsClone", name);
  }

  siblingVolume(of: string, name: string): string {
    return zfsSibling(of, name);
  }

  snapshotSet(name: string, args: SnapshotSetArgs, opts: pulumi.CustomResourceOptions): DeclaredSnapshotSet {
    const volumes = pulumi.output(args.volumes);
    const snap = new ZfsSnapshot(
      name,
      {
        connection: this.connection,
        dataset: volumes.apply((v) => v[0]),
        // Only when there are more: a one-dataset snapshot keeps the inputs it always had.
        members: volumes.apply((v) => (v.length > 1 ? v.slice(1) : undefined)) as pulumi.Input<string[]>,
        name: args.snapshotName,
        hook: args.hook,
        hookUser: args.hookUser,
      },
      opts,
    );
    return {
      set: pulumi.all([volumes, snap.name, snap.createdAt]).apply(([v, n, at]) => setOf(n, v, at)),
      resources: [snap],
    };
  }

  existingSnapshotSet(volumes: pulumi.Input<string[]>, name: pulumi.Input<string>): pulumi.Output<SnapshotSet> {
    return pulumi.all([volumes, name]).apply(([v, n]) => setOf(n, v));
  }

  latestSnapshotSet(volumes: pulumi.Input<string[]>, opts: { before?: string; prefix?: string } = {}): pulumi.Output<SnapshotSet> {
    const v = pulumi.output(volumes);
    const found = lookupSnapshotOutput(pulumi.output({ connection: this.connection, dataset: v.apply((x) => x[0]), before: opts.before, prefix: opts.prefix }));
    return pulumi.all([v, found.snapshot, found.createdAt]).apply(([vols, snap, at]) => setOf(snap.slice(snap.indexOf("@") + 1), vols, at));
  }

  cloneRequests(target: string, sources: string[], mountpoint?: string): CloneRequest[] {
    const targets = zfsCloneTargets(target, sources);
    return sources.map((source, i) => ({ source, target: targets[i], ...(i === 0 && mountpoint !== undefined ? { mountpoint } : {}) }));
  }

  cloneSet(name: string, args: CloneSetArgs, opts: pulumi.CustomResourceOptions): DeclaredCloneSet {
    const set = pulumi.output(args.set);
    const requests = pulumi.output(args.requests);
    const snapshotOf = (s: SnapshotSet, source: string) => s.members.find((m) => m.volume === source)?.id ?? `${source}@${s.name}`;
    const props = (r: CloneRequest) => ({ ...(r.properties ?? {}), ...(r.mountpoint !== undefined ? { mountpoint: r.mountpoint } : {}) });
    const clone = new ZfsClone(
      name,
      {
        connection: this.connection,
        snapshot: pulumi.all([set, requests]).apply(([s, r]) => snapshotOf(s, r[0].source)),
        dataset: requests.apply((r) => r[0].target),
        properties: requests.apply((r) => (Object.keys(props(r[0])).length ? props(r[0]) : undefined)) as pulumi.Input<Record<string, string>>,
        members: pulumi
          .all([set, requests])
          .apply(([s, r]) => (r.length > 1 ? r.slice(1).map((x) => ({ snapshot: snapshotOf(s, x.source), dataset: x.target, ...(Object.keys(props(x)).length ? { properties: props(x) } : {}) })) : undefined)) as pulumi.Input<
          Array<{ snapshot: string; dataset: string }>
        >,
      },
      opts,
    );
    const primary = pulumi
      .all([clone.dataset, clone.mountpoint, clone.origin, clone.owner])
      .apply(([dataset, mountpoint, origin, owner]): VolumeInfo => ({ id: dataset, mountpoint, origin, owner, marks: { owner }, properties: {} }));
    // Member mountpoints only when there are members: an output a one-volume clone never
    // had would read as unknown in a preview and make everything downstream look changed.
    const volumes = requests.apply((r) =>
      r.length === 1
        ? primary.apply((p) => [p])
        : pulumi.all([primary, clone.memberMountpoints, clone.owner]).apply(([p, mm, owner]): VolumeInfo[] => [
            p,
            ...r.slice(1).map((x, i) => ({ id: x.target, mountpoint: mm?.[i], owner, marks: { owner }, properties: {} })),
          ]),
    );
    return { volumes, owner: clone.owner, resources: [clone] };
  }

  /** Live runs on the storage's host: the promotion stops it there. */
  promotionLiveConnection(): undefined {
    return undefined;
  }

  withStorage<T>(fn: (storage: Storage, liveHost: Host) => Promise<T>): pulumi.Output<T> {
    return pulumi.output(this.connection).apply((c) => withHost(c, (host) => fn(createStorage(this.spec, host), host)));
  }

  schedule(name: string, args: ScheduleArgs, opts: pulumi.ComponentResourceOptions): DeclaredSchedule {
    const keep = pulumi.output(args.keep ?? {});
    const sched = new ZfsSnapshotSchedule(
      name,
      {
        connection: this.connection,
        dataset: pulumi.output(args.volumes).apply((v) => v[0]),
        every: args.every,
        prefix: args.prefix,
        keepHourly: keep.apply((k) => k.hourly ?? 24),
        keepDaily: keep.apply((k) => k.daily ?? 7),
        hook: args.hook,
        hookUser: args.hook ? (args.hookUser ?? "postgres") : args.hookUser,
        pruneOnDelete: args.pruneOnDelete,
      },
      opts,
    );
    return { cron: sched.cron, prefix: sched.prefix, owner: sched.owner, logPath: sched.logPath, resources: [sched] };
  }
}
