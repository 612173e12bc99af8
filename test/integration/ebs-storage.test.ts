/**
 * EbsStorage against the points of the Storage contract (providers/storage/types.ts), with:
 * - a REAL moto server for every EC2 call (test/harness/moto.ts);
 * - the REAL SSH host layer to the project's test sshd (127.0.0.1:2222) for everything that
 *   runs on the rehearsal instance (device lookup, mount, unmount);
 * - STAND-IN for EBS blocks: loop devices. Live's two data volumes are ext4 images; when moto
 *   answers CreateSnapshots, a middleware copies each snapshotted volume's image (what the
 *   snapshot holds); when a volume made from a snapshot is attached, the test-only device
 *   lookup attaches a copy of that snapshot's image as a loop device. So the clone holds what
 *   the volume held at snapshot time, as on EBS.
 *
 * The shared contract suite (test/contract/storage-contract.ts) is not on main yet; these
 * tests cover its points for EBS until it lands.
 */
import { DescribeSnapshotsCommand, DescribeVolumesCommand, CreateSnapshotCommand, CreateTagsCommand, CreateVolumeCommand, EC2Client } from "@aws-sdk/client-ec2";
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { resolveConnection } from "../../providers/host/connection";
import { SshHost } from "../../providers/host/ssh";
import { InputError } from "../../providers/errors";
import { TAGS, tagsOf } from "../../providers/ebs/driver";
import type { EbsStorageSpec } from "../../providers/ebs/spec";
import { EbsStorage } from "../../providers/ebs/storage";
import type { SnapshotSet } from "../../providers/storage/types";
import { makeWorld, recordingClient, RecordingClient, World } from "../harness/ec2";
import { LoopLab } from "../harness/loop";
import { EbsBlocks } from "../harness/ebs-blocks";
import { Moto, startMoto } from "../harness/moto";

const KEY_FILE = path.join(os.homedir(), ".cache/understudy/ssh/id_ed25519");
const ROOT = "/srv/usebs-pg";
const OWNER = "proj/dev/DatabaseClone/rehearsal";
const OTHER = "proj/prod/DatabaseClone/someone-else";

let moto: Moto;
let admin: EC2Client;
let world: World;
let host: SshHost;
let rec: RecordingClient;
let storage: EbsStorage;
let spec: EbsStorageSpec;
const lab = new LoopLab("storage");
const blocks = new EbsBlocks(lab, () => admin);
const progress: string[] = [];

function sh(...argv: string[]): string {
  return execFileSync(argv[0], argv.slice(1), { encoding: "utf8" });
}



async function ebsIds(logical: string): Promise<string[]> {
  const vols = await storage.driver.findVolumes([{ Name: `tag:${TAGS.volume}`, Values: [logical] }]);
  return vols.filter((v) => v.State !== "deleted").map((v) => v.VolumeId!);
}

async function ourSnapshots(set: string): Promise<string[]> {
  const r = await admin.send(new DescribeSnapshotsCommand({ OwnerIds: ["self"], Filters: [{ Name: `tag:${TAGS.set}`, Values: [set] }] }));
  return (r.Snapshots ?? []).map((s) => s.SnapshotId!);
}

function mounted(mp: string): string | undefined {
  try {
    return sh("findmnt", "-n", "-o", "SOURCE", "--mountpoint", mp).trim() || undefined;
  } catch {
    return undefined;
  }
}

beforeAll(async () => {
  moto = await startMoto();
  admin = recordingClient(moto.endpoint).client;
  world = await makeWorld(admin, 2);
  // Live's blocks: PGDATA on the first volume with pg_wal linked to the second, as many setups have.
  const data = lab.image("live-data");
  const wal = lab.image("live-wal");
  const dd = lab.attach(data);
  const dw = lab.attach(wal);
  lab.mkfs(dd, "ext4");
  lab.mkfs(dw, "ext4");
  lab.withMounted(dd, `${ROOT}-seed`, (d) => {
    fs.mkdirSync(`${d}/13/main`, { recursive: true });
    fs.writeFileSync(`${d}/13/main/PG_VERSION`, "13\n");
    fs.symlinkSync(`${ROOT}/wal/pg_wal`, `${d}/13/main/pg_wal`);
  });
  lab.withMounted(dw, `${ROOT}-seed`, (d) => {
    fs.mkdirSync(`${d}/pg_wal`);
    fs.writeFileSync(`${d}/pg_wal/000000010000000000000001`, "wal");
  });
  lab.detach(data);
  lab.detach(wal);
  blocks.images.set(world.liveData[0], data);
  blocks.images.set(world.liveData[1], wal);
  host = new SshHost(resolveConnection({ host: "127.0.0.1", port: 2222, privateKey: fs.readFileSync(KEY_FILE, "utf8") }));
  rec = recordingClient(moto.endpoint);
  blocks.watchSnapshots(rec.client, "understudyTestSnapshotBlocks");
  spec = {
    kind: "ebs",
    region: "us-east-1",
    endpoint: moto.endpoint,
    live: {
      instanceId: world.liveInstance,
      volumes: [
        { volumeId: world.liveData[0], mountpoint: `${ROOT}/data`, device: "/dev/sdf" },
        { volumeId: world.liveData[1], mountpoint: `${ROOT}/wal`, device: "/dev/sdg" },
      ],
    },
    rehearsal: { instanceId: world.rehearsalInstance, availabilityZone: "us-east-1a" },
    volume: { iops: 3000, throughput: 125 },
    waits: { minDelaySeconds: 1, maxDelaySeconds: 1, snapshotSeconds: 20, volumeSeconds: 20, deviceSeconds: 10 },
  };
  storage = new EbsStorage(spec, host, { client: rec.client, deviceLookup: blocks.lookup, onProgress: (m) => progress.push(m) });
}, 120_000);

afterAll(async () => {
  lab.cleanup([ROOT, `${ROOT}-seed`]);
  await host?.close();
  await moto?.stop();
});

const DATA = () => world.liveData[0];
const WAL = () => world.liveData[1];
let base: SnapshotSet;

describe("EbsStorage: live filesystems (read only)", () => {
  it("describes live's filesystems and maps live paths to them by the declared mounts", async () => {
    const v = await storage.volume(DATA());
    expect(v).toMatchObject({ id: DATA(), mountpoint: `${ROOT}/data`, owner: undefined, properties: { type: "gp3", "ebs:volumes": DATA(), "ebs:assembly": "single" } });
    expect((await storage.volumeOfPath(`${ROOT}/data/13/main`))?.id).toBe(DATA());
    expect((await storage.volumeOfPath(`${ROOT}/wal/pg_wal/../pg_wal`))?.id).toBe(WAL());
    expect(await storage.volumeOfPath("/usr/lib/postgresql")).toBeUndefined();
    expect(await storage.volume("nothing-here")).toBeUndefined();
  });
});

describe("EbsStorage: snapshot sets (contract 2, 3)", () => {
  it("takes a set of live's filesystems at one instant: ONE CreateSnapshots on live's instance", async () => {
    const before = rec.calls.length;
    base = await storage.snapshot([DATA(), WAL()], "s00-base", OWNER);
    const calls = rec.calls.slice(before);
    expect(calls.filter((c) => c === "CreateSnapshotsCommand")).toHaveLength(1);
    expect(calls.filter((c) => c === "CreateSnapshotCommand")).toHaveLength(0);
    expect(base.name).toBe("s00-base");
    expect(base.members.map((m) => m.volume)).toEqual([DATA(), WAL()]);
    expect(base.members.every((m) => /^snap-[0-9a-f]+$/.test(m.id) && m.owner === OWNER)).toBe(true);
    expect(await storage.findSnapshotSet([DATA(), WAL()], "s00-base")).toEqual(base);
    expect(await storage.findSnapshotSet([DATA()], "no-such-set")).toBeUndefined();
    expect((await storage.listSnapshots(DATA())).map((r) => r.id)).toContain(base.members[0].id);
  });

  it("the same name again is the same set (an interrupted run takes it over); another owner's set is refused", async () => {
    const before = rec.calls.length;
    expect(await storage.snapshot([DATA(), WAL()], "s00-base", OWNER)).toEqual(base);
    expect(rec.calls.slice(before)).not.toContain("CreateSnapshotsCommand");
    await expect(storage.snapshot([DATA(), WAL()], "s00-base", OTHER)).rejects.toThrow(/already exists .* not created by this stack; nothing was created/);
  });

  it("throws when only part of a set exists", async () => {
    await storage.snapshot([DATA()], "s00-partial", OWNER);
    await expect(storage.findSnapshotSet([DATA(), WAL()], "s00-partial")).rejects.toThrow(/exists for .* but not for/);
  });
});

describe("EbsStorage: clones on the rehearsal instance (contract 1, 4)", () => {
  it("clones a set: volumes in the rehearsal zone, attached, mounted at live's own paths, so pg_wal's link stays valid", async () => {
    const [d, w] = await storage.clone(base, [{ source: DATA(), target: "c-data" }, { source: WAL(), target: "c-wal" }], OWNER);
    expect(d).toMatchObject({ id: "c-data", mountpoint: `${ROOT}/data`, owner: OWNER, origin: base.members[0].id, marks: { owner: OWNER } });
    expect(w).toMatchObject({ id: "c-wal", mountpoint: `${ROOT}/wal`, owner: OWNER, origin: base.members[1].id });
    expect(fs.readFileSync(`${ROOT}/data/13/main/PG_VERSION`, "utf8")).toBe("13\n");
    // The link inside PGDATA points at live's path, where the clone of its target is mounted.
    expect(fs.readlinkSync(`${ROOT}/data/13/main/pg_wal`)).toBe(`${ROOT}/wal/pg_wal`);
    expect(fs.readFileSync(`${ROOT}/data/13/main/pg_wal/000000010000000000000001`, "utf8")).toBe("wal");
    const vols = (await admin.send(new DescribeVolumesCommand({ VolumeIds: await ebsIds("c-data") }))).Volumes!;
    expect(vols).toHaveLength(1);
    expect(vols[0]).toMatchObject({ AvailabilityZone: "us-east-1a", VolumeType: "gp3", SnapshotId: base.members[0].id, State: "in-use" });
    expect(vols[0].Attachments![0].InstanceId).toBe(world.rehearsalInstance);
    expect(tagsOf(vols[0])).toMatchObject({ [TAGS.owner]: OWNER, [TAGS.volume]: "c-data", [TAGS.mountpoint]: `${ROOT}/data` });
  });

  it("maps clone paths to clones (symlinks resolved on the instance), marks are tags", async () => {
    expect((await storage.volumeOfPath(`${ROOT}/data/13/main`))?.id).toBe("c-data");
    expect((await storage.volumeOfPath(`${ROOT}/data/13/main/pg_wal/000000010000000000000001`))?.id).toBe("c-wal");
    await storage.setMark("c-data", "head", "s00-base");
    expect(await storage.getMark("c-data", "head")).toBe("s00-base");
    await expect(storage.setMark(DATA(), "head", "x")).rejects.toThrow(/live's volume/);
  });

  it("refuses a clone id that exists and is not ours, creating nothing", async () => {
    const count = (await ebsIds("c-data")).length;
    await expect(storage.clone(base, [{ source: DATA(), target: "c-data" }], OTHER)).rejects.toThrow(/clone c-data already exists .* not created by this stack; nothing was changed/);
    expect((await ebsIds("c-data")).length).toBe(count);
  });

  it("refuses a rehearsal zone that is not the instance's, naming the field, before creating anything", async () => {
    const wrong = new EbsStorage({ ...spec, rehearsal: { ...spec.rehearsal, availabilityZone: "us-east-1b" } }, host, { client: rec.client, deviceLookup: blocks.lookup });
    const before = rec.calls.length;
    const e = await wrong.clone(base, [{ source: DATA(), target: "c-elsewhere" }], OWNER).catch((x: unknown) => x);
    expect(InputError.is(e) && e.field).toBe("storage.rehearsal.availabilityZone");
    expect(rec.calls.slice(before)).not.toContain("CreateVolumeCommand");
  });

  it("refuses to clone from a snapshot that is gone, creating nothing", async () => {
    const ghost = { ...base, members: [{ ...base.members[0], id: "snap-00000000000000000" }] };
    const before = rec.calls.length;
    await expect(storage.clone(ghost, [{ source: DATA(), target: "c-ghost" }], OWNER)).rejects.toThrow(/snapshot snap-00000000000000000 of set s00-base does not exist; nothing was created/);
    expect(rec.calls.slice(before)).not.toContain("CreateVolumeCommand");
  });
});

describe("EbsStorage: step snapshots and roll-back (contract 3, 5)", () => {
  let s01: SnapshotSet;
  it("a step's snapshot is a set of the clone's volumes on the rehearsal instance", async () => {
    fs.writeFileSync(`${ROOT}/data/13/main/step1`, "1");
    const before = rec.calls.length;
    s01 = await storage.snapshot(["c-data", "c-wal"], "s01-step", OWNER);
    expect(rec.calls.slice(before).filter((c) => c === "CreateSnapshotsCommand")).toHaveLength(1);
    const input = rec.inputs[before + rec.calls.slice(before).indexOf("CreateSnapshotsCommand")] as { InstanceSpecification: { InstanceId: string } };
    expect(input.InstanceSpecification.InstanceId).toBe(world.rehearsalInstance);
    expect(s01.members.map((m) => m.volume)).toEqual(["c-data", "c-wal"]);
    fs.writeFileSync(`${ROOT}/data/13/main/step2`, "2");
    await storage.snapshot(["c-data", "c-wal"], "s02-step", OWNER);
    fs.writeFileSync(`${ROOT}/data/13/main/after-s02`, "x");
  });

  it("refuses to roll back over a later snapshot that is not ours, changing nothing", async () => {
    const ids = await ebsIds("c-data");
    const foreign = (await admin.send(new CreateSnapshotCommand({
      VolumeId: ids[0],
      TagSpecifications: [{ ResourceType: "snapshot", Tags: [
        { Key: TAGS.volume, Value: "c-data" }, { Key: "understudy:scope", Value: world.rehearsalInstance },
        { Key: TAGS.owner, Value: OTHER }, { Key: TAGS.set, Value: "theirs" }, { Key: "understudy:created", Value: new Date(Date.now() + 1000).toISOString() },
      ] }],
    }))).SnapshotId!;
    await expect(storage.rollback(["c-data", "c-wal"], "s01-step", OWNER)).rejects.toThrow(new RegExp(`later snapshots not created by this stack would be lost: ${foreign}`));
    expect(await ebsIds("c-data")).toEqual(ids);
    expect(fs.existsSync(`${ROOT}/data/13/main/after-s02`)).toBe(true);
    await admin.send(new CreateTagsCommand({ Resources: [foreign], Tags: [{ Key: TAGS.owner, Value: OWNER }] }));
    await storage.driver.deleteSnapshot(foreign, OWNER);
  });

  it("refuses to roll back over a later snapshot that has clones", async () => {
    const s02 = (await storage.findSnapshotSet(["c-data"], "s02-step"))!;
    const user = (await admin.send(new CreateVolumeCommand({ AvailabilityZone: "us-east-1a", SnapshotId: s02.members[0].id }))).VolumeId!;
    await expect(storage.rollback(["c-data", "c-wal"], "s01-step", OWNER)).rejects.toThrow(new RegExp(`later snapshot snap-\\w+ \\(s02-step\\) has clones ${user}; nothing was changed`));
    await admin.send(new CreateTagsCommand({ Resources: [user], Tags: [{ Key: TAGS.owner, Value: "tmp" }] }));
    await storage.driver.deleteVolume(user, "tmp");
  });

  it("rolls every member back: new EBS volumes under the same logical ids, later sets discarded, marks kept", async () => {
    const oldIds = [...(await ebsIds("c-data")), ...(await ebsIds("c-wal"))];
    await storage.rollback(["c-data", "c-wal"], "s01-step", OWNER);
    expect(fs.existsSync(`${ROOT}/data/13/main/step1`)).toBe(true);
    expect(fs.existsSync(`${ROOT}/data/13/main/step2`)).toBe(false);
    expect(fs.existsSync(`${ROOT}/data/13/main/after-s02`)).toBe(false);
    expect(fs.readFileSync(`${ROOT}/data/13/main/pg_wal/000000010000000000000001`, "utf8")).toBe("wal");
    const newIds = [...(await ebsIds("c-data")), ...(await ebsIds("c-wal"))];
    expect(newIds).toHaveLength(2);
    expect(newIds.some((id) => oldIds.includes(id))).toBe(false);
    const gone = (await admin.send(new DescribeVolumesCommand({ Filters: [{ Name: "volume-id", Values: oldIds }] }))).Volumes ?? [];
    expect(gone).toEqual([]);
    expect(await ourSnapshots("s02-step")).toEqual([]);
    expect(await storage.findSnapshotSet(["c-data", "c-wal"], "s01-step")).toEqual(s01);
    expect(await storage.getMark("c-data", "head")).toBe("s00-base");
    expect((await storage.volume("c-data"))?.origin).toBe(s01.members[0].id);
    expect(mounted(`${ROOT}/data`)).toBeTruthy();
  });

  it("never rolls back live", async () => {
    await expect(storage.rollback([DATA()], "s00-base", OWNER)).rejects.toThrow(/live's filesystem/);
    await expect(storage.rollback(["c-data"], "s01-step", OTHER)).rejects.toThrow(/not created by this stack/);
  });
});

describe("EbsStorage: destroy what we own only (contract 1, 6)", () => {
  it("destroySnapshotSet: ours destroyed, another owner's not-owned, a gone one missing, one with clones refused", async () => {
    const theirs = await storage.snapshot([DATA()], "s09-theirs", OTHER);
    expect(await storage.destroySnapshotSet([DATA()], "s09-theirs", OWNER)).toEqual(["not-owned"]);
    expect(await ourSnapshots("s09-theirs")).toEqual([theirs.members[0].id]);
    expect(await storage.destroySnapshotSet([DATA()], "s00-partial", OWNER)).toEqual(["destroyed"]);
    expect(await storage.destroySnapshotSet([DATA()], "s00-partial", OWNER)).toEqual(["missing"]);
    await expect(storage.destroySnapshotSet(["c-data", "c-wal"], "s01-step", OWNER)).rejects.toThrow(/still has clones vol-\w+ \(c-data\).*left in place/);
    expect(await storage.destroySnapshotSet([DATA()], "s09-theirs", "")).toEqual(["not-owned"]);
  });

  it("destroyVolume: live is never destroyed, another owner's clone is not-owned, ours is unmounted, detached, deleted with our snapshots", async () => {
    expect(await storage.destroyVolume(DATA(), OWNER)).toBe("not-owned");
    expect(await storage.destroyVolume("c-wal", OTHER)).toBe("not-owned");
    expect(mounted(`${ROOT}/wal`)).toBeTruthy();
    const walIds = await ebsIds("c-wal");
    expect(await storage.destroyVolume("c-data", OWNER)).toBe("destroyed");
    expect(await storage.destroyVolume("c-wal", OWNER)).toBe("destroyed");
    expect(mounted(`${ROOT}/data`)).toBeUndefined();
    expect(mounted(`${ROOT}/wal`)).toBeUndefined();
    expect((await admin.send(new DescribeVolumesCommand({ Filters: [{ Name: "volume-id", Values: walIds }] }))).Volumes ?? []).toEqual([]);
    expect(await ourSnapshots("s01-step")).toEqual([]);
    expect(await storage.destroyVolume("c-wal", OWNER)).toBe("missing");
    // The base set of live stays until destroyed by its own resource.
    expect(await storage.destroySnapshotSet([DATA(), WAL()], "s00-base", OWNER)).toEqual(["destroyed", "destroyed"]);
  });

  it("live's volumes were never changed: still attached to live, no tag of ours", async () => {
    const live = (await admin.send(new DescribeVolumesCommand({ VolumeIds: world.liveData }))).Volumes!;
    for (const v of live) {
      expect(v.Attachments?.map((a) => a.InstanceId)).toEqual([world.liveInstance]);
      expect(Object.keys(tagsOf(v)).filter((k) => k.startsWith("understudy:"))).toEqual([]);
    }
    expect(rec.calls.filter((c) => /Stop|Modify|Terminate|Reboot/.test(c))).toEqual([]);
  });
});

describe("EbsStorage: a filesystem over two volumes (LVM on live)", () => {
  // A second "live" whose PGDATA filesystem is one LVM volume group over two EBS volumes.
  // Without device-mapper (this project's VMs) no logical volume can exist, so the clone gets
  // as far as importing the group (vgimportclone, real) and fails to find a filesystem: that
  // is what this test checks, with the multi-volume bookkeeping (one CreateSnapshots for both
  // members, two clone volumes, what was left behind) and the clean-up by destroyVolume.
  let w2: World;
  let s2: EbsStorage;
  const vg = `usebs-lvm-${process.pid}`;

  beforeAll(async () => {
    w2 = await makeWorld(admin, 2);
    const a = lab.image("lvm2-a");
    const b = lab.image("lvm2-b");
    const env = { ...process.env, DM_DISABLE_UDEV: "1", LVM_SUPPRESS_FD_WARNINGS: "1" };
    const da = lab.attach(a);
    const db = lab.attach(b);
    execFileSync("pvcreate", ["-q", "-y", da, db], { env });
    execFileSync("vgcreate", ["-q", vg, da, db], { env });
    lab.vgs.push(vg, "understudy-c-lvm");
    lab.detach(a);
    lab.detach(b);
    blocks.images.set(w2.liveData[0], a);
    blocks.images.set(w2.liveData[1], b);
    s2 = new EbsStorage(
      {
        ...spec,
        live: {
          instanceId: w2.liveInstance,
          volumes: [
            { volumeId: w2.liveData[0], mountpoint: `${ROOT}/lvm` },
            { volumeId: w2.liveData[1], mountpoint: `${ROOT}/lvm` },
          ],
          assemblies: [{ mountpoint: `${ROOT}/lvm`, kind: "lvm", vg, lv: "data" }],
        },
        rehearsal: { instanceId: w2.rehearsalInstance, availabilityZone: "us-east-1a" },
      },
      host,
      { client: rec.client, deviceLookup: blocks.lookup },
    );
  });

  it("one set over both members, two clone volumes, imported group; without device-mapper the mount fails naming what was left, and destroy cleans up", async () => {
    const before = rec.calls.length;
    const set = await s2.snapshot([w2.liveData[0]], "lvm-base", OWNER);
    expect(rec.calls.slice(before).filter((c) => c === "CreateSnapshotsCommand")).toHaveLength(1);
    expect(set.members).toHaveLength(1);
    expect(set.members[0].id).toMatch(/^snap-\w+\+snap-\w+$/);
    const e = await s2.clone(set, [{ source: w2.liveData[0], target: "c-lvm" }], OWNER).catch((x: Error) => x);
    expect(e).toBeInstanceOf(Error);
    expect((e as Error).message).toMatch(/no filesystem found on \/dev\/understudy-c-lvm\/data/);
    expect((e as Error).message).toMatch(/Left behind \(ours, tagged understudy:owner=.*\): vol-\w+, vol-\w+/);
    const vols = await s2.driver.findVolumes([{ Name: `tag:${TAGS.volume}`, Values: ["c-lvm"] }]);
    expect(vols.map((v) => tagsOf(v)[TAGS.member]).sort()).toEqual(["0", "1"]);
    expect(vols.every((v) => tagsOf(v)[TAGS.assembly] === `lvm:${vg}/data`)).toBe(true);
    const groups = sh("vgs", "--noheadings", "-o", "vg_name").split("\n").map((x) => x.trim());
    expect(groups).toContain("understudy-c-lvm");
    expect(await s2.destroyVolume("c-lvm", OWNER)).toBe("destroyed");
    expect((await s2.driver.findVolumes([{ Name: `tag:${TAGS.volume}`, Values: ["c-lvm"] }])).filter((v) => v.State !== "deleted")).toEqual([]);
    expect(await s2.destroySnapshotSet([w2.liveData[0]], "lvm-base", OWNER)).toEqual(["destroyed"]);
  });
});

describe("EbsStorage: program-time lookups (DLM-made sets)", () => {
  it("finds the newest complete set of a schedule before a time, and an existing set by name", async () => {
    const { latestEbsSnapshotSet, findEbsSnapshotSet } = await import("../../providers/ebs/lookup");
    const { CreateSnapshotsCommand } = await import("@aws-sdk/client-ec2");
    // What a DLM instance policy leaves: one CreateSnapshots per run, tagged with the schedule's tags only.
    const dlmRun = async () =>
      admin.send(new CreateSnapshotsCommand({
        InstanceSpecification: { InstanceId: world.liveInstance, ExcludeBootVolume: true },
        TagSpecifications: [{ ResourceType: "snapshot", Tags: [{ Key: "understudy:schedule", Value: "hourly" }, { Key: TAGS.owner, Value: "proj/dev/SnapshotSchedule/h" }] }],
      }));
    await dlmRun();
    await new Promise((r) => setTimeout(r, 1100));
    const cut = new Date();
    await new Promise((r) => setTimeout(r, 1100));
    await dlmRun();
    const latest = await latestEbsSnapshotSet(spec, [DATA(), WAL()], { prefix: "hourly" }, storage);
    const older = await latestEbsSnapshotSet(spec, [DATA(), WAL()], { prefix: "hourly", before: cut }, storage);
    expect(latest.name).toMatch(/^hourly-\d{8}T\d{6}Z$/);
    expect(older.name).toMatch(/^hourly-\d{8}T\d{6}Z$/);
    expect(older.name < latest.name).toBe(true);
    expect(latest.members.map((m) => m.volume)).toEqual([DATA(), WAL()]);
    expect(await findEbsSnapshotSet(spec, [DATA(), WAL()], latest.name, storage)).toEqual(latest);
    await expect(latestEbsSnapshotSet(spec, [DATA()], { prefix: "weekly" }, storage)).rejects.toThrow(/no complete EBS snapshot set .* named weekly\*/);
    await expect(findEbsSnapshotSet(spec, [DATA()], "nope", storage)).rejects.toThrow(/no EBS snapshot set named nope/);
    // DLM's snapshots are not ours: our destroy leaves them.
    expect(await storage.destroySnapshotSet([DATA()], latest.name, OWNER)).toEqual(["not-owned"]);
    expect(await storage.destroySnapshotSet([DATA()], latest.name, "proj/dev/SnapshotSchedule/h")).toEqual(["not-owned"]);
    expect((await latestEbsSnapshotSet(spec, [DATA(), WAL()], { prefix: "hourly" }, storage)).name).toBe(latest.name);
  });
});
