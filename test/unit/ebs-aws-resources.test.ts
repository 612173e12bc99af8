/**
 * The `@pulumi/aws` resources the EBS half declares — the rehearsal instance, the Route53
 * record, the DLM policy (and its role) — under `pulumi.runtime.setMocks`: this machine cannot
 * run the AWS provider plugin (see ENVIRONMENT.md), so these assert the arguments a reviewer
 * sees in `pulumi preview`, and the resource options (through a stack transformation), not
 * what AWS does with them. The EBS dynamic resources' registration is checked here too.
 */
import { beforeAll, describe, expect, it } from "vitest";
import * as pulumi from "@pulumi/pulumi";
import { InputError } from "../../providers/errors";

interface Registered {
  type: string;
  name: string;
  inputs: Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
}
const registered: Registered[] = [];
const options = new Map<string, pulumi.ResourceOptions>();
let root: pulumi.ComponentResource;

beforeAll(async () => {
  await pulumi.runtime.setMocks(
    {
      newResource: (args) => {
        registered.push({ type: args.type, name: args.name, inputs: args.inputs });
        const state: Record<string, unknown> = { ...args.inputs };
        if (args.type === "aws:ec2/instance:Instance") Object.assign(state, { privateIp: "10.0.1.20", availabilityZone: "eu-west-1a" });
        if (args.type === "aws:iam/role:Role") state.arn = `arn:aws:iam::123456789012:role/${args.name}`;
        if (args.type === "aws:route53/record:Record") state.fqdn = args.inputs.name;
        return { id: args.type === "aws:ec2/instance:Instance" ? "i-0123456789abcdef9" : `${args.name}-id`, state };
      },
      call: () => ({}),
    },
    "proj",
    "dev",
    true, // preview
  );
  // Resource options are not sent to mocks: a parent's transformation sees them for every child.
  root = new pulumi.ComponentResource("test:index:Root", "root", {}, {
    transformations: [
      (a) => {
        options.set(`${a.type}::${a.name}`, a.opts);
        return undefined;
      },
    ],
  });
});

function resolve<T>(o: pulumi.Output<T>): Promise<T> {
  return new Promise((r) => o.apply((v) => r(v)));
}

async function settle(): Promise<void> {
  await new Promise((r) => setTimeout(r, 50));
}

const live = {
  instanceId: "i-0123456789abcdef0",
  volumes: [
    { volumeId: "vol-0aaaaaaaaaaaaaaa1", mountpoint: "/var/lib/postgresql" },
    { volumeId: "vol-0aaaaaaaaaaaaaaa2", mountpoint: "/var/lib/postgresql" },
    { volumeId: "vol-0aaaaaaaaaaaaaaa3", mountpoint: "/pg_wal" },
  ],
  assemblies: [{ mountpoint: "/var/lib/postgresql", kind: "lvm" as const, vg: "pgdata", lv: "data" }],
};

describe("EbsRehearsalInstance", () => {
  it("creates an instance in live's subnet with the user's security groups, tagged with our owner; terminate on destroy by default", async () => {
    const { EbsRehearsalInstance } = await import("../../understudy");
    const box = new EbsRehearsalInstance("box", {
      region: "eu-west-1",
      create: { ami: "ami-0123456789abcdef0", instanceType: "r6i.2xlarge", subnetId: "subnet-0123456789abcdef0", securityGroupIds: ["sg-0123456789abcdef0"], keyName: "ops", rootVolumeSizeGiB: 50 },
      connection: { user: "admin", privateKey: "KEY" },
      liveInstanceId: live.instanceId,
    }, { parent: root });
    const conn = await resolve(box.connection);
    expect(conn).toEqual({ user: "admin", privateKey: "KEY", host: "10.0.1.20" });
    expect(await pulumi.isSecret(box.connection)).toBe(true);
    await settle();
    const inst = registered.find((r) => r.type === "aws:ec2/instance:Instance" && r.name === "box")!;
    expect(inst.inputs).toMatchObject({
      ami: "ami-0123456789abcdef0",
      instanceType: "r6i.2xlarge",
      subnetId: "subnet-0123456789abcdef0",
      vpcSecurityGroupIds: ["sg-0123456789abcdef0"],
      keyName: "ops",
      rootBlockDevice: { volumeSize: 50, volumeType: "gp3", deleteOnTermination: true },
      tags: { Name: "understudy box", "understudy:owner": "proj/dev/EbsRehearsalInstance/box" },
    });
    expect(options.get("aws:ec2/instance:Instance::box")?.retainOnDelete).toBe(false);
    expect(registered.some((r) => r.name === "box-stop")).toBe(false);
    expect(await resolve(box.target.availabilityZone as pulumi.Output<string>)).toBe("eu-west-1a");
  });

  it("`stop` on destroy: the instance is retained and an EbsInstanceStop stops it (owned only, never live)", async () => {
    const { EbsRehearsalInstance } = await import("../../understudy");
    new EbsRehearsalInstance("kept", {
      region: "eu-west-1",
      create: { launchTemplate: { name: "pg-rehearsal", version: "3" }, instanceType: "r6i.xlarge", subnetId: "subnet-0123456789abcdef0", securityGroupIds: ["sg-0123456789abcdef0"] },
      connection: { user: "admin" },
      onDestroy: "stop",
      liveInstanceId: live.instanceId,
    }, { parent: root });
    await settle();
    expect(options.get("aws:ec2/instance:Instance::kept")?.retainOnDelete).toBe(true);
    const stop = registered.find((r) => r.name === "kept-stop")!;
    expect(stop.type).toBe("pulumi-nodejs:dynamic/understudy:EbsInstanceStop");
    expect(stop.inputs).toMatchObject({ region: "eu-west-1", instanceId: "i-0123456789abcdef9", owner: "proj/dev/EbsRehearsalInstance/kept", liveInstanceId: live.instanceId });
    expect(registered.find((r) => r.name === "kept" && r.type === "aws:ec2/instance:Instance")!.inputs.launchTemplate).toEqual({ name: "pg-rehearsal", version: "3" });
  });

  it("refuses live's instance, bad ids, and both/neither of existing and create", async () => {
    const { EbsRehearsalInstance } = await import("../../understudy");
    const field = (fn: () => unknown) => {
      try {
        fn();
      } catch (e) {
        return InputError.is(e) ? e.field : String(e);
      }
      return "no error";
    };
    const conn = { user: "admin", host: "10.0.0.5" };
    expect(field(() => new EbsRehearsalInstance("x1", { region: "eu-west-1", existing: { instanceId: live.instanceId, availabilityZone: "eu-west-1a" }, connection: conn, liveInstanceId: live.instanceId }))).toBe("existing.instanceId");
    expect(field(() => new EbsRehearsalInstance("x2", { region: "eu-west-1", existing: { instanceId: "i-0fedcba9876543210", availabilityZone: "us-east-1a" }, connection: conn }))).toBe("existing.availabilityZone");
    expect(field(() => new EbsRehearsalInstance("x3", { region: "eu-west-1", connection: conn }))).toBe("create");
    const create = { ami: "ami-0123456789abcdef0", instanceType: "t3.large", subnetId: "subnet-0123456789abcdef0", securityGroupIds: ["sg-0123456789abcdef0"] };
    expect(field(() => new EbsRehearsalInstance("x4", { region: "eu-west-1", create: { ...create, ami: "ami-$(id)" }, connection: conn }))).toBe("create.ami");
    expect(field(() => new EbsRehearsalInstance("x5", { region: "eu-west-1", create: { ...create, securityGroupIds: ["sg-x; y"] }, connection: conn }))).toBe("create.securityGroupIds[0]");
    expect(field(() => new EbsRehearsalInstance("x6", { region: "eu-west-1", create: { ...create, securityGroupIds: [] }, connection: conn }))).toBe("create.securityGroupIds");
    expect(field(() => new EbsRehearsalInstance("x7", { region: "eu-west-1", create, connection: conn, onDestroy: "reboot" as never }))).toBe("onDestroy");
    expect(registered.some((r) => /^x\d$/.test(r.name) && r.type.startsWith("aws:"))).toBe(false);
  });
});

describe("route53Endpoint", () => {
  it("declares a low-TTL record whose value the cut-over owns (ignoreChanges records), kept on destroy", async () => {
    const { route53Endpoint } = await import("../../understudy");
    const ep = route53Endpoint("db", { zoneId: "Z0123456789ABC", name: "db.example.com", initialValue: "db1.internal.example.com", importExisting: true }, { parent: root });
    await settle();
    const rec = registered.find((r) => r.type === "aws:route53/record:Record" && r.name === "db")!;
    expect(rec.inputs).toMatchObject({ zoneId: "Z0123456789ABC", name: "db.example.com", type: "CNAME", ttl: 30, records: ["db1.internal.example.com"], allowOverwrite: false });
    const o = options.get("aws:route53/record:Record::db")! as pulumi.CustomResourceOptions;
    expect(o.ignoreChanges).toEqual(["records"]);
    expect(o.retainOnDelete).toBe(true);
    expect(o.import).toBe("Z0123456789ABC_db.example.com_CNAME");
    expect(ep.switchArgs).toEqual({ zoneId: "Z0123456789ABC", name: "db.example.com", type: "CNAME", ttl: 30 });
  });

  it("refuses a long TTL, a bad value, a bad zone", async () => {
    const { route53Endpoint } = await import("../../understudy");
    expect(() => route53Endpoint("r1", { zoneId: "Z0123456789ABC", name: "db.example.com", initialValue: "x.example.com", ttl: 3600 })).toThrow(/endpoint\.ttl/);
    expect(() => route53Endpoint("r2", { zoneId: "Z0123456789ABC", name: "db.example.com", type: "A", initialValue: "db1.example.com" })).toThrow(/endpoint\.initialValue/);
    expect(() => route53Endpoint("r3", { zoneId: "z-bad", name: "db.example.com", initialValue: "x.example.com" })).toThrow(/endpoint\.zoneId/);
  });
});

describe("EbsStorage.schedule: an AWS DLM policy", () => {
  it("targets live's INSTANCE by the user's existing tags: hourly sets, boot volume excluded, retention counts, tagged for lookups", async () => {
    const { EbsStorage } = await import("../../understudy");
    const storage = new EbsStorage({
      region: "eu-west-1",
      live,
      rehearsal: { instanceId: "i-0fedcba9876543210", availabilityZone: "eu-west-1a", connection: { host: "10.0.1.20" } },
      schedule: { targetTags: { Name: "db1" }, excludeDataVolumeTags: { scratch: "true" }, preScriptDocument: "pg-checkpoint" },
      tags: { team: "dba" },
    });
    const parent = new pulumi.ComponentResource("test:index:Parent", "sched-parent", {}, { parent: root });
    const d = storage.schedule("pg-hourly", { volumes: ["vol-0aaaaaaaaaaaaaaa1", "vol-0aaaaaaaaaaaaaaa3"], every: "1h", keep: { hourly: 48, daily: 14 }, prefix: "hourly" }, { parent });
    expect(await resolve(d.cron)).toBe("rate(1 hour)");
    expect(await resolve(d.prefix)).toBe("hourly");
    expect(await resolve(d.owner)).toBe("proj/dev/SnapshotSchedule/pg-hourly");
    await settle();
    const policy = registered.find((r) => r.type === "aws:dlm/lifecyclePolicy:LifecyclePolicy" && r.name === "pg-hourly")!;
    expect(policy.inputs.executionRoleArn).toBe("arn:aws:iam::123456789012:role/pg-hourly-dlm");
    expect(policy.inputs.state).toBe("ENABLED");
    expect(policy.inputs.tags).toEqual({ team: "dba", "understudy:owner": "proj/dev/SnapshotSchedule/pg-hourly" });
    const pd = policy.inputs.policyDetails;
    expect(pd).toMatchObject({
      policyType: "EBS_SNAPSHOT_MANAGEMENT",
      resourceTypes: ["INSTANCE"],
      targetTags: { Name: "db1" },
      parameters: { excludeBootVolume: true, noReboot: true, excludeDataVolumeTags: { scratch: "true" } },
    });
    const tags = { "understudy:schedule": "hourly", "understudy:owner": "proj/dev/SnapshotSchedule/pg-hourly" };
    const script = { stages: ["PRE"], executionHandlerService: "AWS_SYSTEMS_MANAGER", executionHandler: "pg-checkpoint", executeOperationOnScriptFailure: true };
    expect(pd.schedules).toHaveLength(2);
    expect(pd.schedules[0]).toMatchObject({ name: "1h", copyTags: false, tagsToAdd: tags, createRule: { interval: 1, intervalUnit: "HOURS", scripts: script }, retainRule: { count: 48 } });
    expect(pd.schedules[1]).toMatchObject({ name: "daily", tagsToAdd: tags, createRule: { cronExpression: "cron(0 0 * * ? *)" }, retainRule: { count: 14 } });
    const role = registered.find((r) => r.type === "aws:iam/role:Role" && r.name === "pg-hourly-dlm")!;
    expect(JSON.parse(role.inputs.assumeRolePolicy).Statement[0].Principal).toEqual({ Service: "dlm.amazonaws.com" });
    const attach = registered.find((r) => r.type === "aws:iam/rolePolicyAttachment:RolePolicyAttachment" && r.name === "pg-hourly-dlm")!;
    expect(attach.inputs.policyArn).toBe("arn:aws:iam::aws:policy/service-role/AWSDataLifecycleManagerServiceRole");
    expect(options.get("aws:dlm/lifecyclePolicy:LifecyclePolicy::pg-hourly")?.parent).toBe(parent);
    expect(d.resources.map((r) => (r as pulumi.CustomResource).constructor.name)).toHaveLength(3);
  });

  it("uses a given role and a daily-only schedule; refuses what DLM cannot do, clones, and a missing target", async () => {
    const { EbsStorage } = await import("../../understudy");
    const base = { region: "eu-west-1", live, rehearsal: { instanceId: "i-0fedcba9876543210", availabilityZone: "eu-west-1a", connection: { host: "10.0.1.20" } } };
    const s = new EbsStorage({ ...base, schedule: { targetTags: { Name: "db1" }, executionRoleArn: "arn:aws:iam::123456789012:role/dlm" } });
    const d = s.schedule("pg-daily", { volumes: ["vol-0aaaaaaaaaaaaaaa1"], every: "1d", keep: { hourly: 7 } }, {});
    expect(await resolve(d.cron)).toBe("cron(0 0 * * ? *)");
    await settle();
    const p = registered.find((r) => r.name === "pg-daily" && r.type.startsWith("aws:dlm"))!;
    expect(p.inputs.executionRoleArn).toBe("arn:aws:iam::123456789012:role/dlm");
    expect(p.inputs.policyDetails.schedules).toHaveLength(1);
    expect(p.inputs.policyDetails.schedules[0].createRule).toMatchObject({ interval: 24, intervalUnit: "HOURS" });
    expect(registered.some((r) => r.name === "pg-daily-dlm")).toBe(false);
    const field = (fn: () => unknown) => {
      try {
        fn();
      } catch (e) {
        return InputError.is(e) ? e.field : String(e);
      }
      return "no error";
    };
    expect(field(() => s.schedule("q1", { volumes: ["vol-0aaaaaaaaaaaaaaa1"], every: "15m" }, {}))).toBe("every");
    expect(field(() => s.schedule("q2", { volumes: ["vol-0aaaaaaaaaaaaaaa1"], every: "5h" }, {}))).toBe("every");
    expect(field(() => s.schedule("q3", { volumes: ["rehearsal-clone"] }, {}))).toBe("volumes[0]");
    expect(field(() => s.schedule("q4", { volumes: ["vol-0aaaaaaaaaaaaaaa2"] }, {}))).toBe("volumes[0]");
    expect(field(() => new EbsStorage(base).schedule("q5", { volumes: ["vol-0aaaaaaaaaaaaaaa1"] }, {}))).toBe("storage.schedule");
    expect(field(() => new EbsStorage({ ...base, schedule: { targetTags: {} } }))).toBe("storage.schedule.targetTags");
    expect(field(() => new EbsStorage({ ...base, schedule: { targetTags: { "aws:cloudformation:x": "1" } } }))).toBe("storage.schedule.targetTags.aws:cloudformation:x");
    expect(registered.some((r) => /^q\d/.test(r.name))).toBe(false);
  });
});

describe("EbsStorage: snapshot sets and clones as dynamic resources", () => {
  it("declares EbsSnapshotSet (hook on live when a liveConnection is given) and EbsCloneSet with secrets and owners", async () => {
    const { EbsStorage } = await import("../../understudy");
    const liveConn = { host: "10.0.1.10", user: "postgres", privateKey: "LIVEKEY" };
    const s = new EbsStorage({
      region: "eu-west-1",
      live,
      rehearsal: { instanceId: "i-0fedcba9876543210", availabilityZone: "eu-west-1a", connection: { host: "10.0.1.20", privateKey: "KEY" } },
      liveConnection: liveConn,
    });
    expect(s.kind).toBe("ebs");
    const snap = s.snapshotSet("base", { volumes: ["vol-0aaaaaaaaaaaaaaa1", "vol-0aaaaaaaaaaaaaaa3"], snapshotName: "understudy-dev-base", hook: ["psql", "-c", "CHECKPOINT"], hookUser: "postgres" }, {});
    const requests = s.cloneRequests("rehearsal", ["vol-0aaaaaaaaaaaaaaa1", "vol-0aaaaaaaaaaaaaaa3"]);
    expect(requests).toEqual([
      { source: "vol-0aaaaaaaaaaaaaaa1", target: "rehearsal" },
      { source: "vol-0aaaaaaaaaaaaaaa3", target: "rehearsal-2" },
    ]);
    s.cloneSet("rehearsal", { set: snap.set, requests }, { dependsOn: snap.resources });
    await settle();
    const set = registered.find((r) => r.type === "pulumi-nodejs:dynamic/understudy:EbsSnapshotSet" && r.name === "base")!;
    expect(set.inputs.owner).toBe("proj/dev/EbsSnapshotSet/base");
    expect(set.inputs.spec).toMatchObject({ kind: "ebs", region: "eu-west-1", rehearsal: { instanceId: "i-0fedcba9876543210" } });
    expect(set.inputs.hookConnection.value).toEqual(liveConn);
    expect(set.inputs.connection.value).toEqual({ host: "10.0.1.20", privateKey: "KEY" });
    const clone = registered.find((r) => r.type === "pulumi-nodejs:dynamic/understudy:EbsCloneSet" && r.name === "rehearsal")!;
    expect(clone.inputs.owner).toBe("proj/dev/EbsCloneSet/rehearsal");
    expect(clone.inputs.requests).toEqual(requests);
    expect(() => s.cloneRequests("Bad Id", ["vol-0aaaaaaaaaaaaaaa1"])).toThrow(InputError);
    expect(() => s.cloneRequests("ok", ["vol-0aaaaaaaaaaaaaaa2"])).toThrow(/part of the filesystem at \/var\/lib\/postgresql/);
  });

  it("refuses a hostile spec at construction, before anything is declared", async () => {
    const { EbsStorage } = await import("../../understudy");
    const before = registered.length;
    expect(() => new EbsStorage({ region: "eu-west-1", live: { ...live, instanceId: "i-$(reboot)" }, rehearsal: { instanceId: "i-0fedcba9876543210", availabilityZone: "eu-west-1a", connection: { host: "h" } } })).toThrow(
      /storage\.live\.instanceId/,
    );
    expect(() => new EbsStorage({ region: "eu-west-1", live, rehearsal: { instanceId: "i-0fedcba9876543210", availabilityZone: "eu-west-2a", connection: { host: "h" } } })).toThrow(
      /storage\.rehearsal\.availabilityZone/,
    );
    expect(registered.length).toBe(before);
  });
});

describe("Promotion on EBS storage", () => {
  // It used to be refused on EBS whatever the arguments; now it runs the same cut-over (test/unit/promotion-ebs.test.ts),
  // and what it cannot do without is refused at construction, naming the field.
  it("without storage.liveConnection (where live is stopped) is refused at construction, naming it, before anything is declared", async () => {
    const { Promotion, EbsStorage } = await import("../../understudy");
    const storage = new EbsStorage({ region: "eu-west-1", live, rehearsal: { instanceId: "i-0fedcba9876543210", availabilityZone: "eu-west-1a", connection: { host: "h" } } });
    const before = registered.length;
    // Only what the Promotion reads before its check: the rehearsal's storage.
    const rehearsal = { storage } as unknown as ConstructorParameters<typeof Promotion>[1]["rehearsal"];
    let err: unknown;
    try {
      new Promotion("go-live", { rehearsal, promote: false, endpoint: { name: "app", listenPort: 6432, database: "app" } });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(pulumi.InputPropertyError);
    expect((err as InstanceType<typeof pulumi.InputPropertyError>).propertyPath).toBe("storage.liveConnection");
    expect(String((err as Error).message)).toMatch(/stops live.s PostgreSQL cleanly on live.s instance/);
    await settle();
    expect(registered.slice(before).map((r) => r.type)).toEqual([]);
  });
});
