/**
 * Typed EC2 calls for the EBS backend (AWS SDK v3). No Pulumi here; the SDK is `require`d
 * inside methods (dynamic providers are serialized closures and must not capture it).
 *
 * Guard rails, each enforced here, whatever the caller does:
 * - **Live is read-only.** Every mutating call refuses an instance or volume listed in
 *   `protect` (live's instance and data volumes): no stop, no detach, no modify, no attach to
 *   live's instance, no delete. The only call that touches live is `CreateSnapshots`, which reads it.
 * - **Owned only.** {@link EbsDriver.deleteVolume}, {@link EbsDriver.deleteSnapshot} and
 *   {@link EbsDriver.detachVolume} act only on resources whose `understudy:owner` tag equals the
 *   owner passed (non-empty); anything else is refused with an {@link EbsOwnershipError} naming it.
 * - **Bounded waits.** Every wait uses the SDK's own waiter (its acceptors) with a maximum
 *   time; a timeout says what is still pending and what was left behind.
 * - **Throttling** (`RequestLimitExceeded`, `ThrottlingException`) is retried by the SDK's
 *   standard retry strategy, `maxAttempts` times at most.
 */
import type {
  EC2Client,
  Filter,
  Instance,
  Snapshot,
  Tag,
  Volume,
} from "@aws-sdk/client-ec2";
import type { EbsWaitSpec } from "./spec";
import { validateInstanceId, validateSnapshotId, validateVolumeIdSyntax } from "./spec";

/** Tags we keep on what we create. */
export const TAGS = {
  owner: "understudy:owner",
  /** Snapshot: the set's short name. */
  set: "understudy:set",
  /** Snapshot and clone volume: the storage volume (live filesystem id or clone logical id). */
  volume: "understudy:volume",
  /** Snapshot and clone volume: index of the member inside its filesystem (LVM/mdadm), `0` for single. */
  member: "understudy:member",
  /** Snapshot: the unique token of the CreateSnapshots call that made it. */
  request: "understudy:request",
  /** Clone volume: its mountpoint on the rehearsal instance. */
  mountpoint: "understudy:mountpoint",
  /** Clone volume: `single`, `lvm:<vg>/<lv>` or `mdadm` (how the members are assembled). */
  assembly: "understudy:assembly",
  /** Clone volume: the snapshot it was created from. */
  origin: "understudy:origin",
  /** Clone volume: the live filesystem it is a clone of. */
  source: "understudy:source",
  /** Clone volume: fast snapshot restore was enabled for it on this snapshot (disabled when it goes). */
  fsr: "understudy:fsr",
  head: "understudy:head",
  promotion: "understudy:promotion",
  role: "understudy:role",
} as const;

export class EbsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "EbsError";
  }
}

/** A delete/detach refused because the resource is not ours (or is live's). */
export class EbsOwnershipError extends EbsError {
  readonly resource: string;
  constructor(resource: string, message: string) {
    super(message);
    this.name = "EbsOwnershipError";
    this.resource = resource;
  }
}

export interface DriverOptions {
  region: string;
  endpoint?: string;
  maxAttempts?: number;
  waits?: EbsWaitSpec;
  /** Live's instance and volumes: never modified, detached, stopped, attached to or deleted. */
  protect?: { instanceIds?: string[]; volumeIds?: string[] };
  /** Progress lines (the provider turns them into Pulumi log lines). */
  onProgress?: (message: string) => void;
  /** An EC2 client to use instead of one built from region/endpoint (tests add middleware to it). */
  client?: EC2Client;
  /** Extra tags on everything we create. */
  tags?: Record<string, string>;
}

export function tagsOf(x: { Tags?: Tag[] } | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const t of x?.Tags ?? []) if (t.Key !== undefined) out[t.Key] = t.Value ?? "";
  return out;
}

function toTags(m: Record<string, string>): Tag[] {
  return Object.entries(m).map(([Key, Value]) => ({ Key, Value }));
}

function errName(e: unknown): string {
  return (e as { name?: string; Code?: string })?.name ?? (e as { Code?: string })?.Code ?? "";
}

function msg(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

type SdkModule = typeof import("@aws-sdk/client-ec2");

export class EbsDriver {
  private clientCache?: EC2Client;
  private readonly protectedInstances: Set<string>;
  private readonly protectedVolumes: Set<string>;

  constructor(readonly opts: DriverOptions) {
    this.protectedInstances = new Set(opts.protect?.instanceIds ?? []);
    this.protectedVolumes = new Set(opts.protect?.volumeIds ?? []);
  }

  private sdk(): SdkModule {
     
    return require("@aws-sdk/client-ec2") as SdkModule;
  }

  /** The EC2 client (built on first use: nothing is read from the environment before a call). */
  get client(): EC2Client {
    if (this.opts.client) return this.opts.client;
    if (!this.clientCache) {
      const { EC2Client } = this.sdk();
      this.clientCache = new EC2Client({
        region: this.opts.region,
        endpoint: this.opts.endpoint,
        maxAttempts: this.opts.maxAttempts ?? 8,
        retryMode: "standard",
      });
    }
    return this.clientCache;
  }

  private progress(m: string): void {
    this.opts.onProgress?.(m);
  }

  private refuseLive(kind: "instance" | "volume", id: string, what: string): void {
    const set = kind === "instance" ? this.protectedInstances : this.protectedVolumes;
    if (set.has(id)) {
      throw new EbsOwnershipError(id, `refusing to ${what} ${id}: it is live's ${kind}, which Understudy only reads (snapshots). Nothing was changed.`);
    }
  }

  // -------------------------------------------------------------------------------------
  // Reads

  async describeInstance(instanceId: string): Promise<Instance | undefined> {
    validateInstanceId(instanceId, "instanceId");
    const { DescribeInstancesCommand } = this.sdk();
    try {
      const r = await this.client.send(new DescribeInstancesCommand({ InstanceIds: [instanceId] }));
      return r.Reservations?.flatMap((x) => x.Instances ?? [])[0];
    } catch (e) {
      if (/InvalidInstanceID\.(NotFound|Malformed)/.test(errName(e))) return undefined;
      throw e;
    }
  }

  /** Volumes by id; a missing one is absent from the result (no error). */
  async describeVolumes(volumeIds: string[]): Promise<Volume[]> {
    volumeIds.forEach((v, i) => validateVolumeIdSyntax(v, `volumeIds[${i}]`));
    if (volumeIds.length === 0) return [];
    const { DescribeVolumesCommand } = this.sdk();
    try {
      const r = await this.client.send(new DescribeVolumesCommand({ VolumeIds: volumeIds }));
      return r.Volumes ?? [];
    } catch (e) {
      if (errName(e) !== "InvalidVolume.NotFound") throw e;
      // One missing id fails the whole call: ask one by one.
      const out: Volume[] = [];
      for (const id of volumeIds) {
        try {
          const r = await this.client.send(new DescribeVolumesCommand({ VolumeIds: [id] }));
          out.push(...(r.Volumes ?? []));
        } catch (e2) {
          if (errName(e2) !== "InvalidVolume.NotFound") throw e2;
        }
      }
      return out;
    }
  }

  async volume(volumeId: string): Promise<Volume | undefined> {
    return (await this.describeVolumes([volumeId]))[0];
  }

  /** Volumes matching filters (e.g. our tags), all pages. */
  async findVolumes(filters: Filter[]): Promise<Volume[]> {
    const { DescribeVolumesCommand } = this.sdk();
    const out: Volume[] = [];
    let NextToken: string | undefined;
    do {
      const r = await this.client.send(new DescribeVolumesCommand({ Filters: filters, NextToken, MaxResults: 500 }));
      out.push(...(r.Volumes ?? []));
      NextToken = r.NextToken;
    } while (NextToken);
    return out;
  }

  /** Our account's snapshots matching filters, all pages, oldest first. */
  async findSnapshots(filters: Filter[]): Promise<Snapshot[]> {
    const { DescribeSnapshotsCommand } = this.sdk();
    const out: Snapshot[] = [];
    let NextToken: string | undefined;
    do {
      const r = await this.client.send(new DescribeSnapshotsCommand({ OwnerIds: ["self"], Filters: filters, NextToken, MaxResults: 1000 }));
      out.push(...(r.Snapshots ?? []));
      NextToken = r.NextToken;
    } while (NextToken);
    return out.sort((a, b) => (a.StartTime?.getTime() ?? 0) - (b.StartTime?.getTime() ?? 0));
  }

  async snapshot(snapshotId: string): Promise<Snapshot | undefined> {
    validateSnapshotId(snapshotId, "snapshotId");
    const { DescribeSnapshotsCommand } = this.sdk();
    try {
      const r = await this.client.send(new DescribeSnapshotsCommand({ SnapshotIds: [snapshotId] }));
      return r.Snapshots?.[0];
    } catch (e) {
      if (errName(e) === "InvalidSnapshot.NotFound") return undefined;
      throw e;
    }
  }

  // -------------------------------------------------------------------------------------
  // Snapshots

  /**
   * One crash-consistent snapshot set: ONE `CreateSnapshots` call on `instanceId` for exactly
   * `volumeIds` (boot volume excluded with `ExcludeBootVolume`, the instance's other data
   * volumes with `ExcludeDataVolumeIds`). Every snapshot is tagged at creation with `tags` and a
   * unique request token, then with its own `perVolume` tags; then we wait for `completed`.
   *
   * Refuses before the call when a volume is missing or not attached to `instanceId`.
   * A snapshot of a volume that was not asked for (moto ignores `ExcludeDataVolumeIds`) is
   * deleted at once: it carries our owner tag and this call's token.
   */
  async createSnapshotSet(args: {
    instanceId: string;
    volumeIds: string[];
    tags: Record<string, string>;
    perVolume?: Record<string, Record<string, string>>;
    description?: string;
    label?: string;
  }): Promise<Snapshot[]> {
    validateInstanceId(args.instanceId, "instanceId");
    args.volumeIds.forEach((v, i) => validateVolumeIdSyntax(v, `volumeIds[${i}]`));
    const owner = args.tags[TAGS.owner];
    if (!owner) throw new EbsError("a snapshot set needs an owner tag");
    const label = args.label ?? args.tags[TAGS.set] ?? "snapshot set";
    const inst = await this.describeInstance(args.instanceId);
    if (!inst) throw new EbsError(`cannot snapshot: instance ${args.instanceId} does not exist in ${this.opts.region}; nothing was created`);
    const found = await this.describeVolumes(args.volumeIds);
    const missing = args.volumeIds.filter((v) => !found.some((f) => f.VolumeId === v));
    if (missing.length) throw new EbsError(`cannot snapshot ${label}: volume(s) ${missing.join(", ")} do not exist in ${this.opts.region}; nothing was created`);
    const elsewhere = found.filter((v) => !(v.Attachments ?? []).some((a) => a.InstanceId === args.instanceId && (a.State === "attached" || a.State === "attaching")));
    if (elsewhere.length) {
      throw new EbsError(
        `cannot snapshot ${label} at one instant: ${elsewhere
          .map((v) => `${v.VolumeId} (${(v.Attachments ?? []).map((a) => `attached to ${a.InstanceId}`).join(", ") || "not attached"})`)
          .join(", ")} ${elsewhere.length > 1 ? "are" : "is"} not attached to ${args.instanceId}; a consistent set is taken of one instance's volumes. Nothing was created.`,
      );
    }
    const attached = await this.findVolumes([{ Name: "attachment.instance-id", Values: [args.instanceId] }]);
    const rootDevice = inst.RootDeviceName;
    const others = attached
      .filter((v) => !args.volumeIds.includes(v.VolumeId!) && !(v.Attachments ?? []).some((a) => a.InstanceId === args.instanceId && a.Device === rootDevice))
      .map((v) => v.VolumeId!);
    const token = `${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 10)}`;
    const { CreateSnapshotsCommand, CreateTagsCommand } = this.sdk();
    const tags = { ...(this.opts.tags ?? {}), ...args.tags, [TAGS.request]: token };
    const started = Date.now();
    try {
      await this.client.send(
        new CreateSnapshotsCommand({
          InstanceSpecification: { InstanceId: args.instanceId, ExcludeBootVolume: true, ExcludeDataVolumeIds: others.length ? others : undefined },
          Description: (args.description ?? `understudy ${label}`).slice(0, 255),
          TagSpecifications: [{ ResourceType: "snapshot", Tags: toTags(tags) }],
          // Not CopyTagsFromSource: live's tags are not ours to copy, and moto lacks it.
        }),
      );
    } catch (e) {
      throw new EbsError(`CreateSnapshots on ${args.instanceId} for ${label} failed: ${msg(e)}`);
    }
    // The response's list is not relied on (moto 5.2 returns it under another element): the
    // snapshots are found again by this call's token, which is authoritative on both.
    const made = await this.findSnapshots([{ Name: `tag:${TAGS.request}`, Values: [token] }]);
    const extra = made.filter((s) => !args.volumeIds.includes(s.VolumeId!));
    for (const s of extra) {
      this.progress(`deleting ${s.SnapshotId} of ${s.VolumeId}: CreateSnapshots included a volume that was excluded`);
      await this.deleteSnapshot(s.SnapshotId!, owner);
    }
    const set = args.volumeIds.map((v) => made.find((s) => s.VolumeId === v));
    const lost = args.volumeIds.filter((_, i) => !set[i]);
    if (lost.length) {
      throw new EbsError(
        `CreateSnapshots on ${args.instanceId} made no snapshot of ${lost.join(", ")}; left behind (tagged ${TAGS.request}=${token}): ${made.map((s) => s.SnapshotId).join(", ") || "nothing"}`,
      );
    }
    for (const s of set) {
      const extraTags = args.perVolume?.[s!.VolumeId!];
      if (extraTags && Object.keys(extraTags).length) {
        await this.client.send(new CreateTagsCommand({ Resources: [s!.SnapshotId!], Tags: toTags(extraTags) }));
      }
    }
    this.progress(`CreateSnapshots: ${set.map((s) => `${s!.SnapshotId} of ${s!.VolumeId}`).join(", ")} started in ${Date.now() - started} ms`);
    await this.waitSnapshotsCompleted(set.map((s) => s!.SnapshotId!), label);
    return (await this.findSnapshots([{ Name: `tag:${TAGS.request}`, Values: [token] }])).filter((s) => args.volumeIds.includes(s.VolumeId!))
      .sort((a, b) => args.volumeIds.indexOf(a.VolumeId!) - args.volumeIds.indexOf(b.VolumeId!));
  }

  /** Wait until every snapshot is `completed` (SDK waiter, bounded), reporting progress at each poll. */
  async waitSnapshotsCompleted(snapshotIds: string[], label = "snapshots"): Promise<void> {
    const { waitUntilSnapshotCompleted } = this.sdk();
    const maxWait = this.opts.waits?.snapshotSeconds ?? 12 * 3600;
    let last = "";
    await this.waitFor(
      `snapshot set ${label} (${snapshotIds.join(", ")}) to complete`,
      maxWait,
      (client) => waitUntilSnapshotCompleted({ client, ...this.delays(maxWait) }, { SnapshotIds: snapshotIds }),
      (out) => {
        const snaps = (out as { Snapshots?: Snapshot[] }).Snapshots ?? [];
        const line = snaps.map((s) => `${s.SnapshotId} ${s.State} ${s.Progress ?? ""}`.trim()).join(", ");
        if (line && line !== last) {
          last = line;
          this.progress(`${label}: ${line}`);
        }
      },
      `the snapshots stay in place (ours, tagged ${TAGS.owner}); a later run or \`pulumi destroy\` finds them`,
    );
  }

  private delays(maxWait: number): { maxWaitTime: number; minDelay: number; maxDelay: number } {
    // The SDK requires maxWaitTime > minDelay.
    const minDelay = Math.min(this.opts.waits?.minDelaySeconds ?? 15, maxWait / 2);
    const maxDelay = Math.max(minDelay, Math.min(this.opts.waits?.maxDelaySeconds ?? 120, maxWait));
    return { maxWaitTime: maxWait, minDelay, maxDelay };
  }

  /**
   * Run one of the SDK's waiters with a client that reports each poll's result, and turn
   * a timeout or a failure state into an error saying what is pending and what was left.
   */
  private async waitFor(
    what: string,
    maxWait: number,
    run: (client: EC2Client) => Promise<unknown>,
    onPoll: (output: unknown) => void,
    leftBehind: string,
  ): Promise<void> {
    const real = this.client;
    const reporting = {
      config: real.config,
      middlewareStack: real.middlewareStack,
      send: async (command: Parameters<EC2Client["send"]>[0]) => {
        const out = await real.send(command as never);
        onPoll(out);
        return out;
      },
    } as unknown as EC2Client;
    try {
      await run(reporting);
    } catch (e) {
      // checkExceptions throws TimeoutError / AbortError, or an Error whose message is the result as JSON.
      const state = `${errName(e)} ${msg(e).slice(0, 200)}`;
      const why = /TimeoutError|"state":"TIMEOUT"/.test(state)
        ? `did not finish within ${maxWait} s`
        : /"state":"FAILURE"/.test(state)
          ? "reached a failure state"
          : /AbortError|"state":"ABORTED"/.test(state)
            ? "was aborted"
            : `failed: ${msg(e)}`;
      throw new EbsError(`waiting for ${what}: ${why}; ${leftBehind}`);
    }
  }

  /** Delete a snapshot we own. Missing: `"missing"`. Not ours: {@link EbsOwnershipError}, nothing deleted. */
  async deleteSnapshot(snapshotId: string, owner: string): Promise<"destroyed" | "missing"> {
    validateSnapshotId(snapshotId, "snapshotId");
    const s = await this.snapshot(snapshotId);
    if (!s) return "missing";
    const tag = tagsOf(s)[TAGS.owner];
    if (!owner || tag !== owner) {
      throw new EbsOwnershipError(
        snapshotId,
        `refusing to delete snapshot ${snapshotId} (of ${s.VolumeId}): it was not created by this stack (${TAGS.owner}=${JSON.stringify(tag ?? null)}); it was left in place`,
      );
    }
    const { DeleteSnapshotCommand } = this.sdk();
    try {
      await this.client.send(new DeleteSnapshotCommand({ SnapshotId: snapshotId }));
    } catch (e) {
      if (errName(e) === "InvalidSnapshot.NotFound") return "missing";
      if (errName(e) === "InvalidSnapshot.InUse") throw new EbsError(`snapshot ${snapshotId} is in use (by an AMI?); it was left in place: ${msg(e)}`);
      throw e;
    }
    return "destroyed";
  }

  // -------------------------------------------------------------------------------------
  // Volumes

  /**
   * A gp3 volume from a snapshot in `zone`, tagged, waited for until `available`.
   * `initializationRate` (MiB/s) asks AWS to initialize it in the background at that rate.
   */
  async createVolume(args: {
    snapshotId: string;
    zone: string;
    tags: Record<string, string>;
    iops?: number;
    throughput?: number;
    initializationRate?: number;
  }): Promise<Volume> {
    validateSnapshotId(args.snapshotId, "snapshotId");
    if (!args.tags[TAGS.owner]) throw new EbsError("a volume needs an owner tag");
    const { CreateVolumeCommand } = this.sdk();
    let id: string;
    try {
      const r = await this.client.send(
        new CreateVolumeCommand({
          SnapshotId: args.snapshotId,
          AvailabilityZone: args.zone,
          VolumeType: "gp3",
          Iops: args.iops ?? 3000,
          Throughput: args.throughput ?? 125,
          VolumeInitializationRate: args.initializationRate,
          TagSpecifications: [{ ResourceType: "volume", Tags: toTags({ ...(this.opts.tags ?? {}), ...args.tags }) }],
        }),
      );
      id = r.VolumeId!;
    } catch (e) {
      if (errName(e) === "InvalidSnapshot.NotFound") throw new EbsError(`cannot create a volume: snapshot ${args.snapshotId} does not exist in ${this.opts.region}; nothing was created`);
      if (/InvalidParameterValue|InvalidZone/.test(errName(e))) throw new EbsError(`cannot create a volume from ${args.snapshotId} in ${args.zone}: ${msg(e)}; nothing was created`);
      throw new EbsError(`CreateVolume from ${args.snapshotId} in ${args.zone} failed: ${msg(e)}`);
    }
    this.progress(`volume ${id} created from ${args.snapshotId} in ${args.zone}${args.initializationRate ? ` (initialized at ${args.initializationRate} MiB/s)` : ""}`);
    await this.waitVolumes("available", [id], `volume ${id} stays (ours, tagged ${TAGS.owner}); \`pulumi destroy\` deletes it`);
    return (await this.volume(id))!;
  }

  private async waitVolumes(state: "available" | "in-use", ids: string[], leftBehind: string): Promise<void> {
    const { waitUntilVolumeAvailable, waitUntilVolumeInUse } = this.sdk();
    const maxWait = this.opts.waits?.volumeSeconds ?? 15 * 60;
    const waiter = state === "available" ? waitUntilVolumeAvailable : waitUntilVolumeInUse;
    await this.waitFor(
      `volume(s) ${ids.join(", ")} to be ${state}`,
      maxWait,
      (client) => waiter({ client, ...this.delays(maxWait) }, { VolumeIds: ids }),
      () => undefined,
      leftBehind,
    );
  }

  /** The first of `/dev/sdf` ... `/dev/sdp` (AWS's recommended range for EBS on Linux) not in use on the instance. */
  async freeDevice(instanceId: string): Promise<string> {
    const inst = await this.describeInstance(instanceId);
    const used = new Set<string>((inst?.BlockDeviceMappings ?? []).map((b) => b.DeviceName ?? ""));
    for (const v of await this.findVolumes([{ Name: "attachment.instance-id", Values: [instanceId] }])) {
      for (const a of v.Attachments ?? []) if (a.InstanceId === instanceId && a.Device) used.add(a.Device);
    }
    const norm = (d: string) => d.replace(/^\/dev\/xvd/, "/dev/sd");
    const taken = new Set([...used].map(norm));
    for (const c of "fghijklmnop") if (!taken.has(`/dev/sd${c}`)) return `/dev/sd${c}`;
    throw new EbsError(`instance ${instanceId} has no free device name in /dev/sdf-/dev/sdp`);
  }

  /**
   * Attach an owned volume to an instance that is not live's, after checking both exist and
   * are in the same availability zone (EC2 refuses otherwise; moto does not, so we check).
   */
  async attachVolume(volumeId: string, instanceId: string, owner: string): Promise<string> {
    validateVolumeIdSyntax(volumeId, "volumeId");
    validateInstanceId(instanceId, "instanceId");
    this.refuseLive("instance", instanceId, "attach a volume to");
    this.refuseLive("volume", volumeId, "attach");
    const [vol, inst] = await Promise.all([this.volume(volumeId), this.describeInstance(instanceId)]);
    if (!vol) throw new EbsError(`cannot attach ${volumeId}: it does not exist in ${this.opts.region}`);
    if (!inst) throw new EbsError(`cannot attach ${volumeId}: instance ${instanceId} does not exist in ${this.opts.region}; the volume was left unattached`);
    if (!owner || tagsOf(vol)[TAGS.owner] !== owner) throw new EbsOwnershipError(volumeId, `refusing to attach ${volumeId}: it was not created by this stack`);
    const zone = inst.Placement?.AvailabilityZone;
    if (zone && vol.AvailabilityZone !== zone) {
      throw new EbsError(
        `cannot attach ${volumeId} (in ${vol.AvailabilityZone}) to ${instanceId} (in ${zone}): EBS volumes attach only within their availability zone. ` +
          `Check rehearsal.availabilityZone. The volume was left unattached (ours, tagged ${TAGS.owner}).`,
      );
    }
    const existing = (vol.Attachments ?? []).find((a) => a.InstanceId === instanceId);
    if (existing?.Device) return existing.Device;
    if ((vol.Attachments ?? []).length) throw new EbsError(`cannot attach ${volumeId}: it is attached to ${vol.Attachments!.map((a) => a.InstanceId).join(", ")}`);
    const device = await this.freeDevice(instanceId);
    const { AttachVolumeCommand } = this.sdk();
    try {
      await this.client.send(new AttachVolumeCommand({ VolumeId: volumeId, InstanceId: instanceId, Device: device }));
    } catch (e) {
      throw new EbsError(`AttachVolume ${volumeId} to ${instanceId} as ${device} failed: ${msg(e)}; the volume was left unattached`);
    }
    await this.waitVolumes("in-use", [volumeId], `the volume may stay attached to ${instanceId}`);
    this.progress(`volume ${volumeId} attached to ${instanceId} as ${device}`);
    return device;
  }

  /** Detach an owned volume (never one of live's) and wait until it is available again. */
  async detachVolume(volumeId: string, owner: string): Promise<"detached" | "missing" | "not-attached"> {
    validateVolumeIdSyntax(volumeId, "volumeId");
    this.refuseLive("volume", volumeId, "detach");
    const vol = await this.volume(volumeId);
    if (!vol) return "missing";
    const tag = tagsOf(vol)[TAGS.owner];
    if (!owner || tag !== owner) {
      throw new EbsOwnershipError(volumeId, `refusing to detach ${volumeId}: it was not created by this stack (${TAGS.owner}=${JSON.stringify(tag ?? null)}); it was left attached`);
    }
    if (!(vol.Attachments ?? []).length) return "not-attached";
    for (const a of vol.Attachments ?? []) this.refuseLive("instance", a.InstanceId ?? "", "detach a volume from");
    const { DetachVolumeCommand } = this.sdk();
    const att = vol.Attachments![0];
    try {
      // Instance and device named (moto needs them; EC2 then checks they still match).
      await this.client.send(new DetachVolumeCommand({ VolumeId: volumeId, InstanceId: att.InstanceId, Device: att.Device }));
    } catch (e) {
      if (errName(e) === "IncorrectState" && /available|not attached/i.test(msg(e))) return "not-attached";
      throw new EbsError(`DetachVolume ${volumeId} failed: ${msg(e)}; it was left attached`);
    }
    await this.waitVolumes("available", [volumeId], "the volume may still be detaching");
    this.progress(`volume ${volumeId} detached`);
    return "detached";
  }

  /** Delete a volume we own (detached first). Missing: `"missing"`. Not ours: {@link EbsOwnershipError}. */
  async deleteVolume(volumeId: string, owner: string): Promise<"destroyed" | "missing"> {
    validateVolumeIdSyntax(volumeId, "volumeId");
    this.refuseLive("volume", volumeId, "delete");
    const vol = await this.volume(volumeId);
    if (!vol) return "missing";
    const tag = tagsOf(vol)[TAGS.owner];
    if (!owner || tag !== owner) {
      throw new EbsOwnershipError(volumeId, `refusing to delete volume ${volumeId}: it was not created by this stack (${TAGS.owner}=${JSON.stringify(tag ?? null)}); it was left in place`);
    }
    if ((vol.Attachments ?? []).length) await this.detachVolume(volumeId, owner);
    const { DeleteVolumeCommand } = this.sdk();
    try {
      await this.client.send(new DeleteVolumeCommand({ VolumeId: volumeId }));
    } catch (e) {
      if (errName(e) === "InvalidVolume.NotFound") return "missing";
      throw new EbsError(`DeleteVolume ${volumeId} failed: ${msg(e)}; it was left in place`);
    }
    this.progress(`volume ${volumeId} deleted`);
    return "destroyed";
  }

  /** Set tags on resources we own (never live's). */
  async setTags(ids: string[], tags: Record<string, string>): Promise<void> {
    for (const id of ids) {
      if (id.startsWith("vol-")) this.refuseLive("volume", id, "tag");
      if (id.startsWith("i-")) this.refuseLive("instance", id, "tag");
    }
    const { CreateTagsCommand } = this.sdk();
    await this.client.send(new CreateTagsCommand({ Resources: ids, Tags: toTags(tags) }));
  }

  /**
   * Stop an instance we created (owner tag), never live's: the rehearsal instance when its
   * component was told to stop rather than terminate it on destroy. Waits until `stopped`.
   */
  async stopInstance(instanceId: string, owner: string): Promise<"stopped" | "missing"> {
    validateInstanceId(instanceId, "instanceId");
    this.refuseLive("instance", instanceId, "stop");
    const inst = await this.describeInstance(instanceId);
    if (!inst || inst.State?.Name === "terminated") return "missing";
    const tag = tagsOf(inst)[TAGS.owner];
    if (!owner || tag !== owner) {
      throw new EbsOwnershipError(instanceId, `refusing to stop instance ${instanceId}: it was not created by this stack (${TAGS.owner}=${JSON.stringify(tag ?? null)}); it was left running`);
    }
    if (inst.State?.Name !== "stopped") {
      const { StopInstancesCommand, waitUntilInstanceStopped } = this.sdk();
      await this.client.send(new StopInstancesCommand({ InstanceIds: [instanceId] }));
      const maxWait = this.opts.waits?.volumeSeconds ?? 15 * 60;
      await this.waitFor(`instance ${instanceId} to stop`, maxWait, (client) => waitUntilInstanceStopped({ client, ...this.delays(maxWait) }, { InstanceIds: [instanceId] }), () => undefined, "it may still be stopping");
    }
    this.progress(`instance ${instanceId} stopped (kept, with its volumes)`);
    return "stopped";
  }

  // -------------------------------------------------------------------------------------
  // Fast snapshot restore (not in moto: tested with injected states)

  /** Enable fast snapshot restore for snapshots in a zone and wait until `enabled` (bounded). */
  async enableFastSnapshotRestore(snapshotIds: string[], zone: string): Promise<void> {
    snapshotIds.forEach((s, i) => validateSnapshotId(s, `snapshotIds[${i}]`));
    const { EnableFastSnapshotRestoresCommand, DescribeFastSnapshotRestoresCommand } = this.sdk();
    const r = await this.client.send(new EnableFastSnapshotRestoresCommand({ AvailabilityZones: [zone], SourceSnapshotIds: snapshotIds }));
    const failed = r.Unsuccessful ?? [];
    if (failed.length) {
      throw new EbsError(
        `fast snapshot restore could not be enabled in ${zone} for ${failed.map((f) => `${f.SnapshotId}: ${(f.FastSnapshotRestoreStateErrors ?? []).map((x) => x.Error?.Message).join("; ")}`).join(", ")}`,
      );
    }
    const maxWait = this.opts.waits?.fastSnapshotRestoreSeconds ?? 6 * 3600;
    const { minDelay, maxDelay } = this.delays(maxWait);
    const deadline = Date.now() + maxWait * 1000;
    let delay = minDelay;
    let last = "";
    // The SDK has no waiter for fast snapshot restores: poll with the same bounds.
    for (;;) {
      const d = await this.client.send(
        new DescribeFastSnapshotRestoresCommand({ Filters: [{ Name: "snapshot-id", Values: snapshotIds }, { Name: "availability-zone", Values: [zone] }] }),
      );
      const states = snapshotIds.map((id) => d.FastSnapshotRestores?.find((f) => f.SnapshotId === id)?.State ?? "unknown");
      const line = snapshotIds.map((id, i) => `${id} ${states[i]}`).join(", ");
      if (line !== last) {
        last = line;
        this.progress(`fast snapshot restore in ${zone}: ${line}`);
      }
      if (states.every((s) => s === "enabled")) return;
      if (states.some((s) => s === "disabling" || s === "disabled")) throw new EbsError(`fast snapshot restore was disabled in ${zone} while waiting: ${line}`);
      if (Date.now() + delay * 1000 > deadline) {
        throw new EbsError(`waiting for fast snapshot restore in ${zone}: not enabled within ${maxWait} s (${line}); it stays enabled (and billed) until disabled`);
      }
      await new Promise((r2) => setTimeout(r2, delay * 1000));
      delay = Math.min(maxDelay, delay * 2);
    }
  }

  async disableFastSnapshotRestore(snapshotIds: string[], zone: string): Promise<void> {
    const { DisableFastSnapshotRestoresCommand } = this.sdk();
    await this.client.send(new DisableFastSnapshotRestoresCommand({ AvailabilityZones: [zone], SourceSnapshotIds: snapshotIds }));
    this.progress(`fast snapshot restore disabled in ${zone} for ${snapshotIds.join(", ")}`);
  }
}
