/**
 * Dynamic resources of the EBS backend: `EbsSnapshotSet` (one crash-consistent set of several
 * filesystems) and `EbsCloneSet` (clones of a set's members, attached and mounted on the
 * rehearsal instance). Both open {@link EbsStorage} from the plain spec stored in their inputs;
 * AWS credentials come from the SDK's default chain when a method runs (environment, profile,
 * instance role), so a rotated key never makes a resource undeletable and none is stored.
 *
 * Registered in providers/dispatch.ts under the kinds `EbsSnapshotSet`, `EbsCloneSet` and
 * `EbsInstanceStop` (state format: never rename).
 */
import * as pulumi from "@pulumi/pulumi";
import { declaredDiff, type DiffSpec } from "../diff";
import type { ConnectionArgs } from "../host/connection";
import { withHost } from "../host";
import { isArgv } from "../host/types";
import { InputError } from "../errors";
import { checkConnection, errorMessage, isUnknown, ownerId, progress } from "../common";
import { UnderstudyResource } from "../shim";
import type { CloneRequest, SnapshotSet, VolumeInfo } from "../storage/types";
import type { EbsStorageSpec } from "./spec";

/** Check failures from a validation that throws InputError (its field becomes the property). */
function failures(fn: () => unknown): pulumi.dynamic.CheckFailure[] {
  try {
    fn();
    return [];
  } catch (e) {
    if (InputError.is(e)) return [{ property: e.field, reason: e.message }];
    return [{ property: "", reason: errorMessage(e) }];
  }
}

function specModule(): typeof import("./spec") {
   
  return require("./spec");
}

function storageModule(): typeof import("./storage") {
   
  return require("./storage");
}

/** The identity of an EBS backend for replace decisions (waits, tags and credentials are not part of it). */
/** The backend's identity inside a spec: another region, endpoint or instance is another place; the rest of the spec changes in place. */
const SPEC_IDENTITY = ["spec.region", "spec.endpoint", "spec.live.instanceId", "spec.rehearsal.instanceId"];

/** Other volumes or another name is another set; the backend's identity replaces; its other settings and the hook's host change in place. */
export const EBS_SNAPSHOT_SET_DIFF: DiffSpec = { replace: ["volumes", "snapshotName", ...SPEC_IDENTITY], update: ["spec", "hookConnection"], ignore: ["label", "owner", "hook", "hookUser"] };
/** Another set or other requests is another clone set; the backend's identity replaces. */
export const EBS_CLONE_SET_DIFF: DiffSpec = { replace: ["set", "requests", ...SPEC_IDENTITY], update: ["spec"], ignore: ["label", "owner"] };
/** Another instance is another resource; the rest changes in place. */
export const EBS_INSTANCE_STOP_DIFF: DiffSpec = { replace: ["instanceId"], update: ["region", "endpoint", "liveInstanceId", "owner"], ignore: ["label"], connection: null, deleteBeforeReplace: false };
const snapshotSetDiff = declaredDiff(EBS_SNAPSHOT_SET_DIFF);
const cloneSetDiff = declaredDiff(EBS_CLONE_SET_DIFF);
const stopDiff = declaredDiff(EBS_INSTANCE_STOP_DIFF);

async function withStorage<T>(spec: EbsStorageSpec, connection: ConnectionArgs | undefined, label: string, fn: (s: import("./storage").EbsStorage) => Promise<T>): Promise<T> {
  const { EbsStorage } = storageModule();
  return await withHost(connection, (host) => fn(new EbsStorage(spec, host, { onProgress: (m) => progress(label, m) })));
}

// ---------------------------------------------------------------------------------------
// EbsSnapshotSet

interface SnapshotSetInputs {
  spec: EbsStorageSpec;
  /** The storage's host (rehearsal instance); unused for live's sets. */
  connection?: ConnectionArgs;
  /** Where the hook runs (e.g. live, for a CHECKPOINT); default: `connection`. */
  hookConnection?: ConnectionArgs;
  volumes: string[];
  snapshotName: string;
  hook?: string[];
  hookUser?: string;
  owner: string;
  label?: string;
}

interface SnapshotSetOutputs extends SnapshotSetInputs {
  set: SnapshotSet;
}

export const ebsSnapshotSetProvider: pulumi.dynamic.ResourceProvider = {
  async check(_olds: SnapshotSetInputs, news: SnapshotSetInputs) {
    const f: pulumi.dynamic.CheckFailure[] = [...checkConnection(news.connection), ...checkConnection(news.hookConnection)];
    const sp = specModule();
    if (!isUnknown(news.spec)) f.push(...failures(() => sp.validateEbsSpec(news.spec, "storage")));
    if (!isUnknown(news.volumes)) {
      f.push(...failures(() => {
        if (!Array.isArray(news.volumes) || news.volumes.length === 0) throw new InputError("volumes", "must list at least one volume");
        news.volumes.forEach((v, i) => sp.validateEbsVolumeId(v, `volumes[${i}]`));
      }));
    }
    if (!isUnknown(news.snapshotName)) f.push(...failures(() => sp.validateSnapshotName(news.snapshotName, "snapshotName")));
    if (news.hook !== undefined && !isUnknown(news.hook) && !isArgv(news.hook)) f.push({ property: "hook", reason: "hook: must be a non-empty argv array of single-line strings" });
    return { inputs: news, failures: f };
  },

  async diff(_id: string, olds: SnapshotSetOutputs, news: SnapshotSetInputs) {
    return snapshotSetDiff(olds as unknown as Record<string, unknown>, news as unknown as Record<string, unknown>);
  },

  async create(inputs: SnapshotSetInputs) {
    const label = inputs.label ?? inputs.snapshotName;
    if (inputs.hook) {
      const started = Date.now();
      try {
        await withHost(inputs.hookConnection ?? inputs.connection, (h) =>
          inputs.hookUser ? h.runAs(inputs.hookUser, inputs.hook!, { timeoutMs: 10 * 60_000 }) : h.run(inputs.hook!, { timeoutMs: 10 * 60_000 }),
        );
        progress(label, `consistency hook \`${inputs.hook.join(" ")}\` done in ${Date.now() - started} ms`);
      } catch (e) {
        progress(label, `warning: consistency hook failed, the snapshot set is crash-consistent only: ${errorMessage(e)}`);
      }
    }
    const set = await withStorage(inputs.spec, inputs.connection, label, (s) => s.snapshot(inputs.volumes, inputs.snapshotName, inputs.owner));
    progress(label, `snapshot set ${set.name}: ${set.members.map((m) => `${m.volume} -> ${m.id}`).join(", ")}`);
    return { id: `${inputs.spec.region}/${set.name}/${inputs.volumes.join(",")}`, outs: { ...inputs, set } };
  },

  async read(id: string, props: SnapshotSetOutputs) {
    const set = await withStorage(props.spec, props.connection, props.label ?? props.snapshotName, (s) => s.findSnapshotSet(props.volumes, props.snapshotName));
    if (!set) return { id: undefined as unknown as string, props: {} };
    return { id, props: { ...props, set } };
  },

  async update(_id: string, olds: SnapshotSetOutputs, news: SnapshotSetInputs) {
    return { outs: { ...news, owner: olds.owner, set: olds.set } };
  },

  async delete(_id: string, props: SnapshotSetOutputs) {
    const label = props.label ?? props.snapshotName;
    const outcomes = await withStorage(props.spec, props.connection, label, (s) => s.destroySnapshotSet(props.volumes, props.snapshotName, props.owner));
    outcomes.forEach((o, i) => {
      const v = props.volumes[i];
      if (o === "not-owned") progress(label, `left snapshot set ${props.snapshotName} of ${v} in place: it was not created by this stack`);
      else if (o === "missing") progress(label, `snapshot set ${props.snapshotName} of ${v} was already gone`);
      else progress(label, `destroyed snapshot set ${props.snapshotName} of ${v}`);
    });
  },
};

export interface EbsSnapshotSetArgs {
  /** The EBS backend (plain data; see `EbsStorageSpec`). */
  spec: pulumi.Input<EbsStorageSpec>;
  /** SSH to the rehearsal instance (stored as a secret). */
  connection?: pulumi.Input<ConnectionArgs>;
  /** SSH to where the hook runs, e.g. live's instance for a `CHECKPOINT` (stored as a secret). */
  hookConnection?: pulumi.Input<ConnectionArgs>;
  /** Storage volumes: live filesystems (their first `vol-` id) or clone ids. */
  volumes: pulumi.Input<pulumi.Input<string>[]>;
  snapshotName: pulumi.Input<string>;
  hook?: pulumi.Input<pulumi.Input<string>[]>;
  hookUser?: pulumi.Input<string>;
}

/**
 * A crash-consistent EBS snapshot set: one `CreateSnapshots` call on one instance for every
 * volume of the given filesystems, tagged with this stack's owner mark and the set's name.
 * `pulumi destroy` deletes the snapshots only if this stack made them.
 *
 * @example
 * ```ts
 * const set = new EbsSnapshotSet("base", { spec, volumes: ["vol-0123456789abcdef0"], snapshotName: "base" });
 * export const members = set.set.apply((s) => s.members.map((m) => m.id));
 * ```
 */
export class EbsSnapshotSet extends UnderstudyResource {
  declare readonly set: pulumi.Output<SnapshotSet>;
  declare readonly owner: pulumi.Output<string>;

  constructor(name: string, args: EbsSnapshotSetArgs, opts?: pulumi.CustomResourceOptions) {
    super(
      "EbsSnapshotSet",
      name,
      {
        spec: args.spec,
        connection: args.connection,
        hookConnection: args.hookConnection ? pulumi.secret(args.hookConnection) : undefined,
        volumes: args.volumes,
        snapshotName: args.snapshotName,
        hook: args.hook,
        hookUser: args.hookUser,
        owner: ownerId("EbsSnapshotSet", name),
        label: name,
        set: undefined,
      },
      opts,
      ["hookConnection"],
    );
  }
}

// ---------------------------------------------------------------------------------------
// EbsCloneSet

interface CloneSetInputs {
  spec: EbsStorageSpec;
  connection: ConnectionArgs;
  set: SnapshotSet;
  requests: CloneRequest[];
  owner: string;
  label?: string;
}

interface CloneSetOutputs extends CloneSetInputs {
  volumes: VolumeInfo[];
}

export const ebsCloneSetProvider: pulumi.dynamic.ResourceProvider = {
  async check(_olds: CloneSetInputs, news: CloneSetInputs) {
    const f: pulumi.dynamic.CheckFailure[] = [...checkConnection(news.connection)];
    if (news.connection === undefined || news.connection === null) f.push({ property: "connection", reason: "connection: SSH to the rehearsal instance is required (clones are mounted there)" });
    const sp = specModule();
    if (!isUnknown(news.spec)) f.push(...failures(() => sp.validateEbsSpec(news.spec, "storage")));
    if (!isUnknown(news.requests)) {
      f.push(...failures(() => {
        if (!Array.isArray(news.requests) || news.requests.length === 0) throw new InputError("requests", "must list at least one clone");
        news.requests.forEach((r, i) => {
          sp.validateEbsVolumeId(r.source, `requests[${i}].source`);
          sp.validateLogicalId(r.target, `requests[${i}].target`);
          if (r.mountpoint !== undefined && r.mountpoint !== null) sp.validateMountpoint(r.mountpoint, `requests[${i}].mountpoint`);
        });
      }));
    }
    return { inputs: news, failures: f };
  },

  async diff(_id: string, olds: CloneSetOutputs, news: CloneSetInputs) {
    return cloneSetDiff(olds as unknown as Record<string, unknown>, news as unknown as Record<string, unknown>);
  },

  async create(inputs: CloneSetInputs) {
    const label = inputs.label ?? inputs.requests.map((r) => r.target).join(",");
    const volumes = await withStorage(inputs.spec, inputs.connection, label, (s) => s.clone(inputs.set, inputs.requests, inputs.owner));
    return { id: `${inputs.spec.rehearsal.instanceId}/${inputs.requests.map((r) => r.target).join(",")}`, outs: { ...inputs, volumes } };
  },

  async read(id: string, props: CloneSetOutputs) {
    const volumes = await withStorage(props.spec, props.connection, props.label ?? id, async (s) => {
      const out: VolumeInfo[] = [];
      for (const r of props.requests) {
        const v = await s.volume(r.target);
        if (v) out.push(v);
      }
      return out;
    });
    if (!volumes.length) return { id: undefined as unknown as string, props: {} };
    return { id, props: { ...props, volumes } };
  },

  async update(_id: string, olds: CloneSetOutputs, news: CloneSetInputs) {
    return { outs: { ...news, owner: olds.owner, volumes: olds.volumes } };
  },

  async delete(id: string, props: CloneSetOutputs) {
    const label = props.label ?? id;
    await withStorage(props.spec, props.connection, label, async (s) => {
      // Children before parents (a pg_wal clone mounted inside the data clone).
      const depth = (t: string) => (props.volumes ?? []).find((v) => v.id === t)?.mountpoint?.length ?? 0;
      const order = [...props.requests].sort((a, b) => depth(b.target) - depth(a.target));
      for (const r of order) {
        const o = await s.destroyVolume(r.target, props.owner);
        if (o === "not-owned") progress(label, `left clone ${r.target} in place: it was not created by this stack`);
        else if (o === "missing") progress(label, `clone ${r.target} was already gone`);
        else progress(label, `destroyed clone ${r.target}`);
      }
    });
  },
};

export interface EbsCloneSetArgs {
  spec: pulumi.Input<EbsStorageSpec>;
  /** SSH to the rehearsal instance (required; stored as a secret). */
  connection: pulumi.Input<ConnectionArgs>;
  set: pulumi.Input<SnapshotSet>;
  requests: pulumi.Input<CloneRequest[]>;
}

/**
 * Clones of a snapshot set's members: gp3 volumes in the rehearsal instance's zone, attached
 * to it, found by volume id, assembled (LVM / mdadm) and mounted at live's paths. Destroy
 * unmounts, detaches and deletes them (ours only).
 *
 * @example
 * ```ts
 * const clones = new EbsCloneSet("rehearsal", {
 *   spec, connection: rehearsalSsh, set: base.set,
 *   requests: [{ source: "vol-0123456789abcdef0", target: "rehearsal-data" }],
 * });
 * ```
 */
export class EbsCloneSet extends UnderstudyResource {
  declare readonly volumes: pulumi.Output<VolumeInfo[]>;
  declare readonly owner: pulumi.Output<string>;

  constructor(name: string, args: EbsCloneSetArgs, opts?: pulumi.CustomResourceOptions) {
    super(
      "EbsCloneSet",
      name,
      {
        spec: args.spec,
        connection: args.connection,
        set: args.set,
        requests: args.requests,
        owner: ownerId("EbsCloneSet", name),
        label: name,
        volumes: undefined,
      },
      opts,
    );
  }
}

// ---------------------------------------------------------------------------------------
// EbsInstanceStop: stops a rehearsal instance we created when it is destroyed

interface StopInputs {
  region: string;
  endpoint?: string;
  instanceId: string;
  owner: string;
  /** Live's instance: never stopped, whatever the inputs say. */
  liveInstanceId?: string;
  label?: string;
}

export const ebsInstanceStopProvider: pulumi.dynamic.ResourceProvider = {
  async check(_olds: StopInputs, news: StopInputs) {
    const sp = specModule();
    const f: pulumi.dynamic.CheckFailure[] = [];
    if (!isUnknown(news.region)) f.push(...failures(() => sp.validateRegion(news.region, "region")));
    if (!isUnknown(news.instanceId)) f.push(...failures(() => sp.validateInstanceId(news.instanceId, "instanceId")));
    if (news.endpoint !== undefined && !isUnknown(news.endpoint)) f.push(...failures(() => sp.validateEndpoint(news.endpoint, "endpoint")));
    if (!isUnknown(news.instanceId) && news.liveInstanceId && news.instanceId === news.liveInstanceId) {
      f.push({ property: "instanceId", reason: `instanceId: ${news.instanceId} is live's instance; Understudy never stops it` });
    }
    return { inputs: news, failures: f };
  },
  async diff(_id: string, olds: StopInputs, news: StopInputs) {
    return stopDiff(olds as unknown as Record<string, unknown>, news as unknown as Record<string, unknown>);
  },
  async create(inputs: StopInputs) {
    return { id: inputs.instanceId, outs: inputs };
  },
  async update(_id: string, _olds: StopInputs, news: StopInputs) {
    return { outs: news };
  },
  async delete(id: string, props: StopInputs) {
    const { EbsDriver } = require("./driver") as typeof import("./driver");  
    const d = new EbsDriver({
      region: props.region,
      endpoint: props.endpoint,
      protect: { instanceIds: props.liveInstanceId ? [props.liveInstanceId] : [] },
      onProgress: (m) => progress(props.label ?? id, m),
    });
    await d.stopInstance(props.instanceId, props.owner);
  },
};
