/**
 * EbsSnapshotSet through the REAL Pulumi engine (the CLI built by scripts/setup.sh, a local
 * file backend) against a REAL moto server: the serialized shim, the dispatch registry entry,
 * check failures naming the field in preview, create, a no-change preview, refresh, destroy of
 * our snapshots only. AWS credentials reach the provider from the environment (moto's dummy
 * ones), never from state. Needs dist/ built (setup compiles it).
 *
 * EbsCloneSet is not run through the engine here: it needs an attached EBS volume to appear on
 * the rehearsal instance, which only the test-only device lookup (ebs-storage.test.ts) can fake.
 */
import { CreateSnapshotCommand, CreateTagsCommand, DescribeSnapshotsCommand, EC2Client } from "@aws-sdk/client-ec2";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TAGS, tagsOf } from "../../providers/ebs/driver";
import { makeWorld, recordingClient, World } from "../harness/ec2";
import { Moto, startMoto } from "../harness/moto";
import { collector, failureOf, fileBackend, makeProgram, openStack, TestBackend } from "../harness/pulumi";

const PROGRAM = `
const pulumi = require("@pulumi/pulumi");
const u = require("pulumi-understudy");
const cfg = new pulumi.Config();
const set = new u.EbsSnapshotSet("base", {
  spec: cfg.requireObject("spec"),
  volumes: cfg.requireObject("volumes"),
  snapshotName: cfg.require("name"),
});
module.exports = { set: set.set, owner: set.owner };
`;

let moto: Moto;
let admin: EC2Client;
let world: World;
let backend: TestBackend;
let program: string;

function spec() {
  return {
    kind: "ebs",
    region: "us-east-1",
    endpoint: moto.endpoint,
    live: { instanceId: world.liveInstance, volumes: world.liveData.map((v, i) => ({ volumeId: v, mountpoint: `/pg/${i}` })) },
    rehearsal: { instanceId: world.rehearsalInstance, availabilityZone: "us-east-1a" },
    waits: { minDelaySeconds: 1, maxDelaySeconds: 1 },
  };
}

async function snapshotsNamed(name: string) {
  const r = await admin.send(new DescribeSnapshotsCommand({ OwnerIds: ["self"], Filters: [{ Name: `tag:${TAGS.set}`, Values: [name] }] }));
  return r.Snapshots ?? [];
}

beforeAll(async () => {
  moto = await startMoto();
  admin = recordingClient(moto.endpoint).client;
  world = await makeWorld(admin, 2);
  backend = fileBackend();
  Object.assign(backend.env, { AWS_ACCESS_KEY_ID: "testing", AWS_SECRET_ACCESS_KEY: "testing", AWS_EC2_METADATA_DISABLED: "true" });
  program = makeProgram("ebs-engine", { "index.js": PROGRAM });
}, 120_000);

afterAll(async () => {
  await moto?.stop();
});

describe("EbsSnapshotSet through the engine", () => {
  it("up takes one set of live's volumes, preview shows no change, destroy deletes only ours", async () => {
    const stack = await openStack(program, "set", backend, {
      spec: { value: JSON.stringify(spec()) },
      volumes: { value: JSON.stringify(world.liveData) },
      name: { value: "engine-base" },
    });
    const out = collector();
    const up = await stack.up({ onOutput: out.onOutput });
    expect(up.summary.result).toBe("succeeded");
    const set = up.outputs.set.value as { name: string; members: Array<{ volume: string; id: string; owner: string }> };
    expect(set.name).toBe("engine-base");
    expect(set.members.map((m) => m.volume)).toEqual(world.liveData);
    expect(up.outputs.owner.value).toBe("ebs-engine/set/EbsSnapshotSet/base");
    // Progress lines from inside the provider reach the user.
    expect(out.text()).toMatch(/CreateSnapshots: snap-\w+ of vol-\w+/);
    const made = await snapshotsNamed("engine-base");
    expect(made.map((s) => s.SnapshotId).sort()).toEqual(set.members.map((m) => m.id).sort());
    expect(made.every((s) => tagsOf(s)[TAGS.owner] === "ebs-engine/set/EbsSnapshotSet/base")).toBe(true);

    const preview = await stack.preview();
    expect(preview.changeSummary).toEqual({ same: 2 });

    // Someone else's snapshot of live with the same set tags (not ours): destroy leaves it.
    const foreign = (await admin.send(new CreateSnapshotCommand({ VolumeId: world.liveData[0] }))).SnapshotId!;
    await admin.send(new CreateTagsCommand({ Resources: [foreign], Tags: [{ Key: "team", Value: "dba" }] }));
    const destroy = await stack.destroy();
    expect(destroy.summary.result).toBe("succeeded");
    expect(await snapshotsNamed("engine-base")).toEqual([]);
    const still = await admin.send(new DescribeSnapshotsCommand({ SnapshotIds: [foreign] }));
    expect(still.Snapshots).toHaveLength(1);
    await stack.workspace.removeStack("set");
  });

  it("a hostile volume id fails in preview naming the field, and nothing is created", async () => {
    const stack = await openStack(program, "hostile", backend, {
      spec: { value: JSON.stringify(spec()) },
      volumes: { value: JSON.stringify([`${world.liveData[0]}; aws ec2 delete-volume`]) },
      name: { value: "hostile" },
    });
    const message = await failureOf(() => stack.preview());
    expect(message).toMatch(/volumes\[0\]: .* is not an EBS volume id/);
    expect(await snapshotsNamed("hostile")).toEqual([]);
    await stack.workspace.removeStack("hostile");
  });

  it("a spec naming live's instance as the rehearsal instance fails in preview with the field", async () => {
    const s = spec();
    s.rehearsal.instanceId = world.liveInstance;
    const stack = await openStack(program, "same-instance", backend, {
      spec: { value: JSON.stringify(s) },
      volumes: { value: JSON.stringify(world.liveData) },
      name: { value: "same" },
    });
    expect(await failureOf(() => stack.preview())).toMatch(/storage\.rehearsal\.instanceId: i-\w+ is live's instance/);
    await stack.workspace.removeStack("same-instance");
  });
});
