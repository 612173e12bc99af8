/**
 * Hostile input to the EBS backend: every id, tag, device name, zone, region, path and name
 * is refused with an InputError naming the field, before any AWS call or command. The EC2
 * client here records every send() (and fails it); the host records every command.
 */
import { describe, expect, it } from "vitest";
import type { EC2Client } from "@aws-sdk/client-ec2";
import { InputError } from "../../providers/errors";
import type { Host } from "../../providers/host/types";
import { EbsStorageSpec, validateEbsSpec } from "../../providers/ebs/spec";
import { EbsStorage, createStorage, validateSpec } from "../../providers/ebs/storage";
import { EbsDriver } from "../../providers/ebs/driver";

const GOOD: EbsStorageSpec = {
  kind: "ebs",
  region: "eu-west-1",
  live: {
    instanceId: "i-0123456789abcdef0",
    volumes: [
      { volumeId: "vol-0123456789abcdef0", mountpoint: "/var/lib/postgresql", device: "/dev/sdf" },
      { volumeId: "vol-0123456789abcdef1", mountpoint: "/var/lib/postgresql", device: "/dev/sdg" },
      { volumeId: "vol-0123456789abcdef2", mountpoint: "/wal" },
    ],
    assemblies: [{ mountpoint: "/var/lib/postgresql", kind: "lvm", vg: "pgdata", lv: "data" }],
  },
  rehearsal: { instanceId: "i-0fedcba9876543210", availabilityZone: "eu-west-1a" },
  volume: { iops: 6000, throughput: 500 },
  tags: { team: "dba", "cost-center": "42" },
};

const HOSTILE_STRINGS = [
  "",
  " ",
  "x; rm -rf /",
  "$(touch /tmp/pwned)",
  "`id`",
  "a\nb",
  "a\0b",
  "../../etc",
  "-rf",
  "*",
  "ünïcödé",
  "\x1b[31mred",
  "x".repeat(300),
];

function calls() {
  const sent: unknown[] = [];
  const client = {
    send: async (c: unknown) => {
      sent.push(c);
      throw new Error("no AWS call may be made in this test");
    },
  } as unknown as EC2Client;
  const commands: string[][] = [];
  const host: Host = {
    description: "recording-host",
    run: async (argv) => {
      commands.push([...argv]);
      throw new Error("no command may run in this test");
    },
    runAs: async (_u, argv) => {
      commands.push([...argv]);
      throw new Error("no command may run in this test");
    },
    writeFile: async () => {
      throw new Error("no file may be written");
    },
    close: async () => undefined,
  };
  return { sent, client, commands, host };
}

function clone<T>(x: T): T {
  return JSON.parse(JSON.stringify(x)) as T;
}

/** Set a dotted path in a copy of the spec. */
function withField(path: (string | number)[], value: unknown): unknown {
  const s = clone(GOOD) as unknown as Record<string | number, unknown>;
  let o = s;
  for (const k of path.slice(0, -1)) o = o[k] as Record<string | number, unknown>;
  o[path[path.length - 1]] = value;
  return s;
}

function fieldOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (InputError.is(e)) return e.field;
    throw e;
  }
  throw new Error("expected an InputError");
}

describe("EBS spec validation (no I/O)", () => {
  it("accepts a good spec (and the registry's entry point agrees)", () => {
    expect(validateEbsSpec(GOOD).kind).toBe("ebs");
    expect(validateSpec(GOOD as never, "storage")).toBeTruthy();
  });

  const cases: Array<[string, (string | number)[], unknown[]]> = [
    ["region", ["region"], ["EU-WEST-1", "eu-west", "eu_west_1", "eu-west-1a", ...HOSTILE_STRINGS, 1]],
    ["endpoint", ["endpoint"], ["ftp://x", "http://user:pw@host", "http://h/path", "http://h?x=1", "not a url", "javascript:alert(1)", ...HOSTILE_STRINGS]],
    ["live.instanceId", ["live", "instanceId"], ["i-123", "i-0123456789ABCDEF0", "vol-0123456789abcdef0", "i-0123456789abcdef0 ", ...HOSTILE_STRINGS, null]],
    ["live.volumes[0].volumeId", ["live", "volumes", 0, "volumeId"], ["vol-123", "vol-0123456789abcdeg0", "snap-0123456789abcdef0", "vol-0123456789abcdef0;x", ...HOSTILE_STRINGS, 7]],
    ["live.volumes[0].mountpoint", ["live", "volumes", 0, "mountpoint"], ["relative", "/a/../b", "/a//b", "/a/", "/", "/etc", "/var", "/a b", "/a;b", "/a$(x)", ...HOSTILE_STRINGS]],
    ["live.volumes[0].device", ["live", "volumes", 0, "device"], ["/dev/sda", "/dev/sdf1", "/dev/nvme1n1p1", "sdf", "/dev/../etc/passwd", "/dev/sdf; reboot", ...HOSTILE_STRINGS]],
    ["live.assemblies[0].vg", ["live", "assemblies", 0, "vg"], ["-vg", "vg/x", "vg x", "..", ...HOSTILE_STRINGS]],
    ["live.assemblies[0].lv", ["live", "assemblies", 0, "lv"], ["-lv", "lv;x", "$(x)", ""]],
    ["live.assemblies[0].kind", ["live", "assemblies", 0, "kind"], ["zfs", "raid", "", "single"]],
    ["rehearsal.instanceId", ["rehearsal", "instanceId"], ["i-0123456789abcdef0", "i-xyz", ...HOSTILE_STRINGS]],
    ["rehearsal.availabilityZone", ["rehearsal", "availabilityZone"], ["us-east-1a", "eu-west-1", "eu-west-1A", "eu-west-1ab", "euw1-az1", "eu-west-1a; x", ...HOSTILE_STRINGS]],
    ["volume.iops", ["volume", "iops"], [100, 2999, 80001, 3000.5, "6000", -1]],
    ["volume.throughput", ["volume", "throughput"], [124, 2001, "500"]],
    ["volume.type", ["volume", "type"], ["io2", "gp2", "st1", ""]],
    ["volume.initializationRate", ["volume", "initializationRate"], [99, 301, "200"]],
    ["mountRoot", ["mountRoot"], ["rel", "/", "/a/..", "/usr", ...HOSTILE_STRINGS]],
    ["maxAttempts", ["maxAttempts"], [0, 21, 1.5, "3"]],
    ["waits.snapshotSeconds", ["waits"], [{ snapshotSeconds: 0 }, { snapshotSeconds: -5 }, { snapshotSeconds: "1h" }]],
    ["waits.bogus", ["waits"], [{ bogus: 1 }]],
  ];

  for (const [field, path, values] of cases) {
    it(`refuses hostile ${field}, naming it`, () => {
      for (const v of values) expect(fieldOf(() => validateEbsSpec(withField(path, v))), `value ${JSON.stringify(v)}`).toBe(`storage.${field}`);
    });
  }

  it("refuses hostile tag keys and values, and our own namespace", () => {
    const bad: Array<[Record<string, unknown>, string]> = [
      [{ "aws:x": "1" }, "storage.tags.aws:x"],
      [{ "understudy:owner": "me" }, "storage.tags.understudy:owner"],
      [{ "a;b": "1" }, "storage.tags.a;b"],
      [{ "k\n": "1" }, "storage.tags.k\n"],
      [{ [""]: "1" }, "storage.tags."],
      [{ ["k".repeat(129)]: "1" }, `storage.tags.${"k".repeat(129)}`],
      [{ team: "$(id)" }, "storage.tags.team"],
      [{ team: "a\nb" }, "storage.tags.team"],
      [{ team: "v".repeat(257) }, "storage.tags.team"],
      [{ team: 5 }, "storage.tags.team"],
    ];
    for (const [tags, field] of bad) expect(fieldOf(() => validateEbsSpec({ ...clone(GOOD), tags }))).toBe(field);
  });

  it("refuses structural mistakes with the field", () => {
    expect(fieldOf(() => validateEbsSpec({ ...clone(GOOD), kind: "zfs" }))).toBe("storage.kind");
    expect(fieldOf(() => validateEbsSpec({ ...clone(GOOD), extra: 1 }))).toBe("storage.extra");
    expect(fieldOf(() => validateEbsSpec(withField(["live", "volumes"], [])))).toBe("storage.live.volumes");
    expect(fieldOf(() => validateEbsSpec(withField(["live", "assemblies"], [])))).toBe("storage.live.assemblies");
    const dup = clone(GOOD);
    dup.live.volumes[1].volumeId = dup.live.volumes[0].volumeId;
    expect(fieldOf(() => validateEbsSpec(dup))).toBe("storage.live.volumes[1].volumeId");
    expect(fieldOf(() => validateEbsSpec(withField(["rehearsal", "instanceId"], GOOD.live.instanceId)))).toBe("storage.rehearsal.instanceId");
    expect(fieldOf(() => validateEbsSpec(withField(["volume"], { initializationRate: 200, fastSnapshotRestore: true })))).toBe("storage.volume.initializationRate");
    expect(fieldOf(() => validateEbsSpec(withField(["live", "assemblies", 0, "mountpoint"], "/elsewhere")))).toBe("storage.live.assemblies[0].mountpoint");
    const local = withField(["rehearsal", "availabilityZone"], "eu-west-1-lax-1a") as EbsStorageSpec;
    expect(validateEbsSpec(local).rehearsal.availabilityZone).toBe("eu-west-1-lax-1a");
    local.volume = { fastSnapshotRestore: true };
    expect(fieldOf(() => validateEbsSpec(local))).toBe("storage.volume.fastSnapshotRestore");
  });

  it("builds no client and reads no environment when validating or constructing", () => {
    const { sent, client, commands, host } = calls();
    const s = new EbsStorage(GOOD, host, { client });
    expect(s.kind).toBe("ebs");
    expect(createStorage(GOOD as never, host).description).toContain("eu-west-1");
    expect(sent).toEqual([]);
    expect(commands).toEqual([]);
  });
});

describe("EbsStorage methods refuse hostile ids before any call", () => {
  const hostileIds = ["vol-0123456789abcdef0; rm -rf /", "../x", "Rehearsal", "vol-", "snap-0123456789abcdef0", "i-abc", "$(id)", "", "a".repeat(64), "x y", "-rf"];

  it("volume ids: validateVolumeId, volume, snapshot, findSnapshotSet, listSnapshots, rollback, destroy*, marks", async () => {
    const { sent, client, commands, host } = calls();
    const s = new EbsStorage(GOOD, host, { client });
    for (const id of hostileIds) {
      const attempts: Array<[string, () => Promise<unknown>]> = [
        ["volume", () => s.volume(id)],
        ["volumes[0]", () => s.snapshot([id], "s01", "owner")],
        ["volumes[0]", () => s.findSnapshotSet([id], "s01")],
        ["volume", () => s.listSnapshots(id)],
        ["volumes[0]", () => s.rollback([id], "s01", "owner")],
        ["volumes[0]", () => s.destroySnapshotSet([id], "s01", "owner")],
        ["volume", () => s.destroyVolume(id, "owner")],
        ["volume", () => s.getMark(id, "head")],
        ["volume", () => s.setMark(id, "head", "x")],
      ];
      for (const [field, fn] of attempts) {
        const e = await fn().then(
          () => undefined,
          (x: unknown) => x,
        );
        expect(InputError.is(e), `${field} ${JSON.stringify(id)}: ${String(e)}`).toBe(true);
        expect((e as InputError).field).toBe(field);
      }
      expect(() => s.validateVolumeId(id, "x")).toThrow(InputError);
    }
    expect(sent).toEqual([]);
    expect(commands).toEqual([]);
  });

  it("a declared second member of an LVM filesystem, or an undeclared live volume, is refused with a reason", () => {
    const { client, host } = calls();
    const s = new EbsStorage(GOOD, host, { client });
    expect(() => s.validateVolumeId("vol-0123456789abcdef1", "source")).toThrow(/member 2 of the lvm filesystem at \/var\/lib\/postgresql; name that filesystem by its first volume vol-0123456789abcdef0/);
    expect(() => s.validateVolumeId("vol-0123456789abcdef9", "source")).toThrow(/not one of live's data volumes/);
    expect(s.validateVolumeId("vol-0123456789abcdef0", "source")).toBe("vol-0123456789abcdef0");
    expect(s.validateVolumeId("rehearsal-pg13", "target")).toBe("rehearsal-pg13");
  });

  it("snapshot names, owners, clone requests and mark values", async () => {
    const { sent, client, commands, host } = calls();
    const s = new EbsStorage(GOOD, host, { client });
    for (const name of ["", "-x", "a b", "a/b", "a;b", "$(id)", "n".repeat(129), "ü"]) {
      await expect(s.snapshot(["vol-0123456789abcdef0"], name, "o")).rejects.toMatchObject({ field: "name" });
      expect(() => s.validateSnapshotName(name, "steps[0].name")).toThrow(/steps\[0\]\.name/);
    }
    await expect(s.snapshot(["vol-0123456789abcdef0"], "s01", "")).rejects.toMatchObject({ field: "owner" });
    await expect(s.snapshot(["vol-0123456789abcdef0"], "s01", "o\nx")).rejects.toMatchObject({ field: "owner" });
    await expect(s.snapshot(["vol-0123456789abcdef0", "c1"], "s01", "o")).rejects.toMatchObject({ field: "volumes" });
    const set = { name: "s01", createdAt: "", members: [{ volume: "vol-0123456789abcdef0", id: "snap-0123456789abcdef0", createdAt: "" }] };
    const bad: Array<[unknown, string]> = [
      [[{ source: "vol-0123456789abcdef0", target: "Bad Id" }], "requests[0].target"],
      [[{ source: "vol-0123456789abcdef0", target: "vol-0123456789abcdef5" }], "requests[0].target"],
      [[{ source: "vol-0123456789abcdef2", target: "c1" }], "requests[0].source"],
      [[{ source: "vol-0123456789abcdef0", target: "c1", mountpoint: "/etc" }], "requests[0].mountpoint"],
      [[{ source: "vol-0123456789abcdef0", target: "c1", mountpoint: "/a/../b" }], "requests[0].mountpoint"],
      [[{ source: "vol-0123456789abcdef0", target: "c1", properties: { iops: "1" } }], "requests[0].properties.iops"],
      [[{ source: "vol-0123456789abcdef0", target: "c1", properties: { deleteOnTermination: "true" } }], "requests[0].properties.deleteOnTermination"],
      [[{ source: "vol-0123456789abcdef0", target: "c1" }, { source: "vol-0123456789abcdef0", target: "c1" }], "requests[1].target"],
    ];
    for (const [requests, field] of bad) await expect(s.clone(set, requests as never, "o")).rejects.toMatchObject({ field });
    const badSnap = { ...set, members: [{ ...set.members[0], id: "snap-0123456789abcdef0+$(id)" }] };
    await expect(s.clone(badSnap, [{ source: "vol-0123456789abcdef0", target: "c1" }], "o")).rejects.toBeInstanceOf(InputError);
    await expect(s.setMark("c1", "head", "a\nb")).rejects.toMatchObject({ field: "value" });
    await expect(s.setMark("c1", "bogus" as never, "x")).rejects.toMatchObject({ field: "key" });
    await expect(s.volumeOfPath("relative/path")).rejects.toMatchObject({ field: "path" });
    expect(sent).toEqual([]);
    expect(commands).toEqual([]);
  });

  it("the driver validates its own ids too (defence in depth)", async () => {
    const { sent, client } = calls();
    const d = new EbsDriver({ region: "eu-west-1", client });
    await expect(d.deleteVolume("vol-x; rm", "o")).rejects.toMatchObject({ field: "volumeId" });
    await expect(d.deleteSnapshot("snap-../../", "o")).rejects.toMatchObject({ field: "snapshotId" });
    await expect(d.attachVolume("vol-0123456789abcdef0", "i-$(id)", "o")).rejects.toMatchObject({ field: "instanceId" });
    await expect(d.createVolume({ snapshotId: "snap-1", zone: "eu-west-1a", tags: { "understudy:owner": "o" } })).rejects.toMatchObject({ field: "snapshotId" });
    expect(sent).toEqual([]);
  });
});
