import { execFileSync, spawnSync } from "node:child_process";
import * as fs from "node:fs";

/** File-backed zfs-fuse pools for tests, created on demand and removable. */
export const POOL_DIR = "/var/tmp/understudy-pools";

export function sh(argv: string[], opts: { input?: string; allowFail?: boolean } = {}): string {
  try {
    return execFileSync(argv[0], argv.slice(1), { encoding: "utf8", input: opts.input, stdio: ["pipe", "pipe", "pipe"] });
  } catch (e) {
    if (opts.allowFail) return "";
    const err = e as { stderr?: string; message: string };
    throw new Error(`${argv.join(" ")} failed: ${err.stderr ?? err.message}`, { cause: e });
  }
}

export interface TestPool {
  name: string;
  mountpoint: string;
  image: string;
  destroy(): void;
}

/** A sparse-file pool `name` mounted at /srv/<name>. Recreated if left over from a crash. */
export function createPool(name: string, sizeGb = 4): TestPool {
  fs.mkdirSync(POOL_DIR, { recursive: true });
  const image = `${POOL_DIR}/${name}.img`;
  const mountpoint = `/srv/${name}`;
  destroyPoolByName(name);
  sh(["truncate", "-s", `${sizeGb}G`, image]);
  sh(["zpool", "create", "-f", "-m", mountpoint, name, image]);
  return { name, mountpoint, image, destroy: () => destroyPoolByName(name) };
}

export function destroyPoolByName(name: string): void {
  const image = `${POOL_DIR}/${name}.img`;
  if (sh(["zpool", "list", "-H", "-o", "name"], { allowFail: true }).split("\n").includes(name)) {
    for (let i = 0; i < 10; i++) {
      try {
        sh(["zpool", "destroy", "-f", name]);
        break;
      } catch {
        execFileSync("sleep", ["1"]);
      }
    }
  }
  fs.rmSync(image, { force: true });
}

/** sha256 over every file's path and content under a directory (sorted), for "unchanged" checks. */
export function treeChecksum(dir: string): string {
  const out = sh(["bash", "-c", 'cd "$1" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum | sha256sum', "x", dir]);
  return out.split(" ")[0];
}

/**
 * Names of the snapshots of exactly this dataset. Throws when `zfs` fails (a missing dataset
 * included): an empty answer from a failed command would make "the snapshot list is
 * unchanged" pass without looking.
 */
export function snapshotsOf(dataset: string): string[] {
  return sh(["zfs", "list", "-H", "-o", "name", "-t", "snapshot", "-r", "-d", "1", dataset])
    .split("\n")
    .filter((n) => n.startsWith(dataset + "@"));
}

/** Does the dataset (or snapshot) exist? `false` only when zfs says it does not; any other failure of `zfs` throws. */
export function datasetExists(name: string): boolean {
  const r = spawnSync("zfs", ["list", "-H", "-o", "name", "-t", "all", name], { encoding: "utf8" });
  if (r.status === 0) return r.stdout.trim() === name;
  if (/does not exist/.test(r.stderr ?? "")) return false;
  throw new Error(`zfs list ${name} failed (exit ${r.status ?? r.signal ?? r.error?.message}): ${(r.stderr ?? "").trim()}`);
}

/**
 * `zfs destroy` done by hand (behind Pulumi's back, or a bench's scratch copy), retrying
 * zfs-fuse's transient "busy" (files closed a moment ago are released late): the one way
 * the tests and the benches destroy a dataset, as the driver does for the library.
 */
export function zfsDestroyByHand(name: string, opts: { recursive?: boolean; tries?: number } = {}): void {
  const tries = opts.tries ?? 15;
  for (let i = 1; ; i++) {
    try {
      sh(["zfs", "destroy", ...(opts.recursive ? ["-r"] : []), name]);
      return;
    } catch (e) {
      if (i >= tries || !/busy/.test(String(e))) throw e;
      execFileSync("sleep", ["1"]);
    }
  }
}
