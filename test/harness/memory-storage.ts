/**
 * A Storage kept in memory, for unit tests of what sits above the interface (the cut-over
 * phases). It follows the contract (it runs the shared suite in test/unit/storage-memory.test.ts),
 * so a phase test that passes here asks nothing of a backend that a real one does not give.
 */
import { InputError } from "../../providers/errors";
import type { Host } from "../../providers/host/types";
import type { CloneRequest, DestroyOutcome, MarkKey, SnapshotRef, SnapshotSet, Storage, VolumeInfo } from "../../providers/storage/types";

interface Vol {
  id: string;
  files: Record<string, string>;
  marks: VolumeInfo["marks"];
  origin?: string;
  mountpoint: string;
}
interface Snap {
  id: string;
  volume: string;
  files: Record<string, string>;
  owner?: string;
  createdAt: string;
  seq: number;
}

const ID = /^[a-z][a-z0-9_-]*(\/[a-z0-9_-]+)*$/;
let clock = 0;

export class MemoryStorage implements Storage {
  readonly kind = "memory";
  readonly description = "memory";
  readonly vols = new Map<string, Vol>();
  readonly snaps = new Map<string, Snap>();
  /** Calls, for assertions ("nothing was destroyed"). */
  readonly calls: string[] = [];
  /** Make the next call of this method throw (once). */
  failNext?: { method: string; error: Error };

  constructor(readonly host: Host = undefined as unknown as Host) {}

  private hit(method: string): void {
    this.calls.push(method);
    if (this.failNext?.method === method) {
      const e = this.failNext.error;
      this.failNext = undefined;
      throw e;
    }
  }

  addSource(id: string, files: Record<string, string> = {}): void {
    this.vols.set(id, { id, files: { ...files }, marks: {}, mountpoint: `/mem/${id}` });
  }

  validateVolumeId(id: unknown, field: string): string {
    if (typeof id !== "string" || !ID.test(id)) throw new InputError(field, `${JSON.stringify(id)} is not a memory volume id`);
    return id;
  }
  validateSnapshotName(name: unknown, field: string): string {
    if (typeof name !== "string" || !/^[A-Za-z0-9_.:-]+$/.test(name)) throw new InputError(field, `${JSON.stringify(name)} is not a snapshot name`);
    return name;
  }
  cloneTargets(target: string, sources: string[]): string[] {
    return sources.map((s, i) => (i === 0 ? target : `${target}-${s.split("/").pop()}`));
  }
  siblingVolume(of: string, name: string): string {
    return [...of.split("/").slice(0, -1), name].join("/");
  }
  private info(v: Vol): VolumeInfo {
    return { id: v.id, mountpoint: v.mountpoint, ...(v.marks.owner ? { owner: v.marks.owner } : {}), ...(v.origin ? { origin: v.origin } : {}), marks: { ...v.marks }, properties: {} };
  }
  async checkNewVolume(): Promise<string | undefined> {
    return undefined;
  }
  async volume(id: string): Promise<VolumeInfo | undefined> {
    this.validateVolumeId(id, "volume");
    const v = this.vols.get(id);
    return v ? this.info(v) : undefined;
  }
  async volumeOfPath(path: string): Promise<VolumeInfo | undefined> {
    const v = [...this.vols.values()].filter((x) => path === x.mountpoint || path.startsWith(x.mountpoint + "/")).sort((a, b) => b.mountpoint.length - a.mountpoint.length)[0];
    return v ? this.info(v) : undefined;
  }
  async snapshot(volumes: string[], name: string, owner: string): Promise<SnapshotSet> {
    volumes.forEach((v, i) => this.validateVolumeId(v, `volumes[${i}]`));
    this.validateSnapshotName(name, "name");
    if (name.includes("@") || name.includes("/") || name.includes(" ")) throw new InputError("name", "bad");
    this.hit("snapshot");
    for (const v of volumes) {
      if (!this.vols.has(v)) throw new Error(`no volume ${v}`);
      if (this.snaps.has(`${v}@${name}`)) throw new Error(`${v}@${name} exists`);
    }
    const at = new Date(Date.UTC(2026, 0, 1) + ++clock * 1000).toISOString();
    for (const v of volumes) this.snaps.set(`${v}@${name}`, { id: `${v}@${name}`, volume: v, files: { ...this.vols.get(v)!.files }, owner, createdAt: at, seq: clock });
    return (await this.findSnapshotSet(volumes, name))!;
  }
  async findSnapshotSet(volumes: string[], name: string): Promise<SnapshotSet | undefined> {
    const members: SnapshotRef[] = [];
    for (const v of volumes) {
      const s = this.snaps.get(`${v}@${name}`);
      if (s) members.push({ volume: v, id: s.id, createdAt: s.createdAt, ...(s.owner ? { owner: s.owner } : {}) });
    }
    if (!members.length) return undefined;
    if (members.length !== volumes.length) throw new Error(`snapshot set ${name} is incomplete`);
    return { name, members, createdAt: members[0].createdAt };
  }
  async listSnapshots(volume: string): Promise<SnapshotRef[]> {
    return [...this.snaps.values()].filter((s) => s.volume === volume).sort((a, b) => a.seq - b.seq).map((s) => ({ volume, id: s.id, createdAt: s.createdAt, ...(s.owner ? { owner: s.owner } : {}) }));
  }
  async clone(set: SnapshotSet, requests: CloneRequest[], owner: string): Promise<VolumeInfo[]> {
    requests.forEach((r, i) => this.validateVolumeId(r.target, `requests[${i}].target`));
    this.hit("clone");
    const out: VolumeInfo[] = [];
    for (const r of requests) {
      const m = set.members.find((x) => x.volume === r.source)!;
      if (this.vols.has(r.target)) throw new Error(`${r.target} exists`);
      const v: Vol = { id: r.target, files: { ...this.snaps.get(m.id)!.files }, marks: { owner }, origin: m.id, mountpoint: r.mountpoint ?? `/mem/${r.target}` };
      this.vols.set(r.target, v);
      out.push(this.info(v));
    }
    return out;
  }
  async rollback(volumes: string[], name: string, owner: string): Promise<void> {
    this.hit("rollback");
    for (const v of volumes) {
      const vol = this.vols.get(v);
      if (!vol || !owner || vol.marks.owner !== owner) throw new Error(`refusing to roll back ${v}: it was not created by this stack`);
      if (!this.snaps.has(`${v}@${name}`)) throw new Error(`no ${v}@${name}`);
    }
    for (const v of volumes) {
      const base = this.snaps.get(`${v}@${name}`)!;
      for (const s of [...this.snaps.values()]) if (s.volume === v && s.seq > base.seq) this.snaps.delete(s.id);
      this.vols.get(v)!.files = { ...base.files };
    }
  }
  async destroySnapshotSet(volumes: string[], name: string, owner: string): Promise<DestroyOutcome[]> {
    this.validateSnapshotName(name, "name");
    this.hit("destroySnapshotSet");
    return volumes.map((v) => {
      const s = this.snaps.get(`${v}@${name}`);
      if (!s) return "missing";
      if (!owner || s.owner !== owner) return "not-owned";
      if ([...this.vols.values()].some((x) => x.origin === s.id)) throw new Error(`snapshot ${s.id} has clones`);
      this.snaps.delete(s.id);
      return "destroyed";
    });
  }
  async destroyVolume(id: string, owner: string): Promise<DestroyOutcome> {
    this.validateVolumeId(id, "volume");
    this.hit("destroyVolume");
    const v = this.vols.get(id);
    if (!v) return "missing";
    if (!owner || v.marks.owner !== owner) return "not-owned";
    for (const s of [...this.snaps.values()]) if (s.volume === id) this.snaps.delete(s.id);
    this.vols.delete(id);
    return "destroyed";
  }
  async getMark(volume: string, key: MarkKey): Promise<string | undefined> {
    return this.vols.get(volume)?.marks[key];
  }
  async setMark(volume: string, key: MarkKey, value: string): Promise<void> {
    const v = this.vols.get(volume);
    if (!v) throw new Error(`no volume ${volume}`);
    v.marks[key] = value;
  }
}
