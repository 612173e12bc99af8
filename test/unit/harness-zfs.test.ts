/**
 * The test harness's ZFS helpers must not answer "nothing" when `zfs` itself fails: a
 * "snapshot list unchanged" check would pass without looking. A stand-in `zfs` on PATH
 * (a shell script, since this is a unit test) fails the way a dead zfs-fuse daemon does.
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { datasetExists, snapshotsOf } from "../harness/zfs";

let dir: string;
const savedPath = process.env.PATH;

function fakeZfs(script: string): void {
  fs.writeFileSync(path.join(dir, "zfs"), `#!/bin/sh\n${script}\n`, { mode: 0o755 });
}

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "understudy-fakezfs-"));
  process.env.PATH = `${dir}:${savedPath}`;
});
afterEach(() => {
  process.env.PATH = savedPath;
  fs.rmSync(dir, { recursive: true, force: true });
});

describe("harness zfs helpers", () => {
  it("throw when zfs fails for another reason than a missing dataset", () => {
    fakeZfs('echo "connect: Connection refused" >&2; echo "Please make sure that the zfs-fuse daemon is running." >&2; exit 1');
    expect(() => snapshotsOf("tank/live")).toThrow(/Connection refused/);
    expect(() => datasetExists("tank/live")).toThrow(/zfs list tank\/live failed .*Connection refused/);
  });

  it("datasetExists is false only when zfs says the dataset does not exist; snapshotsOf throws then too", () => {
    fakeZfs(`echo "cannot open '$7': dataset does not exist" >&2; exit 1`);
    expect(datasetExists("tank/gone")).toBe(false);
    expect(() => snapshotsOf("tank/gone")).toThrow(/dataset does not exist/);
  });

  it("positive control: answers from a working zfs", () => {
    fakeZfs('case "$*" in *snapshot*) printf "tank/live@a\\ntank/live@b\\n";; *) echo tank/live;; esac');
    expect(snapshotsOf("tank/live")).toEqual(["tank/live@a", "tank/live@b"]);
    expect(datasetExists("tank/live")).toBe(true);
  });
});
