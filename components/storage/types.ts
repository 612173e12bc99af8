/**
 * The storage argument of the components (`DatabaseClone`, `UpgradeRehearsal`, `Promotion`,
 * `SnapshotSchedule`): one object that knows how to *declare* its backend's resources.
 * Components call it and never test which backend it is; `ZfsStorage` (./zfs.ts) and
 * `EbsStorage` (./ebs.ts) implement it. The providers below open the same backend from
 * {@link StorageBackend.spec} with `openStorage` (providers/storage).
 */
import type * as pulumi from "@pulumi/pulumi";
import type { ConnectionArgs } from "../../providers/host/connection";
import type { CloneRequest, SnapshotSet, Storage, StorageSpec, VolumeInfo } from "../../providers/storage/types";
import type { Host } from "../../providers/host/types";

export interface SnapshotSetArgs {
  /** Volumes snapshotted together, at one instant (the primary, holding PGDATA, first). */
  volumes: pulumi.Input<string[]>;
  /** The short name of the set. */
  snapshotName: pulumi.Input<string>;
  /** argv run on the storage's host right before the snapshot (e.g. a CHECKPOINT); a failure is logged, not fatal. */
  hook?: pulumi.Input<string[]>;
  hookUser?: pulumi.Input<string>;
}

export interface DeclaredSnapshotSet {
  set: pulumi.Output<SnapshotSet>;
  /** For dependsOn. */
  resources: pulumi.Resource[];
}

export interface CloneSetArgs {
  set: pulumi.Input<SnapshotSet>;
  /** One request per member to clone, the primary first. */
  requests: pulumi.Input<CloneRequest[]>;
}

export interface DeclaredCloneSet {
  /** The clones, in request order, with their mountpoints on the storage's host. */
  volumes: pulumi.Output<VolumeInfo[]>;
  /** The owner mark the clones carry (snapshots Understudy takes of them carry it too). */
  owner: pulumi.Output<string>;
  resources: pulumi.Resource[];
}

export interface ScheduleArgs {
  /** Volumes snapshotted together at each run. */
  volumes: pulumi.Input<string[]>;
  /** `15m`, `1h` (default), `6h`, `1d`. */
  every?: pulumi.Input<string>;
  keep?: pulumi.Input<{ hourly?: number; daily?: number }>;
  prefix?: pulumi.Input<string>;
  hook?: pulumi.Input<pulumi.Input<string>[]>;
  hookUser?: pulumi.Input<string>;
  pruneOnDelete?: pulumi.Input<boolean>;
}

export interface DeclaredSchedule {
  /** A readable description of when (`0 * * * *`, `cron(0 * * * ? *)`). */
  cron: pulumi.Output<string>;
  prefix: pulumi.Output<string>;
  owner: pulumi.Output<string>;
  /** Where each run is logged, when the backend keeps a log. */
  logPath: pulumi.Output<string | undefined>;
  resources: pulumi.Resource[];
}

export interface StorageBackend {
  readonly kind: string;
  /** Where commands run and clones are mounted (ZFS: the database host; EBS: the rehearsal instance). Stored as a secret. */
  readonly connection?: pulumi.Input<ConnectionArgs>;
  /** Plain data the providers open the backend from. */
  readonly spec: pulumi.Input<StorageSpec>;

  /** Syntax of a volume id (no I/O): for checks before anything is declared. Throws InputError(field). */
  validateVolumeId(id: string, field: string): string;
  /** The owner mark that {@link cloneSet} called `name` gives its clones (known before anything runs, for the preflight). */
  cloneOwner(name: string): string;
  /** An id for a new volume called `name` next to volume `of` (e.g. a promotion's new live next to the rehearsal's clone). */
  siblingVolume(of: string, name: string): string;

  /** Take a snapshot set now. `name` is the Pulumi resource name prefix; keep it stable (it is in URNs). */
  snapshotSet(name: string, args: SnapshotSetArgs, opts: pulumi.CustomResourceOptions): DeclaredSnapshotSet;
  /** An existing snapshot set, by name (read when the program runs). */
  existingSnapshotSet(volumes: pulumi.Input<string[]>, name: pulumi.Input<string>): pulumi.Output<SnapshotSet>;
  /** The newest existing snapshot set of the volumes, at or before `before` (read when the program runs). */
  latestSnapshotSet(volumes: pulumi.Input<string[]>, opts?: { before?: string; prefix?: string }): pulumi.Output<SnapshotSet>;

  /**
   * The clone requests for a clone named `target` (the user's clone dataset/volume id) of
   * `sources` (the primary first): the primary goes to `target`, the others next to it.
   */
  cloneRequests(target: string, sources: string[], mountpoint?: string): CloneRequest[];
  /** Clone members of a snapshot set. */
  cloneSet(name: string, args: CloneSetArgs, opts: pulumi.CustomResourceOptions): DeclaredCloneSet;

  /**
   * Run `fn` with the backend opened on live's host while the program runs (also in a
   * preview): read-only discovery, e.g. which volumes hold live's WAL and tablespaces.
   */
  withStorage<T>(fn: (storage: Storage, liveHost: Host) => Promise<T>): pulumi.Output<T>;

  /**
   * Where a promotion stops and starts live, when that is another machine than the storage's
   * host (EBS: live's instance); undefined when live runs on the storage's host (ZFS). Throws an
   * InputError naming the field when the backend needs a connection it was not given.
   */
  promotionLiveConnection(): pulumi.Input<ConnectionArgs> | undefined;

  /** Periodic snapshots of volumes with retention. */
  schedule(name: string, args: ScheduleArgs, opts: pulumi.ComponentResourceOptions): DeclaredSchedule;
}
