/**
 * Storage, as the rehearsal, the database clone and the cut-over see it: volumes that hold
 * the parts of a PostgreSQL cluster, snapshot sets taken at one instant over several
 * volumes, clones of those sets, roll-back of a clone set to one of its snapshot sets,
 * owner marks, and destruction of what we own only. ZFS (providers/zfs/storage.ts) and
 * EBS (providers/ebs/storage.ts) implement it; both pass the shared contract suite in
 * test/contract/storage-contract.ts.
 *
 * Nothing above this interface names a backend: no `zfs`, no `ec2`, no dataset or volume
 * syntax. A backend is chosen by a {@link StorageSpec} (plain data, stored in resource
 * inputs) and opened with `openStorage(spec, host)` (./index.ts).
 *
 * ## The contract (every implementation, tested by the shared suite)
 * 1. **Owned only.** Every snapshot and volume a method creates carries the owner mark it
 *    was given. `rollback`, `destroySnapshotSet` and `destroyVolume` act only on things
 *    whose owner mark equals the `owner` argument (an empty owner matches nothing); anything
 *    else is left in place and reported (`not-owned`) or refused with an error naming it.
 *    A source volume (anything not created by us) is therefore never rolled back, destroyed,
 *    detached or modified. Snapshots of a source are created (that reads it) and, when ours,
 *    destroyed.
 * 2. **One instant.** `snapshot(volumes, ...)` is crash-consistent across all volumes: the
 *    set is what the volumes held at one instant (ZFS: one atomic `zfs snapshot`; EBS: one
 *    `CreateSnapshots` call on the instance). When the backend cannot do that for the given
 *    volumes (e.g. ZFS datasets on two pools), it throws before creating anything.
 * 3. **Names.** A snapshot set has a short name (`s03-upgrade`, `understudy-final-...`) that
 *    is the same for every member; `findSnapshotSet(volumes, name)` finds it again.
 *    Volume ids are stable for the life of the volume: on EBS a clone keeps its id across
 *    a roll-back even though the backing EBS volume is replaced.
 * 4. **Clones are where the host sees them.** `clone` returns each new volume with the
 *    mountpoint where the host (the one the storage was opened with) sees its files.
 * 5. **Roll-back** returns every member of a clone set to the named snapshot set; owned
 *    snapshot sets taken after it are discarded; a later snapshot that is not ours, or that
 *    has clones, makes it refuse before changing anything.
 * 6. **Idempotent deletes.** Destroying something already gone reports `missing`, not an error.
 * 7. **Validation first.** Every id and name is checked (`validateVolumeId`,
 *    `validateSnapshotName`) before any command or API call; a bad one throws an
 *    `InputError` naming the field and nothing runs.
 */
import type { Host } from "../host/types";

/** Backend selection, as plain data (stored in resource inputs). Each backend validates its own fields. */
export interface StorageSpec {
  /** `zfs` or `ebs`. */
  kind: string;
  [option: string]: unknown;
}

/** Small facts we keep on our own volumes (ZFS user properties, EBS tags). */
export type MarkKey =
  /** Which stack created it: only that owner may roll it back or destroy it. */
  | "owner"
  /** On a clone: the snapshot set whose state the clone is in (the rehearsal's resume point). */
  | "head"
  /** On a new-live clone: `failed-attempt` when the promotion that made it did not finish. */
  | "promotion"
  /** What a member of a cluster holds: `data`, `wal`, `tablespace:<oid>`. */
  | "role";

export interface VolumeInfo {
  /** Backend id: a ZFS dataset (`tank/pg13`), an EBS volume (`vol-0abc...`) or an EBS clone's logical id. */
  id: string;
  /** Where the storage's host sees its files; undefined when not mounted. */
  mountpoint?: string;
  /** Our owner mark; undefined when not created by Understudy. */
  owner?: string;
  /** For a clone: the snapshot (backend id) it was made from. */
  origin?: string;
  /** Every mark we keep on it. */
  marks: Partial<Record<MarkKey, string>>;
  /**
   * Settings worth carrying over to a volume that replaces this one in production (ZFS:
   * recordsize, compression, logbias, ...; EBS: volume type, iops, throughput).
   */
  properties: Record<string, string>;
}

/** One member of a snapshot set. */
export interface SnapshotRef {
  /** The volume it was taken of. */
  volume: string;
  /** Backend id: `tank/pg13@s03-upgrade`, `snap-0abc...`. */
  id: string;
  /** ISO time the snapshot was taken. */
  createdAt: string;
  owner?: string;
}

/** Snapshots of several volumes taken at one instant, under one short name. */
export interface SnapshotSet {
  name: string;
  /** One per volume, in the order the volumes were given. */
  members: SnapshotRef[];
  /** ISO time of the set (the earliest member's). */
  createdAt: string;
}

/** Clone `source`'s member of a snapshot set to a new volume `target`. */
export interface CloneRequest {
  /** The source volume id (a member of the set). */
  source: string;
  /** The new volume's id (ZFS: a dataset name whose parent exists; EBS: a logical id). */
  target: string;
  /** Where to mount it (default: the backend's choice, e.g. ZFS inherits from the parent). */
  mountpoint?: string;
  /** Backend properties for the new volume (validated by the backend). */
  properties?: Record<string, string>;
}

export type DestroyOutcome = "destroyed" | "missing" | "not-owned";

export interface Storage {
  /** `zfs`, `ebs`. */
  readonly kind: string;
  /** For messages: backend and where, e.g. `zfs on postgres@db1:22`. Never a secret. */
  readonly description: string;
  /** Where commands run and clones are mounted. */
  readonly host: Host;

  /** Syntax only, no I/O: returns the id or throws `InputError(field)`. */
  validateVolumeId(id: unknown, field: string): string;
  /** Syntax only, no I/O: a short snapshot name valid on this backend. */
  validateSnapshotName(name: unknown, field: string): string;

  /**
   * Ids for clones of `sources` (the primary, holding PGDATA, first) when the primary's
   * clone is `target`: `target` itself, then the others named next to it. No I/O.
   */
  cloneTargets(target: string, sources: string[]): string[];
  /** An id for a new volume called `name` next to `of` (e.g. the new live next to the rehearsal's clone). No I/O. */
  siblingVolume(of: string, name: string): string;

  /** Why a new volume `id` could not be created here (e.g. a ZFS parent that does not exist); undefined when it can. Read-only. */
  checkNewVolume(id: string): Promise<string | undefined>;

  /** A volume (source or clone), or undefined when it does not exist. */
  volume(id: string): Promise<VolumeInfo | undefined>;
  /**
   * The volume holding an absolute path on the host, by its mount (longest mountpoint
   * prefix of the path with symlinks resolved); undefined when the path is on no volume
   * this backend manages (e.g. the root filesystem).
   */
  volumeOfPath(path: string): Promise<VolumeInfo | undefined>;

  /** Take the set `name` of `volumes` at one instant, marked with `owner` (contract 2). */
  snapshot(volumes: string[], name: string, owner: string): Promise<SnapshotSet>;
  /** The set `name` over `volumes`, when every member exists; undefined when none does. Throws when only some do. */
  findSnapshotSet(volumes: string[], name: string): Promise<SnapshotSet | undefined>;
  /** Snapshots of one volume, oldest first. */
  listSnapshots(volume: string): Promise<SnapshotRef[]>;

  /** Clone members of a set to new volumes marked with `owner`; returns them in request order. */
  clone(set: SnapshotSet, requests: CloneRequest[], owner: string): Promise<VolumeInfo[]>;
  /** Return every volume of a clone set to its snapshot set `name` (contract 5). */
  rollback(volumes: string[], name: string, owner: string): Promise<void>;

  /** Destroy our members of the set `name` over `volumes`; one outcome per volume. */
  destroySnapshotSet(volumes: string[], name: string, owner: string): Promise<DestroyOutcome[]>;
  /** Destroy one volume we own (and our own snapshots of it); never a source. */
  destroyVolume(id: string, owner: string): Promise<DestroyOutcome>;

  getMark(volume: string, key: MarkKey): Promise<string | undefined>;
  setMark(volume: string, key: MarkKey, value: string): Promise<void>;
}
