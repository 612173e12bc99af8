import * as pulumi from "@pulumi/pulumi";
import type { ConnectionArgs } from "../host/connection";
import { withHost } from "../host";
import { ZfsDriver, OWNER_PROPERTY, DatasetInfo } from "./driver";
import {
  validateDataset,
  validateHook,
  validatePropertyName,
  validatePropertyValue,
  validateSnapshot,
  validateSnapshotShortName,
  validateUserProperty,
} from "./names";
import { errorMessage, failure, hostIdentity, isUnknown, ownerId, progress, checkConnection } from "../common";
import { UnderstudyResource } from "../shim";
import { declaredDiff, type DiffSpec } from "../diff";
import { InputError } from "../errors";

// ---------------------------------------------------------------------------------------
// Shared provider plumbing. These functions are captured by value into the stack's state
// by Pulumi's closure serializer: they must only use their arguments and what they import.

interface Owned {
  connection?: ConnectionArgs;
  owner: string;
  adopt?: boolean;
  label?: string;
}

function withDriver<T>(connection: ConnectionArgs | undefined, fn: (z: ZfsDriver) => Promise<T>): Promise<T> {
  return withHost(connection, (host) => fn(new ZfsDriver(host)));
}


function checkProperties(props: unknown, userOnly: boolean): pulumi.dynamic.CheckFailure[] {
  if (props === undefined || props === null || isUnknown(props)) return [];
  return failure("properties", () => {
    if (typeof props !== "object" || Array.isArray(props)) throw new InputError("properties", "must be a map of name to string");
    for (const [k, v] of Object.entries(props as Record<string, unknown>)) {
      if (k === OWNER_PROPERTY) throw new InputError(`properties.${k}`, "is managed by Understudy");
      if (userOnly) validateUserProperty(k, "properties");
      else validatePropertyName(k, "properties");
      validatePropertyValue(k, v, "properties");
    }
  });
}

/** Compare two string maps; returns keys whose value differs. */
function changedKeys(a: Record<string, string> | undefined, b: Record<string, string> | undefined): string[] {
  const keys = new Set([...Object.keys(a ?? {}), ...Object.keys(b ?? {})]);
  return [...keys].filter((k) => (a ?? {})[k] !== (b ?? {})[k]);
}

/** Apply a new property map in place: set new/changed values, inherit removed ones. */
async function applyProperties(
  z: ZfsDriver,
  name: string,
  olds: Record<string, string> | undefined,
  news: Record<string, string> | undefined,
): Promise<void> {
  const set: Record<string, string> = {};
  for (const k of changedKeys(olds, news)) {
    if (news && k in news) set[k] = news[k];
    else await z.inherit(name, k);
  }
  if (Object.keys(set).length) await z.set(name, set);
}

/** Current values of the properties a resource manages (for refresh drift). */
function currentProperties(info: DatasetInfo, managed: Record<string, string> | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const k of Object.keys(managed ?? {})) {
    const v = k.includes(":") ? info.user[k] : info.raw[k];
    if (v !== undefined && v !== "-") out[k] = v;
  }
  return out;
}

function claim(label: string, what: string, info: DatasetInfo, inputs: Owned): { adopted: boolean; owner: string } {
  const current = info.user[OWNER_PROPERTY] ?? "";
  if (current === inputs.owner) {
    progress(label, `${what} ${info.name} already exists and is ours (an interrupted run?): taking it over`);
    return { adopted: false, owner: inputs.owner };
  }
  if (inputs.adopt) {
    progress(label, `adopting existing ${what} ${info.name}: it will be read and updated, never destroyed`);
    return { adopted: true, owner: "" };
  }
  throw new Error(
    `${what} ${info.name} already exists on ${hostIdentity(inputs.connection)}` +
      (current ? ` (created by ${current})` : " (not created by Understudy)") +
      `. Choose another name, or set adopt: true to manage it without ever destroying it. Nothing was changed.`,
  );
}

// ---------------------------------------------------------------------------------------
// ZfsSnapshot

/** A different dataset, name or member list is another snapshot; properties and adoption change in place. */
export const SNAPSHOT_DIFF: DiffSpec = { replace: ["dataset", "name", "members"], update: ["properties", "adopt"], ignore: ["label", "owner", "hook", "hookUser"] };
const snapshotDiff = declaredDiff(SNAPSHOT_DIFF);
/** A different origin or dataset is another clone; properties and adoption change in place. */
export const CLONE_DIFF: DiffSpec = { replace: ["snapshot", "dataset", "members"], update: ["properties", "adopt"], ignore: ["label", "owner"] };
const cloneDiff = declaredDiff(CLONE_DIFF);

interface SnapshotInputs extends Owned {
  dataset: string;
  /** More datasets snapshotted at the same instant, under the same name (a cluster's WAL, tablespaces). */
  members?: string[];
  name: string;
  properties?: Record<string, string>;
  hook?: string[];
  hookUser?: string;
}

interface SnapshotOutputs extends SnapshotInputs {
  snapshot: string;
  createdAt: string;
  used: number;
  referenced: number;
  adopted: boolean;
}

function snapshotOutputs(inputs: SnapshotInputs, info: DatasetInfo, adopted: boolean, owner: string): SnapshotOutputs {
  return {
    ...inputs,
    owner,
    snapshot: info.name,
    createdAt: new Date(info.creation * 1000).toISOString(),
    used: info.used,
    referenced: info.referenced,
    adopted,
  };
}

export const zfsSnapshotProvider: pulumi.dynamic.ResourceProvider = {
  async check(_olds: SnapshotInputs, news: SnapshotInputs) {
    const failures = [
      ...checkConnection(news.connection),
      ...(isUnknown(news.dataset) ? [] : failure("dataset", () => validateDataset(news.dataset, "dataset"))),
      ...(isUnknown(news.name) ? [] : failure("name", () => validateSnapshotShortName(news.name, "name"))),
      ...(news.members === undefined || isUnknown(news.members)
        ? []
        : failure("members", () => {
            if (!Array.isArray(news.members)) throw new InputError("members", "must be a list of datasets");
            news.members.forEach((m, i) => validateDataset(m, `members[${i}]`));
            if (new Set([news.dataset, ...news.members]).size !== news.members.length + 1) throw new InputError("members", "lists a dataset twice");
          })),
      ...checkProperties(news.properties, true),
      ...(news.hook === undefined || isUnknown(news.hook) ? [] : failure("hook", () => validateHook(news.hook, news.hookUser))),
    ];
    return { inputs: news, failures };
  },

  async diff(_id: string, olds: SnapshotOutputs, news: SnapshotInputs) {
    return snapshotDiff(olds as unknown as Record<string, unknown>, news as unknown as Record<string, unknown>);
  },

  async create(inputs: SnapshotInputs) {
    const full = `${inputs.dataset}@${inputs.name}`;
    const label = inputs.label ?? full;
    return await withDriver(inputs.connection, async (z) => {
      const existing = await z.get(full);
      let adopted = false;
      let owner = inputs.owner;
      if (existing) {
        ({ adopted, owner } = claim(label, "snapshot", existing, inputs));
        if (inputs.properties) await z.set(full, inputs.properties);
      } else {
        if (inputs.hook) await runHook(z, label, inputs.hook, inputs.hookUser);
        const started = Date.now();
        const props = { [OWNER_PROPERTY]: inputs.owner, ...(inputs.properties ?? {}) };
        if (inputs.members?.length) {
          const all = [inputs.dataset, ...inputs.members];
          const how = await z.snapshotAtomically(all, inputs.name, props);
          progress(label, `snapshot set ${inputs.name} of ${all.join(", ")} taken at one instant (${how === "recursive" ? "recursively on their common parent, extras removed" : "one command"}) in ${Date.now() - started} ms`);
        } else {
          await z.snapshot(full, props);
          progress(label, `snapshot ${full} taken in ${Date.now() - started} ms`);
        }
      }
      const info = await z.get(full);
      if (!info) throw new Error(`snapshot ${full} vanished right after it was taken`);
      return { id: full, outs: snapshotOutputs(inputs, info, adopted, owner) };
    });
  },

  async read(id: string, props: SnapshotOutputs) {
    return await withDriver(props.connection, async (z) => {
      const info = await z.get(id);
      if (!info) return { id: undefined as unknown as string, props: {} };
      const properties = props.properties ? currentProperties(info, props.properties) : undefined;
      return { id, props: snapshotOutputs({ ...props, properties }, info, props.adopted, props.owner) };
    });
  },

  async update(id: string, olds: SnapshotOutputs, news: SnapshotInputs) {
    return await withDriver(news.connection, async (z) => {
      const info = await z.get(id);
      if (!info) throw new Error(`snapshot ${id} no longer exists on ${hostIdentity(news.connection)}; run \`pulumi refresh\``);
      await applyProperties(z, id, olds.properties, news.properties);
      const adopted = olds.adopted && !!news.adopt;
      const after = (await z.get(id)) ?? info;
      return { outs: snapshotOutputs(news, after, adopted, olds.owner) };
    });
  },

  async delete(id: string, props: SnapshotOutputs) {
    const label = props.label ?? id;
    await withDriver(props.connection, async (z) => {
      for (const snap of [id, ...(props.members ?? []).map((m) => `${m}@${props.name}`)]) {
        const result = await z.destroy(snap, props.adopted ? "" : props.owner);
        if (result === "not-owned") progress(label, `left ${snap} in place: it was not created by this stack`);
        else if (result === "missing") progress(label, `${snap} was already gone`);
        else progress(label, `destroyed ${snap}`);
      }
    });
  },
};

/** The consistency hook (e.g. a CHECKPOINT) right before the snapshot. A failure is reported, not fatal. */
async function runHook(z: ZfsDriver, label: string, hook: string[], user?: string): Promise<void> {
  const started = Date.now();
  try {
    if (user) await z.host.runAs(user, hook, { timeoutMs: 10 * 60_000 });
    else await z.host.run(hook, { timeoutMs: 10 * 60_000 });
    progress(label, `consistency hook \`${hook.join(" ")}\` done in ${Date.now() - started} ms`);
  } catch (e) {
    progress(label, `warning: consistency hook failed, the snapshot is crash-consistent only: ${errorMessage(e)}`);
  }
}

export interface ZfsSnapshotArgs {
  /** Where `zfs` runs. Omit for this machine; an SSH connection shaped like `@pulumi/command`'s. Stored as a secret. */
  connection?: pulumi.Input<ConnectionArgs>;
  /** The dataset to snapshot, e.g. `tank/pg13`. */
  dataset: pulumi.Input<string>;
  /**
   * More datasets of the same pool snapshotted at the same instant under the same name
   * (e.g. a cluster's WAL and tablespace datasets), so that together they are crash-consistent.
   */
  members?: pulumi.Input<pulumi.Input<string>[]>;
  /** The part after `@`, e.g. `before-upgrade`. */
  name: pulumi.Input<string>;
  /** User properties (`module:name` = value) to set on the snapshot. */
  properties?: pulumi.Input<Record<string, pulumi.Input<string>>>;
  /** Manage a snapshot that already exists instead of failing; an adopted snapshot is never destroyed. */
  adopt?: pulumi.Input<boolean>;
  /**
   * argv run on the host right before the snapshot is taken (create only), e.g. a
   * `CHECKPOINT` so that a clone of it recovers fast. Failure is logged; the snapshot is then crash-consistent.
   */
  hook?: pulumi.Input<pulumi.Input<string>[]>;
  /** OS user for the hook (default: the login user). */
  hookUser?: pulumi.Input<string>;
}

/**
 * A ZFS snapshot, created by this stack and marked with `understudy:owner`.
 * `pulumi destroy` removes it only if this stack created it, never recursively, and
 * refuses while clones made outside this stack still depend on it.
 *
 * @example
 * ```ts
 * const snap = new ZfsSnapshot("before-upgrade", { dataset: "tank/pg13", name: "before-upgrade" });
 * export const snapshotName = snap.snapshot; // "tank/pg13@before-upgrade"
 * ```
 */
export class ZfsSnapshot extends UnderstudyResource {
  /** Full name, `dataset@name`. */
  declare readonly snapshot: pulumi.Output<string>;
  declare readonly dataset: pulumi.Output<string>;
  declare readonly name: pulumi.Output<string>;
  declare readonly createdAt: pulumi.Output<string>;
  declare readonly used: pulumi.Output<number>;
  declare readonly referenced: pulumi.Output<number>;
  declare readonly owner: pulumi.Output<string>;
  declare readonly adopted: pulumi.Output<boolean>;

  constructor(name: string, args: ZfsSnapshotArgs, opts?: pulumi.CustomResourceOptions) {
    super(
      "ZfsSnapshot",
      name,
      {
        connection: args.connection,
        dataset: args.dataset,
        members: args.members,
        name: args.name,
        properties: args.properties,
        adopt: args.adopt ?? false,
        hook: args.hook,
        hookUser: args.hookUser,
        owner: ownerId("ZfsSnapshot", name),
        label: name,
        snapshot: undefined,
        createdAt: undefined,
        used: undefined,
        referenced: undefined,
        adopted: undefined,
      },
      opts,
    );
  }
}

// ---------------------------------------------------------------------------------------
// ZfsClone

interface CloneInputs extends Owned {
  snapshot: string;
  dataset: string;
  properties?: Record<string, string>;
  /** More clones made with it, of snapshots of the same set (a cluster's WAL, tablespaces). */
  members?: Array<{ snapshot: string; dataset: string; properties?: Record<string, string> }>;
}

interface CloneOutputs extends CloneInputs {
  origin: string;
  mountpoint: string;
  /** Where each member clone is mounted, in `members` order. */
  memberMountpoints?: string[];
  createdAt: string;
  used: number;
  referenced: number;
  adopted: boolean;
}

function cloneOutputs(inputs: CloneInputs, info: DatasetInfo, adopted: boolean, owner: string): CloneOutputs {
  return {
    ...inputs,
    owner,
    origin: info.origin ?? "",
    mountpoint: info.mountpoint ?? "",
    createdAt: new Date(info.creation * 1000).toISOString(),
    used: info.used,
    referenced: info.referenced,
    adopted,
  };
}

export const zfsCloneProvider: pulumi.dynamic.ResourceProvider = {
  async check(_olds: CloneInputs, news: CloneInputs) {
    const failures = [
      ...checkConnection(news.connection),
      ...(isUnknown(news.snapshot) ? [] : failure("snapshot", () => validateSnapshot(news.snapshot, "snapshot"))),
      ...(isUnknown(news.dataset) ? [] : failure("dataset", () => validateDataset(news.dataset, "dataset"))),
      ...checkProperties(news.properties, false),
      ...(news.members === undefined || isUnknown(news.members)
        ? []
        : failure("members", () => {
            if (!Array.isArray(news.members)) throw new InputError("members", "must be a list of { snapshot, dataset }");
            news.members.forEach((m, i) => {
              validateSnapshot(m.snapshot, `members[${i}].snapshot`);
              validateDataset(m.dataset, `members[${i}].dataset`);
              for (const [k, v] of Object.entries(m.properties ?? {})) {
                validatePropertyName(k, `members[${i}].properties`);
                validatePropertyValue(k, v, `members[${i}].properties`);
              }
            });
          })),
    ];
    if (!isUnknown(news.snapshot) && !isUnknown(news.dataset) && failures.length === 0) {
      const src = String(news.snapshot).split("@")[0];
      if (news.dataset === src || String(news.dataset).startsWith(src + "/")) {
        failures.push({ property: "dataset", reason: `dataset: the clone ${news.dataset} must not be the source ${src} or inside it` });
      }
    }
    return { inputs: news, failures };
  },

  async diff(_id: string, olds: CloneOutputs, news: CloneInputs) {
    return cloneDiff(olds as unknown as Record<string, unknown>, news as unknown as Record<string, unknown>);
  },

  async create(inputs: CloneInputs) {
    const label = inputs.label ?? inputs.dataset;
    return await withDriver(inputs.connection, async (z) => {
      const existing = await z.get(inputs.dataset);
      let adopted = false;
      let owner = inputs.owner;
      if (existing) {
        ({ adopted, owner } = claim(label, "dataset", existing, inputs));
        if (existing.origin !== inputs.snapshot && !adopted) {
          throw new Error(`dataset ${inputs.dataset} exists but is a clone of ${existing.origin ?? "nothing"}, not of ${inputs.snapshot}`);
        }
      } else {
        if (!(await z.exists(inputs.snapshot))) {
          throw new Error(`snapshot ${inputs.snapshot} does not exist on ${z.host.description}; nothing was cloned`);
        }
        const started = Date.now();
        await z.clone(inputs.snapshot, inputs.dataset, { [OWNER_PROPERTY]: inputs.owner, ...(inputs.properties ?? {}) });
        progress(label, `cloned ${inputs.snapshot} to ${inputs.dataset} in ${Date.now() - started} ms`);
      }
      const info = await z.get(inputs.dataset);
      if (!info) throw new Error(`clone ${inputs.dataset} vanished right after it was created`);
      const memberMountpoints: string[] = [];
      for (const m of inputs.members ?? []) {
        const have = await z.get(m.dataset);
        if (have) {
          if (have.user[OWNER_PROPERTY] !== owner || have.origin !== m.snapshot) {
            throw new Error(`dataset ${m.dataset} already exists${have.user[OWNER_PROPERTY] === owner ? ` as a clone of ${have.origin ?? "nothing"}` : " and was not created by this stack"}; nothing more was cloned`);
          }
        } else {
          const started = Date.now();
          await z.clone(m.snapshot, m.dataset, { [OWNER_PROPERTY]: owner, ...(m.properties ?? {}) });
          progress(label, `cloned ${m.snapshot} to ${m.dataset} in ${Date.now() - started} ms`);
        }
        memberMountpoints.push((await z.get(m.dataset))?.mountpoint ?? "");
      }
      const outs = cloneOutputs(inputs, info, adopted, owner);
      return { id: inputs.dataset, outs: inputs.members?.length ? { ...outs, memberMountpoints } : outs };
    });
  },

  async read(id: string, props: CloneOutputs) {
    return await withDriver(props.connection, async (z) => {
      const info = await z.get(id);
      if (!info) return { id: undefined as unknown as string, props: {} };
      const properties = props.properties ? currentProperties(info, props.properties) : undefined;
      return { id, props: cloneOutputs({ ...props, properties }, info, props.adopted, props.owner) };
    });
  },

  async update(id: string, olds: CloneOutputs, news: CloneInputs) {
    return await withDriver(news.connection, async (z) => {
      if (!(await z.exists(id))) throw new Error(`clone ${id} no longer exists; run \`pulumi refresh\``);
      await applyProperties(z, id, olds.properties, news.properties);
      const info = await z.get(id);
      return { outs: cloneOutputs(news, info!, olds.adopted && !!news.adopt, olds.owner) };
    });
  },

  async delete(id: string, props: CloneOutputs) {
    const label = props.label ?? id;
    await withDriver(props.connection, async (z) => {
      try {
        for (const m of [...(props.members ?? [])].reverse()) {
          const r = await z.destroy(m.dataset, props.adopted ? "" : props.owner);
          if (r === "destroyed") progress(label, `destroyed clone ${m.dataset}`);
        }
        const result = await z.destroy(id, props.adopted ? "" : props.owner);
        if (result === "not-owned") progress(label, `left ${id} in place: it was not created by this stack`);
        else if (result === "missing") progress(label, `${id} was already gone`);
        else progress(label, `destroyed clone ${id}`);
      } catch (e) {
        throw new Error(`could not destroy clone ${id}: ${errorMessage(e)}`, { cause: e });
      }
    });
  },
};

export interface ZfsCloneArgs {
  /** Where `zfs` runs. Omit for this machine. Stored as a secret. */
  connection?: pulumi.Input<ConnectionArgs>;
  /** The snapshot to clone, `pool/ds@snap`. */
  snapshot: pulumi.Input<string>;
  /** The new dataset, e.g. `tank/rehearsal/pg13-clone`. Its parent must exist. */
  dataset: pulumi.Input<string>;
  /** Properties for the clone, e.g. `{ mountpoint: "/srv/clone" }`; changeable in place. */
  properties?: pulumi.Input<Record<string, pulumi.Input<string>>>;
  /** Manage a dataset that already exists instead of failing; an adopted dataset is never destroyed. */
  adopt?: pulumi.Input<boolean>;
  /** More clones made and destroyed with this one: the other members of a snapshot set (a cluster's WAL, tablespaces). */
  members?: pulumi.Input<Array<{ snapshot: string; dataset: string; properties?: Record<string, string> }>>;
}

/**
 * A copy-on-write clone of a snapshot: takes milliseconds and no space, whatever the size.
 *
 * @example
 * ```ts
 * const clone = new ZfsClone("rehearsal", {
 *   snapshot: snap.snapshot,
 *   dataset: "tank/rehearsal",
 *   properties: { mountpoint: "/srv/rehearsal" },
 * });
 * ```
 */
export class ZfsClone extends UnderstudyResource {
  declare readonly dataset: pulumi.Output<string>;
  declare readonly snapshot: pulumi.Output<string>;
  declare readonly origin: pulumi.Output<string>;
  declare readonly mountpoint: pulumi.Output<string>;
  declare readonly createdAt: pulumi.Output<string>;
  declare readonly used: pulumi.Output<number>;
  declare readonly referenced: pulumi.Output<number>;
  declare readonly owner: pulumi.Output<string>;
  declare readonly adopted: pulumi.Output<boolean>;
  /** Where each member clone is mounted (when `members` were given). */
  declare readonly memberMountpoints: pulumi.Output<string[] | undefined>;

  constructor(name: string, args: ZfsCloneArgs, opts?: pulumi.CustomResourceOptions) {
    super(
      "ZfsClone",
      name,
      {
        connection: args.connection,
        snapshot: args.snapshot,
        dataset: args.dataset,
        properties: args.properties,
        adopt: args.adopt ?? false,
        members: args.members,
        owner: ownerId("ZfsClone", name),
        label: name,
        origin: undefined,
        mountpoint: undefined,
        memberMountpoints: undefined,
        createdAt: undefined,
        used: undefined,
        referenced: undefined,
        adopted: undefined,
      },
      opts,
    );
  }
}
