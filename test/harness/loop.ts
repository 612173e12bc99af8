/**
 * Loop devices standing in for attached EBS volumes (this machine has no EC2 instance and no
 * NVMe EBS devices). Each stand-in is a sparse file under /var/tmp/understudy-ebs attached with
 * `losetup -f --show`; "a volume restored from a snapshot" is a sparse copy of the image the
 * snapshot was taken of, made at snapshot time (block content, as EBS has it).
 *
 * Everything made here is undone by {@link LoopLab.cleanup}: mounts under /srv/usebs-*, LVM
 * groups we created or imported, loop devices, image files.
 */
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";

export const LOOP_DIR = "/var/tmp/understudy-ebs";

function sh(argv: string[], env?: Record<string, string>): string {
  return execFileSync(argv[0], argv.slice(1), { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, ...(env ?? {}) } });
}

/** Kernel device-mapper and md support (both absent in this project's VMs: LVM activation and mdadm cannot run). */
export function kernelHas(feature: "device-mapper" | "md"): boolean {
  if (feature === "md") return fs.existsSync("/proc/mdstat");
  try {
    // Not /dev/mapper/control: LVM creates that node itself even when the kernel has no driver.
    return /\bdevice-mapper\b/.test(fs.readFileSync("/proc/misc", "utf8"));
  } catch {
    return false;
  }
}

export class LoopLab {
  private readonly prefix: string;
  readonly devices = new Map<string, string>(); // image -> /dev/loopN
  private readonly images: string[] = [];
  readonly vgs: string[] = [];

  constructor(tag: string) {
    fs.mkdirSync(LOOP_DIR, { recursive: true });
    this.prefix = path.join(LOOP_DIR, `${tag}-${process.pid}-`);
  }

  /** A new sparse image of `mb` MiB. */
  image(name: string, mb = 64): string {
    const file = `${this.prefix}${name}.img`;
    fs.rmSync(file, { force: true });
    fs.writeFileSync(file, "");
    fs.truncateSync(file, mb * 1024 * 1024);
    this.images.push(file);
    return file;
  }

  /** A sparse copy of an image (what a snapshot, or a volume restored from it, holds). */
  copy(from: string, name: string): string {
    const file = `${this.prefix}${name}.img`;
    sh(["cp", "--sparse=always", from, file]);
    this.images.push(file);
    return file;
  }

  attach(file: string): string {
    const dev = sh(["losetup", "-f", "--show", file]).trim();
    this.devices.set(file, dev);
    return dev;
  }

  detach(file: string): void {
    const dev = this.devices.get(file);
    if (!dev) return;
    try {
      sh(["losetup", "-d", dev]);
    } catch {
      // already gone
    }
    this.devices.delete(file);
  }

  mkfs(dev: string, type: "ext4" | "xfs"): void {
    if (type === "ext4") sh(["mkfs.ext4", "-q", "-F", dev]);
    else sh(["mkfs.xfs", "-q", "-f", dev]);
  }

  /** Mount, run `fn` on the mountpoint, unmount (to write a "live" image's content). */
  withMounted(dev: string, mountpoint: string, fn: (dir: string) => void): void {
    fs.mkdirSync(mountpoint, { recursive: true });
    sh(["mount", dev, mountpoint]);
    try {
      fn(mountpoint);
    } finally {
      sh(["umount", mountpoint]);
    }
  }

  /** Undo everything (mounts under `mountRoots`, volume groups, loop devices, images). */
  cleanup(mountRoots: string[]): void {
    const mounts = sh(["findmnt", "-rn", "-o", "TARGET"]).split("\n").filter((m) => mountRoots.some((r) => m === r || m.startsWith(r + "/")));
    for (const m of mounts.sort((a, b) => b.length - a.length)) {
      try {
        sh(["umount", m]);
      } catch {
        // keep going
      }
    }
    for (const vg of this.vgs) {
      try {
        sh(["vgchange", "-an", vg], { DM_DISABLE_UDEV: "1", LVM_SUPPRESS_FD_WARNINGS: "1" });
      } catch {
        // not active
      }
    }
    for (const file of [...this.devices.keys()]) this.detach(file);
    // Loop devices of ours left by an earlier, interrupted run of this file.
    const leftovers = sh(["losetup", "-nO", "NAME,BACK-FILE"]).split("\n").filter((l) => l.includes(this.prefix));
    for (const l of leftovers) {
      try {
        sh(["losetup", "-d", l.trim().split(/\s+/)[0]]);
      } catch {
        // gone
      }
    }
    for (const f of this.images) fs.rmSync(f, { force: true });
  }
}
