/**
 * EBS as the components' storage argument ({@link StorageBackend}): snapshot sets are
 * `EbsSnapshotSet` resources (one `CreateSnapshots` per set), clones are `EbsCloneSet`
 * resources (volumes attached to and mounted on the rehearsal instance at live's paths), and
 * the schedule is an `aws.dlm.LifecyclePolicy`.
 *
 * `@pulumi/aws` is an OPTIONAL peer dependency of this package: it is loaded only when
 * {@link EbsStorage.schedule} (or the rehearsal instance / Route53 record helpers) declare
 * an AWS resource, so ZFS users never need it. Snapshot sets and clones use the AWS SDK from
 * dynamic providers and need no AWS Pulumi provider at all.
 */
import * as pulumi from "@pulumi/pulumi";
import type { ConnectionArgs } from "../../providers/host/connection";
import { InputError } from "../../providers/errors";
import { ownerId } from "../../providers/common";
import { loadPulumiAws } from "../aws";
import { EbsCloneSet, EbsSnapshotSet } from "../../providers/ebs/resources";
import {
  EbsLiveSpec,
  EbsStorageSpec,
  EbsVolumeSpec,
  EbsWaitSpec,
  liveFilesystems,
  validateEbsSpec,
  validateEbsVolumeId,
  validateTags,
} from "../../providers/ebs/spec";
import type { CloneRequest, SnapshotSet, Storage, StorageSpec } from "../../providers/storage/types";
import type { Host } from "../../providers/host/types";
import { withHost } from "../../providers/host";
import { createStorage as createEbsStorage, ebsCloneTargets, ebsSibling } from "../../providers/ebs/storage";
import type {
  CloneSetArgs,
  DeclaredCloneSet,
  DeclaredSchedule,
  DeclaredSnapshotSet,
  ScheduleArgs,
  SnapshotSetArgs,
  StorageBackend,
} from "./types";

/** The rehearsal instance as the storage needs it (an {@link EbsRehearsalInstance} gives this). */
export interface EbsRehearsalTarget {
  /** `i-...`. */
  instanceId: pulumi.Input<string>;
  /** Its availability zone, e.g. `eu-west-1a`. */
  availabilityZone: pulumi.Input<string>;
  /** SSH to it, shaped like `@pulumi/command`'s connection; clones are mounted there. Stored as a secret. */
  connection: pulumi.Input<ConnectionArgs>;
}

/** How the DLM policy behind {@link EbsStorage.schedule} finds live's instance. */
export interface EbsScheduleTarget {
  /**
   * Tags live's instance ALREADY carries (e.g. `{ Name: "db1" }`): DLM snapshots every instance
   * with them. We never tag live, so choose tags that match live's instance only.
   */
  targetTags: Record<string, string>;
  /**
   * Tags of volumes on that instance that are NOT PostgreSQL data (scratch, swap) to leave out;
   * they must already be on those volumes. The boot volume is always left out.
   */
  excludeDataVolumeTags?: Record<string, string>;
  /** An IAM role DLM runs as. Default: a role created with AWS's `AWSDataLifecycleManagerServiceRole` policy. */
  executionRoleArn?: pulumi.Input<string>;
  /**
   * An SSM document DLM runs on live before each snapshot (e.g. one that runs `psql -c CHECKPOINT`),
   * so clones of scheduled sets recover fast. Without it the sets are crash-consistent only
   * (still consistent across volumes). Needs the SSM agent on live.
   */
  preScriptDocument?: pulumi.Input<string>;
}

export interface EbsStorageArgs {
  /** AWS region, e.g. `eu-west-1`. */
  region: string;
  /** Another EC2 endpoint (a VPC endpoint). */
  endpoint?: string;
  /** Live's instance and its data volumes with their mountpoints on live (read-only to us). */
  live: EbsLiveSpec;
  /** The instance clones are attached to and mounted on. */
  rehearsal: EbsRehearsalTarget;
  /**
   * SSH to live's instance, for the consistency hook (a `CHECKPOINT`) before a snapshot set of
   * live, and for a `Promotion` (required there): it stops live's PostgreSQL cleanly and starts
   * it again to roll back. Nothing else changes anything there.
   */
  liveConnection?: pulumi.Input<ConnectionArgs>;
  /** Clone volumes: gp3 iops/throughput, initialization rate or fast snapshot restore (see `EbsVolumeSpec`). */
  volume?: EbsVolumeSpec;
  /** Mount clones under this directory instead of at live's paths (links inside PGDATA then need re-pointing). */
  mountRoot?: string;
  /** Extra tags on everything Understudy creates. */
  tags?: Record<string, string>;
  waits?: EbsWaitSpec;
  maxAttempts?: number;
  /** For {@link EbsStorage.schedule}: how DLM finds live's instance. */
  schedule?: EbsScheduleTarget;
}

/** DLM intervals (hours) AWS allows for a create rule. */
const DLM_HOURS = [1, 2, 3, 4, 6, 8, 12, 24];

/** `1h` -> 1; `1d` -> 24; refuses what DLM cannot do (it has no sub-hour schedule). */
export function dlmIntervalHours(every: string, field = "every"): number {
  const m = /^(\d+)(m|h|d)$/.exec(every);
  if (!m) throw new InputError(field, `${JSON.stringify(every)} must look like 1h, 6h or 1d`);
  const hours = m[2] === "m" ? Number(m[1]) / 60 : m[2] === "h" ? Number(m[1]) : Number(m[1]) * 24;
  if (!DLM_HOURS.includes(hours)) {
    throw new InputError(field, `${JSON.stringify(every)}: an EBS schedule (AWS DLM) runs every ${DLM_HOURS.map((h) => (h === 24 ? "1d" : `${h}h`)).join(", ")} (nothing shorter than an hour)`);
  }
  return hours;
}

/**
 * The EBS storage backend for `DatabaseClone`, `UpgradeRehearsal`, `Promotion` and
 * `SnapshotSchedule`.
 *
 * @example
 * ```ts
 * const storage = new EbsStorage({
 *   region: "eu-west-1",
 *   live: {
 *     instanceId: "i-0123456789abcdef0",
 *     volumes: [
 *       { volumeId: "vol-0aaaaaaaaaaaaaaa1", mountpoint: "/var/lib/postgresql" },
 *       { volumeId: "vol-0aaaaaaaaaaaaaaa2", mountpoint: "/var/lib/postgresql" },
 *       { volumeId: "vol-0aaaaaaaaaaaaaaa3", mountpoint: "/pg_wal" },
 *     ],
 *     assemblies: [{ mountpoint: "/var/lib/postgresql", kind: "lvm", vg: "pgdata", lv: "data" }],
 *   },
 *   rehearsal: { instanceId: "i-0fedcba9876543210", availabilityZone: "eu-west-1a", connection: { host: "10.0.1.20", user: "admin", privateKey } },
 *   volume: { iops: 6000, throughput: 500, initializationRate: 300 },
 *   schedule: { targetTags: { Name: "db1" } },
 * });
 * ```
 */
export class EbsStorage implements StorageBackend {
  readonly kind = "ebs";
  readonly connection: pulumi.Input<ConnectionArgs>;
  readonly spec: pulumi.Output<StorageSpec>;
  /** The validated spec (an Output: the rehearsal instance may not be known yet). */
  readonly ebsSpec: pulumi.Output<EbsStorageSpec>;
  private readonly args: EbsStorageArgs;

  constructor(args: EbsStorageArgs) {
    this.args = args;
    const plain = (r: EbsRehearsalTarget): EbsStorageSpec => ({
      kind: "ebs",
      region: args.region,
      endpoint: args.endpoint,
      live: args.live,
      rehearsal: {
        // Not known yet (a created instance): stand-ins of the right shape, checked again when known.
        instanceId: typeof r.instanceId === "string" ? r.instanceId : "i-00000000000000000",
        availabilityZone: typeof r.availabilityZone === "string" ? r.availabilityZone : `${args.region}a`,
      },
      volume: args.volume,
      mountRoot: args.mountRoot,
      tags: args.tags,
      waits: args.waits,
      maxAttempts: args.maxAttempts,
    });
    // Everything known now is checked now: a bad id fails the program before anything is declared.
    validateEbsSpec(JSON.parse(JSON.stringify(plain(args.rehearsal))), "storage");
    if (args.schedule) {
      validateTags(args.schedule.targetTags, "storage.schedule.targetTags");
      if (Object.keys(args.schedule.targetTags).length === 0) throw new InputError("storage.schedule.targetTags", "give at least one tag live's instance carries");
      if (args.schedule.excludeDataVolumeTags) validateTags(args.schedule.excludeDataVolumeTags, "storage.schedule.excludeDataVolumeTags");
    }
    this.connection = args.rehearsal.connection;
    this.ebsSpec = pulumi
      .all([args.rehearsal.instanceId, args.rehearsal.availabilityZone])
      .apply(([instanceId, availabilityZone]) => validateEbsSpec(JSON.parse(JSON.stringify(plain({ ...args.rehearsal, instanceId, availabilityZone }))), "storage"));
    this.spec = this.ebsSpec as unknown as pulumi.Output<StorageSpec>;
  }

  validateVolumeId(id: string, field: string): string {
    const s = validateEbsVolumeId(id, field);
    if (s.startsWith("vol-")) {
      const fs = liveFilesystems({ ...(this.args as unknown as EbsStorageSpec), kind: "ebs" }).find((f) => f.members.includes(s));
      if (!fs) throw new InputError(field, `${s} is not one of live's data volumes (storage.live.volumes)`);
      if (fs.id !== s) throw new InputError(field, `${s} is part of the filesystem at ${fs.mountpoint}; name it by its first volume ${fs.id}`);
    }
    return s;
  }

  snapshotSet(name: string, args: SnapshotSetArgs, opts: pulumi.CustomResourceOptions): DeclaredSnapshotSet {
    const set = new EbsSnapshotSet(
      name,
      {
        spec: this.ebsSpec,
        connection: this.connection,
        // A hook on a set of live's filesystems runs on live (a CHECKPOINT); on clones, on the rehearsal instance.
        hookConnection: pulumi.output(args.volumes).apply((v) => (v.some((x) => x.startsWith("vol-")) && this.args.liveConnection ? this.args.liveConnection : this.connection)) as pulumi.Input<ConnectionArgs>,
        volumes: args.volumes,
        snapshotName: args.snapshotName,
        hook: args.hook,
        hookUser: args.hookUser,
      },
      opts,
    );
    return { set: set.set, resources: [set] };
  }

  existingSnapshotSet(volumes: pulumi.Input<string[]>, name: pulumi.Input<string>): pulumi.Output<SnapshotSet> {
    return pulumi.all([this.ebsSpec, volumes, name]).apply(async ([spec, v, n]) => {
       
      const { findEbsSnapshotSet } = require("../../providers/ebs/lookup") as typeof import("../../providers/ebs/lookup");
      return await findEbsSnapshotSet(spec, v, n);
    });
  }

  latestSnapshotSet(volumes: pulumi.Input<string[]>, opts?: { before?: string; prefix?: string }): pulumi.Output<SnapshotSet> {
    return pulumi.all([this.ebsSpec, volumes]).apply(async ([spec, v]) => {
       
      const { latestEbsSnapshotSet } = require("../../providers/ebs/lookup") as typeof import("../../providers/ebs/lookup");
      return await latestEbsSnapshotSet(spec, v, opts ?? {});
    });
  }

  /** The primary source goes to `target`, the others to `<target>-2`, `<target>-3`...; each mounted at its live path (or `mountpoint` for the primary). */
  cloneRequests(target: string, sources: string[], mountpoint?: string): CloneRequest[] {
    sources.forEach((s, i) => this.validateVolumeId(s, `sources[${i}]`));
    const targets = ebsCloneTargets(target, sources);
    return sources.map((source, i) => ({ source, target: targets[i], ...(i === 0 && mountpoint ? { mountpoint } : {}) }));
  }

  cloneOwner(name: string): string {
    return ownerId("EbsCloneSet", name);
  }

  siblingVolume(_of: string, name: string): string {
    return ebsSibling(name);
  }

  /**
   * A promotion stops live cleanly on live's instance (and starts it again for a roll-back):
   * through `liveConnection`, which it then needs. Nothing else on live's instance is touched.
   */
  promotionLiveConnection(): pulumi.Input<ConnectionArgs> {
    if (!this.args.liveConnection) {
      throw new InputError("storage.liveConnection", "a Promotion on EBS stops live's PostgreSQL cleanly on live's instance (and starts it again to roll back): give an SSH connection to it");
    }
    return this.args.liveConnection;
  }

  /** The same storage with clones made on another instance (e.g. the instance that becomes the new live). */
  onInstance(target: EbsRehearsalTarget): EbsStorage {
    return new EbsStorage({ ...this.args, rehearsal: target });
  }

  /** The backend on the rehearsal instance; live's host is `liveConnection` when given (else the same host). */
  withStorage<T>(fn: (storage: Storage, liveHost: Host) => Promise<T>): pulumi.Output<T> {
    return pulumi.all([this.ebsSpec, this.connection, this.args.liveConnection]).apply(([spec, conn, liveConn]) =>
      withHost(conn, (host) => (liveConn ? withHost(liveConn, (live) => fn(createEbsStorage(spec, host), live)) : fn(createEbsStorage(spec, host), host))),
    );
  }

  cloneSet(name: string, args: CloneSetArgs, opts: pulumi.CustomResourceOptions): DeclaredCloneSet {
    const c = new EbsCloneSet(name, { spec: this.ebsSpec, connection: this.connection, set: args.set, requests: args.requests }, opts);
    return { volumes: c.volumes, owner: c.owner, resources: [c] };
  }

  /**
   * Hourly (or 2h ... 1d) snapshot sets of live by AWS Data Lifecycle Manager: a policy on live's
   * INSTANCE (found by `schedule.targetTags`), so each run is one multi-volume, crash-consistent
   * set, boot volume excluded; `keep.hourly` runs kept, plus `keep.daily` of a daily run at 00:00 UTC.
   * Snapshots are tagged `understudy:schedule=<prefix>`: `latestSnapshotSet(..., { prefix })` finds them.
   * The volumes argument must name live filesystems; DLM snapshots every data volume of the
   * instance (tag the others for `excludeDataVolumeTags`). Hooks cannot run from DLM: give
   * `schedule.preScriptDocument` (an SSM document) for a CHECKPOINT.
   */
  schedule(name: string, args: ScheduleArgs, opts: pulumi.ComponentResourceOptions): DeclaredSchedule {
    const target = this.args.schedule;
    if (!target) throw new InputError("storage.schedule", "an EBS schedule needs storage.schedule.targetTags: tags live's instance already carries (DLM finds it by them)");
    // Everything known now is checked now, before any Output or resource exists.
    const checkVolumes = (v: string[]) =>
      v.forEach((x, i) => {
        if (!x.startsWith("vol-")) throw new InputError(`volumes[${i}]`, `${x}: a schedule snapshots live's filesystems (vol- ids), not clones`);
        this.validateVolumeId(x, `volumes[${i}]`);
      });
    if (Array.isArray(args.volumes) && args.volumes.every((x) => typeof x === "string")) checkVolumes(args.volumes as string[]);
    if (typeof args.every === "string") dlmIntervalHours(args.every, "every");
    const aws = loadPulumiAws("an EBS snapshot schedule");
    const owner = ownerId("SnapshotSchedule", name);
    const resources: pulumi.Resource[] = [];
    const every = pulumi.output(args.every ?? "1h").apply((e) => dlmIntervalHours(e, "every"));
    const keep = pulumi.output(args.keep ?? {}).apply((k) => {
      const hourly = k.hourly ?? 24;
      const daily = k.daily ?? 7;
      for (const [f, n, min] of [["keep.hourly", hourly, 1], ["keep.daily", daily, 0]] as const) {
        if (!Number.isInteger(n) || n < min || n > 1000) throw new InputError(f, `${JSON.stringify(n)} must be an integer from ${min} to 1000 (DLM keeps at most 1000)`);
      }
      return { hourly, daily };
    });
    const prefix = pulumi.output(args.prefix ?? "understudy").apply((p) => {
      if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/.test(p)) throw new InputError("prefix", `${JSON.stringify(p)} must be 1-64 of letters, digits, _ . -`);
      return p;
    });
    if (args.hook) {
      void pulumi.log.warn(`${name}: DLM cannot run a hook argv before its snapshots; the scheduled sets are crash-consistent (set storage.schedule.preScriptDocument for an SSM CHECKPOINT)`);
    }
    let roleArn: pulumi.Input<string>;
    if (target.executionRoleArn) roleArn = target.executionRoleArn;
    else {
      const role = new aws.iam.Role(
        `${name}-dlm`,
        {
          description: `DLM role for the Understudy schedule ${name}`,
          assumeRolePolicy: JSON.stringify({ Version: "2012-10-17", Statement: [{ Effect: "Allow", Principal: { Service: "dlm.amazonaws.com" }, Action: "sts:AssumeRole" }] }),
          tags: { ...(this.args.tags ?? {}), "understudy:owner": owner },
        },
        opts,
      );
      const attach = new aws.iam.RolePolicyAttachment(`${name}-dlm`, { role: role.name, policyArn: "arn:aws:iam::aws:policy/service-role/AWSDataLifecycleManagerServiceRole" }, opts);
      resources.push(role, attach);
      roleArn = role.arn;
    }
    const tagsToAdd = prefix.apply((p) => ({ "understudy:schedule": p, "understudy:owner": owner }));
    const scripts = target.preScriptDocument
      ? { stages: ["PRE"], executionHandlerService: "AWS_SYSTEMS_MANAGER", executionHandler: target.preScriptDocument, executeOperationOnScriptFailure: true, executionTimeout: 60, maximumRetryCount: 1 }
      : undefined;
    const policy = new aws.dlm.LifecyclePolicy(
      name,
      {
        description: `Understudy snapshot sets of ${this.args.live.instanceId}`,
        executionRoleArn: roleArn,
        state: "ENABLED",
        policyDetails: {
          policyType: "EBS_SNAPSHOT_MANAGEMENT",
          resourceTypes: ["INSTANCE"],
          targetTags: target.targetTags,
          parameters: { excludeBootVolume: true, noReboot: true, excludeDataVolumeTags: target.excludeDataVolumeTags },
          schedules: pulumi.all([every, keep, tagsToAdd]).apply(([hours, k, tags]) => [
            { name: `${hours}h`, copyTags: false, tagsToAdd: tags, createRule: { interval: hours, intervalUnit: "HOURS", times: "00:00", ...(scripts ? { scripts } : {}) }, retainRule: { count: k.hourly } },
            ...(k.daily > 0 && hours < 24
              ? [{ name: "daily", copyTags: false, tagsToAdd: tags, createRule: { cronExpression: "cron(0 0 * * ? *)", ...(scripts ? { scripts } : {}) }, retainRule: { count: k.daily } }]
              : []),
          ]),
        },
        tags: { ...(this.args.tags ?? {}), "understudy:owner": owner },
      },
      { ...opts, dependsOn: resources },
    );
    resources.push(policy);
    return {
      cron: every.apply((h) => (h === 24 ? "cron(0 0 * * ? *)" : `rate(${h} hour${h > 1 ? "s" : ""})`)),
      prefix,
      owner: pulumi.output(owner),
      logPath: pulumi.output(undefined as string | undefined),
      resources,
    };
  }
}
