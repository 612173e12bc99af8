/**
 * The storage contract (providers/storage/types.ts), as one suite every implementation runs:
 * ZFS against zfs-fuse (test/integration/storage-zfs.test.ts), EBS against moto plus loop
 * devices. An implementation that cannot show file contents (moto keeps no data) says so
 * with `data: false` and the content checks are left out, visibly (their titles say why).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import type { Storage } from "../../providers/storage/types";
import { InputError } from "../../providers/errors";
import { readCommandLog } from "../../providers/host/record";

export interface ContractEnv {
  storage: Storage;
  /** Create a source volume NOT created by Understudy (no owner mark); returns its id. */
  makeSource(name: string): Promise<string>;
  /** An id for a new clone called `name` (where the backend's clones may go). */
  target(name: string): string;
  /** Write a file at the root of a volume (backends that keep data). */
  writeFile?(volume: string, file: string, content: string): Promise<void>;
  /** Read a file at the root of a volume; undefined when absent. */
  readFile?(volume: string, file: string): Promise<string | undefined>;
  /** A path on the host inside the volume's mount (for volumeOfPath). */
  pathIn?(volume: string): Promise<string>;
  cleanup(): Promise<void>;
}

export interface ContractOptions {
  /** The backend keeps file data (false for moto: the EBS API only). */
  data: boolean;
  /** Ids that are malformed for this backend. */
  badIds: string[];
}

const OWNER = "contract-test/stack/Kind/owner";
const OTHER = "someone-else/stack/Kind/x";

export function storageContract(title: string, make: () => Promise<ContractEnv>, opts: ContractOptions): void {
  describe(`storage contract: ${title}`, () => {
    let env: ContractEnv;
    let a: string;
    let b: string;
    const log = path.join(os.tmpdir(), `understudy-contract-${process.pid}.jsonl`);

    beforeAll(async () => {
      env = await make();
      a = await env.makeSource("src-a");
      b = await env.makeSource("src-b");
    }, 300_000);
    afterAll(async () => {
      delete process.env.UNDERSTUDY_COMMAND_LOG;
      fs.rmSync(log, { force: true });
      await env?.cleanup();
    }, 300_000);

    it("1. a snapshot set covers every volume under one name, marked with the owner; the sources stay unmarked", async () => {
      const set = await env.storage.snapshot([a, b], "c1", OWNER);
      expect(set.name).toBe("c1");
      expect(set.members.map((m) => m.volume)).toEqual([a, b]);
      expect(set.members.every((m) => m.owner === OWNER)).toBe(true);
      expect(await env.storage.findSnapshotSet([a, b], "c1")).toEqual(set);
      expect(await env.storage.findSnapshotSet([a, b], "nope")).toBeUndefined();
      expect((await env.storage.volume(a))?.owner).toBeUndefined();
      const names = (await env.storage.listSnapshots(a)).map((s) => s.id);
      expect(names).toContain(set.members[0].id);
    });

    it("1b. a set where only some members exist is an error, not a set", async () => {
      await env.storage.snapshot([a], "c-partial", OWNER);
      await expect(env.storage.findSnapshotSet([a, b], "c-partial")).rejects.toThrow(/incomplete|missing/);
      await env.storage.destroySnapshotSet([a], "c-partial", OWNER);
    });

    it(opts.data ? "2. one instant: clones of the set hold what every volume held at the snapshot" : "2. one instant (skipped content check: this backend keeps no data)", async () => {
      if (!opts.data) return;
      await env.writeFile!(a, "state", "before");
      await env.writeFile!(b, "state", "before");
      await env.storage.snapshot([a, b], "c2", OWNER);
      await env.writeFile!(a, "state", "after");
      await env.writeFile!(b, "state", "after");
      const set = (await env.storage.findSnapshotSet([a, b], "c2"))!;
      const clones = await env.storage.clone(set, [
        { source: a, target: env.target("c2-a") },
        { source: b, target: env.target("c2-b") },
      ], OWNER);
      expect(await env.readFile!(clones[0].id, "state")).toBe("before");
      expect(await env.readFile!(clones[1].id, "state")).toBe("before");
      expect(await env.readFile!(a, "state")).toBe("after");
      for (const c of clones) expect(await env.storage.destroyVolume(c.id, OWNER)).toBe("destroyed");
    });

    it("4. clones are ours, come from the set, and are mounted where the host sees them", async () => {
      const set = (await env.storage.findSnapshotSet([a, b], "c1"))!;
      const [ca, cb] = await env.storage.clone(set, [
        { source: a, target: env.target("c4-a") },
        { source: b, target: env.target("c4-b") },
      ], OWNER);
      for (const c of [ca, cb]) {
        expect(c.owner).toBe(OWNER);
        expect(c.mountpoint).toMatch(/^\//);
        expect(set.members.map((m) => m.id)).toContain(c.origin);
      }
      expect((await env.storage.volume(ca.id))?.mountpoint).toBe(ca.mountpoint);
      await env.storage.setMark(ca.id, "head", "s01-x");
      expect(await env.storage.getMark(ca.id, "head")).toBe("s01-x");
      expect(await env.storage.getMark(ca.id, "promotion")).toBeUndefined();
      // 5. Roll-back: back to an earlier set; later owned sets are discarded.
      await env.storage.snapshot([ca.id, cb.id], "s01", OWNER);
      if (opts.data) await env.writeFile!(ca.id, "step", "one");
      await env.storage.snapshot([ca.id, cb.id], "s02", OWNER);
      if (opts.data) await env.writeFile!(ca.id, "step", "two");
      await env.storage.rollback([ca.id, cb.id], "s01", OWNER);
      expect(await env.storage.findSnapshotSet([ca.id, cb.id], "s02")).toBeUndefined();
      expect(await env.storage.findSnapshotSet([ca.id, cb.id], "s01")).toBeDefined();
      if (opts.data) expect(await env.readFile!(ca.id, "step")).toBeUndefined();
      for (const c of [ca, cb]) expect(await env.storage.destroyVolume(c.id, OWNER)).toBe("destroyed");
      // 6. Idempotent.
      expect(await env.storage.destroyVolume(ca.id, OWNER)).toBe("missing");
    });

    it("1c. owned only: a source is never rolled back or destroyed; a set is destroyed only by its owner", async () => {
      await expect(env.storage.rollback([a], "c1", OWNER)).rejects.toThrow(/not created by this stack|refus/);
      expect(await env.storage.destroyVolume(a, OWNER)).toBe("not-owned");
      expect(await env.storage.destroyVolume(a, "")).toBe("not-owned");
      expect(await env.storage.destroySnapshotSet([a, b], "c1", OTHER)).toEqual(["not-owned", "not-owned"]);
      expect(await env.storage.findSnapshotSet([a, b], "c1")).toBeDefined();
      expect(await env.storage.volume(a)).toBeDefined();
      expect(await env.storage.destroySnapshotSet([a, b], "c1", OWNER)).toEqual(["destroyed", "destroyed"]);
      expect(await env.storage.destroySnapshotSet([a, b], "c1", OWNER)).toEqual(["missing", "missing"]);
    });

    it("1d. a snapshot set that has clones is not destroyed", async () => {
      const set = await env.storage.snapshot([a], "c5", OWNER);
      const [c] = await env.storage.clone(set, [{ source: a, target: env.target("c5") }], OWNER);
      await expect(env.storage.destroySnapshotSet([a], "c5", OWNER)).rejects.toThrow(/clone/);
      expect(await env.storage.findSnapshotSet([a], "c5")).toBeDefined();
      await env.storage.destroyVolume(c.id, OWNER);
      expect(await env.storage.destroySnapshotSet([a], "c5", OWNER)).toEqual(["destroyed"]);
    });

    it("volumeOfPath maps a path on a volume's mount to that volume", async () => {
      if (!env.pathIn) return;
      const p = await env.pathIn(a);
      expect((await env.storage.volumeOfPath(p))?.id).toBe(a);
      expect(await env.storage.volumeOfPath("/proc/self")).toBeUndefined();
    });

    it("7. malformed ids and names are refused with an InputError before any command runs", async () => {
      process.env.UNDERSTUDY_COMMAND_LOG = log;
      try {
        for (const bad of opts.badIds) {
          const e = await env.storage.volume(bad).then(() => undefined, (x: unknown) => x);
          expect(InputError.is(e), `volume(${JSON.stringify(bad)})`).toBe(true);
          const s = await env.storage.snapshot([bad], "ok", OWNER).then(() => undefined, (x: unknown) => x);
          expect(InputError.is(s)).toBe(true);
          const d = await env.storage.destroyVolume(bad, OWNER).then(() => undefined, (x: unknown) => x);
          expect(InputError.is(d)).toBe(true);
        }
        for (const badName of ["", "a b", "x;rm", "a/b", "a@b"]) {
          const e = await env.storage.snapshot([a], badName, OWNER).then(() => undefined, (x: unknown) => x);
          expect(InputError.is(e), `name ${JSON.stringify(badName)}`).toBe(true);
        }
        expect(() => env.storage.validateVolumeId(opts.badIds[0], "source.dataset")).toThrow(/^source\.dataset: /);
        expect(readCommandLog(log)).toEqual([]);
      } finally {
        delete process.env.UNDERSTUDY_COMMAND_LOG;
      }
    });
  });
}
