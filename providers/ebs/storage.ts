/**
 * The EBS implementation of {@link Storage} (providers/storage/types.ts).
 *
 * ## What a "volume" is here
 * A storage volume is one **filesystem**, backed by one or more EBS volumes:
 * - a **live filesystem** is named by the id of its first EBS volume as declared in the spec
 *   (`live.volumes`, in order; several volumes with one mountpoint are one LVM / mdadm filesystem);
 * - a **clone** is named by a **logical id** the caller chooses (`rehearsal-pg13`): its EBS
 *   volumes carry the tag `understudy:volume=<logical id>` (scoped to the rehearsal instance),
 *   so the id stays the same when a roll-back replaces the EBS volumes underneath.
 *
 * ## Where clones are mounted
 * On the rehearsal instance (the storage's host), at the **same paths as on live** (or under
 * `mountRoot` when set). Links inside PGDATA (`pg_wal` -> `/wal/pg_wal`, `pg_tblspc/<oid>` ->
 * `/tblspc/...`) then point at the clones of their targets with no rewrite, and never into
 * live, which is on another machine.
 *
 * ## Snapshot sets
 * One `CreateSnapshots` call per set, on one instance (live's for live filesystems, the
 * rehearsal instance's for clones): crash-consistent across all member volumes. Each snapshot
 * is tagged `understudy:set=<name>`, `understudy:volume=<storage volume>`, `understudy:member=<i>`
 * and our owner. A member of a set is one {@link SnapshotRef} per storage volume whose `id` is
 * its snapshots joined by `+` (`snap-a+snap-b` for a two-volume LVM filesystem).
 *
 * Snapshots made by an `aws.dlm.LifecyclePolicy` from {@link EbsStorage}'s schedule carry
 * `understudy:schedule=<prefix>` but no set name: a DLM run over an instance is one
 * multi-volume set, named here `<prefix>-<YYYYMMDDTHHMMSSZ>` after its start time.
 */
import type { Host } from "../host/types";
import type { CloneRequest, DestroyOutcome, MarkKey, SnapshotRef, SnapshotSet, Storage, StorageSpec, VolumeInfo } from "../storage/types";
import type { Snapshot, Volume } from "@aws-sdk/client-ec2";
import { InputError } from "../errors";
import { EbsDriver, EbsError, TAGS, tagsOf } from "./driver";
import {
  DeviceLookup,
  Assembly,
  assemble,
  assemblyTag,
  deassemble,
  findDevice,
  mountClone,
  nvmeDeviceLookup,
  parseAssemblyTag,
  unmountClone,
} from "./instance";
import {
  EbsStorageSpec,
  LiveFilesystem,
  liveFilesystems,
  validateEbsSpec,
  validateEbsVolumeId,
  validateLogicalId,
  validateMountpoint,
  validateSnapshotId,
  validateSnapshotName,
  validateTagValue,
} from "./spec";

/** Extra tags we keep (beyond driver.TAGS). */
const SCOPE = "understudy:scope";
const MEMBERS = "understudy:members";
const SCHEDULE = "understudy:schedule";
/** When we asked for the snapshot (ISO, milliseconds): orders sets taken within one second (StartTime has seconds). */
const CREATED = "understudy:created";

/** Clone ids of a set: the primary at `target`, the others at `<target>-2`, `<target>-3`, ... (logical ids). */
export function ebsCloneTargets(target: string, sources: string[]): string[] {
  validateLogicalId(target, "clone");
  return sources.map((_s, i) => (i === 0 ? target : validateLogicalId(`${target}-${i + 1}`, "clone")));
}

/** A logical id made from a name (lower case, `-` for anything else). */
export function ebsSibling(name: string): string {
  const id = name.toLowerCase().replace(/[^a-z0-9-]+/g, "-").replace(/^[^a-z]+/, "").replace(/-+$/, "").slice(0, 63);
  return validateLogicalId(id, "volume");
}

function createdAt(s: Snapshot): string {
  return tagsOf(s)[CREATED] ?? iso(s.StartTime);
}

const MARK_TAGS: Record<MarkKey, string> = { owner: TAGS.owner, head: TAGS.head, promotion: TAGS.promotion, role: TAGS.role };

/** Test seams (production uses the defaults). */
export interface EbsStorageOptions {
  /** An EC2 client (tests add middleware). */
  client?: import("@aws-sdk/client-ec2").EC2Client;
  /** How attached volumes are found on the instance (default: NVMe serial, {@link nvmeDeviceLookup}). */
  deviceLookup?: DeviceLookup;
  onProgress?: (message: string) => void;
}

/** Name of a DLM-made set, from its schedule prefix and start time. */
export function dlmSetName(prefix: string, start: Date): string {
  return `${prefix}-${start.toISOString().replace(/[-:]/g, "").replace(/\.\d+Z$/, "Z")}`;
}

function iso(d: Date | undefined): string {
  return (d ?? new Date(0)).toISOString();
}

/** Lexical normalization of an absolute path (no I/O). */
function normalize(path: string, field: string): string {
  if (typeof path !== "string" || !path.startsWith("/") || /[\0\n]/.test(path)) throw new InputError(field, `${JSON.stringify(path)} must be an absolute path`);
  const out: string[] = [];
  for (const p of path.split("/")) {
    if (p === "" || p === ".") continue;
    if (p === "..") out.pop();
    else out.push(p);
  }
  return "/" + out.join("/");
}

function under(path: string, mountpoint: string): boolean {
  return path === mountpoint || path.startsWith(mountpoint === "/" ? "/" : mountpoint + "/");
}

const ALIVE = (v: Volume) => v.State !== "deleting" && v.State !== "deleted" && v.State !== "error";

export class EbsStorage implements Storage {
  readonly kind = "ebs";
  readonly description: string;
  readonly driver: EbsDriver;
  readonly spec: EbsStorageSpec;
  private readonly live: LiveFilesystem[];
  private readonly lookup: DeviceLookup;

  constructor(spec: EbsStorageSpec, readonly host: Host, opts: EbsStorageOptions = {}) {
    this.spec = validateEbsSpec(spec, "storage");
    this.live = liveFilesystems(this.spec);
    this.lookup = opts.deviceLookup ?? nvmeDeviceLookup;
    this.description = `ebs in ${spec.region} (live ${spec.live.instanceId}, clones on ${spec.rehearsal.instanceId} via ${host.description})`;
    this.driver = new EbsDriver({
      region: spec.region,
      endpoint: spec.endpoint,
      maxAttempts: spec.maxAttempts,
      waits: spec.waits,
      tags: spec.tags,
      client: opts.client,
      onProgress: opts.onProgress,
      protect: { instanceIds: [spec.live.instanceId], volumeIds: spec.live.volumes.map((v) => v.volumeId) },
    });
  }

  cloneTargets(target: string, sources: string[]): string[] {
    return ebsCloneTargets(target, sources);
  }

  siblingVolume(_of: string, name: string): string {
    return ebsSibling(name);
  }

  async checkNewVolume(id: string): Promise<string | undefined> {
    validateLogicalId(id, "volume");
    return undefined; // a logical id is free or ours: volume() tells which
  }

  validateVolumeId(id: unknown, field: string): string {
    const s = validateEbsVolumeId(id, field);
    if (s.startsWith("vol-")) {
      const member = this.live.find((f) => f.members.includes(s));
      if (!member) throw new InputError(field, `${s} is not one of live's data volumes declared in storage.live.volumes`);
      if (member.id !== s) throw new InputError(field, `${s} is member ${member.members.indexOf(s) + 1} of the ${member.assembly.kind} filesystem at ${member.mountpoint}; name that filesystem by its first volume ${member.id}`);
    }
    return s;
  }

  validateSnapshotName(name: unknown, field: string): string {
    return validateSnapshotName(name, field);
  }

  private liveFs(id: string): LiveFilesystem | undefined {
    return this.live.find((f) => f.id === id);
  }

  private isLive(id: string): boolean {
    return id.startsWith("vol-");
  }

  /** A clone's EBS volumes (alive), member order. */
  private async cloneVolumes(id: string): Promise<Volume[]> {
    validateLogicalId(id, "volume");
    const vols = await this.driver.findVolumes([
      { Name: `tag:${TAGS.volume}`, Values: [id] },
      { Name: `tag:${SCOPE}`, Values: [this.spec.rehearsal.instanceId] },
    ]);
    return vols.filter(ALIVE).sort((a, b) => Number(tagsOf(a)[TAGS.member] ?? 0) - Number(tagsOf(b)[TAGS.member] ?? 0));
  }

  private cloneInfo(id: string, vols: Volume[]): VolumeInfo {
    const t = tagsOf(vols[0]);
    const marks: VolumeInfo["marks"] = {};
    for (const [k, tag] of Object.entries(MARK_TAGS) as Array<[MarkKey, string]>) if (t[tag]) marks[k] = t[tag];
    return {
      id,
      mountpoint: t[TAGS.mountpoint] || undefined,
      owner: t[TAGS.owner] || undefined,
      origin: vols.map((v) => v.SnapshotId ?? "").join("+") || undefined,
      marks,
      properties: volumeProperties(vols, t[TAGS.assembly]),
    };
  }

  async volume(id: string): Promise<VolumeInfo | undefined> {
    this.validateVolumeId(id, "volume");
    if (this.isLive(id)) {
      const fs = this.liveFs(id)!;
      const vols = await this.driver.describeVolumes(fs.members);
      if (vols.length === 0) return undefined;
      if (vols.length < fs.members.length) {
        const missing = fs.members.filter((m) => !vols.some((v) => v.VolumeId === m));
        throw new EbsError(`live filesystem ${fs.mountpoint}: volume(s) ${missing.join(", ")} declared in storage.live.volumes do not exist in ${this.spec.region}`);
      }
      const ordered = fs.members.map((m) => vols.find((v) => v.VolumeId === m)!);
      const t = tagsOf(ordered[0]);
      const marks: VolumeInfo["marks"] = {};
      for (const [k, tag] of Object.entries(MARK_TAGS) as Array<[MarkKey, string]>) if (t[tag]) marks[k] = t[tag];
      // Where live mounts it (on live's instance): the rehearsal instance sees it only through a clone.
      return { id, mountpoint: fs.mountpoint, owner: undefined, marks, properties: volumeProperties(ordered, assemblyTag(toAssembly(fs))) };
    }
    const vols = await this.cloneVolumes(id);
    return vols.length ? this.cloneInfo(id, vols) : undefined;
  }

  /**
   * The clone mounted on the rehearsal instance whose mountpoint holds `path` (symlinks
   * resolved there with `realpath -m`), else live's filesystem holding `path` by the
   * spec's declared mounts (live's paths as live sees them; resolve links on live first).
   */
  async volumeOfPath(path: string): Promise<VolumeInfo | undefined> {
    let p = normalize(path, "path");
    const clones = await this.driver.findVolumes([
      { Name: `tag:${SCOPE}`, Values: [this.spec.rehearsal.instanceId] },
      { Name: "attachment.instance-id", Values: [this.spec.rehearsal.instanceId] },
    ]);
    const mounted = new Map<string, string>();
    for (const v of clones.filter(ALIVE)) {
      const t = tagsOf(v);
      if (t[TAGS.mountpoint] && t[TAGS.volume]) mounted.set(t[TAGS.mountpoint], t[TAGS.volume]);
    }
    if (mounted.size) {
      const r = await this.host.run(["realpath", "-m", "--", p], { okExitCodes: [0, 1], timeoutMs: 30_000 });
      if (r.exitCode === 0 && r.stdout.trim().startsWith("/")) p = r.stdout.trim();
      const best = [...mounted.keys()].filter((m) => under(p, m)).sort((a, b) => b.length - a.length)[0];
      if (best) return this.volume(mounted.get(best)!);
    }
    const fs = this.live.filter((f) => under(p, f.mountpoint)).sort((a, b) => b.mountpoint.length - a.mountpoint.length)[0];
    return fs ? this.volume(fs.id) : undefined;
  }

  // -------------------------------------------------------------------------------------
  // Snapshot sets

  /** The EBS volume ids of storage volumes, with the instance they all must be on. */
  private async members(volumes: string[], field: string): Promise<{ instanceId: string; groups: Array<{ id: string; ebs: string[] }> }> {
    volumes.forEach((v, i) => this.validateVolumeId(v, `${field}[${i}]`));
    if (new Set(volumes).size !== volumes.length) throw new InputError(field, "lists a volume twice");
    const live = volumes.filter((v) => this.isLive(v));
    if (live.length && live.length !== volumes.length) {
      throw new InputError(field, `mixes live filesystems (${live.join(", ")}) and clones (${volumes.filter((v) => !this.isLive(v)).join(", ")}); a set is taken on one instance`);
    }
    if (live.length) return { instanceId: this.spec.live.instanceId, groups: volumes.map((v) => ({ id: v, ebs: this.liveFs(v)!.members })) };
    const groups: Array<{ id: string; ebs: string[] }> = [];
    for (const v of volumes) {
      const vols = await this.cloneVolumes(v);
      if (!vols.length) throw new EbsError(`clone ${v} does not exist on ${this.spec.rehearsal.instanceId}`);
      groups.push({ id: v, ebs: vols.map((x) => x.VolumeId!) });
    }
    return { instanceId: this.spec.rehearsal.instanceId, groups };
  }

  async snapshot(volumes: string[], name: string, owner: string): Promise<SnapshotSet> {
    validateSnapshotName(name, "name");
    if (!owner) throw new InputError("owner", "a snapshot set needs an owner");
    validateTagValue(owner, "owner");
    const { instanceId, groups } = await this.members(volumes, "volumes");
    const existing = await this.findSnapshotSet(volumes, name);
    if (existing) {
      const foreign = existing.members.filter((m) => m.owner !== owner);
      if (foreign.length) throw new EbsError(`snapshot set ${name} already exists for ${foreign.map((m) => m.volume).join(", ")}, not created by this stack; nothing was created`);
      this.driver.opts.onProgress?.(`snapshot set ${name} already exists and is ours (an interrupted run?): taking it over`);
      return existing;
    }
    const perVolume: Record<string, Record<string, string>> = {};
    for (const g of groups) g.ebs.forEach((e, i) => (perVolume[e] = { [TAGS.volume]: g.id, [TAGS.member]: String(i), [MEMBERS]: String(g.ebs.length) }));
    const snaps = await this.driver.createSnapshotSet({
      instanceId,
      volumeIds: groups.flatMap((g) => g.ebs),
      tags: {
        [TAGS.owner]: owner,
        [TAGS.set]: name,
        [CREATED]: new Date().toISOString(),
        ...(instanceId === this.spec.rehearsal.instanceId ? { [SCOPE]: instanceId } : {}),
        Name: `understudy ${name}`,
      },
      perVolume,
      label: name,
    });
    return this.assembleSet(name, volumes, groups.map((g) => g.ebs.map((e) => snaps.find((s) => s.VolumeId === e)!)));
  }

  private assembleSet(name: string, volumes: string[], perVolume: Snapshot[][]): SnapshotSet {
    const members: SnapshotRef[] = volumes.map((v, i) => {
      const snaps = perVolume[i];
      const t = tagsOf(snaps[0]);
      return {
        volume: v,
        id: snaps.map((s) => s.SnapshotId!).join("+"),
        createdAt: createdAt(snaps[0]),
        owner: t[TAGS.owner] || undefined,
      };
    });
    const earliest = members.map((m) => m.createdAt).sort()[0];
    return { name, members, createdAt: earliest };
  }

  /** Our (tagged) snapshots of one storage volume named `name`, member order; [] when none. */
  private async namedMembers(volume: string, name: string): Promise<Snapshot[]> {
    const snaps = (await this.driver.findSnapshots([
      { Name: `tag:${TAGS.set}`, Values: [name] },
      ...this.ourSnapshotsOf(volume),
    ])).filter((s) => s.State !== "error");
    return snaps.sort((a, b) => Number(tagsOf(a)[TAGS.member] ?? 0) - Number(tagsOf(b)[TAGS.member] ?? 0));
  }

  /** Snapshots of a DLM run named `<prefix>-<time>` over one live filesystem, member order. */
  private async dlmMembers(volume: string, name: string): Promise<Snapshot[]> {
    const fs = this.liveFs(volume);
    const m = /^(.*)-(\d{8}T\d{6}Z)$/.exec(name);
    if (!fs || !m) return [];
    const out: Snapshot[] = [];
    for (const member of fs.members) {
      const snaps = await this.driver.findSnapshots([
        { Name: "volume-id", Values: [member] },
        { Name: `tag:${SCHEDULE}`, Values: [m[1]] },
      ]);
      const hit = snaps.find((s) => s.StartTime && dlmSetName(m[1], s.StartTime) === name) ??
        snaps.find((s) => s.StartTime && Math.abs(s.StartTime.getTime() - parseCompact(m[2])) < 60_000);
      if (!hit) return [];
      out.push(hit);
    }
    return out;
  }

  /** Filters for our snapshots of a storage volume (a clone's are scoped to the rehearsal instance). */
  private ourSnapshotsOf(volume: string): Array<{ Name: string; Values: string[] }> {
    return [
      { Name: `tag:${TAGS.volume}`, Values: [volume] },
      ...(this.isLive(volume) ? [] : [{ Name: `tag:${SCOPE}`, Values: [this.spec.rehearsal.instanceId] }]),
    ];
  }

  private expectedMembers(volume: string, snaps: Snapshot[]): number {
    const fs = this.liveFs(volume);
    if (fs) return fs.members.length;
    return Number(tagsOf(snaps[0])[MEMBERS] ?? snaps.length);
  }

  async findSnapshotSet(volumes: string[], name: string): Promise<SnapshotSet | undefined> {
    validateSnapshotName(name, "name");
    volumes.forEach((v, i) => this.validateVolumeId(v, `volumes[${i}]`));
    const per: Snapshot[][] = [];
    for (const v of volumes) {
      let snaps = await this.namedMembers(v, name);
      if (!snaps.length && this.isLive(v)) snaps = await this.dlmMembers(v, name);
      if (snaps.length) {
        const want = this.expectedMembers(v, snaps);
        const members = new Set(snaps.map((s) => tagsOf(s)[TAGS.member] ?? "0"));
        if (snaps.length !== want || members.size !== want) {
          throw new EbsError(`snapshot set ${name} of ${v} is incomplete or ambiguous: ${snaps.length} snapshots (${snaps.map((s) => s.SnapshotId).join(", ")}) for ${want} member volume(s)`);
        }
      }
      per.push(snaps);
    }
    const have = per.filter((p) => p.length).length;
    if (have === 0) return undefined;
    if (have < volumes.length) {
      throw new EbsError(`snapshot set ${name} exists for ${volumes.filter((_, i) => per[i].length).join(", ")} but not for ${volumes.filter((_, i) => !per[i].length).join(", ")}`);
    }
    return this.assembleSet(name, volumes, per);
  }

  /** Snapshot sets over one storage volume (ours, and for live also DLM's), oldest first; one ref per set. */
  async listSnapshots(volume: string): Promise<SnapshotRef[]> {
    this.validateVolumeId(volume, "volume");
    const ours = await this.driver.findSnapshots(this.ourSnapshotsOf(volume));
    const bySet = new Map<string, Snapshot[]>();
    for (const s of ours) {
      const t = tagsOf(s);
      const key = t[TAGS.set] ?? s.SnapshotId!;
      bySet.set(key, [...(bySet.get(key) ?? []), s]);
    }
    const refs: SnapshotRef[] = [...bySet.values()].map((snaps) => {
      snaps.sort((a, b) => Number(tagsOf(a)[TAGS.member] ?? 0) - Number(tagsOf(b)[TAGS.member] ?? 0));
      return { volume, id: snaps.map((s) => s.SnapshotId!).join("+"), createdAt: createdAt(snaps[0]), owner: tagsOf(snaps[0])[TAGS.owner] || undefined };
    });
    const fs = this.liveFs(volume);
    if (fs) {
      // DLM (and anyone else's) snapshots of live's first member: one ref per run, members matched by time.
      const others = (await this.driver.findSnapshots([{ Name: "volume-id", Values: [fs.members[0]] }])).filter((s) => !tagsOf(s)[TAGS.volume]);
      for (const s of others) {
        const ids = [s.SnapshotId!];
        for (const m of fs.members.slice(1)) {
          const peer = (await this.driver.findSnapshots([{ Name: "volume-id", Values: [m] }])).find(
            (x) => !tagsOf(x)[TAGS.volume] && Math.abs((x.StartTime?.getTime() ?? 0) - (s.StartTime?.getTime() ?? 0)) < 60_000,
          );
          if (peer) ids.push(peer.SnapshotId!);
        }
        if (ids.length === fs.members.length) refs.push({ volume, id: ids.join("+"), createdAt: iso(s.StartTime), owner: tagsOf(s)[TAGS.owner] || undefined });
      }
    }
    return refs.sort((a, b) => a.createdAt.localeCompare(b.createdAt));
  }

  /** The set name of a listed ref (ours: the set tag; DLM: prefix and time). */
  async setNameOf(ref: SnapshotRef): Promise<string | undefined> {
    const first = ref.id.split("+")[0];
    const s = await this.driver.snapshot(validateSnapshotId(first, "snapshot"));
    if (!s) return undefined;
    const t = tagsOf(s);
    if (t[TAGS.set]) return t[TAGS.set];
    if (t[SCHEDULE] && s.StartTime) return dlmSetName(t[SCHEDULE], s.StartTime);
    return undefined;
  }

  // -------------------------------------------------------------------------------------
  // Clones

  /** Where a clone of `source` is mounted by default: live's path, or under mountRoot. */
  private defaultMountpoint(liveMountpoint: string): string {
    return this.spec.mountRoot ? `${this.spec.mountRoot}${liveMountpoint}` : liveMountpoint;
  }

  async clone(set: SnapshotSet, requests: CloneRequest[], owner: string): Promise<VolumeInfo[]> {
    if (!owner) throw new InputError("owner", "a clone needs an owner");
    validateTagValue(owner, "owner");
    validateSnapshotName(set.name, "set.name");
    type Plan = { req: CloneRequest; snaps: string[]; assembly: Assembly; mountpoint: string; source: string; iops?: number; throughput?: number };
    const plans: Plan[] = [];
    const targets = new Set<string>();
    const mounts = new Set<string>();
    requests.forEach((req, i) => {
      const f = `requests[${i}]`;
      this.validateVolumeId(req.source, `${f}.source`);
      validateLogicalId(req.target, `${f}.target`);
      if (targets.has(req.target)) throw new InputError(`${f}.target`, `${req.target} is requested twice`);
      targets.add(req.target);
      const member = set.members.find((m) => m.volume === req.source);
      if (!member) throw new InputError(`${f}.source`, `${req.source} is not a member of snapshot set ${set.name}`);
      const snaps = member.id.split("+").map((s, j) => validateSnapshotId(s, `set.members.${req.source}.id[${j}]`));
      const props = cloneProperties(req.properties ?? {});
      for (const k of Object.keys(props)) if (k !== "iops" && k !== "throughput") throw new InputError(`${f}.properties.${k}`, "EBS clones take only iops and throughput");
      const num = (k: string, lo: number, hi: number) => {
        if (props[k] === undefined) return undefined;
        const n = Number(props[k]);
        if (!Number.isInteger(n) || n < lo || n > hi) throw new InputError(`${f}.properties.${k}`, `${JSON.stringify(props[k])} must be an integer from ${lo} to ${hi}`);
        return n;
      };
      const fs = this.liveFs(req.source);
      plans.push({
        req,
        snaps,
        assembly: fs ? toAssembly(fs) : { kind: "single" },
        mountpoint: "",
        source: req.source,
        iops: num("iops", 3000, 80000),
        throughput: num("throughput", 125, 2000),
      });
      if (req.mountpoint !== undefined) validateMountpoint(req.mountpoint, `${f}.mountpoint`);
    });
    // Clones of clones: assembly and default mountpoint come from the source clone's tags.
    for (const p of plans) {
      const fs = this.liveFs(p.source);
      if (fs) p.mountpoint = p.req.mountpoint ?? this.defaultMountpoint(fs.mountpoint);
      else {
        const src = await this.cloneVolumes(p.source);
        const t = tagsOf(src[0]);
        p.assembly = parseAssemblyTag(t[TAGS.assembly]);
        if (!p.req.mountpoint && !t[TAGS.mountpoint]) throw new InputError("requests.mountpoint", `clone source ${p.source} has no mountpoint; give one`);
        p.mountpoint = p.req.mountpoint ?? t[TAGS.mountpoint];
      }
      if (p.assembly.kind === "single" && p.snaps.length !== 1) throw new EbsError(`${p.source}: ${p.snaps.length} snapshots for a single-volume filesystem`);
      if (mounts.has(p.mountpoint)) throw new InputError("requests.mountpoint", `two clones would be mounted at ${p.mountpoint}`);
      mounts.add(p.mountpoint);
    }
    // Nothing created yet: check every snapshot exists and is complete, and the rehearsal instance's zone.
    await this.checkRehearsalInstance();
    for (const p of plans) {
      for (const s of p.snaps) {
        const snap = await this.driver.snapshot(s);
        if (!snap) throw new EbsError(`cannot clone ${p.source}: snapshot ${s} of set ${set.name} does not exist; nothing was created`);
        if (snap.State !== "completed") throw new EbsError(`cannot clone ${p.source}: snapshot ${s} is ${snap.State}, not completed; nothing was created`);
      }
    }
    const out: VolumeInfo[] = [];
    const created: string[] = [];
    // Mount parents before children (/var/lib/postgresql before /var/lib/postgresql/13/main/pg_wal).
    const order = [...plans].sort((a, b) => a.mountpoint.length - b.mountpoint.length);
    try {
      for (const p of order) {
        const existing = await this.cloneVolumes(p.req.target);
        if (existing.length) {
          const theirs = existing.filter((v) => tagsOf(v)[TAGS.owner] !== owner);
          if (theirs.length) throw new EbsError(`clone ${p.req.target} already exists on ${this.spec.rehearsal.instanceId} (${theirs.map((v) => v.VolumeId).join(", ")}), not created by this stack; nothing was changed`);
          this.driver.opts.onProgress?.(`clone ${p.req.target} already exists and is ours (an interrupted run?): taking it over`);
          await this.attachAndMount(p.req.target, existing, p.assembly, p.mountpoint, owner);
          continue;
        }
        const vols = await this.createMembers(p.req.target, p.snaps, {
          owner,
          source: p.source,
          mountpoint: p.mountpoint,
          assembly: p.assembly,
          marks: {},
          iops: p.iops,
          throughput: p.throughput,
        }, created);
        await this.attachAndMount(p.req.target, vols, p.assembly, p.mountpoint, owner);
      }
    } catch (e) {
      throw new EbsError(
        `${(e as Error).message}${created.length ? `\nLeft behind (ours, tagged ${TAGS.owner}=${owner}; \`pulumi destroy\` or a new run removes or reuses them): ${created.join(", ")}` : ""}`,
      );
    }
    for (const p of plans) out.push((await this.volume(p.req.target))!);
    return out;
  }

  private async checkRehearsalInstance(): Promise<void> {
    const inst = await this.driver.describeInstance(this.spec.rehearsal.instanceId);
    if (!inst) throw new EbsError(`rehearsal instance ${this.spec.rehearsal.instanceId} does not exist in ${this.spec.region}; nothing was created`);
    const zone = inst.Placement?.AvailabilityZone;
    if (zone && zone !== this.spec.rehearsal.availabilityZone) {
      throw new InputError(
        "storage.rehearsal.availabilityZone",
        `${this.spec.rehearsal.availabilityZone} is not the zone of ${this.spec.rehearsal.instanceId} (${zone}); volumes created there could not be attached. Nothing was created.`,
      );
    }
    const state = inst.State?.Name;
    if (state && state !== "running") throw new EbsError(`rehearsal instance ${this.spec.rehearsal.instanceId} is ${state}, not running; nothing was created`);
  }

  /** Create (and tag) the EBS volumes of one clone from its snapshots; records ids in `created`. */
  private async createMembers(
    target: string,
    snaps: string[],
    o: { owner: string; source: string; mountpoint: string; assembly: Assembly; marks: Record<string, string>; iops?: number; throughput?: number },
    created: string[],
  ): Promise<Volume[]> {
    const zone = this.spec.rehearsal.availabilityZone;
    const fsr = !!this.spec.volume?.fastSnapshotRestore;
    if (fsr) await this.driver.enableFastSnapshotRestore(snaps, zone);
    const vols: Volume[] = [];
    try {
      for (const [i, snap] of snaps.entries()) {
        const v = await this.driver.createVolume({
          snapshotId: snap,
          zone,
          iops: o.iops ?? this.spec.volume?.iops,
          throughput: o.throughput ?? this.spec.volume?.throughput,
          initializationRate: this.spec.volume?.initializationRate,
          tags: {
            ...o.marks,
            [TAGS.owner]: o.owner,
            [TAGS.volume]: target,
            [TAGS.member]: String(i),
            [MEMBERS]: String(snaps.length),
            [SCOPE]: this.spec.rehearsal.instanceId,
            [TAGS.source]: o.source,
            [TAGS.origin]: snap,
            [TAGS.mountpoint]: o.mountpoint,
            [TAGS.assembly]: assemblyTag(o.assembly),
            Name: `understudy ${target}${snaps.length > 1 ? ` ${i + 1}/${snaps.length}` : ""}`,
          },
        });
        created.push(v.VolumeId!);
        vols.push(v);
      }
    } finally {
      // Volumes from FSR-enabled snapshots are fully initialized at creation: the (hourly
      // billed) fast restore is not needed any more once they exist.
      if (fsr) await this.driver.disableFastSnapshotRestore(snaps, zone);
    }
    return vols;
  }

  private async attachAndMount(target: string, vols: Volume[], a: Assembly, mountpoint: string, owner: string): Promise<void> {
    const devices: string[] = [];
    for (const v of vols) {
      const attachedAs = await this.driver.attachVolume(v.VolumeId!, this.spec.rehearsal.instanceId, owner);
      devices.push(await findDevice(this.host, v.VolumeId!, attachedAs, this.lookup, (this.spec.waits?.deviceSeconds ?? 120) * 1000));
    }
    const dev = await assemble(this.host, target, devices, a);
    await mountClone(this.host, dev, mountpoint);
    this.driver.opts.onProgress?.(`clone ${target} (${vols.map((v) => v.VolumeId).join(", ")}) mounted at ${mountpoint} on ${this.host.description}`);
  }

  /** Unmount, deassemble and detach a clone's volumes (owned only). */
  private async unmountAndDetach(target: string, vols: Volume[], owner: string): Promise<void> {
    const t = tagsOf(vols[0]);
    if (t[TAGS.mountpoint]) await unmountClone(this.host, t[TAGS.mountpoint]);
    await deassemble(this.host, target, parseAssemblyTag(t[TAGS.assembly]));
    for (const v of vols) await this.driver.detachVolume(v.VolumeId!, owner);
  }

  private async requireOwnedClone(id: string, owner: string, what: string): Promise<Volume[]> {
    if (this.isLive(id)) throw new EbsError(`refusing to ${what} ${id}: it is live's filesystem (${this.liveFs(id)?.mountpoint}), which Understudy never changes`);
    const vols = await this.cloneVolumes(id);
    if (!vols.length) throw new EbsError(`cannot ${what} ${id}: no such clone on ${this.spec.rehearsal.instanceId}`);
    const foreign = vols.filter((v) => !owner || tagsOf(v)[TAGS.owner] !== owner);
    if (foreign.length) throw new EbsError(`refusing to ${what} ${id}: ${foreign.map((v) => v.VolumeId).join(", ")} not created by this stack`);
    return vols;
  }

  async rollback(volumes: string[], name: string, owner: string): Promise<void> {
    validateSnapshotName(name, "name");
    if (!owner) throw new InputError("owner", "a roll-back needs an owner");
    volumes.forEach((v, i) => this.validateVolumeId(v, `volumes[${i}]`));
    const current = new Map<string, Volume[]>();
    for (const v of volumes) current.set(v, await this.requireOwnedClone(v, owner, "roll back"));
    const set = await this.findSnapshotSet(volumes, name);
    if (!set) throw new EbsError(`cannot roll back ${volumes.join(", ")}: snapshot set ${name} does not exist`);
    // Everything is checked before anything changes: later sets must be ours and unused.
    const later = new Map<string, Snapshot[]>();
    for (const m of set.members) {
      const all = await this.driver.findSnapshots(this.ourSnapshotsOf(m.volume));
      const after = all.filter((s) => createdAt(s) > m.createdAt && tagsOf(s)[TAGS.set] !== name);
      const foreign = after.filter((s) => tagsOf(s)[TAGS.owner] !== owner);
      if (foreign.length) {
        throw new EbsError(`refusing to roll back ${m.volume} to ${name}: later snapshots not created by this stack would be lost: ${foreign.map((s) => `${s.SnapshotId} (${tagsOf(s)[TAGS.set] ?? "unnamed"})`).join(", ")}; nothing was changed`);
      }
      for (const s of after) {
        const users = (await this.driver.findVolumes([{ Name: "snapshot-id", Values: [s.SnapshotId!] }])).filter(ALIVE);
        const others = users.filter((u) => tagsOf(u)[TAGS.volume] !== m.volume);
        if (others.length) throw new EbsError(`cannot roll back ${m.volume}: later snapshot ${s.SnapshotId} (${tagsOf(s)[TAGS.set]}) has clones ${others.map((u) => u.VolumeId).join(", ")}; nothing was changed`);
      }
      later.set(m.volume, after);
    }
    // Children first when unmounting, parents first when mounting.
    const byDepth = volumes.map((v) => ({ v, mp: tagsOf(current.get(v)![0])[TAGS.mountpoint] ?? "" })).sort((a, b) => b.mp.length - a.mp.length);
    for (const { v } of byDepth) await this.unmountAndDetach(v, current.get(v)!, owner);
    const created: string[] = [];
    try {
      for (const { v } of [...byDepth].reverse()) {
        const old = current.get(v)!;
        const t = tagsOf(old[0]);
        const marks: Record<string, string> = {};
        for (const tag of [TAGS.head, TAGS.promotion, TAGS.role]) if (t[tag]) marks[tag] = t[tag];
        const a = parseAssemblyTag(t[TAGS.assembly]);
        const snaps = set.members.find((m) => m.volume === v)!.id.split("+");
        const vols = await this.createMembers(v, snaps, {
          owner,
          source: t[TAGS.source] ?? "",
          mountpoint: t[TAGS.mountpoint],
          assembly: a,
          marks,
          iops: old[0].Iops,
          throughput: old[0].Throughput,
        }, created);
        // The old volumes stop being the clone before the new ones are mounted (the tag lookup must find the new ones).
        await this.driver.setTags(old.map((o) => o.VolumeId!), { [TAGS.volume]: `${v}-replaced` });
        await this.attachAndMount(v, vols, a, t[TAGS.mountpoint], owner);
      }
    } catch (e) {
      throw new EbsError(
        `roll-back of ${volumes.join(", ")} to ${name} failed: ${(e as Error).message}. ` +
          `The previous volumes (${[...current.values()].flat().map((x) => x.VolumeId).join(", ")}) are detached and kept; new volumes created: ${created.join(", ") || "none"}`,
      );
    }
    for (const vols of current.values()) for (const o of vols) await this.driver.deleteVolume(o.VolumeId!, owner);
    for (const snaps of later.values()) for (const s of snaps) await this.driver.deleteSnapshot(s.SnapshotId!, owner);
  }

  // -------------------------------------------------------------------------------------
  // Destroy

  async destroySnapshotSet(volumes: string[], name: string, owner: string): Promise<DestroyOutcome[]> {
    validateSnapshotName(name, "name");
    volumes.forEach((v, i) => this.validateVolumeId(v, `volumes[${i}]`));
    const out: DestroyOutcome[] = [];
    for (const v of volumes) {
      const snaps = await this.namedMembers(v, name);
      if (!snaps.length) {
        // A set made by DLM (or anyone) is found by its schedule's name but is never ours to delete.
        out.push(this.isLive(v) && (await this.dlmMembers(v, name)).length ? "not-owned" : "missing");
        continue;
      }
      if (!owner || snaps.some((s) => tagsOf(s)[TAGS.owner] !== owner)) {
        out.push("not-owned");
        continue;
      }
      for (const s of snaps) {
        const users = (await this.driver.findVolumes([{ Name: "snapshot-id", Values: [s.SnapshotId!] }])).filter(ALIVE);
        if (users.length) {
          throw new EbsError(
            `cannot destroy snapshot set ${name} of ${v}: ${s.SnapshotId} still has clones ${users.map((u) => `${u.VolumeId} (${tagsOf(u)[TAGS.volume] ?? "?"})`).join(", ")}. Destroy those first; the set was left in place.`,
          );
        }
      }
      for (const s of snaps) await this.driver.deleteSnapshot(s.SnapshotId!, owner);
      out.push("destroyed");
    }
    return out;
  }

  /**
   * Destroy a clone we own: unmount, deassemble, detach, delete its EBS volumes, and delete
   * our own snapshots of it. Snapshots of it made by others are left (on EBS they do not
   * depend on the volume). A live filesystem is never destroyed: `not-owned`.
   */
  async destroyVolume(id: string, owner: string): Promise<DestroyOutcome> {
    this.validateVolumeId(id, "volume");
    if (this.isLive(id)) return (await this.volume(id)) ? "not-owned" : "missing";
    const vols = await this.cloneVolumes(id);
    if (!vols.length) return "missing";
    if (!owner || vols.some((v) => tagsOf(v)[TAGS.owner] !== owner)) return "not-owned";
    await this.unmountAndDetach(id, vols, owner);
    for (const v of vols) await this.driver.deleteVolume(v.VolumeId!, owner);
    const snaps = await this.driver.findSnapshots([...this.ourSnapshotsOf(id), { Name: `tag:${TAGS.owner}`, Values: [owner] }]);
    for (const s of snaps.reverse()) {
      const users = (await this.driver.findVolumes([{ Name: "snapshot-id", Values: [s.SnapshotId!] }])).filter(ALIVE);
      if (users.length) {
        this.driver.opts.onProgress?.(`kept snapshot ${s.SnapshotId} of ${id}: clones ${users.map((u) => u.VolumeId).join(", ")} were made from it`);
        continue;
      }
      await this.driver.deleteSnapshot(s.SnapshotId!, owner);
    }
    return "destroyed";
  }

  // -------------------------------------------------------------------------------------
  // Marks

  async getMark(volume: string, key: MarkKey): Promise<string | undefined> {
    const info = await this.volume(volume);
    if (!info) throw new EbsError(`${volume} does not exist`);
    return info.marks[key];
  }

  async setMark(volume: string, key: MarkKey, value: string): Promise<void> {
    this.validateVolumeId(volume, "volume");
    if (!MARK_TAGS[key]) throw new InputError("key", `${JSON.stringify(key)} is not a mark`);
    validateTagValue(value, "value");
    if (this.isLive(volume)) throw new EbsError(`refusing to tag ${volume}: it is live's volume, which Understudy never changes`);
    const vols = await this.cloneVolumes(volume);
    if (!vols.length) throw new EbsError(`${volume} does not exist`);
    await this.driver.setTags(vols.map((v) => v.VolumeId!), { [MARK_TAGS[key]]: value });
  }
}

function toAssembly(fs: LiveFilesystem): Assembly {
  const a = fs.assembly;
  return a.kind === "lvm" ? { kind: "lvm", vg: a.vg, lv: a.lv } : { kind: a.kind };
}

/** What {@link volumeProperties} reports only to describe a volume (not settings of a new one). */
const DESCRIPTIVE = ["ebs:volumes", "ebs:assembly", "type", "sizeGiB", "availabilityZone"];

/**
 * A clone request's properties: a volume's own `properties` (contract: what a replacement in
 * production keeps, e.g. the new live made from live's final snapshot) are accepted. Their
 * descriptive keys are dropped; iops and throughput are kept from a gp3 source only (clones are
 * gp3; a gp2/io2 source's figures mean something else).
 */
function cloneProperties(p: Record<string, string>): Record<string, string> {
  const out = { ...p };
  if (out.type !== undefined && out.type !== "gp3") {
    delete out.iops;
    delete out.throughput;
  }
  for (const k of DESCRIPTIVE) delete out[k];
  return out;
}

function volumeProperties(vols: Volume[], assembly: string | undefined): Record<string, string> {
  const v = vols[0];
  const out: Record<string, string> = { "ebs:volumes": vols.map((x) => x.VolumeId).join(","), "ebs:assembly": assembly ?? "single" };
  if (v.VolumeType) out.type = v.VolumeType;
  if (v.Iops !== undefined) out.iops = String(v.Iops);
  if (v.Throughput !== undefined) out.throughput = String(v.Throughput);
  out.sizeGiB = String(vols.reduce((n, x) => n + (x.Size ?? 0), 0));
  if (v.AvailabilityZone) out.availabilityZone = v.AvailabilityZone;
  return out;
}

function parseCompact(s: string): number {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(s);
  return m ? Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +m[6]) : NaN;
}

/** The registry's entry points (providers/storage/index.ts). */
export function validateSpec(spec: StorageSpec, field: string): StorageSpec {
  return validateEbsSpec(spec, field) as unknown as StorageSpec;
}

export function createStorage(spec: StorageSpec, host: Host): Storage {
  return new EbsStorage(spec as unknown as EbsStorageSpec, host);
}
