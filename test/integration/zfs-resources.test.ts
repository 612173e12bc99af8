/**
 * ZfsSnapshot / ZfsClone through the real Pulumi engine (CLI v3.248 on a local file
 * backend) on a real zfs-fuse pool. The source dataset is checked before and after every
 * test: same content checksum, same snapshot list.
 */
import { afterAll, beforeAll, beforeEach, afterEach, describe, expect, it } from "vitest";
import * as fs from "node:fs";
import { spawn, ChildProcess } from "node:child_process";
import { createPool, datasetExists, sh, snapshotsOf, TestPool, treeChecksum, zfsDestroyByHand } from "../harness/zfs";
import { collector, failureOf, fileBackend, fixtureProgram, openStack, tempDir, TestBackend } from "../harness/pulumi";
import { readCommandLog } from "../../providers/host/record";

const cmdlogDirs: string[] = [];
/** A fresh file for UNDERSTUDY_COMMAND_LOG (absent until a command is recorded). */
function commandLog(): string {
  const d = tempDir("cmdlog");
  cmdlogDirs.push(d);
  return `${d}/commands.jsonl`;
}

let pool: TestPool;
let backend: TestBackend;
let program: string;
let SRC: string;
let before: { sum: string; snaps: string[] };

beforeAll(() => {
  pool = createPool("uszfs", 2);
  SRC = `${pool.name}/live`;
  sh(["zfs", "create", SRC]);
  sh(["dd", "if=/dev/urandom", `of=${pool.mountpoint}/live/data.bin`, "bs=1M", "count=8"]);
  fs.writeFileSync(`${pool.mountpoint}/live/readme.txt`, "live data\n");
  sh(["zfs", "create", `${pool.name}/rehearsal`]);
  backend = fileBackend();
  program = fixtureProgram("zfs-program");
});

afterAll(() => {
  pool?.destroy();
  for (const d of cmdlogDirs) fs.rmSync(d, { recursive: true, force: true });
});

function sourceState() {
  return { sum: treeChecksum(`${pool.mountpoint}/live`), snaps: snapshotsOf(SRC) };
}

beforeEach(() => {
  before = sourceState();
});

afterEach(() => {
  // Live is sacred: nothing any test did may change the source's content or snapshots.
  expect(sourceState()).toEqual(before);
});

const snapAndClone = (tag: string) => [
  { type: "ZfsSnapshot", name: `snap-${tag}`, args: { dataset: SRC, name: `understudy-${tag}`, properties: { "understudy:note": "a" } } },
  {
    type: "ZfsClone",
    name: `clone-${tag}`,
    args: { snapshot: { $ref: `snap-${tag}.snapshot` }, dataset: `${pool.name}/rehearsal/${tag}`, properties: { mountpoint: `/srv/${pool.name}/clones/${tag}` } },
  },
];

describe("walking skeleton: up / preview / refresh / destroy", () => {
  it("creates a snapshot and a clone, shows no change on preview, notices deletion on refresh, destroys only its own", async () => {
    const stack = await openStack(program, "skeleton", backend, { resources: { value: JSON.stringify(snapAndClone("sk")) } });
    const out = collector();
    const up = await stack.up({ onOutput: out.onOutput });
    expect(up.summary.result).toBe("succeeded");
    expect(up.summary.resourceChanges?.create).toBe(3); // stack + snapshot + clone
    expect(out.text()).toMatch(/snapshot uszfs\/live@understudy-sk taken in \d+ ms/);
    expect(up.outputs["snap-sk"].value.snapshot).toBe(`${SRC}@understudy-sk`);
    expect(up.outputs["clone-sk"].value.origin).toBe(`${SRC}@understudy-sk`);
    expect(sh(["zfs", "get", "-H", "-o", "value", "understudy:owner", `${SRC}@understudy-sk`]).trim()).toBe("zfs-program/skeleton/ZfsSnapshot/snap-sk");
    // The clone holds the source's data, and costs nothing.
    expect(treeChecksum(`/srv/${pool.name}/clones/sk`)).toBe(before.sum);
    expect(up.outputs["clone-sk"].value.used).toBeLessThan(1024 * 1024);

    const preview = await stack.preview();
    expect(preview.changeSummary).toEqual({ same: 3 });

    // Drift: a managed property changed behind Pulumi's back is seen by refresh and put back by up.
    sh(["zfs", "set", "understudy:note=changed", `${SRC}@understudy-sk`]);
    await stack.refresh();
    const drift = await stack.preview();
    expect(drift.changeSummary.update).toBe(1);
    await stack.up();
    expect(sh(["zfs", "get", "-H", "-o", "value", "understudy:note", `${SRC}@understudy-sk`]).trim()).toBe("a");

    // Deleted behind Pulumi's back: refresh drops it from state, up recreates it.
    zfsDestroyByHand(`${pool.name}/rehearsal/sk`);
    const refresh = await stack.refresh();
    expect(refresh.summary.resourceChanges?.delete).toBe(1);
    const again = await stack.up();
    expect(again.summary.resourceChanges?.create).toBe(1);
    expect(datasetExists(`${pool.name}/rehearsal/sk`)).toBe(true);

    const destroy = await stack.destroy();
    expect(destroy.summary.result).toBe("succeeded");
    expect(datasetExists(`${pool.name}/rehearsal/sk`)).toBe(false);
    expect(snapshotsOf(SRC)).toEqual(before.snaps);
    await stack.workspace.removeStack("skeleton");
  });
});

describe("bad input is refused before anything runs", () => {
  const hostile: Array<[string, Record<string, unknown>, RegExp]> = [
    ["shell metacharacters in a dataset", { dataset: "uszfs/x; rm -rf /", name: "s" }, /dataset: .* contains ";"/],
    ["command substitution", { dataset: "uszfs/$(touch /tmp/pwned-understudy)", name: "s" }, /dataset: .* contains "\$"/],
    ["command substitution in a snapshot name", { dataset: "uszfs/live", name: "$(reboot)" }, /name: .* contains "\$"/],
    ["quotes", { dataset: "uszfs/live'\"", name: "s" }, /dataset: .* contains "'"/],
    ["a newline", { dataset: "uszfs/live", name: "a\nb" }, /name: .* contains "\\n"/],
    ["dot-dot", { dataset: "uszfs/../etc", name: "s" }, /dataset: .* "\.\." is not allowed/],
    ["an over-long name", { dataset: "uszfs/" + "a".repeat(300), name: "s" }, /dataset: .* longer than 255/],
    ["a path instead of a dataset", { dataset: "/srv/uszfs/live", name: "s" }, /dataset: .* no leading \//],
  ];
  for (const [what, args, expected] of hostile) {
    it(`rejects ${what}`, async () => {
      const stack = await openStack(program, "hostile", backend, {
        resources: { value: JSON.stringify([{ type: "ZfsSnapshot", name: "bad", args }]) },
      });
      // Every command the host layer runs, in the program and in the providers the engine starts.
      const cmdlog = commandLog();
      stack.workspace.envVars.UNDERSTUDY_COMMAND_LOG = cmdlog;
      const message = await failureOf(() => stack.up());
      delete stack.workspace.envVars.UNDERSTUDY_COMMAND_LOG;
      expect(message).toMatch(expected);
      expect(readCommandLog(cmdlog), "no command may run for a refused input").toEqual([]);
      expect(sh(["zfs", "list", "-H", "-o", "name", "-t", "all", "-r", pool.name]).split("\n").filter((n) => n.includes("@"))).toEqual(before.snaps);
      const state = await stack.exportStack();
      expect((state.deployment.resources ?? []).filter((r: { type: string }) => r.type.includes("understudy"))).toEqual([]);
    });
  }

  it("positive control: the command log does record what a good input runs", async () => {
    const stack = await openStack(program, "logged", backend, {
      resources: { value: JSON.stringify([{ type: "ZfsSnapshot", name: "ok", args: { dataset: SRC, name: "understudy-logged" } }]) },
    });
    const cmdlog = commandLog();
    stack.workspace.envVars.UNDERSTUDY_COMMAND_LOG = cmdlog;
    await stack.up();
    delete stack.workspace.envVars.UNDERSTUDY_COMMAND_LOG;
    const ran = readCommandLog(cmdlog).map((c) => c.argv.join(" "));
    expect(ran.some((a) => /\bzfs snapshot\b/.test(a) && a.includes(`${SRC}@understudy-logged`)), ran.join("\n")).toBe(true);
    await stack.destroy();
    await stack.workspace.removeStack("logged");
  });

  it("names the missing dataset and creates nothing", async () => {
    const stack = await openStack(program, "missing", backend, {
      resources: { value: JSON.stringify([{ type: "ZfsSnapshot", name: "m", args: { dataset: `${pool.name}/nope`, name: "s" } }]) },
    });
    const message = await failureOf(() => stack.up());
    expect(message).toMatch(/dataset uszfs\/nope does not exist on local/);
  });

  it("rejects a clone placed inside its own source", async () => {
    const stack = await openStack(program, "inside", backend, {
      resources: { value: JSON.stringify([{ type: "ZfsClone", name: "c", args: { snapshot: `${SRC}@x`, dataset: `${SRC}/c` } }]) },
    });
    expect(await failureOf(() => stack.up())).toMatch(/dataset: the clone uszfs\/live\/c must not be the source/);
  });
});

describe("ownership", () => {
  it("refuses a snapshot it did not create, adopts it on request, and never destroys an adopted one", async () => {
    sh(["zfs", "snapshot", `${SRC}@by-hand`]);
    before = sourceState();
    const spec = (adopt: boolean) => [{ type: "ZfsSnapshot", name: "byhand", args: { dataset: SRC, name: "by-hand", adopt } }];
    const stack = await openStack(program, "owner", backend, { resources: { value: JSON.stringify(spec(false)) } });
    expect(await failureOf(() => stack.up())).toMatch(/snapshot uszfs\/live@by-hand already exists on local \(not created by Understudy\).*adopt: true/s);
    await stack.setConfig("resources", { value: JSON.stringify(spec(true)) });
    const up = await stack.up();
    expect(up.outputs.byhand.value.adopted).toBe(true);
    const out = collector();
    await stack.destroy({ onOutput: out.onOutput });
    expect(out.text()).toMatch(/left uszfs\/live@by-hand in place: it was not created by this stack/);
    expect(snapshotsOf(SRC)).toContain(`${SRC}@by-hand`);
    zfsDestroyByHand(`${SRC}@by-hand`);
    before = sourceState();
  });

  it("refuses to destroy a snapshot that still has a clone made outside the stack, and names it", async () => {
    const stack = await openStack(program, "foreign-clone", backend, {
      resources: { value: JSON.stringify([{ type: "ZfsSnapshot", name: "fc", args: { dataset: SRC, name: "fc" } }]) },
    });
    await stack.up();
    sh(["zfs", "clone", `${SRC}@fc`, `${pool.name}/rehearsal/someone-elses`]);
    const message = await failureOf(() => stack.destroy());
    expect(message).toMatch(/cannot destroy snapshot uszfs\/live@fc on local: it still has clones: uszfs\/rehearsal\/someone-elses/);
    expect(message).toMatch(/left in place/);
    expect(datasetExists(`${SRC}@fc`)).toBe(true);
    zfsDestroyByHand(`${pool.name}/rehearsal/someone-elses`);
    await stack.destroy();
    expect(datasetExists(`${SRC}@fc`)).toBe(false);
  });
});

describe("under load and in parallel", () => {
  it("clones a dataset that a writer keeps writing to; the writer never stops", async () => {
    const log = `${pool.mountpoint}/live/writer.log`;
    const writer: ChildProcess = spawn("bash", ["-c", `i=0; while true; do echo "row $i" >> ${log}; i=$((i+1)); sleep 0.005; done`]);
    try {
      await new Promise((r) => setTimeout(r, 300));
      const stack = await openStack(program, "writer", backend, { resources: { value: JSON.stringify(snapAndClone("w")) } });
      const linesBefore = fs.readFileSync(log, "utf8").split("\n").length;
      const up = await stack.up();
      expect(up.summary.result).toBe("succeeded");
      const cloned = fs.readFileSync(`/srv/${pool.name}/clones/w/writer.log`, "utf8").split("\n");
      const live = fs.readFileSync(log, "utf8").split("\n");
      expect(cloned.length).toBeGreaterThanOrEqual(linesBefore - 1);
      expect(live.length).toBeGreaterThan(cloned.length); // the writer went on after the snapshot
      // The clone is a prefix of live: the snapshot is a point in time of the same file.
      expect(live.slice(0, cloned.length - 1)).toEqual(cloned.slice(0, cloned.length - 1));
      await stack.destroy();
    } finally {
      writer.kill("SIGKILL");
      await new Promise((r) => setTimeout(r, 100));
      fs.rmSync(log, { force: true });
    }
    before = sourceState();
  });

  it("two stacks clone the same source at the same time", async () => {
    const a = await openStack(program, "par-a", backend, { resources: { value: JSON.stringify(snapAndClone("pa")) } });
    const b = await openStack(program, "par-b", backend, { resources: { value: JSON.stringify(snapAndClone("pb")) } });
    const [ua, ub] = await Promise.all([a.up(), b.up()]);
    expect(ua.summary.result).toBe("succeeded");
    expect(ub.summary.result).toBe("succeeded");
    expect(treeChecksum(`/srv/${pool.name}/clones/pa`)).toBe(before.sum);
    expect(treeChecksum(`/srv/${pool.name}/clones/pb`)).toBe(before.sum);
    await Promise.all([a.destroy(), b.destroy()]);
    expect(datasetExists(`${pool.name}/rehearsal/pa`) || datasetExists(`${pool.name}/rehearsal/pb`)).toBe(false);
  });
});

describe("interrupted runs", () => {
  it("an up interrupted with Ctrl-C completes when run again", async () => {
    const stack = await openStack(program, "interrupt", backend, { resources: { value: JSON.stringify(snapAndClone("int")) } });
    const abort = new AbortController();
    const out = collector();
    const first = stack.up({
      signal: abort.signal,
      onOutput: (s) => {
        out.onOutput(s);
        if (/taken in/.test(s)) abort.abort();
      },
    });
    // The first `up` really was interrupted: the abort fired mid-run and the run did not succeed.
    const outcome = await first.then(
      (r) => `completed: ${r.summary.result}`,
      (e: unknown) => `interrupted: ${String((e as Error)?.message ?? e)}`,
    );
    expect(abort.signal.aborted, "the abort never fired (no snapshot was reported)").toBe(true);
    expect(outcome).toMatch(/^interrupted: /);
    const again = await stack.up();
    expect(again.summary.result).toBe("succeeded");
    expect(datasetExists(`${pool.name}/rehearsal/int`)).toBe(true);
    await stack.destroy();
    expect(snapshotsOf(SRC)).toEqual(before.snaps);
  });

  it("a snapshot and clone that exist on disk but were lost from state are taken over, not duplicated", async () => {
    const stack = await openStack(program, "lost", backend, { resources: { value: JSON.stringify(snapAndClone("lost")) } });
    await stack.up();
    // As if the engine died between creating on disk and writing its checkpoint.
    const state = await stack.exportStack();
    state.deployment.resources = state.deployment.resources.filter((r: { type: string }) => !r.type.includes("understudy"));
    await stack.importStack(state);
    const out = collector();
    const again = await stack.up({ onOutput: out.onOutput });
    expect(again.summary.resourceChanges?.create).toBe(2);
    expect(out.text()).toMatch(/already exists and is ours \(an interrupted run\?\): taking it over/);
    await stack.destroy();
    expect(datasetExists(`${pool.name}/rehearsal/lost`)).toBe(false);
  });
});

describe("over SSH to 127.0.0.1 (real sshd from scripts/setup-sshd.sh)", () => {
  const sshDir = `${process.env.HOME}/.cache/understudy/ssh`;
  const conn = () => ({
    host: "127.0.0.1",
    port: 2222,
    user: "root",
    privateKey: fs.readFileSync(`${sshDir}/id_ed25519`, "utf8"),
    hostKey: fs.readFileSync(`${sshDir}/host_key.pub`, "utf8").trim(),
  });

  it("up / preview / refresh / destroy over SSH, with the key stored only as a secret", async () => {
    const stack = await openStack(program, "ssh", backend, {
      resources: { value: JSON.stringify(snapAndClone("ssh")) },
      ssh: { value: JSON.stringify(conn()), secret: true },
    });
    const up = await stack.up();
    expect(up.summary.result).toBe("succeeded");
    expect(datasetExists(`${pool.name}/rehearsal/ssh`)).toBe(true);
    expect((await stack.preview()).changeSummary).toEqual({ same: 3 });
    // On disk the connection is ciphertext. (The Automation API's exportStack decrypts secrets,
    // so read the backend's file itself.)
    const onDisk = fs.readFileSync(`${backend.dir}/.pulumi/stacks/zfs-program/ssh.json`, "utf8");
    expect(onDisk).toContain('"connection"');
    expect(onDisk).toContain("ciphertext");
    expect(onDisk).not.toContain("PRIVATE KEY");
    expect(onDisk).not.toContain(conn().privateKey.split("\n")[1]);
    zfsDestroyByHand(`${pool.name}/rehearsal/ssh`);
    expect((await stack.refresh()).summary.resourceChanges?.delete).toBe(1);
    await stack.up();
    await stack.destroy();
    expect(datasetExists(`${pool.name}/rehearsal/ssh`)).toBe(false);
    expect(snapshotsOf(SRC)).toEqual(before.snaps);
  });

  it("a rotated key never makes a clone undeletable: the key given at run time wins", async () => {
    const tmp = fs.mkdtempSync("/tmp/understudy-rotate-");
    sh(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", `${tmp}/old`]);
    const authorized = `${sshDir}/authorized_keys`;
    const original = fs.readFileSync(authorized, "utf8");
    try {
      // Created with an "old" key that the server accepts at that time...
      fs.writeFileSync(authorized, original.trimEnd() + "\n" + fs.readFileSync(`${tmp}/old.pub`, "utf8"));
      const oldConn = { ...conn(), privateKey: fs.readFileSync(`${tmp}/old`, "utf8") };
      const stack = await openStack(program, "rotate", backend, {
        resources: { value: JSON.stringify([{ type: "ZfsSnapshot", name: "r", args: { dataset: SRC, name: "rotate" } }]) },
        ssh: { value: JSON.stringify(oldConn), secret: true },
      });
      await stack.up();
      // ...then the old key is revoked. Destroy with the stored key fails, and says why.
      fs.writeFileSync(authorized, original);
      expect(await failureOf(() => stack.destroy())).toMatch(/127\.0\.0\.1:2222/);
      expect(datasetExists(`${SRC}@rotate`)).toBe(true);
      // The current key, given in the environment of `pulumi destroy`, wins.
      const ws = stack.workspace as unknown as { envVars: Record<string, string> };
      ws.envVars.UNDERSTUDY_SSH_PRIVATE_KEY_FILE = `${sshDir}/id_ed25519`;
      await stack.destroy();
      delete ws.envVars.UNDERSTUDY_SSH_PRIVATE_KEY_FILE;
      expect(datasetExists(`${SRC}@rotate`)).toBe(false);
    } finally {
      fs.writeFileSync(authorized, original);
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  });
});
