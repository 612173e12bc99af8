/**
 * The part of the EBS backend that runs ON the rehearsal instance (providers/ebs/instance.ts),
 * over the real SSH host layer to the project's test sshd (127.0.0.1:2222, root).
 *
 * STAND-IN: this machine is no EC2 instance. Loop devices (sparse files attached with
 * `losetup`) stand in for attached EBS volumes, and a test-only DeviceLookup maps a volume id
 * to its loop device. The production lookup (NVMe serial through `lsblk -J`, then
 * /dev/disk/by-id) is run for real over SSH (it finds nothing here) and its parser is tested
 * on lsblk output of the shape a Nitro instance prints.
 *
 * This project's VMs have no device-mapper and no md in their kernel: LVM's *metadata* work
 * (vgimportclone of cloned physical volumes whose UUIDs duplicate live's) runs for real;
 * activating a logical volume and mdadm assembly cannot, and those tests are skipped here
 * with that reason (they run on a kernel that has them). The argv of the mdadm path is
 * checked with a recording host.
 */
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { resolveConnection } from "../../providers/host/connection";
import { SshHost } from "../../providers/host/ssh";
import type { Host } from "../../providers/host/types";
import {
  assemble,
  cloneVgName,
  deassemble,
  deviceFromLsblk,
  DeviceLookup,
  findDevice,
  mountClone,
  mountedAt,
  nvmeDeviceLookup,
  unmountClone,
} from "../../providers/ebs/instance";
import { kernelHas, LoopLab } from "../harness/loop";

const KEY_FILE = path.join(os.homedir(), ".cache/understudy/ssh/id_ed25519");
const HOST_KEY_FILE = path.join(os.homedir(), ".cache/understudy/ssh/host_key.pub");
const MNT = "/srv/usebs-instance";

let host: SshHost;
const lab = new LoopLab("instance");
/** volume id -> loop device: the test-only seam standing in for NVMe serial lookup. */
const attached = new Map<string, string>();
const loopLookup: DeviceLookup = async (_h, volumeId) => attached.get(volumeId);

function lvm(argv: string[]): string {
  return execFileSync(argv[0], argv.slice(1), { encoding: "utf8", env: { ...process.env, DM_DISABLE_UDEV: "1", LVM_SUPPRESS_FD_WARNINGS: "1" }, stdio: ["ignore", "pipe", "pipe"] });
}

beforeAll(() => {
  if (!fs.existsSync(KEY_FILE)) throw new Error(`the SSH test key ${KEY_FILE} is missing: run bash scripts/setup-sshd.sh`);
  host = new SshHost(
    resolveConnection({ host: "127.0.0.1", port: 2222, user: "root", privateKey: fs.readFileSync(KEY_FILE, "utf8"), hostKey: fs.readFileSync(HOST_KEY_FILE, "utf8").trim() }),
  );
});

afterAll(async () => {
  lab.cleanup([MNT]);
  await host?.close();
});

describe("finding an attached volume's device", () => {
  it("parses lsblk -J output of a Nitro instance: the NVMe serial is the volume id without its dash", () => {
    // Shape printed by util-linux 2.38 `lsblk -J -d -o NAME,SERIAL,TYPE` on a Nitro instance
    // with a root volume, two EBS data volumes and an instance-store disk (serials as EC2 sets them).
    const nitro = JSON.stringify({
      blockdevices: [
        { name: "nvme0n1", serial: "vol0a1b2c3d4e5f60718", type: "disk" },
        { name: "nvme1n1", serial: "vol0123456789abcdef0", type: "disk" },
        { name: "nvme2n1", serial: "vol0fedcba9876543210", type: "disk" },
        { name: "nvme3n1", serial: "AWS1B2C3D4E5F6A7B8C9", type: "disk" },
      ],
    });
    expect(deviceFromLsblk(nitro, "vol-0123456789abcdef0")).toBe("/dev/nvme1n1");
    expect(deviceFromLsblk(nitro, "vol-0fedcba9876543210")).toBe("/dev/nvme2n1");
    expect(deviceFromLsblk(nitro, "vol-0000000000000000a")).toBeUndefined();
    // Older lsblk (2.30, Amazon Linux 2) pads the serial and has no PATH column.
    const padded = '{"blockdevices": [{"name": "nvme1n1", "serial": "vol0123456789abcdef0    ", "type": "disk"}]}';
    expect(deviceFromLsblk(padded, "vol-0123456789abcdef0")).toBe("/dev/nvme1n1");
    // This machine's own lsblk (virtio disks, no serials).
    const here = execFileSync("lsblk", ["-J", "-d", "-o", "NAME,SERIAL,TYPE"], { encoding: "utf8" });
    expect(deviceFromLsblk(here, "vol-0123456789abcdef0")).toBeUndefined();
    expect(() => deviceFromLsblk("lsblk: unknown column", "vol-0123456789abcdef0")).toThrow(/no JSON/);
    expect(() => deviceFromLsblk('{"blockdevices":[{"name":"x;rm","serial":"vol0123456789abcdef0"}]}', "vol-0123456789abcdef0")).toThrow(/strange device name/);
  });

  it("the production lookup runs over SSH (lsblk, by-id link, xvd name) and finds nothing on a machine without EBS", async () => {
    expect(await nvmeDeviceLookup(host, "vol-0123456789abcdef0", "/dev/sdf")).toBeUndefined();
  });

  it("waits for the device to appear, and gives up after the bound naming the volume", async () => {
    let polls = 0;
    const late: DeviceLookup = async () => (++polls >= 3 ? "/dev/loop-late" : undefined);
    expect(await findDevice(host, "vol-0123456789abcdef0", "/dev/sdf", late, 10_000)).toBe("/dev/loop-late");
    expect(polls).toBe(3);
    const started = Date.now();
    await expect(findDevice(host, "vol-0123456789abcdef0", "/dev/sdf", async () => undefined, 1500)).rejects.toThrow(
      /volume vol-0123456789abcdef0 \(attached as \/dev\/sdf\) did not appear as a block device on root@127.0.0.1:2222 within 2 s.*stays attached/,
    );
    expect(Date.now() - started).toBeLessThan(5000);
    await expect(findDevice(host, "vol-0123456789abcdef0", undefined, async () => "/dev/../etc/passwd")).rejects.toThrow(/device lookup returned/);
  });
});

describe("single-volume clone: mount read-write at live's path, unmount", () => {
  it("mounts an ext4 clone, refuses another device on the same path, is idempotent, unmounts", async () => {
    const img = lab.image("single");
    const dev = lab.attach(img);
    lab.mkfs(dev, "ext4");
    lab.withMounted(dev, `${MNT}-seed`, (d) => fs.writeFileSync(path.join(d, "PG_VERSION"), "13\n"));
    attached.set("vol-0123456789abcdef0", dev);
    const found = await findDevice(host, "vol-0123456789abcdef0", "/dev/sdf", loopLookup);
    const block = await assemble(host, "c-single", [found], { kind: "single" });
    expect(block).toBe(dev);
    const mp = `${MNT}/var/lib/postgresql`;
    await mountClone(host, block, mp);
    expect(await mountedAt(host, mp)).toBe(dev);
    expect(fs.readFileSync(path.join(mp, "PG_VERSION"), "utf8")).toBe("13\n");
    fs.writeFileSync(path.join(mp, "written-on-clone"), "x"); // read-write
    await mountClone(host, block, mp); // same device: nothing to do
    const other = lab.attach(lab.image("other"));
    lab.mkfs(other, "ext4");
    await expect(mountClone(host, other, mp)).rejects.toThrow(new RegExp(`${dev} is mounted there; nothing was changed`));
    expect(await unmountClone(host, mp)).toBe("unmounted");
    expect(await mountedAt(host, mp)).toBeUndefined();
    expect(await unmountClone(host, mp)).toBe("not-mounted");
    await expect(mountClone(host, lab.attach(lab.image("blank")), mp)).rejects.toThrow(/no filesystem found/);
  });

  it("two XFS clones of one filesystem mount side by side (nouuid: a clone carries live's UUID)", async () => {
    const img = lab.image("xfs-live", 320);
    const dev = lab.attach(img);
    lab.mkfs(dev, "xfs");
    lab.withMounted(dev, `${MNT}-seed`, (d) => fs.writeFileSync(path.join(d, "marker"), "live"));
    const a = lab.attach(lab.copy(img, "xfs-clone-a"));
    const b = lab.attach(lab.copy(img, "xfs-clone-b"));
    await mountClone(host, a, `${MNT}/xa`);
    await mountClone(host, b, `${MNT}/xb`);
    expect(fs.readFileSync(`${MNT}/xb/marker`, "utf8")).toBe("live");
    await unmountClone(host, `${MNT}/xa`);
    await unmountClone(host, `${MNT}/xb`);
  });

  it("a busy mountpoint is reported, the clone stays mounted", async () => {
    const dev = lab.attach(lab.image("busy"));
    lab.mkfs(dev, "ext4");
    const mp = `${MNT}/busy`;
    await mountClone(host, dev, mp);
    const holder = execFileSync("sh", ["-c", `cd ${mp} && (sleep 30 >/dev/null 2>&1 & echo $!)`], { encoding: "utf8" }).trim();
    try {
      await expect(unmountClone(host, mp, 2)).rejects.toThrow(/unmounting .*busy.* failed \(a process still uses it\?\).*stays attached/s);
      expect(await mountedAt(host, mp)).toBe(dev);
    } finally {
      process.kill(Number(holder));
    }
    await new Promise((r) => setTimeout(r, 300));
    expect(await unmountClone(host, mp)).toBe("unmounted");
  });
});

describe("LVM clone: cloned physical volumes imported under a new name", () => {
  const liveVg = `usebs-live-${process.pid}`;
  let clones: string[] = [];

  beforeAll(() => {
    // "Live": a volume group over two volumes. Its clones are block copies, so their PV and VG
    // UUIDs duplicate live's, as an EBS volume restored from a snapshot does.
    const a = lab.image("lvm-a");
    const b = lab.image("lvm-b");
    const da = lab.attach(a);
    const db = lab.attach(b);
    lvm(["pvcreate", "-q", "-y", da, db]);
    lvm(["vgcreate", "-q", liveVg, da, db]);
    lab.vgs.push(liveVg);
    const ca = lab.copy(a, "lvm-clone-a");
    const cb = lab.copy(b, "lvm-clone-b");
    clones = [lab.attach(ca), lab.attach(cb)];
    attached.set("vol-0aaaaaaaaaaaaaaa1", clones[0]);
    attached.set("vol-0aaaaaaaaaaaaaaa2", clones[1]);
  });

  it("vgimportclone gives the clone new UUIDs and the name understudy-<clone>; live's group is untouched", async () => {
    const devices = [await findDevice(host, "vol-0aaaaaaaaaaaaaaa1", "/dev/sdf", loopLookup), await findDevice(host, "vol-0aaaaaaaaaaaaaaa2", "/dev/sdg", loopLookup)];
    const vg = cloneVgName("c-lvm");
    lab.vgs.push(vg);
    const liveUuid = lvm(["vgs", "--noheadings", "-o", "vg_uuid", liveVg]).trim();
    // Live's group here has no logical volume (creating one needs device-mapper), so
    // `vgchange -ay` has nothing to activate and succeeds without it.
    expect(await assemble(host, "c-lvm", devices, { kind: "lvm", vg: liveVg, lv: "data" })).toBe(`/dev/${vg}/data`);
    const after = lvm(["vgs", "--noheadings", "-o", "vg_name,vg_uuid,pv_name", "--separator", ","]).trim().split("\n").map((l) => l.trim().split(","));
    const mine = after.filter((r) => r[0] === vg);
    expect(mine.map((r) => r[2]).sort()).toEqual([...clones].sort());
    expect(mine[0][1]).not.toBe(liveUuid);
    expect(after.find((r) => r[0] === liveVg)?.[1]).toBe(liveUuid);
    // Idempotent: a second assemble does not import again.
    await assemble(host, "c-lvm", devices, { kind: "lvm", vg: liveVg, lv: "data" }).catch(() => undefined);
    expect(lvm(["vgs", "--noheadings", "-o", "vg_name"]).split("\n").map((s) => s.trim()).filter((s) => s.startsWith("understudy-c-lvm"))).toEqual([vg]);
    await deassemble(host, "c-lvm", { kind: "lvm", vg: liveVg, lv: "data" });
  });

  it.skipIf(!kernelHas("device-mapper"))("activates the logical volume and mounts it (needs device-mapper: not in this project's VMs)", async () => {
    // Runs where the kernel has device-mapper: an LV spanning both clones is mounted.
    const vg = cloneVgName("c-lvm");
    lvm(["lvcreate", "-q", "-y", "-n", "data", "-l", "100%FREE", vg]);
    lvm(["mkfs.ext4", "-q", `/dev/${vg}/data`]);
    await mountClone(host, `/dev/${vg}/data`, `${MNT}/lvm`);
    await unmountClone(host, `${MNT}/lvm`);
    await deassemble(host, "c-lvm", { kind: "lvm", vg: "x", lv: "data" });
  });
});

describe("mdadm clone", () => {
  it("assembles with a new UUID under /dev/md/understudy-<clone> and stops it (argv checked: no md in this kernel)", async () => {
    // A recording host: this VM's kernel has no md driver, so mdadm cannot really assemble here.
    const seen: string[][] = [];
    let running = false;
    const rec: Host = {
      description: "recording",
      run: async (argv) => {
        seen.push([...argv]);
        return { stdout: "", stderr: "", exitCode: 0, durationMs: 0 };
      },
      runAs: async (user, argv) => {
        expect(user).toBe("root");
        seen.push([...argv]);
        if (argv[0] === "test") return { stdout: "", stderr: "", exitCode: running ? 0 : 1, durationMs: 0 };
        if (argv[0] === "mdadm" && argv[1] === "--assemble") running = true;
        return { stdout: "", stderr: "", exitCode: 0, durationMs: 0 };
      },
      writeFile: async () => undefined,
      close: async () => undefined,
    };
    expect(await assemble(rec, "c-md", ["/dev/nvme1n1", "/dev/nvme2n1"], { kind: "mdadm" })).toBe("/dev/md/understudy-c-md");
    expect(seen).toContainEqual(["mdadm", "--assemble", "/dev/md/understudy-c-md", "--update=uuid", "/dev/nvme1n1", "/dev/nvme2n1"]);
    await assemble(rec, "c-md", ["/dev/nvme1n1", "/dev/nvme2n1"], { kind: "mdadm" });
    expect(seen.filter((a) => a[1] === "--assemble")).toHaveLength(1); // running already: not assembled twice
    await deassemble(rec, "c-md", { kind: "mdadm" });
    expect(seen).toContainEqual(["mdadm", "--stop", "/dev/md/understudy-c-md"]);
  });

  it.skipIf(!kernelHas("md"))("assembles a real RAID 0 clone (needs the md driver: not in this project's VMs)", async () => {
    const a = lab.attach(lab.image("md-a"));
    const b = lab.attach(lab.image("md-b"));
    execFileSync("mdadm", ["--create", "/dev/md/usebs-live", "--run", "--level=0", "--raid-devices=2", a, b]);
    execFileSync("mdadm", ["--stop", "/dev/md/usebs-live"]);
    const md = await assemble(host, "c-md", [a, b], { kind: "mdadm" });
    expect(fs.existsSync(md)).toBe(true);
    await deassemble(host, "c-md", { kind: "mdadm" });
  });
});
