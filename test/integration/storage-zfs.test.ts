/**
 * ZfsStorage runs the shared storage contract on real zfs-fuse (pool `uscontract`).
 * Sources are plain datasets under the pool's `live` parent, like a cluster split over a
 * data, a WAL and a tablespace dataset.
 */
import * as fs from "node:fs";
import { createPool, destroyPoolByName, sh, TestPool } from "../harness/zfs";
import { storageContract } from "../contract/storage-contract";
import { ZfsStorage } from "../../providers/zfs/storage";
import { LocalHost } from "../../providers/host/local";

let pool: TestPool;

storageContract(
  "ZFS (zfs-fuse, local host)",
  async () => {
    pool = createPool("uscontract", 2);
    sh(["zfs", "create", `${pool.name}/live`]);
    sh(["zfs", "create", `${pool.name}/clones`]);
    const mnt = (v: string) => sh(["zfs", "get", "-H", "-o", "value", "mountpoint", v]).trim();
    return {
      storage: new ZfsStorage(new LocalHost()),
      makeSource: async (name) => {
        const id = `${pool.name}/live/${name}`;
        sh(["zfs", "create", id]);
        return id;
      },
      target: (name) => `${pool.name}/clones/${name}`,
      writeFile: async (v, f, c) => fs.writeFileSync(`${mnt(v)}/${f}`, c),
      readFile: async (v, f) => (fs.existsSync(`${mnt(v)}/${f}`) ? fs.readFileSync(`${mnt(v)}/${f}`, "utf8") : undefined),
      pathIn: async (v) => `${mnt(v)}/some/where`,
      cleanup: async () => destroyPoolByName("uscontract"),
    };
  },
  { data: true, badIds: ["/srv/x", "tank/a b", "tank/$(id)", "tank//x", "tank@snap", "-tank"] },
);

import { describe, expect, it, afterAll } from "vitest";

describe("ZFS: a set over datasets of one parent on old ZFS (zfs-fuse takes one name per `zfs snapshot`)", () => {
  afterAll(() => destroyPoolByName("uscontract2"));
  it("is taken recursively on the common parent, and every snapshot outside the set is removed at once", async () => {
    const p = createPool("uscontract2", 1);
    for (const d of ["live", "live/data", "live/wal", "live/other", "elsewhere"]) sh(["zfs", "create", `${p.name}/${d}`]);
    const s = new ZfsStorage(new LocalHost());
    const how = await s.z.snapshotAtomically([`${p.name}/live/data`, `${p.name}/live/wal`], "set1", { "understudy:owner": "me" });
    expect(["multi", "recursive"]).toContain(how);
    const snaps = sh(["zfs", "list", "-H", "-o", "name", "-t", "snapshot", "-r", p.name]).split("\n").filter(Boolean).sort();
    expect(snaps).toEqual([`${p.name}/live/data@set1`, `${p.name}/live/wal@set1`]);
    await expect(s.z.snapshotAtomically([`${p.name}/live/data`, `other/x`], "set2")).rejects.toThrow(/different pools/);
  });
});
