/**
 * The snapshot schedule's root script (providers/zfs/schedule.ts) run for real, as cron runs
 * it, on a zfs-fuse pool, under strace (issue 10, item 12): it creates no file outside what
 * it is given (a predictable `/tmp/understudy-<id>.$$`, written by root, was a symlink
 * attack for any local user), and its retention still keeps and prunes what it should.
 *
 * Pool `ussecs`.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { createPool, sh, snapshotsOf, type TestPool, zfsDestroyByHand } from "../harness/zfs";
import { tempDir } from "../harness/pulumi";
import { renderScript, type ScheduleSpec } from "../../providers/zfs/schedule";

let pool: TestPool;
let dir: string;
let SRC: string;
const OWNER = "secprog/sec/SnapshotSchedule/ret";

beforeAll(() => {
  pool = createPool("ussecs", 1);
  SRC = `${pool.name}/live`;
  sh(["zfs", "create", SRC]);
  dir = tempDir("sched-script");
});

afterAll(() => {
  pool?.destroy();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

/** Run the script at a (fake) time under strace; returns its output and every file it created or opened for writing. */
function runAt(script: string, stamp: string): { out: string; written: string[] } {
  const trace = path.join(dir, `strace-${stamp}.txt`);
  const out = execFileSync("strace", ["-f", "-qq", "-e", "trace=openat,open,creat,rename,renameat,renameat2,mkdir,symlink,link", "-o", trace, script], {
    env: { ...process.env, UNDERSTUDY_NOW: stamp },
    encoding: "utf8",
  });
  const written = fs
    .readFileSync(trace, "utf8")
    .split("\n")
    .filter((l) => /O_WRONLY|O_RDWR|O_CREAT|creat\(|rename|mkdir\(|symlink\(|link\(/.test(l) && !/= -1 /.test(l))
    .map((l) => /"([^"]+)"/.exec(l)?.[1] ?? l)
    // The shell and zfs's own devices: /dev/null, /dev/zfs, the tty.
    .filter((f) => !f.startsWith("/dev/"));
  return { out, written };
}

describe("the snapshot schedule's script", () => {
  it("creates no temporary file (no /tmp, nothing at all), and keeps and prunes as before", () => {
    const spec: ScheduleSpec = { id: "sec-ret-test", dataset: SRC, every: "1h", prefix: "ret", keep: { hourly: 3, daily: 2 }, owner: OWNER };
    const text = renderScript(spec);
    expect(text).not.toMatch(/\/tmp\b/);
    const script = path.join(dir, "sched.sh");
    fs.writeFileSync(script, text, { mode: 0o700 });
    sh(["zfs", "snapshot", `${SRC}@ret-20261101-000000`]); // not ours: never pruned

    const first = runAt(script, "20261120-100000");
    // Positive control: strace saw the commands the script ran (zfs opened its own files).
    expect(fs.readFileSync(path.join(dir, "strace-20261120-100000.txt"), "utf8")).toMatch(/openat\(.*zfs/);
    expect(first.out).toMatch(/took ussecs\/live@ret-20261120-100000/);
    expect(first.written).toEqual([]);

    runAt(script, "20261121-100000");
    sh(["zfs", "clone", `${SRC}@ret-20261120-100000`, `${pool.name}/keepme`]); // a clone pins its snapshot
    runAt(script, "20261122-100000");
    runAt(script, "20261122-110000");
    const last = runAt(script, "20261122-120000");
    expect(last.written).toEqual([]);
    expect(last.out).toMatch(/kept ussecs\/live@ret-20261120-100000 \(busy or has clones\)/);
    const ret = () => snapshotsOf(SRC).filter((s) => s.includes("@ret-")).map((s) => s.split("@ret-")[1]).sort();
    // Kept: the newest 3, the newest of each of the last 2 days, the cloned one, the foreign one.
    expect(ret()).toEqual(["20261101-000000", "20261120-100000", "20261121-100000", "20261122-100000", "20261122-110000", "20261122-120000"]);
    const next = runAt(script, "20261122-130000");
    expect(next.out).toMatch(/pruned ussecs\/live@ret-20261122-100000/);
    expect(ret()).not.toContain("20261122-100000");
    zfsDestroyByHand(`${pool.name}/keepme`);
  });
});
