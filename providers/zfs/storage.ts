/**
 * ZFS as a {@link Storage}: volumes are datasets, snapshot sets are snapshots of the same
 * name on several datasets taken by one atomic command, clones are `zfs clone`s, marks are
 * user properties (`understudy:owner`, ...). Everything through {@link ZfsDriver}, whose
 * guard rails (owner checks, never recursive destroys, busy retries) apply.
 */
import type { Host } from "../host/types";
import { InputError } from "../errors";
import type { CloneRequest, DestroyOutcome, MarkKey, SnapshotRef, SnapshotSet, Storage, StorageSpec, VolumeInfo } from "../storage/types";
import { DatasetInfo, OWNER_PROPERTY, ZfsDriver, ZfsError } from "./driver";
import { validateDataset, validatePropertyName, validatePropertyValue, validateSnapshotShortName } from "./names";

export interface ZfsStorageSpec extends StorageSpec {
  kind: "zfs";
  /** The `zfs` command (default `zfs` on the PATH). */
  zfsCommand?: string;
}

/** ZFS user property of each mark. */
export const MARK_PROPERTY: Record<MarkKey, string> = {
  owner: OWNER_PROPERTY,
  head: "understudy:head",
  promotion: "understudy:promotion",
  role: "understudy:role",
};

/** Native properties a production copy of a dataset should keep (issue: the new live gets live's). */
export const CARRIED_PROPERTIES = ["recordsize", "compression", "atime", "logbias", "primarycache", "secondarycache", "sync", "copies", "checksum", "xattr"];

export function validateSpec(spec: StorageSpec, field: string): ZfsStorageSpec {
  const allowed = new Set(["kind", "zfsCommand"]);
  for (const k of Object.keys(spec)) if (!allowed.has(k)) throw new InputError(`${field}.${k}`, "is not a ZFS storage option (known: zfsCommand)");
  if (spec.zfsCommand !== undefined && (typeof spec.zfsCommand !== "string" || !/^\/?[A-Za-z0-9_./-]+$/.test(spec.zfsCommand))) {
    throw new InputError(`${field}.zfsCommand`, `${JSON.stringify(spec.zfsCommand)} is not a command path`);
  }
  return spec as ZfsStorageSpec;
}

/** ZFS naming of a clone set: the primary at `target`, each other member at `<target>-<its last component>`. */
export function zfsCloneTargets(target: string, sources: string[]): string[] {
  const used = new Set<string>([target]);
  return sources.map((src, i) => {
    if (i === 0) return target;
    const base = `${target}-${src.split("/").pop()}`;
    let name = base;
    for (let n = 2; used.has(name); n++) name = `${base}${n}`;
    used.add(name);
    return name;
  });
}

/** `<parent of of>/<name>`. */
export function zfsSibling(of: string, name: string): string {
  const parent = of.split("/").slice(0, -1).join("/");
  return parent ? `${parent}/${name}` : name;
}

export function createStorage(spec: StorageSpec, host: Host): Storage {
  return new ZfsStorage(host, validateSpec(spec, "storage"));
}

function iso(seconds: number): string {
  return new Date(seconds * 1000).toISOString();
}

function toVolume(info: DatasetInfo): VolumeInfo {
  const marks: VolumeInfo["marks"] = {};
  for (const [k, prop] of Object.entries(MARK_PROPERTY) as Array<[MarkKey, string]>) {
    if (info.user[prop]) marks[k] = info.user[prop];
  }
  const properties: Record<string, string> = {};
  for (const p of CARRIED_PROPERTIES) {
    const v = info.raw[p];
    if (v !== undefined && v !== "-" && v !== "") properties[p] = v;
  }
  return {
    id: info.name,
    ...(info.mountpoint && info.mounted !== false ? { mountpoint: info.mountpoint } : {}),
    ...(marks.owner ? { owner: marks.owner } : {}),
    ...(info.origin ? { origin: info.origin } : {}),
    marks,
    properties,
  };
}

export class ZfsStorage implements Storage {
  readonly kind = "zfs";
  readonly z: ZfsDriver;

  constructor(
    readonly host: Host,
    spec: ZfsStorageSpec = { kind: "zfs" },
  ) {
    this.z = new ZfsDriver(host, spec.zfsCommand ? { zfs: spec.zfsCommand } : {});
  }

  get description(): string {
    return `zfs on ${this.host.description}`;
  }

  cloneTargets(target: string, sources: string[]): string[] {
    return zfsCloneTargets(target, sources);
  }

  siblingVolume(of: string, name: string): string {
    return zfsSibling(of, name);
  }

  validateVolumeId(id: unknown, field: string): string {
    return validateDataset(id, field);
  }

  validateSnapshotName(name: unknown, field: string): string {
    return validateSnapshotShortName(name, field);
  }

  async checkNewVolume(id: string): Promise<string | undefined> {
    const parent = validateDataset(id, "volume").split("/").slice(0, -1).join("/");
    if (parent && !(await this.z.exists(parent))) return `its parent ${parent} does not exist on ${this.host.description}`;
    return undefined;
  }

  async volume(id: string): Promise<VolumeInfo | undefined> {
    const info = await this.z.get(validateDataset(id, "volume"));
    return info && info.type !== "snapshot" ? toVolume(info) : undefined;
  }

  async volumeOfPath(path: string): Promise<VolumeInfo | undefined> {
    if (typeof path !== "string" || !path.startsWith("/")) throw new InputError("path", `${JSON.stringify(path)} must be an absolute path`);
    const real = (await this.host.run(["readlink", "-m", "--", path])).stdout.trim() || path;
    let best: { name: string; mountpoint: string } | undefined;
    for (const m of await this.z.mounts()) {
      const mp = m.mountpoint.replace(/\/$/, "") || "/";
      const inside = real === mp || real.startsWith(mp === "/" ? "/" : `${mp}/`);
      if (inside && (!best || mp.length > best.mountpoint.length)) best = { name: m.name, mountpoint: mp };
    }
    return best ? await this.volume(best.name) : undefined;
  }

  async snapshot(volumes: string[], name: string, owner: string): Promise<SnapshotSet> {
    volumes.forEach((v, i) => validateDataset(v, `volumes[${i}]`));
    validateSnapshotShortName(name, "name");
    if (!owner) throw new InputError("owner", "an owner mark is required");
    if (new Set(volumes).size !== volumes.length) throw new InputError("volumes", "lists a volume twice");
    await this.z.snapshotAtomically(volumes, name, { [OWNER_PROPERTY]: owner });
    const set = await this.findSnapshotSet(volumes, name);
    if (!set) throw new ZfsError(`snapshot set ${name} vanished right after it was taken`);
    return set;
  }

  async findSnapshotSet(volumes: string[], name: string): Promise<SnapshotSet | undefined> {
    validateSnapshotShortName(name, "name");
    const members: SnapshotRef[] = [];
    const missing: string[] = [];
    for (const v of volumes) {
      const info = await this.z.get(`${validateDataset(v, "volumes")}@${name}`);
      if (!info) missing.push(v);
      else members.push({ volume: v, id: info.name, createdAt: iso(info.creation), ...(info.user[OWNER_PROPERTY] ? { owner: info.user[OWNER_PROPERTY] } : {}) });
    }
    if (members.length === 0) return undefined;
    if (missing.length) {
      throw new ZfsError(`snapshot set ${name} is incomplete on ${this.host.description}: ${missing.map((m) => `${m}@${name}`).join(", ")} missing`);
    }
    return { name, members, createdAt: members.map((m) => m.createdAt).sort()[0] };
  }

  async listSnapshots(volume: string): Promise<SnapshotRef[]> {
    return (await this.z.listSnapshots(validateDataset(volume, "volume"))).map((s) => ({
      volume,
      id: s.name,
      createdAt: iso(s.creation),
      ...(s.user[OWNER_PROPERTY] ? { owner: s.user[OWNER_PROPERTY] } : {}),
    }));
  }

  async clone(set: SnapshotSet, requests: CloneRequest[], owner: string): Promise<VolumeInfo[]> {
    if (!owner) throw new InputError("owner", "an owner mark is required");
    const plan = requests.map((r, i) => {
      const member = set.members.find((m) => m.volume === r.source);
      if (!member) throw new InputError(`requests[${i}].source`, `${r.source} is not a member of snapshot set ${set.name}`);
      validateDataset(r.target, `requests[${i}].target`);
      const props: Record<string, string> = { ...(r.properties ?? {}) };
      for (const [k, v] of Object.entries(props)) {
        validatePropertyName(k, `requests[${i}].properties`);
        validatePropertyValue(k, v, `requests[${i}].properties`);
      }
      if (r.mountpoint !== undefined) props.mountpoint = validatePropertyValue("mountpoint", r.mountpoint, `requests[${i}]`);
      return { member, target: r.target, props };
    });
    const out: VolumeInfo[] = [];
    for (const p of plan) {
      const existing = await this.z.get(p.target);
      if (existing) {
        if (existing.user[OWNER_PROPERTY] !== owner || existing.origin !== p.member.id) {
          throw new ZfsError(`cannot clone ${p.member.id} to ${p.target}: ${p.target} already exists${existing.user[OWNER_PROPERTY] === owner ? ` as a clone of ${existing.origin ?? "nothing"}` : " and is not ours"}`);
        }
      } else {
        await this.z.clone(p.member.id, p.target, { [OWNER_PROPERTY]: owner, ...p.props });
      }
      const v = await this.volume(p.target);
      if (!v) throw new ZfsError(`clone ${p.target} vanished right after it was created`);
      out.push(v);
    }
    return out;
  }

  async rollback(volumes: string[], name: string, owner: string): Promise<void> {
    volumes.forEach((v, i) => validateDataset(v, `volumes[${i}]`));
    // Check every member first: refuse before changing any of them.
    for (const v of volumes) {
      const info = await this.z.get(v);
      if (!info) throw new ZfsError(`cannot roll back ${v}: it does not exist on ${this.host.description}`);
      if (!owner || info.user[OWNER_PROPERTY] !== owner) throw new ZfsError(`refusing to roll back ${v}: it was not created by this stack`);
      if (!(await this.z.exists(`${v}@${name}`))) throw new ZfsError(`cannot roll back ${v}: snapshot ${v}@${name} does not exist on ${this.host.description}`);
    }
    for (const v of volumes) await this.z.rollback(`${v}@${name}`, owner);
  }

  async destroySnapshotSet(volumes: string[], name: string, owner: string): Promise<DestroyOutcome[]> {
    const out: DestroyOutcome[] = [];
    for (const v of volumes) out.push(await this.z.destroy(`${validateDataset(v, "volumes")}@${validateSnapshotShortName(name, "name")}`, owner));
    return out;
  }

  async destroyVolume(id: string, owner: string): Promise<DestroyOutcome> {
    return await this.z.destroy(validateDataset(id, "volume"), owner);
  }

  async getMark(volume: string, key: MarkKey): Promise<string | undefined> {
    const v = await this.z.getProperty(validateDataset(volume, "volume"), MARK_PROPERTY[key]);
    return v === undefined || v === "-" || v === "" ? undefined : v;
  }

  async setMark(volume: string, key: MarkKey, value: string): Promise<void> {
    await this.z.set(validateDataset(volume, "volume"), { [MARK_PROPERTY[key]]: value });
  }
}
