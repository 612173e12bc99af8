/**
 * Every EC2 call of the EBS driver against a REAL moto server on 127.0.0.1 (test/harness/moto.ts).
 *
 * What moto lacks, and how it is covered here (said again at each test):
 * - snapshots are `completed` at once, so waiters never wait: an SDK middleware rewrites
 *   DescribeSnapshots / DescribeVolumes answers to `pending` / `creating` for the first polls,
 *   or forever (timeout);
 * - `ExcludeDataVolumeIds` is ignored (moto snapshots every data volume of the instance): the
 *   driver deletes the extra snapshot itself, which is what these tests see;
 * - AttachVolume accepts a volume from another zone: the driver's own zone check is tested;
 * - no fast snapshot restore: its API answers are injected by middleware;
 * - no throttling: a ThrottlingException is injected once inside the SDK's retry loop.
 */
import { CreateSnapshotCommand, CreateTagsCommand, DescribeSnapshotsCommand, DescribeVolumesCommand, EC2Client } from "@aws-sdk/client-ec2";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EbsDriver, EbsOwnershipError, TAGS, tagsOf } from "../../providers/ebs/driver";
import { answer, injectThrottling, makeWorld, recordingClient, rewriteOutput, World } from "../harness/ec2";
import { Moto, startMoto } from "../harness/moto";

let moto: Moto;
let admin: EC2Client;
let world: World;
const OWNER = "proj/stack/EbsSnapshotSet/test";

function driver(extra: Partial<ConstructorParameters<typeof EbsDriver>[0]> = {}, rec = recordingClient(moto.endpoint)) {
  const lines: string[] = [];
  const d = new EbsDriver({
    region: "us-east-1",
    client: rec.client,
    waits: { minDelaySeconds: 1, maxDelaySeconds: 1, snapshotSeconds: 30, volumeSeconds: 30 },
    protect: { instanceIds: [world.liveInstance], volumeIds: world.liveData },
    onProgress: (m) => lines.push(m),
    ...extra,
  });
  return { d, rec, lines };
}

async function snapshotsOf(volumeId: string) {
  return (await admin.send(new DescribeSnapshotsCommand({ OwnerIds: ["self"], Filters: [{ Name: "volume-id", Values: [volumeId] }] }))).Snapshots ?? [];
}

async function volumeExists(volumeId: string): Promise<boolean> {
  try {
    return ((await admin.send(new DescribeVolumesCommand({ VolumeIds: [volumeId] }))).Volumes ?? []).length === 1;
  } catch {
    return false;
  }
}

async function snapshotExists(snapshotId: string): Promise<boolean> {
  try {
    return ((await admin.send(new DescribeSnapshotsCommand({ SnapshotIds: [snapshotId] }))).Snapshots ?? []).length === 1;
  } catch {
    return false;
  }
}

beforeAll(async () => {
  moto = await startMoto();
  admin = recordingClient(moto.endpoint).client;
  world = await makeWorld(admin);
}, 60_000);

afterAll(async () => {
  await moto?.stop();
});

describe("EbsDriver: snapshot sets (one CreateSnapshots per set)", () => {
  it("snapshots exactly live's data volumes in ONE CreateSnapshots call, boot and other volumes excluded, tagged", async () => {
    const { d, rec, lines } = driver();
    const snaps = await d.createSnapshotSet({
      instanceId: world.liveInstance,
      volumeIds: world.liveData,
      tags: { [TAGS.owner]: OWNER, [TAGS.set]: "s01-base" },
      perVolume: { [world.liveData[0]]: { [TAGS.member]: "0" }, [world.liveData[1]]: { [TAGS.member]: "1" } },
    });
    expect(rec.calls.filter((c) => c === "CreateSnapshotsCommand")).toHaveLength(1);
    expect(rec.calls).not.toContain("CreateSnapshotCommand");
    const input = rec.inputs[rec.calls.indexOf("CreateSnapshotsCommand")] as { InstanceSpecification: { InstanceId: string; ExcludeBootVolume: boolean; ExcludeDataVolumeIds: string[] } };
    expect(input.InstanceSpecification).toEqual({ InstanceId: world.liveInstance, ExcludeBootVolume: true, ExcludeDataVolumeIds: [world.liveOther] });
    expect(snaps.map((s) => s.VolumeId)).toEqual(world.liveData);
    expect(snaps.every((s) => s.State === "completed")).toBe(true);
    for (const [i, s] of snaps.entries()) {
      expect(tagsOf(s)).toMatchObject({ [TAGS.owner]: OWNER, [TAGS.set]: "s01-base", [TAGS.member]: String(i) });
    }
    // moto ignores ExcludeDataVolumeIds: the snapshot it made of the scratch volume was deleted by the driver.
    expect(await snapshotsOf(world.liveOther)).toEqual([]);
    expect(lines.some((l) => l.includes(world.liveOther) && l.includes("excluded"))).toBe(true);
    // Live's volumes are untouched (still attached to live, no tag of ours).
    const live = (await admin.send(new DescribeVolumesCommand({ VolumeIds: world.liveData }))).Volumes!;
    for (const v of live) {
      expect(v.Attachments?.[0]?.InstanceId).toBe(world.liveInstance);
      expect(tagsOf(v)[TAGS.owner]).toBeUndefined();
    }
  });

  it("refuses a volume that is not attached to the instance, naming it, and creates nothing", async () => {
    const { d, rec } = driver();
    const before = (await snapshotsOf(world.stray)).length;
    await expect(
      d.createSnapshotSet({ instanceId: world.liveInstance, volumeIds: [world.liveData[0], world.stray], tags: { [TAGS.owner]: OWNER, [TAGS.set]: "bad" } }),
    ).rejects.toThrow(new RegExp(`${world.stray} \\(not attached\\) is not attached to ${world.liveInstance}.*Nothing was created`));
    expect(rec.calls).not.toContain("CreateSnapshotsCommand");
    expect((await snapshotsOf(world.stray)).length).toBe(before);
  });

  it("refuses a missing volume, naming it", async () => {
    const { d, rec } = driver();
    await expect(
      d.createSnapshotSet({ instanceId: world.liveInstance, volumeIds: ["vol-00000000000000000"], tags: { [TAGS.owner]: OWNER, [TAGS.set]: "bad" } }),
    ).rejects.toThrow(/vol-00000000000000000 do not exist in us-east-1; nothing was created/);
    expect(rec.calls).not.toContain("CreateSnapshotsCommand");
  });

  it("waits while snapshots are pending and reports progress (moto completes at once: `pending` injected for two polls)", async () => {
    const { d, rec, lines } = driver();
    // Only the waiter asks by SnapshotIds for both snapshots: its first two polls see `pending`.
    let poll = 0;
    const polls = rewriteOutput(rec.client, "DescribeSnapshotsCommand", (out, _call, input) => {
      if ((input.SnapshotIds as string[] | undefined)?.length !== 2) return;
      poll++;
      const snaps = (out.Snapshots as Array<{ State?: string; Progress?: string }>) ?? [];
      if (poll <= 2) for (const s of snaps) Object.assign(s, { State: "pending", Progress: `${poll * 40}%` });
    });
    const started = Date.now();
    const snaps = await d.createSnapshotSet({ instanceId: world.liveInstance, volumeIds: world.liveData, tags: { [TAGS.owner]: OWNER, [TAGS.set]: "s02-wait" } });
    expect(snaps).toHaveLength(2);
    expect(polls.calls).toBeGreaterThanOrEqual(4);
    expect(Date.now() - started).toBeGreaterThanOrEqual(1000);
    expect(lines.some((l) => /s02-wait: snap-\w+ pending 40%/.test(l))).toBe(true);
    expect(lines.some((l) => /s02-wait: snap-\w+ completed/.test(l))).toBe(true);
  });

  it("gives up after the bound, naming the snapshots and what was left (moto completes at once: `pending` injected forever)", async () => {
    const { d, rec } = driver({ waits: { minDelaySeconds: 1, maxDelaySeconds: 1, snapshotSeconds: 3 } });
    rewriteOutput(rec.client, "DescribeSnapshotsCommand", (out, _call, input) => {
      if ((input.SnapshotIds as string[] | undefined)?.length === 2) for (const s of (out.Snapshots as Array<{ State?: string }>) ?? []) s.State = "pending";
    });
    const started = Date.now();
    const e = await d.createSnapshotSet({ instanceId: world.liveInstance, volumeIds: world.liveData, tags: { [TAGS.owner]: OWNER, [TAGS.set]: "s03-timeout" } }).catch((x: Error) => x);
    expect(e).toBeInstanceOf(Error);
    expect((e as Error).message).toMatch(/waiting for snapshot set s03-timeout \(snap-\w+, snap-\w+\) to complete: did not finish within 3 s; the snapshots stay in place/);
    expect(Date.now() - started).toBeLessThan(15_000);
    const left = (await snapshotsOf(world.liveData[0])).filter((s) => tagsOf(s)[TAGS.set] === "s03-timeout");
    expect(left).toHaveLength(1);
  });

  it("fails when a snapshot reaches `error` (state injected: moto never errs)", async () => {
    const { d, rec } = driver();
    rewriteOutput(rec.client, "DescribeSnapshotsCommand", (out, _call, input) => {
      if (input.SnapshotIds && !input.Filters) for (const s of (out.Snapshots as Array<{ State?: string }>) ?? []) s.State = "error";
    });
    await expect(d.createSnapshotSet({ instanceId: world.liveInstance, volumeIds: [world.liveData[0]], tags: { [TAGS.owner]: OWNER, [TAGS.set]: "s04-error" } })).rejects.toThrow(
      /reached a failure state/,
    );
  });
});

describe("EbsDriver: volumes, attach, detach", () => {
  let snap: string;
  beforeAll(async () => {
    const { d } = driver();
    snap = (await d.createSnapshotSet({ instanceId: world.liveInstance, volumeIds: [world.liveData[0]], tags: { [TAGS.owner]: OWNER, [TAGS.set]: "vol-tests" } }))[0].SnapshotId!;
  });

  it("creates a gp3 volume from a snapshot in the rehearsal zone, with iops/throughput and tags, waiting until available", async () => {
    const { d, rec } = driver();
    const v = await d.createVolume({ snapshotId: snap, zone: "us-east-1a", iops: 4000, throughput: 250, tags: { [TAGS.owner]: OWNER, [TAGS.volume]: "c1" } });
    expect(v).toMatchObject({ SnapshotId: snap, AvailabilityZone: "us-east-1a", VolumeType: "gp3", Iops: 4000, Throughput: 250, State: "available" });
    expect(tagsOf(v)).toMatchObject({ [TAGS.owner]: OWNER, [TAGS.volume]: "c1" });
    expect(rec.calls).toContain("CreateVolumeCommand");
    expect(rec.calls).toContain("DescribeVolumesCommand");
  });

  it("waits while a new volume is `creating` (injected: moto creates at once)", async () => {
    const { d, rec } = driver();
    const polls = rewriteOutput(rec.client, "DescribeVolumesCommand", (out, call) => {
      if (call < 2) for (const v of (out.Volumes as Array<{ State?: string }>) ?? []) v.State = "creating";
    });
    const started = Date.now();
    const v = await d.createVolume({ snapshotId: snap, zone: "us-east-1a", tags: { [TAGS.owner]: OWNER } });
    expect(v.State).toBe("available");
    expect(polls.calls).toBeGreaterThanOrEqual(3);
    expect(Date.now() - started).toBeGreaterThanOrEqual(1000);
  });

  it("a missing snapshot: a clear error, nothing created", async () => {
    const { d } = driver();
    await expect(d.createVolume({ snapshotId: "snap-00000000000000000", zone: "us-east-1a", tags: { [TAGS.owner]: OWNER } })).rejects.toThrow(
      /snapshot snap-00000000000000000 does not exist in us-east-1; nothing was created/,
    );
  });

  it("attaches to the rehearsal instance on a free /dev/sd[f-p] name and detaches again", async () => {
    const { d } = driver();
    const v = (await d.createVolume({ snapshotId: snap, zone: "us-east-1a", tags: { [TAGS.owner]: OWNER } })).VolumeId!;
    const dev = await d.attachVolume(v, world.rehearsalInstance, OWNER);
    expect(dev).toMatch(/^\/dev\/sd[f-p]$/);
    const v2 = (await d.createVolume({ snapshotId: snap, zone: "us-east-1a", tags: { [TAGS.owner]: OWNER } })).VolumeId!;
    const dev2 = await d.attachVolume(v2, world.rehearsalInstance, OWNER);
    expect(dev2).not.toBe(dev);
    expect((await d.volume(v))!.Attachments![0]).toMatchObject({ InstanceId: world.rehearsalInstance, Device: dev });
    expect(await d.attachVolume(v, world.rehearsalInstance, OWNER)).toBe(dev); // idempotent
    expect(await d.detachVolume(v, OWNER)).toBe("detached");
    expect((await d.volume(v))!.State).toBe("available");
    expect(await d.detachVolume(v, OWNER)).toBe("not-attached");
    expect(await d.deleteVolume(v2, OWNER)).toBe("destroyed"); // detaches first
    expect(await volumeExists(v2)).toBe(false);
  });

  it("refuses to attach across zones, naming both zones (moto would accept it)", async () => {
    const { d, rec } = driver();
    const v = (await d.createVolume({ snapshotId: snap, zone: "us-east-1a", tags: { [TAGS.owner]: OWNER } })).VolumeId!;
    await expect(d.attachVolume(v, world.otherZoneInstance, OWNER)).rejects.toThrow(
      new RegExp(`cannot attach ${v} \\(in us-east-1a\\) to ${world.otherZoneInstance} \\(in us-east-1b\\).*left unattached`),
    );
    expect(rec.calls).not.toContain("AttachVolumeCommand");
    expect((await d.volume(v))!.Attachments ?? []).toEqual([]);
  });

  it("never attaches anything to live's instance", async () => {
    const { d, rec } = driver();
    const v = (await d.createVolume({ snapshotId: snap, zone: "us-east-1a", tags: { [TAGS.owner]: OWNER } })).VolumeId!;
    await expect(d.attachVolume(v, world.liveInstance, OWNER)).rejects.toThrow(/live's instance/);
    expect(rec.calls).not.toContain("AttachVolumeCommand");
  });
});

describe("EbsDriver: ownership (delete and detach only what carries our owner tag)", () => {
  it("refuses to delete or detach live's volumes, naming them; they are still attached to live afterwards", async () => {
    const { d, rec } = driver();
    for (const v of world.liveData) {
      await expect(d.deleteVolume(v, OWNER)).rejects.toThrow(new RegExp(`refusing to delete ${v}: it is live's volume`));
      await expect(d.detachVolume(v, OWNER)).rejects.toThrow(new RegExp(`refusing to detach ${v}: it is live's volume`));
    }
    expect(rec.calls.filter((c) => /Delete|Detach/.test(c))).toEqual([]);
    const live = (await admin.send(new DescribeVolumesCommand({ VolumeIds: world.liveData }))).Volumes!;
    expect(live.map((v) => [v.State, v.Attachments?.[0]?.InstanceId])).toEqual(world.liveData.map(() => ["in-use", world.liveInstance]));
  });

  it("refuses a volume without our owner tag even when it is not declared as live's (unprotected driver)", async () => {
    const { d, rec } = driver({ protect: {} });
    const e = await d.deleteVolume(world.liveOther, OWNER).catch((x: Error) => x);
    expect(e).toBeInstanceOf(EbsOwnershipError);
    expect((e as Error).message).toContain(`refusing to delete volume ${world.liveOther}: it was not created by this stack`);
    await expect(d.detachVolume(world.liveOther, OWNER)).rejects.toThrow(/refusing to detach/);
    await expect(d.deleteVolume(world.stray, OWNER)).rejects.toThrow(new RegExp(world.stray));
    expect(rec.calls.filter((c) => /DeleteVolume|DetachVolume/.test(c))).toEqual([]);
    expect(await volumeExists(world.liveOther)).toBe(true);
    expect(await volumeExists(world.stray)).toBe(true);
    expect((await d.volume(world.liveOther))!.Attachments?.[0]?.InstanceId).toBe(world.liveInstance);
  });

  it("refuses a volume owned by another stack, and an empty owner matches nothing", async () => {
    const { d } = driver();
    const snap = (await snapshotsOf(world.liveData[0]))[0].SnapshotId!;
    const v = (await d.createVolume({ snapshotId: snap, zone: "us-east-1a", tags: { [TAGS.owner]: "other/stack/x/y" } })).VolumeId!;
    await expect(d.deleteVolume(v, OWNER)).rejects.toThrow(/"other\/stack\/x\/y"/);
    await expect(d.deleteVolume(v, "")).rejects.toThrow(/not created by this stack/);
    expect(await volumeExists(v)).toBe(true);
    expect(await d.deleteVolume(v, "other/stack/x/y")).toBe("destroyed");
  });

  it("refuses to delete snapshots made by others (no tag, another owner); deletes ours; a gone one is `missing`", async () => {
    const { d, rec } = driver();
    const foreign = (await admin.send(new CreateSnapshotCommand({ VolumeId: world.liveData[0], Description: "the DBA's own backup" }))).SnapshotId!;
    const otherOwner = (await admin.send(new CreateSnapshotCommand({ VolumeId: world.liveData[0] }))).SnapshotId!;
    await admin.send(new CreateTagsCommand({ Resources: [otherOwner], Tags: [{ Key: TAGS.owner, Value: "other/stack" }] }));
    await expect(d.deleteSnapshot(foreign, OWNER)).rejects.toThrow(new RegExp(`refusing to delete snapshot ${foreign} \\(of ${world.liveData[0]}\\).*left in place`));
    await expect(d.deleteSnapshot(otherOwner, OWNER)).rejects.toThrow(/not created by this stack/);
    expect(rec.calls).not.toContain("DeleteSnapshotCommand");
    expect(await snapshotExists(foreign)).toBe(true);
    expect(await snapshotExists(otherOwner)).toBe(true);
    const ours = (await admin.send(new CreateSnapshotCommand({ VolumeId: world.liveData[0], TagSpecifications: [{ ResourceType: "snapshot", Tags: [{ Key: TAGS.owner, Value: OWNER }] }] }))).SnapshotId!;
    expect(await d.deleteSnapshot(ours, OWNER)).toBe("destroyed");
    expect(await snapshotExists(ours)).toBe(false);
    expect(await d.deleteSnapshot(ours, OWNER)).toBe("missing");
  });

  it("never tags live's volumes or instance", async () => {
    const { d } = driver();
    await expect(d.setTags([world.liveData[0]], { [TAGS.head]: "x" })).rejects.toThrow(/live's volume/);
    await expect(d.setTags([world.liveInstance], { [TAGS.head]: "x" })).rejects.toThrow(/live's instance/);
  });
});

describe("EbsDriver: throttling is retried by the SDK (bounded)", () => {
  it("a ThrottlingException on DescribeVolumes is retried and the call succeeds", async () => {
    const { d, rec } = driver();
    const t = injectThrottling(rec.client, "DescribeVolumesCommand", 1);
    const v = await d.volume(world.liveData[0]);
    expect(v?.VolumeId).toBe(world.liveData[0]);
    expect(t.injected).toBe(1);
  });

  it("with one attempt allowed the same throttle fails: the retry is what made it pass", async () => {
    const rec = recordingClient(moto.endpoint, { maxAttempts: 1 });
    const { d } = driver({}, rec);
    injectThrottling(rec.client, "DescribeVolumesCommand", 1);
    await expect(d.volume(world.liveData[0])).rejects.toThrow(/Rate exceeded/);
  });

  it("CreateSnapshots throttled twice still makes one set", async () => {
    const { d, rec } = driver();
    const t = injectThrottling(rec.client, "CreateSnapshotsCommand", 2);
    const snaps = await d.createSnapshotSet({ instanceId: world.liveInstance, volumeIds: world.liveData, tags: { [TAGS.owner]: OWNER, [TAGS.set]: "s05-throttled" } });
    expect(t.injected).toBe(2);
    expect(snaps).toHaveLength(2);
    expect(rec.calls.filter((c) => c === "CreateSnapshotsCommand")).toHaveLength(1);
  });
});

describe("EbsDriver: fast snapshot restore (moto has none: its API answers are injected)", () => {
  it("enables, waits through enabling/optimizing to enabled, and reports each state", async () => {
    const { d, rec, lines } = driver();
    const snap = (await snapshotsOf(world.liveData[0]))[0].SnapshotId!;
    answer(rec.client, "EnableFastSnapshotRestoresCommand", () => ({ Successful: [{ SnapshotId: snap, AvailabilityZone: "us-east-1a", State: "enabling" }], Unsuccessful: [] }));
    const states = ["enabling", "optimizing", "enabled"];
    const polls = answer(rec.client, "DescribeFastSnapshotRestoresCommand", (_input, call) => ({
      FastSnapshotRestores: [{ SnapshotId: snap, AvailabilityZone: "us-east-1a", State: states[Math.min(call, 2)] }],
    }));
    await d.enableFastSnapshotRestore([snap], "us-east-1a");
    expect(polls.calls).toBe(3);
    expect(lines.filter((l) => l.startsWith("fast snapshot restore in us-east-1a"))).toEqual(states.map((s) => `fast snapshot restore in us-east-1a: ${snap} ${s}`));
  });

  it("gives up after the bound and says it stays billed", async () => {
    const { d, rec } = driver({ waits: { minDelaySeconds: 1, maxDelaySeconds: 1, fastSnapshotRestoreSeconds: 2 } });
    const snap = (await snapshotsOf(world.liveData[0]))[0].SnapshotId!;
    answer(rec.client, "EnableFastSnapshotRestoresCommand", () => ({ Successful: [], Unsuccessful: [] }));
    answer(rec.client, "DescribeFastSnapshotRestoresCommand", () => ({ FastSnapshotRestores: [{ SnapshotId: snap, State: "optimizing" }] }));
    await expect(d.enableFastSnapshotRestore([snap], "us-east-1a")).rejects.toThrow(/not enabled within 2 s.*stays enabled \(and billed\)/);
  });

  it("reports snapshots AWS refused", async () => {
    const { d, rec } = driver();
    answer(rec.client, "EnableFastSnapshotRestoresCommand", () => ({
      Unsuccessful: [{ SnapshotId: "snap-0123456789abcdef0", FastSnapshotRestoreStateErrors: [{ AvailabilityZone: "us-east-1a", Error: { Code: "x", Message: "limit reached" } }] }],
    }));
    await expect(d.enableFastSnapshotRestore(["snap-0123456789abcdef0"], "us-east-1a")).rejects.toThrow(/snap-0123456789abcdef0: limit reached/);
  });
});

describe("EbsDriver: stopping a rehearsal instance we created (never live's)", () => {
  it("refuses live's instance and an instance without our owner tag; stops ours and waits", async () => {
    const { d, rec } = driver();
    await expect(d.stopInstance(world.liveInstance, OWNER)).rejects.toThrow(/refusing to stop .* live's instance/);
    const e = await driver({ protect: {} }).d.stopInstance(world.liveInstance, OWNER).catch((x: Error) => x);
    expect((e as Error).message).toContain(`refusing to stop instance ${world.liveInstance}: it was not created by this stack`);
    expect(rec.calls).not.toContain("StopInstancesCommand");
    await admin.send(new CreateTagsCommand({ Resources: [world.otherZoneInstance], Tags: [{ Key: TAGS.owner, Value: OWNER }] }));
    expect(await d.stopInstance(world.otherZoneInstance, OWNER)).toBe("stopped");
    expect(rec.calls).toContain("StopInstancesCommand");
    const live = (await d.describeInstance(world.liveInstance))!;
    expect(live.State?.Name).toBe("running");
  });
});
