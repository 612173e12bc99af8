/**
 * What runs ON the rehearsal instance, over the host layer (argv only, root commands through
 * `host.runAs("root", ...)`): find an attached EBS volume's block device by its volume id,
 * assemble the members of a multi-volume filesystem (LVM / mdadm), mount it read-write, and
 * undo all of it before the volumes are detached.
 *
 * No AWS SDK and no Pulumi here.
 */
import type { Host, RunOptions } from "../host/types";
import { HostCommandError } from "../host/types";
import { setTimeout as sleep } from "node:timers/promises";
import { validateDevice, validateLogicalId, validateMountpoint, validateVolumeIdSyntax } from "./spec";

export class EbsInstanceError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "EbsInstanceError";
  }
}

/**
 * How to find the block device of an attached volume on the instance. Returns undefined while
 * it has not appeared yet. The production lookup is {@link nvmeDeviceLookup}; tests pass
 * another one (loop devices standing in for attached volumes).
 */
export type DeviceLookup = (host: Host, volumeId: string, attachedAs: string | undefined) => Promise<string | undefined>;

interface LsblkDevice {
  name: string;
  serial?: string | null;
  path?: string;
  type?: string;
  children?: LsblkDevice[];
}

/**
 * The device of an EBS volume in `lsblk -J -d -o NAME,SERIAL,TYPE` output. On Nitro
 * instances EBS volumes are NVMe devices whose serial number is the volume id without its
 * dash (`vol0123456789abcdef0`, sometimes padded with spaces); a partition table on it is
 * not ours to guess, so the whole disk is returned.
 */
export function deviceFromLsblk(json: string, volumeId: string): string | undefined {
  const want = volumeId.replace(/^vol-/, "vol");
  let parsed: { blockdevices?: LsblkDevice[] };
  try {
    parsed = JSON.parse(json);
  } catch {
    throw new EbsInstanceError(`lsblk printed no JSON: ${json.slice(0, 200)}`);
  }
  for (const d of parsed.blockdevices ?? []) {
    const serial = (d.serial ?? "").trim();
    if (serial === want || serial === volumeId) {
      if (!/^[A-Za-z0-9_-]+$/.test(d.name)) throw new EbsInstanceError(`lsblk returned a strange device name ${JSON.stringify(d.name)}`);
      return d.path ?? `/dev/${d.name}`;
    }
  }
  return undefined;
}

/**
 * The production lookup: the NVMe serial through `lsblk`, then the udev link
 * `/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol...`, then (Xen instances, no NVMe)
 * the attachment name with `sd` turned into `xvd`.
 */
export const nvmeDeviceLookup: DeviceLookup = async (host, volumeId, attachedAs) => {
  const out = await host.run(["lsblk", "-J", "-d", "-o", "NAME,SERIAL,TYPE"], { timeoutMs: 30_000 });
  const found = deviceFromLsblk(out.stdout, volumeId);
  if (found) return found;
  const byId = `/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_${volumeId.replace(/^vol-/, "vol")}`;
  const link = await host.run(["readlink", "-e", "--", byId], { okExitCodes: [0, 1], timeoutMs: 30_000 });
  if (link.exitCode === 0 && link.stdout.trim()) return link.stdout.trim();
  if (attachedAs) {
    const xen = attachedAs.replace(/^\/dev\/sd/, "/dev/xvd");
    for (const d of [xen, attachedAs]) {
      const t = await host.run(["test", "-b", d], { okExitCodes: [0, 1], timeoutMs: 30_000 });
      if (t.exitCode === 0) return d;
    }
  }
  return undefined;
};

/** Poll the lookup until the device appears (an attachment takes a few seconds to show). */
export async function findDevice(host: Host, volumeId: string, attachedAs: string | undefined, lookup: DeviceLookup, timeoutMs = 120_000): Promise<string> {
  validateVolumeIdSyntax(volumeId, "volumeId");
  if (attachedAs !== undefined) validateDevice(attachedAs, "device");
  const deadline = Date.now() + timeoutMs;
  for (let delay = 250; ; delay = Math.min(delay * 2, 5000)) {
    const d = await lookup(host, volumeId, attachedAs);
    if (d) {
      if (!/^\/dev\/[A-Za-z0-9_/.-]+$/.test(d) || d.includes("..")) throw new EbsInstanceError(`device lookup returned ${JSON.stringify(d)} for ${volumeId}`);
      return d;
    }
    if (Date.now() + delay > deadline) {
      throw new EbsInstanceError(
        `volume ${volumeId}${attachedAs ? ` (attached as ${attachedAs})` : ""} did not appear as a block device on ${host.description} within ${Math.round(timeoutMs / 1000)} s ` +
          `(looked for NVMe serial ${volumeId.replace(/^vol-/, "vol")} in lsblk and /dev/disk/by-id); it stays attached`,
      );
    }
    await sleep(delay);
  }
}

/** How the members of one clone filesystem are put together. */
export type Assembly = { kind: "single" } | { kind: "lvm"; vg: string; lv: string } | { kind: "mdadm" };

/** `single`, `lvm:vg/lv`, `mdadm`: the tag value we keep on clone volumes. */
export function assemblyTag(a: Assembly): string {
  return a.kind === "lvm" ? `lvm:${a.vg}/${a.lv}` : a.kind;
}

export function parseAssemblyTag(v: string | undefined): Assembly {
  if (!v || v === "single") return { kind: "single" };
  if (v === "mdadm") return { kind: "mdadm" };
  const m = /^lvm:([A-Za-z0-9+_.][A-Za-z0-9+_.-]*)\/([A-Za-z0-9+_.][A-Za-z0-9+_.-]*)$/.exec(v);
  if (m) return { kind: "lvm", vg: m[1], lv: m[2] };
  throw new EbsInstanceError(`unknown assembly ${JSON.stringify(v)}`);
}

/** The names a clone's LVM volume group / md array get on the rehearsal instance. */
export function cloneVgName(cloneId: string): string {
  return `understudy-${validateLogicalId(cloneId, "cloneId")}`;
}
export function cloneMdPath(cloneId: string): string {
  return `/dev/md/understudy-${validateLogicalId(cloneId, "cloneId")}`;
}

/**
 * Root commands on the instance. Without udev (a container, a minimal VM) LVM must create
 * its device nodes itself: DM_DISABLE_UDEV=1 then.
 */
class Root {
  private udev?: boolean;
  constructor(readonly host: Host) {}

  run(argv: string[], opts?: RunOptions) {
    return this.host.runAs("root", argv, { timeoutMs: 5 * 60_000, ...opts });
  }

  async lvm(argv: string[], opts?: RunOptions) {
    if (this.udev === undefined) this.udev = (await this.run(["test", "-e", "/run/udev/control"], { okExitCodes: [0, 1] })).exitCode === 0;
    // The variables go inside the argv (`env K=V cmd`): RunOptions.env would sit outside `sudo -n`, which drops it.
    return this.run(["env", ...(this.udev ? [] : ["DM_DISABLE_UDEV=1"]), "LVM_SUPPRESS_FD_WARNINGS=1", ...argv], opts);
  }
}

/**
 * Assemble a clone's member devices into one block device and return it:
 * - `single`: the device itself;
 * - `lvm`: `vgimportclone --basevgname understudy-<clone>` gives the cloned physical volumes
 *   new UUIDs and the group a new name (live's VG name and UUIDs stay unique on any host),
 *   then `vgchange -ay`; returns `/dev/understudy-<clone>/<lv>`;
 * - `mdadm`: `mdadm --assemble /dev/md/understudy-<clone> --update=uuid` (a new array UUID).
 * Idempotent: an already imported group or running array is reused.
 */
export async function assemble(host: Host, cloneId: string, devices: string[], a: Assembly): Promise<string> {
  const root = new Root(host);
  if (a.kind === "single") {
    if (devices.length !== 1) throw new EbsInstanceError(`clone ${cloneId}: a single-volume filesystem has ${devices.length} devices`);
    return devices[0];
  }
  if (a.kind === "lvm") {
    const vg = cloneVgName(cloneId);
    const known = await root.lvm(["vgs", "--noheadings", "-o", "vg_name", vg], { okExitCodes: [0, 5] });
    if (known.exitCode !== 0) {
      try {
        await root.lvm(["vgimportclone", "--basevgname", vg, ...devices]);
      } catch (e) {
        throw new EbsInstanceError(`clone ${cloneId}: vgimportclone of ${devices.join(" ")} (volume group ${a.vg} on live) failed: ${(e as Error).message}`);
      }
    }
    try {
      await root.lvm(["vgchange", "-ay", vg]);
    } catch (e) {
      throw new EbsInstanceError(`clone ${cloneId}: activating volume group ${vg} failed (is device-mapper available?): ${(e as Error).message}`);
    }
    return `/dev/${vg}/${a.lv}`;
  }
  const md = cloneMdPath(cloneId);
  const running = await root.run(["test", "-b", md], { okExitCodes: [0, 1] });
  if (running.exitCode !== 0) {
    try {
      await root.run(["mdadm", "--assemble", md, "--update=uuid", ...devices]);
    } catch (e) {
      throw new EbsInstanceError(`clone ${cloneId}: mdadm --assemble of ${devices.join(" ")} failed: ${(e as Error).message}`);
    }
  }
  return md;
}

/** Undo {@link assemble} (after unmounting): deactivate the volume group / stop the array. */
export async function deassemble(host: Host, cloneId: string, a: Assembly): Promise<void> {
  const root = new Root(host);
  if (a.kind === "lvm") {
    const vg = cloneVgName(cloneId);
    const known = await root.lvm(["vgs", "--noheadings", "-o", "vg_name", vg], { okExitCodes: [0, 5] });
    if (known.exitCode === 0) await root.lvm(["vgchange", "-an", vg]);
  } else if (a.kind === "mdadm") {
    const md = cloneMdPath(cloneId);
    if ((await root.run(["test", "-b", md], { okExitCodes: [0, 1] })).exitCode === 0) await root.run(["mdadm", "--stop", md]);
  }
}

/** What is mounted at exactly `mountpoint` (its source device), or undefined. */
export async function mountedAt(host: Host, mountpoint: string): Promise<string | undefined> {
  validateMountpoint(mountpoint, "mountpoint");
  const r = await host.run(["findmnt", "-n", "-o", "SOURCE", "--mountpoint", mountpoint], { okExitCodes: [0, 1], timeoutMs: 30_000 });
  return r.exitCode === 0 ? r.stdout.trim().split("\n")[0] || undefined : undefined;
}

/** The canonical path of a device (symlinks like /dev/vg/lv resolved). */
async function canonical(host: Host, device: string): Promise<string> {
  const r = await host.run(["readlink", "-f", "--", device], { okExitCodes: [0, 1], timeoutMs: 30_000 });
  return r.stdout.trim() || device;
}

/**
 * Mount `device` read-write at `mountpoint` (created if missing). XFS gets `nouuid`: a clone
 * carries live's filesystem UUID, and two clones of one set on one instance would clash.
 * Already mounted there: fine when it is the same device, refused otherwise.
 */
export async function mountClone(host: Host, device: string, mountpoint: string): Promise<void> {
  validateMountpoint(mountpoint, "mountpoint");
  const root = new Root(host);
  const current = await mountedAt(host, mountpoint);
  if (current) {
    const [a, b] = await Promise.all([canonical(host, current), canonical(host, device)]);
    if (a === b) return;
    throw new EbsInstanceError(`cannot mount the clone at ${mountpoint} on ${host.description}: ${current} is mounted there; nothing was changed`);
  }
  const fstype = (await root.run(["blkid", "-o", "value", "-s", "TYPE", "--", device], { okExitCodes: [0, 2] })).stdout.trim();
  if (!fstype) throw new EbsInstanceError(`no filesystem found on ${device} (blkid): is the assembly right?`);
  await root.run(["mkdir", "-p", "--", mountpoint]);
  const argv = ["mount", "-t", fstype, ...(fstype === "xfs" ? ["-o", "nouuid"] : []), "--", device, mountpoint];
  try {
    await root.run(argv);
  } catch (e) {
    throw new EbsInstanceError(`mounting ${device} (${fstype}) at ${mountpoint} on ${host.description} failed: ${(e as Error).message}`);
  }
}

/** Unmount `mountpoint` when something is mounted there (a busy mount is retried a few times). */
export async function unmountClone(host: Host, mountpoint: string, tries = 5): Promise<"unmounted" | "not-mounted"> {
  validateMountpoint(mountpoint, "mountpoint");
  const root = new Root(host);
  for (let i = 1; ; i++) {
    if (!(await mountedAt(host, mountpoint))) return i === 1 ? "not-mounted" : "unmounted";
    if (i > tries + 8) throw new EbsInstanceError(`${mountpoint} on ${host.description} is still mounted after ${i - 1} unmounts; the volume stays attached`);
    try {
      await root.run(["umount", "--", mountpoint]);
    } catch (e) {
      if (i < tries && e instanceof HostCommandError && /busy/i.test(e.stderr)) {
        await sleep(500 * i);
        continue;
      }
      throw new EbsInstanceError(`unmounting ${mountpoint} on ${host.description} failed (a process still uses it?): ${(e as Error).message}; the volume stays attached`);
    }
  }
}
