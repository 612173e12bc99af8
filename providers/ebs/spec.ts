/**
 * The EBS storage backend's spec (plain data, stored in resource inputs) and its validation.
 * Everything here is syntax only: no I/O, no AWS call. Every id, tag, device name, zone and
 * region is checked before anything runs; a bad one throws {@link InputError} naming the field.
 *
 * No Pulumi and no AWS SDK imports here: this module is loaded by dynamic providers.
 */
import { InputError } from "../errors";
import { validatePath } from "../validate";

/** One EBS data volume of live, as the user declares it (we never modify it). */
export interface EbsLiveVolume {
  /** `vol-0123456789abcdef0`. */
  volumeId: string;
  /**
   * Where the filesystem on this volume is mounted on live, e.g. `/var/lib/postgresql`.
   * Several volumes with the same mountpoint form one filesystem (LVM or mdadm, see
   * {@link EbsLiveSpec.assemblies}); their order is the member order.
   */
  mountpoint: string;
  /** The device name the volume is attached as on live (`/dev/sdf`) or seen as (`/dev/nvme1n1`). Informative only. */
  device?: string;
}

/**
 * How the volumes of one mountpoint make one filesystem on live, when there are several:
 * - `lvm`: one logical volume `lv` in the volume group `vg` spans them. The clone's physical
 *   volumes carry live's UUIDs, so the rehearsal instance imports them under a new name
 *   (`vgimportclone`) before `vgchange -ay`: two clones of the same set on one instance never clash.
 * - `mdadm`: an md array (RAID 0/1/10) over them; assembled with a new UUID (`--update=uuid`).
 * A mountpoint with one volume needs no entry (`single`).
 */
export type EbsAssembly =
  | { mountpoint: string; kind: "single" }
  | { mountpoint: string; kind: "lvm"; vg: string; lv: string }
  | { mountpoint: string; kind: "mdadm" };

export interface EbsLiveSpec {
  /** Live's instance, `i-0123456789abcdef0`. Read-only to us: never stopped, detached from or modified. */
  instanceId: string;
  /** Live's data volumes (the boot volume is never part of a snapshot set). */
  volumes: EbsLiveVolume[];
  /** How multi-volume mountpoints are assembled (LVM / mdadm). */
  assemblies?: EbsAssembly[];
}

export interface EbsRehearsalSpec {
  /** The instance clones are attached to and mounted on, `i-...` (the storage's host is its SSH connection). */
  instanceId: string;
  /** Its availability zone, e.g. `eu-west-1a`: clone volumes are created there (EBS volumes attach only within one zone). */
  availabilityZone: string;
}

/**
 * How clone volumes are created. Restored EBS volumes load their blocks lazily from S3: the
 * first read of each block is slow (see docs/aws-section.md for figures). Two ways to pay
 * for speed, mutually exclusive here:
 * - `initializationRate` (MiB/s, 100-300): the volume is fully initialized in the background
 *   at that rate (AWS "Provisioned Rate for Volume Initialization", billed on its own line of
 *   the EBS pricing page); predictable: 10 TiB at 300 MiB/s is about 9.7 hours.
 * - `fastSnapshotRestore: true`: volumes created from snapshots with fast snapshot restore
 *   enabled in the zone are fully initialized at creation. Billed per snapshot and zone per
 *   hour while enabled (whether used or not), needs the snapshot to reach `enabled` first
 *   ("60 minutes per TiB to optimize", AWS says), and is limited by a credit bucket per snapshot.
 * FSR limits (AWS): snapshots of at most 16 TiB, 5 FSR-enabled snapshots per region by default,
 * not in Local Zones; a credit bucket of MAX(1, MIN(10, 1024 / snapshot GiB)) volumes per zone.
 * Here FSR is enabled just before the clone volumes are created and disabled right after: a
 * volume made from an `enabled` snapshot is fully initialized at creation, so the hourly
 * charge runs only while the clone set is being made.
 * Neither: the cheapest, and the first full read of the data (the first `pg_upgrade --link`
 * touches little; a VACUUM or a checksum over all tables touches everything) is slow.
 */
export interface EbsVolumeSpec {
  /** Only `gp3` (default). */
  type?: "gp3";
  /** gp3 IOPS, 3,000-80,000 (default 3,000). */
  iops?: number;
  /** gp3 throughput in MiB/s, 125-2,000 (default 125). */
  throughput?: number;
  /** Provisioned initialization rate in MiB/s, 100-300. */
  initializationRate?: number;
  /** Enable fast snapshot restore on the snapshots in the rehearsal zone before creating volumes. */
  fastSnapshotRestore?: boolean;
}

/** Bounds of the waits (all optional). */
export interface EbsWaitSpec {
  /** Shortest poll interval in seconds (default 15, as the SDK's waiters). */
  minDelaySeconds?: number;
  /** Longest poll interval in seconds (default 120). */
  maxDelaySeconds?: number;
  /** How long a snapshot set may take to complete (default 12 h: a first snapshot of a large volume copies all of it). */
  snapshotSeconds?: number;
  /** How long a volume may take to become available / attached / detached (default 15 min). */
  volumeSeconds?: number;
  /** How long fast snapshot restore may take to be enabled (default 6 h). */
  fastSnapshotRestoreSeconds?: number;
  /** How long the attached device may take to appear on the instance (default 120 s). */
  deviceSeconds?: number;
}

/** The `ebs` storage backend. */
export interface EbsStorageSpec {
  kind: "ebs";
  /** AWS region, e.g. `eu-west-1`. */
  region: string;
  /** Another EC2 endpoint URL (a VPC endpoint, or moto in tests). */
  endpoint?: string;
  live: EbsLiveSpec;
  rehearsal: EbsRehearsalSpec;
  volume?: EbsVolumeSpec;
  /**
   * Mount clones under this directory (the live path appended) instead of at live's own
   * paths. Default: live's paths, so that links inside PGDATA (`pg_wal`, `pg_tblspc/*`)
   * stay valid on the clone with no rewrite.
   */
  mountRoot?: string;
  /** Extra tags on everything we create (cost allocation). Keys must not start with `aws:` or `understudy:`. */
  tags?: Record<string, string>;
  waits?: EbsWaitSpec;
  /** SDK attempts per call, throttling included (default 8). */
  maxAttempts?: number;
}

// ---------------------------------------------------------------------------------------
// Syntax

const HEX_ID = (prefix: string) => new RegExp(`^${prefix}-([0-9a-f]{8}|[0-9a-f]{17})$`);
const VOLUME_ID = HEX_ID("vol");
const SNAPSHOT_ID = HEX_ID("snap");
const INSTANCE_ID = HEX_ID("i");
const REGION = /^[a-z]{2}(-[a-z]+)+-\d{1,2}$/;
/** An AZ (`us-east-1a`) or a Local Zone (`us-west-2-lax-1a`). */
const ZONE_SUFFIX = /^([a-z]|-[a-z]+-\d{1,2}[a-z])$/;
/** Tag characters EC2 allows everywhere (ASCII subset): letters, digits, space and `_ . : / = + - @`. */
const TAG_CHARS = /^[A-Za-z0-9 _.:/=+\-@]*$/;
/** Device names for attaching (`/dev/sdf`, `/dev/xvdf`) or as seen on a Nitro instance (`/dev/nvme1n1`). */
const DEVICE = /^\/dev\/((sd|xvd)[b-z][a-z]?|nvme\d{1,2}n1)$/;
const LVM_NAME = /^[A-Za-z0-9+_.][A-Za-z0-9+_.-]{0,126}$/;
/** A clone's logical id: chosen by the user, stable across roll-backs. */
const LOGICAL_ID = /^[a-z][a-z0-9-]{0,62}$/;
const AWS_ID_PREFIX = /^(vol|snap|i|ami|lt|sg|subnet)-/;
/** A snapshot set's short name (a tag value). */
const SNAPSHOT_NAME = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$/;
/** Roots a clone must never be mounted on. */
const FORBIDDEN_MOUNTS = new Set(["/", "/bin", "/boot", "/dev", "/etc", "/lib", "/lib64", "/proc", "/root", "/run", "/sbin", "/sys", "/tmp", "/usr", "/var", "/home"]);

function show(v: unknown): string {
  if (typeof v !== "string") return v === undefined ? "undefined" : JSON.stringify(v) ?? String(v);
  return JSON.stringify(v.length > 60 ? v.slice(0, 60) + "…" : v);
}

function str(v: unknown, field: string): string {
  if (typeof v !== "string") throw new InputError(field, `${show(v)} must be a string`);
  return v;
}

export function validateVolumeIdSyntax(v: unknown, field: string): string {
  if (!VOLUME_ID.test(str(v, field))) throw new InputError(field, `${show(v)} is not an EBS volume id (vol- and 8 or 17 lower-case hex digits)`);
  return v as string;
}

export function validateSnapshotId(v: unknown, field: string): string {
  if (!SNAPSHOT_ID.test(str(v, field))) throw new InputError(field, `${show(v)} is not an EBS snapshot id (snap- and 8 or 17 lower-case hex digits)`);
  return v as string;
}

export function validateInstanceId(v: unknown, field: string): string {
  if (!INSTANCE_ID.test(str(v, field))) throw new InputError(field, `${show(v)} is not an EC2 instance id (i- and 8 or 17 lower-case hex digits)`);
  return v as string;
}

export function validateRegion(v: unknown, field: string): string {
  if (!REGION.test(str(v, field))) throw new InputError(field, `${show(v)} is not an AWS region (like eu-west-1)`);
  return v as string;
}

/** An availability zone of `region` (when given). */
export function validateAvailabilityZone(v: unknown, field: string, region?: string): string {
  const s = str(v, field);
  const m = /^([a-z]{2}(-[a-z]+)+-\d{1,2})(.*)$/.exec(s);
  if (!m || !ZONE_SUFFIX.test(m[3])) throw new InputError(field, `${show(v)} is not an availability zone (like eu-west-1a)`);
  if (region && m[1] !== region) throw new InputError(field, `${show(v)} is not in the region ${region}`);
  return s;
}

export function validateDevice(v: unknown, field: string): string {
  if (!DEVICE.test(str(v, field))) throw new InputError(field, `${show(v)} is not an EBS device name (/dev/sdf, /dev/xvdf or /dev/nvme1n1)`);
  return v as string;
}

/** An absolute path by the shared rule (providers/validate.ts: the same as every other path); not `/` or a system directory. */
export function validateMountpoint(v: unknown, field: string): string {
  const s = validatePath(str(v, field), field, "mountpoint");
  if (FORBIDDEN_MOUNTS.has(s)) throw new InputError(field, `${show(v)} is a system directory; a clone is never mounted there`);
  return s;
}

export function validateTagKey(v: unknown, field: string): string {
  const s = str(v, field);
  if (s.length < 1 || s.length > 128 || !TAG_CHARS.test(s)) throw new InputError(field, `${show(v)} is not a tag key (1-128 of letters, digits, space, _ . : / = + - @)`);
  if (/^aws:/i.test(s)) throw new InputError(field, `${show(v)}: keys starting with aws: are reserved by AWS`);
  return s;
}

export function validateTagValue(v: unknown, field: string): string {
  const s = str(v, field);
  if (s.length > 256 || !TAG_CHARS.test(s)) throw new InputError(field, `${show(v)} is not a tag value (at most 256 of letters, digits, space, _ . : / = + - @)`);
  return s;
}

/** A user tag map: valid keys and values, none in our `understudy:` namespace. */
export function validateTags(v: unknown, field: string): Record<string, string> {
  if (!v || typeof v !== "object" || Array.isArray(v)) throw new InputError(field, "must be a map of tag key to value");
  const entries = Object.entries(v as Record<string, unknown>);
  if (entries.length > 30) throw new InputError(field, "at most 30 tags (EC2 allows 50, we add up to 12)");
  for (const [k, val] of entries) {
    validateTagKey(k, `${field}.${k}`);
    if (/^understudy:/.test(k)) throw new InputError(`${field}.${k}`, "the understudy: namespace is managed by Understudy");
    validateTagValue(val, `${field}.${k}`);
  }
  return v as Record<string, string>;
}

/** A clone's logical id (stable across roll-back): lower-case letters, digits and `-`, not shaped like an AWS id. */
export function validateLogicalId(v: unknown, field: string): string {
  const s = str(v, field);
  if (!LOGICAL_ID.test(s)) throw new InputError(field, `${show(v)} is not a clone id (1-63 of a-z 0-9 -, starting with a letter)`);
  if (AWS_ID_PREFIX.test(s)) throw new InputError(field, `${show(v)} looks like an AWS id; a clone's logical id must not start with vol-, snap-, i-, ami-, lt-, sg- or subnet-`);
  return s;
}

/** A storage volume id on EBS: a live filesystem (its first `vol-` id) or a clone's logical id. */
export function validateEbsVolumeId(v: unknown, field: string): string {
  const s = str(v, field);
  if (s.startsWith("vol-")) return validateVolumeIdSyntax(s, field);
  return validateLogicalId(s, field);
}

export function validateSnapshotName(v: unknown, field: string): string {
  if (!SNAPSHOT_NAME.test(str(v, field))) throw new InputError(field, `${show(v)} is not a snapshot name (1-128 of letters, digits, _ . : -, starting with a letter or digit)`);
  return v as string;
}

function int(v: unknown, field: string, min: number, max: number): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max) throw new InputError(field, `${show(v)} must be an integer from ${min} to ${max}`);
  return v;
}

export function validateEndpoint(v: unknown, field: string): string {
  const s = str(v, field);
  let u: URL;
  try {
    u = new URL(s);
  } catch {
    throw new InputError(field, `${show(v)} is not a URL`);
  }
  if (u.protocol !== "https:" && u.protocol !== "http:") throw new InputError(field, `${show(v)} must be an http(s) URL`);
  if (u.username || u.password) throw new InputError(field, "must not carry credentials");
  if (u.search || u.hash || (u.pathname !== "/" && u.pathname !== "")) throw new InputError(field, `${show(v)} must be scheme://host[:port] only`);
  if (/[\s\0]/.test(s)) throw new InputError(field, "must not contain spaces or control characters");
  return s;
}

function checkObject(v: unknown, field: string, known: string[]): Record<string, unknown> {
  if (!v || typeof v !== "object" || Array.isArray(v)) throw new InputError(field, "must be an object");
  const extra = Object.keys(v).filter((k) => !known.includes(k) && (v as Record<string, unknown>)[k] !== undefined);
  if (extra.length) throw new InputError(`${field}.${extra[0]}`, `unknown field (known: ${known.join(", ")})`);
  return v as Record<string, unknown>;
}

/** One filesystem of live: its mountpoint, member volumes (in order) and assembly. */
export interface LiveFilesystem {
  /** The storage volume id: the first member's volume id. */
  id: string;
  mountpoint: string;
  members: string[];
  assembly: EbsAssembly;
}

/** Live's filesystems from a validated spec, in the order their first volume is declared. */
export function liveFilesystems(spec: EbsStorageSpec): LiveFilesystem[] {
  const byMount = new Map<string, LiveFilesystem>();
  for (const v of spec.live.volumes) {
    const fs = byMount.get(v.mountpoint);
    if (fs) fs.members.push(v.volumeId);
    else byMount.set(v.mountpoint, { id: v.volumeId, mountpoint: v.mountpoint, members: [v.volumeId], assembly: { mountpoint: v.mountpoint, kind: "single" } });
  }
  for (const a of spec.live.assemblies ?? []) {
    const fs = byMount.get(a.mountpoint);
    if (fs) fs.assembly = a;
  }
  return [...byMount.values()];
}

/**
 * Checks an `ebs` spec (no I/O) and returns it with defaults filled in. Throws
 * {@link InputError} naming `field.<path>`.
 */
export function validateEbsSpec(raw: unknown, field = "storage"): EbsStorageSpec {
  const s = checkObject(raw, field, ["kind", "region", "endpoint", "live", "rehearsal", "volume", "mountRoot", "tags", "waits", "maxAttempts"]);
  if (s.kind !== "ebs") throw new InputError(`${field}.kind`, `${show(s.kind)} is not "ebs"`);
  const region = validateRegion(s.region, `${field}.region`);
  if (s.endpoint !== undefined) validateEndpoint(s.endpoint, `${field}.endpoint`);

  const live = checkObject(s.live, `${field}.live`, ["instanceId", "volumes", "assemblies"]);
  validateInstanceId(live.instanceId, `${field}.live.instanceId`);
  if (!Array.isArray(live.volumes) || live.volumes.length === 0) throw new InputError(`${field}.live.volumes`, "must list live's data volumes (at least one)");
  if (live.volumes.length > 26) throw new InputError(`${field}.live.volumes`, "at most 26 data volumes");
  const seen = new Set<string>();
  live.volumes.forEach((v: unknown, i: number) => {
    const f = `${field}.live.volumes[${i}]`;
    const o = checkObject(v, f, ["volumeId", "mountpoint", "device"]);
    const id = validateVolumeIdSyntax(o.volumeId, `${f}.volumeId`);
    if (seen.has(id)) throw new InputError(`${f}.volumeId`, `${id} is listed twice`);
    seen.add(id);
    validateMountpoint(o.mountpoint, `${f}.mountpoint`);
    if (o.device !== undefined) validateDevice(o.device, `${f}.device`);
  });
  const mounts = new Map<string, number>();
  for (const v of live.volumes as EbsLiveVolume[]) mounts.set(v.mountpoint, (mounts.get(v.mountpoint) ?? 0) + 1);
  const assembled = new Set<string>();
  const assemblies = live.assemblies === undefined ? [] : live.assemblies;
  if (!Array.isArray(assemblies)) throw new InputError(`${field}.live.assemblies`, "must be a list");
  assemblies.forEach((a: unknown, i: number) => {
    const f = `${field}.live.assemblies[${i}]`;
    const o = checkObject(a, f, ["mountpoint", "kind", "vg", "lv"]);
    const mp = validateMountpoint(o.mountpoint, `${f}.mountpoint`);
    if (!mounts.has(mp)) throw new InputError(`${f}.mountpoint`, `${mp} is not the mountpoint of any volume in live.volumes`);
    if (assembled.has(mp)) throw new InputError(`${f}.mountpoint`, `${mp} has two assemblies`);
    assembled.add(mp);
    if (o.kind !== "lvm" && o.kind !== "mdadm" && o.kind !== "single") throw new InputError(`${f}.kind`, `${show(o.kind)} must be "lvm", "mdadm" or "single"`);
    if (o.kind === "single" && mounts.get(mp)! > 1) throw new InputError(`${f}.kind`, `${mp} has ${mounts.get(mp)} volumes: "single" needs exactly one`);
    if (o.kind === "lvm") {
      for (const k of ["vg", "lv"] as const) {
        if (!LVM_NAME.test(str(o[k], `${f}.${k}`)) || o[k] === "." || o[k] === "..") throw new InputError(`${f}.${k}`, `${show(o[k])} is not an LVM name (letters, digits, + _ . -; not starting with -)`);
      }
    } else if (o.vg !== undefined || o.lv !== undefined) {
      throw new InputError(`${f}.vg`, `vg/lv are for kind "lvm" only`);
    }
  });
  for (const [mp, n] of mounts) {
    if (n > 1 && !assembled.has(mp)) {
      throw new InputError(`${field}.live.assemblies`, `${n} volumes are mounted at ${mp}: say how they form one filesystem ({ mountpoint: "${mp}", kind: "lvm", vg, lv } or kind: "mdadm")`);
    }
  }
  const reh = checkObject(s.rehearsal, `${field}.rehearsal`, ["instanceId", "availabilityZone"]);
  const rid = validateInstanceId(reh.instanceId, `${field}.rehearsal.instanceId`);
  if (rid === live.instanceId) throw new InputError(`${field}.rehearsal.instanceId`, `${rid} is live's instance; clones are attached to a separate rehearsal instance`);
  validateAvailabilityZone(reh.availabilityZone, `${field}.rehearsal.availabilityZone`, region);

  if (s.volume !== undefined) {
    const v = checkObject(s.volume, `${field}.volume`, ["type", "iops", "throughput", "initializationRate", "fastSnapshotRestore"]);
    if (v.type !== undefined && v.type !== "gp3") throw new InputError(`${field}.volume.type`, `${show(v.type)}: only "gp3" is supported`);
    if (v.iops !== undefined) int(v.iops, `${field}.volume.iops`, 3000, 80000);
    if (v.throughput !== undefined) int(v.throughput, `${field}.volume.throughput`, 125, 2000);
    if (v.initializationRate !== undefined) int(v.initializationRate, `${field}.volume.initializationRate`, 100, 300);
    if (v.fastSnapshotRestore !== undefined && typeof v.fastSnapshotRestore !== "boolean") throw new InputError(`${field}.volume.fastSnapshotRestore`, "must be true or false");
    if (v.fastSnapshotRestore && v.initializationRate !== undefined) {
      throw new InputError(`${field}.volume.initializationRate`, "choose either initializationRate or fastSnapshotRestore (with both, AWS uses the rate and the fast snapshot restore hours are paid for nothing)");
    }
  }
  const fsr = (s.volume as EbsVolumeSpec | undefined)?.fastSnapshotRestore;
  if (fsr && /-[a-z]+-\d{1,2}[a-z]$/.test(String(reh.availabilityZone).slice(region.length))) {
    throw new InputError(`${field}.volume.fastSnapshotRestore`, `fast snapshot restore is not available in Local Zones (${reh.availabilityZone})`);
  }
  if (s.mountRoot !== undefined) validateMountpoint(s.mountRoot, `${field}.mountRoot`);
  if (s.tags !== undefined) validateTags(s.tags, `${field}.tags`);
  if (s.waits !== undefined) {
    const w = checkObject(s.waits, `${field}.waits`, ["minDelaySeconds", "maxDelaySeconds", "snapshotSeconds", "volumeSeconds", "fastSnapshotRestoreSeconds", "deviceSeconds"]);
    const day = 7 * 24 * 3600;
    if (w.minDelaySeconds !== undefined) int(w.minDelaySeconds, `${field}.waits.minDelaySeconds`, 1, 3600);
    if (w.maxDelaySeconds !== undefined) int(w.maxDelaySeconds, `${field}.waits.maxDelaySeconds`, 1, 3600);
    if ((w.maxDelaySeconds as number | undefined) !== undefined && (w.minDelaySeconds as number | undefined) !== undefined && (w.maxDelaySeconds as number) < (w.minDelaySeconds as number)) {
      throw new InputError(`${field}.waits.maxDelaySeconds`, "must not be below minDelaySeconds");
    }
    for (const k of ["snapshotSeconds", "volumeSeconds", "fastSnapshotRestoreSeconds", "deviceSeconds"]) if (w[k] !== undefined) int(w[k], `${field}.waits.${k}`, 1, day);
  }
  if (s.maxAttempts !== undefined) int(s.maxAttempts, `${field}.maxAttempts`, 1, 20);
  return { ...(raw as EbsStorageSpec), kind: "ebs" };
}
