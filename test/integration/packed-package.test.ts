/**
 * The package as users get it: `npm pack`, installed into a fresh program directory, then
 * `pulumi up` / `preview` / `destroy`. Under node_modules the dynamic-provider code takes
 * another path than inside the repo (the shim resolves `pulumi-understudy/dist/...` through
 * the package's exports map), so this is tested on its own.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as fs from "node:fs";
import * as path from "node:path";
import { execFileSync } from "node:child_process";
import { createPool, datasetExists, sh, snapshotsOf, TestPool, treeChecksum } from "../harness/zfs";
import { fileBackend, openStack, REPO, tempDir } from "../harness/pulumi";

let pool: TestPool;
let programDir: string;

beforeAll(() => {
  pool = createPool("uspack", 1);
  sh(["zfs", "create", `${pool.name}/live`]);
  fs.writeFileSync(`${pool.mountpoint}/live/data.txt`, "packed\n");
  const packDir = tempDir("pack");
  const tgz = execFileSync("npm", ["pack", "--silent", "--pack-destination", packDir], { cwd: REPO, encoding: "utf8" }).trim().split("\n").pop()!;
  programDir = tempDir("packed-program");
  fs.writeFileSync(path.join(programDir, "Pulumi.yaml"), "name: packed\nruntime: nodejs\nmain: index.js\n");
  fs.writeFileSync(
    path.join(programDir, "package.json"),
    JSON.stringify({ name: "packed", private: true, dependencies: { "pulumi-understudy": `file:${path.join(packDir, tgz)}`, "@pulumi/pulumi": "3.248.0" } }),
  );
  fs.copyFileSync(path.join(REPO, "test/fixtures/zfs-program/index.js"), path.join(programDir, "index.js"));
  execFileSync("npm", ["install", "--prefer-offline", "--no-audit", "--no-fund", "--loglevel=error"], { cwd: programDir, stdio: "inherit" });
}, 600_000);

afterAll(() => pool?.destroy());

describe("the packed package, installed into a program", () => {
  it("is a real install, not a link to the repo", () => {
    const installed = path.join(programDir, "node_modules/pulumi-understudy");
    expect(fs.lstatSync(installed).isSymbolicLink()).toBe(false);
    expect(fs.existsSync(path.join(installed, "dist/providers/dispatch.js"))).toBe(true);
    expect(fs.existsSync(path.join(installed, "test"))).toBe(false);
  });

  it("creates, previews clean and destroys a snapshot and a clone", async () => {
    const backend = fileBackend();
    const before = { sum: treeChecksum(`${pool.mountpoint}/live`), snaps: snapshotsOf(`${pool.name}/live`) };
    const stack = await openStack(programDir, "packed", backend, {
      resources: {
        value: JSON.stringify([
          { type: "ZfsSnapshot", name: "s", args: { dataset: `${pool.name}/live`, name: "packed" } },
          { type: "ZfsClone", name: "c", args: { snapshot: { $ref: "s.snapshot" }, dataset: `${pool.name}/clone` } },
        ]),
      },
    });
    const up = await stack.up();
    expect(up.summary.resourceChanges?.create).toBe(3);
    expect(datasetExists(`${pool.name}/clone`)).toBe(true);
    // The provider code stored in state refers to the package by name, not by a path on this machine.
    const state = JSON.stringify(await stack.exportStack());
    expect(state).toContain("pulumi-understudy/dist/providers/dispatch.js");
    expect(state).not.toContain(REPO + "/");
    expect((await stack.preview()).changeSummary).toEqual({ same: 3 });
    await stack.destroy();
    expect(datasetExists(`${pool.name}/clone`)).toBe(false);
    expect({ sum: treeChecksum(`${pool.mountpoint}/live`), snaps: snapshotsOf(`${pool.name}/live`) }).toEqual(before);
  });
});
