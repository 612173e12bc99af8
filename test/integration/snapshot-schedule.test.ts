/**
 * SnapshotSchedule through the real engine: a cron entry in /etc/cron.d run by the real
 * cron daemon, on a real zfs-fuse pool.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as fs from "node:fs";
import { execFileSync } from "node:child_process";
import { createPool, datasetExists, sh, snapshotsOf, TestPool, treeChecksum, zfsDestroyByHand } from "../harness/zfs";
import { failureOf, fileBackend, fixtureProgram, openStack } from "../harness/pulumi";
import { ZfsDriver } from "../../providers/zfs/driver";
import { LocalHost } from "../../providers/host/local";
import { lookupSnapshot } from "../../providers/zfs/lookup";

let pool: TestPool;
let SRC: string;

beforeAll(() => {
  expect(sh(["pgrep", "-x", "cron"], { allowFail: true }).trim(), "the cron daemon must run (scripts/setup.sh starts it)").not.toBe("");
  pool = createPool("ussched", 1);
  SRC = `${pool.name}/live`;
  sh(["zfs", "create", SRC]);
  fs.writeFileSync(`${pool.mountpoint}/live/data.txt`, "scheduled\n");
});

afterAll(() => pool?.destroy());

describe("SnapshotSchedule", () => {
  it("installs a cron entry that takes marked snapshots without Pulumi, prunes by retention, and is removed cleanly", async () => {
    const sum = treeChecksum(`${pool.mountpoint}/live`);
    fs.rmSync("/tmp/understudy-hook-ran", { force: true });
    sh(["zfs", "snapshot", `${SRC}@ret-20261101-000000`]); // same prefix, not ours: never pruned
    const spec = [
      { type: "SnapshotSchedule", name: "fast", args: { dataset: SRC, every: "1m", keep: { hourly: 5, daily: 1 }, hook: ["touch", "/tmp/understudy-hook-ran"], hookUser: "root" } },
      { type: "SnapshotSchedule", name: "ret", args: { dataset: SRC, every: "1d", prefix: "ret", keep: { hourly: 3, daily: 2 } } },
    ];
    const stack = await openStack(fixtureProgram("zfs-program"), "sched", fileBackend(), { resources: { value: JSON.stringify(spec) } });
    const up = await stack.up();
    expect(up.summary.result).toBe("succeeded");
    const state = JSON.stringify(await stack.exportStack());
    const cronFiles = fs.readdirSync("/etc/cron.d").filter((f) => f.startsWith("understudy-sched-"));
    expect(cronFiles).toHaveLength(2);
    const fastCron = fs.readFileSync(`/etc/cron.d/${cronFiles.find((f) => f.includes("fast"))}`, "utf8");
    expect(fastCron).toMatch(/^\* \* \* \* \* root \/usr\/local\/lib\/understudy\/schedules\/sched-fast-\w+\.sh >> \/var\/log\/understudy\/sched-fast-\w+\.log 2>&1$/m);
    expect(state).toContain("0 0 * * *");

    // The real cron daemon fires within a minute: a marked snapshot appears, the hook ran first.
    const deadline = Date.now() + 75_000;
    let taken: string[] = [];
    while (Date.now() < deadline) {
      taken = snapshotsOf(SRC).filter((s) => s.startsWith(`${SRC}@understudy-`));
      if (taken.length) break;
      await new Promise((r) => setTimeout(r, 2000));
    }
    expect(taken.length, "cron took no snapshot within 75 s").toBeGreaterThan(0);
    expect(fs.existsSync("/tmp/understudy-hook-ran")).toBe(true);
    expect(sh(["zfs", "get", "-H", "-o", "value", "understudy:owner", taken[0]]).trim()).toBe("zfs-program/sched/SnapshotSchedule/fast");

    // Retention, by running the installed script as cron would, at chosen (fake) times.
    const script = fs.readdirSync("/usr/local/lib/understudy/schedules").find((f) => f.startsWith("sched-ret-"))!;
    const runAt = (stamp: string) =>
      execFileSync(`/usr/local/lib/understudy/schedules/${script}`, { env: { ...process.env, UNDERSTUDY_NOW: stamp }, encoding: "utf8" });
    runAt("20261120-100000");
    runAt("20261121-100000");
    sh(["zfs", "clone", `${SRC}@ret-20261120-100000`, `${pool.name}/keepme`]); // a clone pins its snapshot
    runAt("20261122-100000");
    runAt("20261122-110000");
    const last = runAt("20261122-120000");
    expect(last).toMatch(/kept ussched\/live@ret-20261120-100000 \(busy or has clones\)/);
    const ret = snapshotsOf(SRC).filter((s) => s.includes("@ret-")).map((s) => s.split("@ret-")[1]);
    // Kept: the newest 3 (22-12, 22-11, 22-10), the newest of each of the last 2 days (22-12, 21-10),
    // the cloned 20-10 (pinned), and the foreign 11-01 (not ours).
    expect(ret.sort()).toEqual(["20261101-000000", "20261120-100000", "20261121-100000", "20261122-100000", "20261122-110000", "20261122-120000"]);
    runAt("20261122-130000"); // now 22-10 falls out of the newest 3, and is pruned
    expect(snapshotsOf(SRC)).not.toContain(`${SRC}@ret-20261122-100000`);

    // lookupSnapshot: newest at or before a time.
    const z = new ZfsDriver(new LocalHost());
    const newest = await lookupSnapshot({ dataset: SRC, prefix: "ret" });
    expect(newest.snapshot).toBe((await z.listSnapshots(SRC)).filter((s) => s.name.includes("@ret-")).pop()!.name);
    expect(await failureOf(() => lookupSnapshot({ dataset: SRC, before: "2000-01-01T00:00:00Z" }))).toMatch(/no snapshot of ussched\/live at or before 2000-01-01/);

    // destroy: cron entries and scripts gone; the schedules' own snapshots pruned, except the cloned one.
    await stack.destroy();
    expect(fs.readdirSync("/etc/cron.d").filter((f) => f.startsWith("understudy-sched-"))).toEqual([]);
    expect(fs.readdirSync("/usr/local/lib/understudy/schedules").filter((f) => f.startsWith("sched-"))).toEqual([]);
    const left = snapshotsOf(SRC);
    expect(left).toContain(`${SRC}@ret-20261101-000000`);
    expect(left).toContain(`${SRC}@ret-20261120-100000`);
    expect(left.filter((s) => s.includes("@understudy-"))).toEqual([]);
    zfsDestroyByHand(`${pool.name}/keepme`);
    for (const s of left) zfsDestroyByHand(s);
    expect(treeChecksum(`${pool.mountpoint}/live`)).toBe(sum);
    expect(datasetExists(SRC)).toBe(true);
  });

  it.each([
    [{ every: "7m" }, /every: minutes must divide 60/],
    [{ every: "hourly" }, /every: "hourly" must look like 15m, 1h or 1d/],
    [{ keep: { hourly: -1 } }, /keep\.hourly: must be an integer/],
    [{ prefix: "a;b" }, /prefix: .* contains ";"/],
    [{ hook: ["psql", "-c", "CHECKPOINT\n; rm -rf /"] }, /hook: must be a non-empty argv array of single-line strings/],
  ])("rejects %j before installing anything", async (bad, why) => {
    const stack = await openStack(fixtureProgram("zfs-program"), "sched-bad", fileBackend(), {
      resources: { value: JSON.stringify([{ type: "SnapshotSchedule", name: "bad", args: { dataset: SRC, ...bad } }]) },
    });
    expect(await failureOf(() => stack.up())).toMatch(why);
    expect(fs.readdirSync("/etc/cron.d").filter((f) => f.startsWith("understudy-sched-bad"))).toEqual([]);
  });
});
