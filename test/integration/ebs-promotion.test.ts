/**
 * A promotion and a roll-back on EBS through the runner (providers/runner/cutover.ts `promote`
 * and `rollBack`, in the environment the CutOver provider builds: `cutoverEnv`), with a Route53
 * record as the swap. What is real and what stands in:
 * - REAL moto server for every EC2 and Route53 call (test/harness/moto.ts): the final snapshot
 *   set (CreateSnapshots on live's instance), the new live's volumes (CreateVolume,
 *   AttachVolume on the new live's instance), the record's UPSERT and its INSYNC wait;
 * - REAL PostgreSQL 13 (live) and 15 (the new live), REAL pg_upgrade --link on the clone;
 * - STAND-IN for EBS blocks: loop devices (as in ebs-storage.test.ts). Live's data volume is an
 *   ext4 image mounted at live's path; when moto answers CreateSnapshots a middleware copies the
 *   image (what the snapshot holds); a volume made from that snapshot appears, through the
 *   test-only device lookup, as a loop device holding a copy;
 * - STAND-IN for the two instances: live runs on this machine; the new live's "instance" is a
 *   network namespace on this machine (`nsenter --net`, its own ports, the same filesystem), so
 *   that both listen on live's port, as they do on two instances behind one DNS name. The
 *   clone is mounted under mountRoot so that it does not cover live's path.
 * Ports 30300-30303 (in each namespace). No zfs-fuse.
 */
import { ChangeResourceRecordSetsCommand, CreateHostedZoneCommand, ListResourceRecordSetsCommand, Route53Client } from "@aws-sdk/client-route-53";
import { EC2Client } from "@aws-sdk/client-ec2";
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { EbsStorageSpec } from "../../providers/ebs/spec";
import { EbsStorage } from "../../providers/ebs/storage";
import { TAGS } from "../../providers/ebs/driver";
import type { StorageSpec } from "../../providers/storage/types";
import { checkCutOver, cutoverEnv, type CutOverInputs } from "../../providers/promotion/cutover";
import { promote, rollBack, type PromoteResult } from "../../providers/runner/cutover";
import { PhaseError } from "../../providers/runner/phases";
import { makeWorld, recordingClient, type RecordingClient, type World } from "../harness/ec2";
import { LoopLab } from "../harness/loop";
import { EbsBlocks } from "../harness/ebs-blocks";
import { startMoto, motoCredentials, type Moto } from "../harness/moto";
import { stopServersUnder } from "../harness/postgres";
import { NetnsHost, RecordingLocal } from "../harness/instance-hosts";

const NS = `usaws${process.pid}`;
const LIVE_ROOT = "/srv/usaws-live";
const NEW_ROOT = "/srv/usaws-new";
const LIVE_SOCK = "/srv/usaws-live-sock";
const NEW_SOCK = "/srv/usaws-new-sock";
const PORT = 30300;
const PG13 = "/usr/lib/postgresql/13/bin";
const PG15 = "/usr/lib/postgresql/15/bin";
const OWNER = "proj/usaws/Promotion/go-live";
const LIVE_ADDR = "db1.internal.example.test";
const NEW_ADDR = "rehearsal.internal.example.test";
const ROWS = 500;

let moto: Moto;
let admin: EC2Client;
let world: World;
let rec: RecordingClient;
let r53: Route53Client;
let zoneId: string;
let storage: EbsStorage;
let spec: EbsStorageSpec;
const lab = new LoopLab("usaws");
const blocks = new EbsBlocks(lab, () => admin);
/** Live's instance, standing in: this machine; every command recorded (which host stopped live?). */
const liveHost = new RecordingLocal();
let liveImage = "";

function sh(...argv: string[]): string {
  return execFileSync(argv[0], argv.slice(1), { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}
function asPg(...argv: string[]): string {
  return sh("runuser", "-u", "postgres", "--", ...argv);
}
/** psql on a server by its socket directory (in whatever namespace it runs: unix sockets are files). */
function q(sock: string, sql: string, db = "app"): string {
  return asPg(`${PG15}/psql`, "-h", sock, "-p", String(PORT), "-d", db, "-XAtc", sql).trim();
}

/** The new live's instance, standing in: a network namespace of this machine. */
const newHost = new NetnsHost(NS);

async function recordValue(): Promise<string> {
  const r = await r53.send(new ListResourceRecordSetsCommand({ HostedZoneId: zoneId }));
  return (r.ResourceRecordSets ?? []).find((x) => x.Type === "CNAME")!.ResourceRecords![0].Value!.replace(/\.$/, "");
}

function liveDataDir(): string {
  return `${LIVE_ROOT}/data/13/main`;
}
function liveRunning(): boolean {
  try {
    asPg(`${PG13}/pg_ctl`, "status", "-D", liveDataDir());
    return true;
  } catch {
    return false;
  }
}

function inputs(over: Partial<CutOverInputs> = {}): CutOverInputs {
  return {
    label: "go-live",
    owner: OWNER,
    stack: "usaws",
    promote: true,
    storage: spec as unknown as StorageSpec,
    endpoint: { kind: "route53", zoneId, name: "db.example.test", ttl: 30, apiEndpoint: moto.endpoint, waitSeconds: 20, minDelaySeconds: 1 },
    database: "app",
    databases: ["app"],
    pauseTimeoutMs: 10_000,
    serverHost: LIVE_ADDR,
    newServerHost: NEW_ADDR,
    switchoverTimeoutMs: 300_000,
    live: { dataset: world.liveData[0], pgdata: "13/main", version: 13, binDir: PG13, osUser: "postgres", port: PORT, socketDir: LIVE_SOCK, volumes: [world.liveData[0]] },
    newLive: { dataset: "go-live-pg15", port: PORT, socketDir: NEW_SOCK, listen: "*" },
    to: 15,
    toBinDir: PG15,
    mode: "link",
    steps: [
      { name: "recover", kind: "recover", cutover: false },
      { name: "upgrade", kind: "upgrade", cutover: true },
      { name: "start", kind: "start", cutover: true },
      { name: "post-upgrade", kind: "post-upgrade", cutover: true },
    ],
    assertions: [{ name: "every row", sql: `SELECT count(*) = ${ROWS} FROM t` }],
    rehearsal: { name: "r", status: "passed", predictedCutoverMs: 8_000 },
    method: "replay",
    ...over,
  };
}

/**
 * Every EC2 call that acts on live's volume or live's instance (names it as the thing acted on:
 * VolumeId(s), Resources, InstanceId(s), the instance of CreateSnapshots), by command. A tag
 * VALUE naming live (a clone's `understudy:source`) is not a call on live.
 */
function callsOnLive(from = 0): string[] {
  const ids = [world.liveData[0], world.liveInstance];
  const targets = (x: Record<string, unknown>): unknown[] => [
    x.VolumeId, x.InstanceId, ...((x.VolumeIds as unknown[]) ?? []), ...((x.InstanceIds as unknown[]) ?? []), ...((x.Resources as unknown[]) ?? []),
    (x.InstanceSpecification as { InstanceId?: string } | undefined)?.InstanceId,
  ];
  return rec.calls.slice(from).filter((_c, i) => targets(rec.inputs[from + i]).some((t) => ids.includes(t as string)));
}
const READS = new Set(["DescribeVolumesCommand", "DescribeInstancesCommand", "DescribeSnapshotsCommand", "CreateSnapshotsCommand"]);

beforeAll(async () => {
  motoCredentials();
  moto = await startMoto();
  admin = recordingClient(moto.endpoint).client;
  world = await makeWorld(admin, 1);
  r53 = new Route53Client({ region: "us-east-1", endpoint: moto.endpoint, credentials: { accessKeyId: "testing", secretAccessKey: "testing" } });
  const z = await r53.send(new CreateHostedZoneCommand({ Name: "example.test", CallerReference: `usaws${Date.now()}` }));
  zoneId = z.HostedZone!.Id!.replace(/^\/hostedzone\//, "");
  await r53.send(new ChangeResourceRecordSetsCommand({
    HostedZoneId: zoneId,
    ChangeBatch: { Changes: [{ Action: "CREATE", ResourceRecordSet: { Name: "db.example.test", Type: "CNAME", TTL: 30, ResourceRecords: [{ Value: LIVE_ADDR }] } }] },
  }));
  // The new live's instance: a network namespace with its loopback up.
  sh("ip", "netns", "add", NS);
  sh("ip", "-n", NS, "link", "set", "lo", "up");
  // Live: PostgreSQL 13 on an ext4 "EBS volume" mounted at live's path.
  liveImage = lab.image("live-data", 256);
  const dev = lab.attach(liveImage);
  lab.mkfs(dev, "ext4");
  fs.mkdirSync(`${LIVE_ROOT}/data`, { recursive: true });
  sh("mount", dev, `${LIVE_ROOT}/data`);
  for (const d of [`${LIVE_ROOT}/data`, LIVE_SOCK, NEW_SOCK]) {
    fs.mkdirSync(d, { recursive: true });
    sh("chown", "postgres:postgres", d);
  }
  asPg("mkdir", "-p", `${LIVE_ROOT}/data/13`);
  asPg(`${PG13}/initdb`, "-D", liveDataDir(), "--auth=trust", "-U", "postgres");
  asPg(`${PG13}/pg_ctl`, "start", "-w", "-D", liveDataDir(), "-l", `${LIVE_ROOT}/data/13/live.log`, "-o", `-p ${PORT} -k ${LIVE_SOCK} -c listen_addresses=''`);
  asPg(`${PG13}/psql`, "-h", LIVE_SOCK, "-p", String(PORT), "-d", "postgres", "-XAtc", "CREATE DATABASE app");
  q(LIVE_SOCK, `CREATE TABLE t (id serial PRIMARY KEY, v text); INSERT INTO t (v) SELECT 'row ' || g FROM generate_series(1, ${ROWS}) g`);
  blocks.images.set(world.liveData[0], liveImage);
  rec = recordingClient(moto.endpoint);
  blocks.watchSnapshots(rec.client, "usawsSnapshotBlocks");
  spec = {
    kind: "ebs",
    region: "us-east-1",
    endpoint: moto.endpoint,
    live: { instanceId: world.liveInstance, volumes: [{ volumeId: world.liveData[0], mountpoint: `${LIVE_ROOT}/data`, device: "/dev/sdf" }] },
    rehearsal: { instanceId: world.rehearsalInstance, availabilityZone: "us-east-1a" },
    mountRoot: NEW_ROOT,
    waits: { minDelaySeconds: 1, maxDelaySeconds: 1, snapshotSeconds: 20, volumeSeconds: 20, deviceSeconds: 10 },
  };
  storage = new EbsStorage(spec, newHost, { client: rec.client, deviceLookup: blocks.lookup });
}, 180_000);

afterAll(async () => {
  await stopServersUnder(LIVE_ROOT).catch(() => undefined);
  await stopServersUnder(NEW_ROOT).catch(() => undefined);
  lab.cleanup([LIVE_ROOT, NEW_ROOT]);
  try {
    sh("ip", "netns", "delete", NS);
  } catch {
    // not created
  }
  for (const d of [LIVE_ROOT, NEW_ROOT, LIVE_SOCK, NEW_SOCK]) fs.rmSync(d, { recursive: true, force: true });
  await moto?.stop();
}, 120_000);

let promoted: PromoteResult;

describe("Promotion on EBS with a Route53 swap, through the runner", () => {
  it("the inputs pass the provider's checks (a DNS endpoint: both addresses, the new live on live's port)", () => {
    expect(checkCutOver(inputs())).toEqual([]);
    expect(checkCutOver(inputs({ newLive: { ...inputs().newLive, port: PORT + 10 } })).map((e) => e.field)).toEqual(["newLive.port"]);
    expect(checkCutOver(inputs({ liveConnection: { host: "10.0.0.1" }, method: "logical" })).map((e) => e.field)).toContain("method");
  });

  it("a failed verification undoes everything: live serves again, the record never moved, the attempt's volume and snapshot are gone", async () => {
    const before = rec.calls.length;
    const [env, s] = await cutoverEnv(inputs({ assertions: [{ name: "impossible", sql: "SELECT false" }] }), { host: newHost, liveHost, endpointHost: liveHost }, { storage, switching: true });
    const e = await promote(env, s).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(PhaseError);
    expect((e as PhaseError).phase).toBe("verify");
    expect((e as PhaseError).undoFailures).toEqual([]);
    expect(liveRunning()).toBe(true);
    expect(q(LIVE_SOCK, "SELECT count(*) FROM t")).toBe(String(ROWS));
    expect(await recordValue()).toBe(LIVE_ADDR);
    expect(await storage.volume("go-live-pg15")).toBeUndefined();
    const calls = rec.calls.slice(before);
    expect(calls).toContain("CreateSnapshotsCommand");
    expect(calls).toContain("DeleteVolumeCommand");
    expect(calls).toContain("DeleteSnapshotCommand");
    expect(callsOnLive(before).filter((c) => !READS.has(c))).toEqual([]);
  }, 300_000);

  it("promotes: live stopped cleanly and kept, the final snapshot set cloned on the new live's instance, PostgreSQL 15 there, the record moved", async () => {
    const before = rec.calls.length;
    liveHost.seen.length = 0;
    newHost.seen.length = 0;
    const [env, s] = await cutoverEnv(inputs(), { host: newHost, liveHost, endpointHost: liveHost }, { storage, switching: true });
    promoted = await promote(env, s);
    // Live: stopped cleanly (pg_controldata), its data directory there, its volume untouched.
    expect(liveRunning()).toBe(false);
    expect(asPg(`${PG13}/pg_controldata`, liveDataDir())).toMatch(/Database cluster state:\s+shut down\n/);
    expect(fs.existsSync(`${liveDataDir()}/PG_VERSION`)).toBe(true);
    // Stopped through live's host; the new live's host never ran anything on live's data directory.
    expect(liveHost.seen.filter((c) => c.includes(`pg_ctl stop -D ${liveDataDir()}`))).toHaveLength(1);
    expect(newHost.seen.filter((c) => c.includes(liveDataDir()) && !c.includes(NEW_ROOT))).toEqual([]);
    expect(callsOnLive(before).filter((c) => !READS.has(c))).toEqual([]);
    expect(callsOnLive(before)).toContain("CreateSnapshotsCommand");
    // The new live: a volume from the final set, attached to the new live's instance, PostgreSQL 15 with every row.
    const vols = await storage.driver.findVolumes([{ Name: `tag:${TAGS.volume}`, Values: ["go-live-pg15"] }]);
    expect(vols).toHaveLength(1);
    expect(vols[0].Attachments![0].InstanceId).toBe(world.rehearsalInstance);
    expect(promoted.newLiveDataDir.startsWith(`${NEW_ROOT}${LIVE_ROOT}/data/`)).toBe(true);
    expect(q(NEW_SOCK, "SHOW server_version_num").slice(0, 2)).toBe("15");
    expect(q(NEW_SOCK, "SELECT count(*) FROM t")).toBe(String(ROWS));
    // It listens in its own "instance" on live's port (nothing in live's namespace does now).
    expect(sh("nsenter", `--net=/run/netns/${NS}`, "--", "ss", "-tlnH")).toContain(`:${PORT}`);
    // The swap: the record's value, read back from moto.
    expect(await recordValue()).toBe(NEW_ADDR);
    // DNS held nobody: the "pause" is every held phase, live stopped to record swapped.
    const names = promoted.phases.map((p) => p.phase);
    for (const n of ["stop live cleanly", "final snapshot", "clone", "replay upgrade", "replay start", "verify", "switch endpoint"]) expect(names).toContain(n);
    expect(names).not.toContain("replay recover");
    const held = promoted.phases.filter((p) => p.held && !/PAUSE|RESUME/.test(p.phase)).reduce((a, p) => a + p.ms, 0);
    expect(promoted.pauseWindowMs).toBeGreaterThanOrEqual(held);
    console.log(`promotion: pause window ${promoted.pauseWindowMs} ms; ${promoted.phases.map((p) => `${p.phase} ${p.ms}`).join(", ")}`);
  }, 300_000);

  it("rolls back: the new live stopped and kept, live started again as it was, the record moved back; live's volume still untouched", async () => {
    q(NEW_SOCK, "INSERT INTO t (v) VALUES ('written on the new live')");
    const before = rec.calls.length;
    const [env, s] = await cutoverEnv(inputs({ promote: false }), { host: newHost, liveHost, endpointHost: liveHost }, { storage, switching: true, prior: { state: "promoted" } as never });
    const r = await rollBack(env, s, promoted.newLiveDataDir, promoted.newLiveVolumes);
    expect(liveRunning()).toBe(true);
    expect(q(LIVE_SOCK, "SELECT count(*) FROM t")).toBe(String(ROWS));
    expect(await recordValue()).toBe(LIVE_ADDR);
    expect(() => q(NEW_SOCK, "SELECT 1")).toThrow();
    expect(await storage.volume("go-live-pg15")).toBeDefined();
    expect(rec.calls.slice(before)).not.toContain("DeleteVolumeCommand");
    expect(callsOnLive(before).filter((c) => !READS.has(c))).toEqual([]);
    console.log(`roll-back: pause window ${r.pauseWindowMs} ms`);
  }, 300_000);
});
