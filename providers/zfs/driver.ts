import type { Host } from "../host/types";
import { HostCommandError } from "../host/types";
import {
  splitSnapshot,
  validateDataset,
  validatePropertyName,
  validatePropertyValue,
  validateSnapshot,
  validateUserProperty,
} from "./names";
import { setTimeout as sleep } from "node:timers/promises";

/** The user property that marks what Understudy created, and for whom. */
export const OWNER_PROPERTY = "understudy:owner";

export type DatasetType = "filesystem" | "volume" | "snapshot";

export interface DatasetInfo {
  name: string;
  type: DatasetType;
  /** Seconds since the epoch. */
  creation: number;
  used: number;
  referenced: number;
  /** For a clone: the snapshot it was cloned from. */
  origin?: string;
  mountpoint?: string;
  mounted?: boolean;
  /** User properties (`module:name`) with their values. */
  user: Record<string, string>;
  /** Every property as printed by `zfs get -H -p`. */
  raw: Record<string, string>;
}

export class ZfsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ZfsError";
  }
}

const MISSING = /does not exist|dataset not found|no such (pool|dataset)/i;
const BUSY = /busy/i;

function num(v: string | undefined): number {
  const n = Number(v);
  return Number.isFinite(n) ? n : 0;
}

/**
 * Typed calls to the `zfs` CLI on a host. Only the subset that zfs-fuse (pool version 23)
 * and OpenZFS 2.x share: `zfs get -H -p` for values (zfs-fuse's `zfs list` has no `-p`),
 * `zfs list -H -o name` for names, and clones found through the `origin` property (there
 * is no `clones` property on old ZFS). Every name is validated before a command runs.
 *
 * Guard rails: {@link destroy} and {@link rollback} only act on datasets whose
 * `understudy:owner` equals the owner the caller passes, and never recurse.
 */
export class ZfsDriver {
  constructor(
    readonly host: Host,
    private readonly opts: { zfs?: string; busyRetries?: number; busyDelayMs?: number } = {},
  ) {}

  private get zfs(): string {
    return this.opts.zfs ?? "zfs";
  }

  /** `zfs` runs as root: directly for a root login, through `sudo -n` for any other. */
  private async cmd(args: string[], timeoutMs?: number) {
    return await this.host.runAs("root", [this.zfs, ...args], { timeoutMs });
  }

  /** Filesystems with their mountpoints (for "which dataset holds this path"). */
  async mounts(): Promise<Array<{ name: string; mountpoint: string }>> {
    const out = await this.cmd(["list", "-H", "-o", "name,mountpoint,mounted", "-t", "filesystem"]);
    return out.stdout
      .split("\n")
      .map((l) => l.split("\t"))
      .filter(([n, m, mounted]) => n && m?.startsWith("/") && mounted === "yes")
      .map(([name, mountpoint]) => ({ name, mountpoint }));
  }

  /**
   * Snapshot several datasets of one pool at one instant, all named `name`, with properties.
   * OpenZFS takes several names in one atomic `zfs snapshot`; older ZFS (zfs-fuse) takes
   * one, so there the common parent is snapshotted recursively (also atomic) and the
   * snapshots of datasets outside the set are destroyed right away (they carry our owner
   * mark and nothing uses them yet). Refuses datasets on different pools: no ZFS command
   * snapshots two pools at one instant.
   */
  async snapshotAtomically(datasets: string[], name: string, properties: Record<string, string> = {}): Promise<"one" | "multi" | "recursive"> {
    if (datasets.length === 0) throw new ZfsError("nothing to snapshot");
    datasets.forEach((d) => validateDataset(d, "datasets"));
    const full = datasets.map((d) => validateSnapshot(`${d}@${name}`, "snapshot"));
    const props = checkProps(properties);
    const pools = new Set(datasets.map((d) => d.split("/")[0]));
    if (pools.size > 1) {
      throw new ZfsError(`cannot snapshot ${datasets.join(", ")} at one instant: they are on different pools (${[...pools].join(", ")}); put the cluster's datasets on one pool`);
    }
    for (const d of datasets) {
      if (!(await this.exists(d))) throw new ZfsError(`cannot snapshot: dataset ${d} does not exist on ${this.host.description}`);
    }
    const opts = props.flatMap(([k, v]) => ["-o", `${k}=${v}`]);
    if (datasets.length === 1) {
      await this.cmd(["snapshot", ...opts, full[0]]);
      return "one";
    }
    try {
      await this.cmd(["snapshot", ...opts, ...full]);
      return "multi";
    } catch (e) {
      if (!(e instanceof HostCommandError && /too many arguments|usage:/i.test(e.stderr))) throw e;
    }
    // Old ZFS: the common parent, recursively, then remove what is not in the set.
    const parts = datasets.map((d) => d.split("/"));
    let common: string[] = [];
    for (let i = 0; parts.every((p) => i < p.length && p[i] === parts[0][i]); i++) common = parts[0].slice(0, i + 1);
    const parent = common.join("/");
    await this.cmd(["snapshot", "-r", ...opts, `${parent}@${name}`]);
    const created = (await this.cmd(["list", "-H", "-o", "name", "-t", "snapshot", "-r", parent])).stdout
      .split("\n")
      .filter((n) => n.endsWith(`@${name}`));
    const owner = properties[OWNER_PROPERTY] ?? "";
    for (const snap of created) {
      if (full.includes(snap)) continue;
      const r = await this.destroy(snap, owner);
      if (r === "not-owned") throw new ZfsError(`snapshot ${snap} taken with the set could not be removed (no owner mark)`);
    }
    return "recursive";
  }

  /** All properties of one dataset or snapshot, or `undefined` when it does not exist. */
  async get(name: string): Promise<DatasetInfo | undefined> {
    if (name.includes("@")) validateSnapshot(name, "name");
    else validateDataset(name, "name");
    let out: string;
    try {
      out = (await this.cmd(["get", "-H", "-p", "-o", "property,value", "all", name])).stdout;
    } catch (e) {
      if (e instanceof HostCommandError && MISSING.test(e.stderr)) return undefined;
      throw e;
    }
    const raw: Record<string, string> = {};
    for (const line of out.split("\n")) {
      if (!line) continue;
      const tab = line.indexOf("\t");
      if (tab < 0) continue;
      raw[line.slice(0, tab)] = line.slice(tab + 1);
    }
    // `all` does not always include user properties on old ZFS: ask for ours explicitly.
    if (!(OWNER_PROPERTY in raw)) {
      const o = (await this.cmd(["get", "-H", "-p", "-o", "value", OWNER_PROPERTY, name])).stdout.trim();
      raw[OWNER_PROPERTY] = o;
    }
    return parseInfo(name, raw);
  }

  async exists(name: string): Promise<boolean> {
    return (await this.getProperty(name, "type")) !== undefined;
  }

  /** One property's value (`-` when unset), or undefined when the dataset is missing. */
  async getProperty(name: string, property: string): Promise<string | undefined> {
    if (name.includes("@")) validateSnapshot(name, "name");
    else validateDataset(name, "name");
    if (property.includes(":")) validateUserProperty(property);
    else if (!/^[a-z]+$/.test(property)) throw new ZfsError(`invalid property name ${JSON.stringify(property)}`);
    try {
      return (await this.cmd(["get", "-H", "-p", "-o", "value", property, name])).stdout.replace(/\n$/, "");
    } catch (e) {
      if (e instanceof HostCommandError && MISSING.test(e.stderr)) return undefined;
      throw e;
    }
  }

  /** Snapshots of exactly this dataset (not its children), oldest first. */
  async listSnapshots(dataset: string): Promise<DatasetInfo[]> {
    validateDataset(dataset);
    let names: string[];
    try {
      const out = await this.cmd(["list", "-H", "-o", "name", "-t", "snapshot", "-s", "creation", "-r", "-d", "1", dataset]);
      names = out.stdout.split("\n").filter((n) => n.startsWith(dataset + "@"));
    } catch (e) {
      if (e instanceof HostCommandError && MISSING.test(e.stderr)) {
        throw new ZfsError(`dataset ${dataset} does not exist on ${this.host.description}`);
      }
      throw e;
    }
    if (names.length === 0) return [];
    const props = ["creation", "used", "referenced", OWNER_PROPERTY];
    const out = await this.cmd(["get", "-H", "-p", "-o", "name,property,value", props.join(","), ...names]);
    const byName = new Map<string, Record<string, string>>();
    for (const line of out.stdout.split("\n")) {
      const [n, p, ...v] = line.split("\t");
      if (!n || !p) continue;
      const rec = byName.get(n) ?? { type: "snapshot" };
      rec[p] = v.join("\t");
      byName.set(n, rec);
    }
    return names.map((n) => parseInfo(n, byName.get(n) ?? { type: "snapshot" })).sort((a, b) => a.creation - b.creation);
  }

  /** Filesystems and volumes in the pool whose origin is `snapshot`. */
  async clonesOf(snapshot: string): Promise<string[]> {
    validateSnapshot(snapshot);
    return (await this.clonesByOrigin(snapshot)).get(snapshot) ?? [];
  }

  /**
   * Every clone in the pool of `name`, by origin snapshot: one `zfs get -r origin` over the
   * pool (zfs-fuse has no `clones` property), for callers that check several snapshots.
   */
  private async clonesByOrigin(name: string): Promise<Map<string, string[]>> {
    const pool = name.split("/")[0].split("@")[0];
    const out = await this.cmd(["get", "-H", "-p", "-o", "name,value", "-r", "origin", pool]);
    const byOrigin = new Map<string, string[]>();
    for (const [n, v] of out.stdout.split("\n").map((l) => l.split("\t"))) {
      if (!n || n.includes("@") || !v || v === "-") continue;
      byOrigin.set(v, [...(byOrigin.get(v) ?? []), n]);
    }
    return byOrigin;
  }

  /** `zfs snapshot -o k=v ...`: the properties are set as the snapshot is made (as snapshotAtomically does). */
  async snapshot(name: string, properties: Record<string, string> = {}): Promise<void> {
    validateSnapshot(name, "snapshot");
    const props = checkProps(properties);
    const { dataset } = splitSnapshot(name);
    if (!(await this.exists(dataset))) {
      throw new ZfsError(`cannot snapshot: dataset ${dataset} does not exist on ${this.host.description}`);
    }
    // The properties come with the snapshot (`-o`): never a snapshot without its owner mark, one command less.
    await this.cmd(["snapshot", ...props.flatMap(([k, v]) => ["-o", `${k}=${v}`]), name]);
  }

  /** `zfs clone -o k=v ... snapshot target`. */
  async clone(snapshot: string, target: string, properties: Record<string, string> = {}): Promise<void> {
    validateSnapshot(snapshot, "snapshot");
    validateDataset(target, "dataset");
    const props = checkProps(properties);
    const args = ["clone"];
    for (const [k, v] of props) args.push("-o", `${k}=${v}`);
    args.push(snapshot, target);
    await this.cmd(args);
  }

  /** Set properties in place. */
  async set(name: string, properties: Record<string, string>): Promise<void> {
    if (name.includes("@")) validateSnapshot(name, "name");
    else validateDataset(name, "name");
    for (const [k, v] of checkProps(properties)) await this.cmd(["set", `${k}=${v}`, name]);
  }

  /** Remove a local property setting (user properties disappear, native ones inherit). */
  async inherit(name: string, property: string): Promise<void> {
    if (name.includes("@")) validateSnapshot(name, "name");
    else validateDataset(name, "name");
    validatePropertyName(property);
    await this.cmd(["inherit", property, name]);
  }

  /** `zfs promote`: the clone takes over its origin's snapshots. */
  async promote(clone: string, expectOwner: string): Promise<void> {
    validateDataset(clone);
    await this.assertOwned(clone, expectOwner, "promote");
    await this.cmd(["promote", clone]);
  }

  /**
   * Roll an owned dataset back to one of its snapshots. When later snapshots exist they are
   * destroyed too (`-r`) — only if every one of them is owned by `expectOwner`.
   */
  async rollback(snapshot: string, expectOwner: string): Promise<void> {
    validateSnapshot(snapshot);
    const { dataset } = splitSnapshot(snapshot);
    await this.assertOwned(dataset, expectOwner, "roll back");
    const snaps = await this.listSnapshots(dataset);
    const idx = snaps.findIndex((s) => s.name === snapshot);
    if (idx < 0) throw new ZfsError(`cannot roll back: snapshot ${snapshot} does not exist on ${this.host.description}`);
    const later = snaps.slice(idx + 1);
    const foreign = later.filter((s) => s.user[OWNER_PROPERTY] !== expectOwner);
    if (foreign.length > 0) {
      throw new ZfsError(
        `refusing to roll back ${dataset} to ${snapshot}: later snapshots not created by this stack would be lost: ${foreign.map((s) => s.name).join(", ")}`,
      );
    }
    const clonesOf = later.length ? await this.clonesByOrigin(dataset) : new Map<string, string[]>();
    for (const s of later) {
      const clones = clonesOf.get(s.name) ?? [];
      if (clones.length) throw new ZfsError(`cannot roll back ${dataset}: later snapshot ${s.name} has clones ${clones.join(", ")}`);
    }
    await this.retryBusy(() => this.cmd(later.length ? ["rollback", "-r", snapshot] : ["rollback", snapshot]));
  }

  /**
   * Destroy one dataset or snapshot that this owner created. Never recursive. Returns
   * `"destroyed"`, `"missing"` or `"not-owned"` (left alone). A snapshot that still has
   * clones is refused with their names. A transient "busy" is retried.
   */
  async destroy(name: string, expectOwner: string): Promise<"destroyed" | "missing" | "not-owned"> {
    if (name.includes("@")) validateSnapshot(name, "name");
    else validateDataset(name, "name");
    const info = await this.get(name);
    if (!info) return "missing";
    if (!expectOwner || info.user[OWNER_PROPERTY] !== expectOwner) return "not-owned";
    if (info.type === "snapshot") {
      const clones = await this.clonesOf(name);
      if (clones.length) {
        throw new ZfsError(
          `cannot destroy snapshot ${name} on ${this.host.description}: it still has clones: ${clones.join(", ")}. ` +
            `Destroy or promote those first; the snapshot was left in place.`,
        );
      }
    } else {
      const children = (await this.cmd(["list", "-H", "-o", "name", "-t", "filesystem,volume,snapshot", "-r", name])).stdout
        .split("\n")
        .filter((n) => n && n !== name && !n.startsWith(name + "@"));
      if (children.length) {
        throw new ZfsError(`cannot destroy ${name}: it has child datasets ${children.join(", ")}; the dataset was left in place.`);
      }
      // Our own snapshots of an owned clone go with it; anything else blocks.
      const snaps = await this.listSnapshots(name);
      const foreign = snaps.filter((s) => s.user[OWNER_PROPERTY] !== expectOwner);
      if (foreign.length) {
        throw new ZfsError(
          `cannot destroy ${name}: it has snapshots not created by this stack: ${foreign.map((s) => s.name).join(", ")}; the dataset was left in place.`,
        );
      }
      const clonesOf = snaps.length ? await this.clonesByOrigin(name) : new Map<string, string[]>();
      for (const s of snaps.reverse()) {
        const clones = clonesOf.get(s.name) ?? [];
        if (clones.length) throw new ZfsError(`cannot destroy ${name}: its snapshot ${s.name} has clones ${clones.join(", ")}`);
        await this.retryBusy(() => this.cmd(["destroy", s.name]));
      }
    }
    await this.retryBusy(() => this.cmd(["destroy", name]));
    return "destroyed";
  }

  private async assertOwned(name: string, expectOwner: string, what: string): Promise<void> {
    const owner = await this.getProperty(name, OWNER_PROPERTY);
    if (owner === undefined) throw new ZfsError(`cannot ${what} ${name}: it does not exist on ${this.host.description}`);
    if (!expectOwner || owner !== expectOwner) {
      throw new ZfsError(`refusing to ${what} ${name}: it was not created by this stack (owner ${JSON.stringify(owner)})`);
    }
  }

  private async retryBusy<T>(fn: () => Promise<T>): Promise<T> {
    const tries = this.opts.busyRetries ?? 10;
    for (let i = 1; ; i++) {
      try {
        return await fn();
      } catch (e) {
        if (i < tries && e instanceof HostCommandError && BUSY.test(e.stderr)) {
          await sleep(this.opts.busyDelayMs ?? 500 * i);
          continue;
        }
        throw e;
      }
    }
  }
}

function checkProps(properties: Record<string, string>): Array<[string, string]> {
  return Object.entries(properties ?? {}).map(([k, v]) => {
    validatePropertyName(k);
    return [k, validatePropertyValue(k, v)];
  });
}

export function parseInfo(name: string, raw: Record<string, string>): DatasetInfo {
  const user: Record<string, string> = {};
  for (const [k, v] of Object.entries(raw)) if (k.includes(":") && v !== "-" && v !== "") user[k] = v;
  const type = (raw.type ?? (name.includes("@") ? "snapshot" : "filesystem")) as DatasetType;
  return {
    name,
    type,
    creation: num(raw.creation),
    used: num(raw.used),
    referenced: num(raw.referenced),
    origin: raw.origin && raw.origin !== "-" ? raw.origin : undefined,
    mountpoint: raw.mountpoint && raw.mountpoint !== "-" ? raw.mountpoint : undefined,
    mounted: raw.mounted === "yes" ? true : raw.mounted === "no" ? false : undefined,
    user,
    raw,
  };
}
