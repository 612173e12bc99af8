/**
 * A `method: "logical"` promotion, roll-back and destroy on EBS through the runner
 * (providers/runner/logical-cutover.ts in the environment the CutOver provider builds:
 * `cutoverEnv`), with live's side on live's host and the new side on the new live's host,
 * replicating over TCP between them, and PgBouncer on live's host as the swap.
 *
 * What is real and what stands in:
 * - REAL moto server for every EC2 call (test/harness/moto.ts): the snapshot set
 *   (CreateSnapshots on live's instance, live RUNNING), the new live's volume (CreateVolume,
 *   AttachVolume on the new live's instance). Every call is recorded: none acts on live's
 *   volume or instance beyond reads and CreateSnapshots.
 * - REAL PostgreSQL 13 (live, `wal_level = logical`) and 15 (the new live), REAL pg_upgrade
 *   --link, REAL logical replication both ways over TCP, REAL PgBouncer holding a REAL pgbench.
 * - STAND-IN for the EBS volumes: loop devices (test/harness/ebs-blocks.ts, LoopLab). Live's
 *   data volume is an ext4 image mounted at live's path. EBS snapshots a running volume
 *   crash-consistently at one point in time; here, when moto answers CreateSnapshots, the
 *   test freezes live's filesystem (fsfreeze), copies the image (what the snapshot holds) and
 *   thaws it. A volume made from that snapshot appears, through the test-only device lookup,
 *   as a loop device holding a copy.
 * - STAND-IN for the second instance: a network namespace `usel<pid>` on this machine
 *   (`nsenter --net`), joined to this machine's namespace by a veth pair: live listens on
 *   10.231.77.1, the new live on 10.231.77.2 (the "private addresses" of the two instances).
 *   Both namespaces share the filesystem: the test asserts that no command of the new live's
 *   host names live's socket or data directory and no command of live's host names the new
 *   live's, and live's pg_hba.conf (copied to the new live by pg_upgrade) refuses every
 *   replication connection and the replication role on unix sockets, so nothing crosses
 *   except over TCP, as between two instances.
 * Ports 30700 (live), 30710-30713 (the new live, its conversion and pg_upgrade), 30790
 * (PgBouncer), moto in 30780-30789. No zfs-fuse.
 */
import { ChildProcess, execFileSync } from "node:child_process";
import type { EC2Client } from "@aws-sdk/client-ec2";
import * as fs from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { EbsStorageSpec } from "../../providers/ebs/spec";
import { EbsStorage } from "../../providers/ebs/storage";
import type { StorageSpec } from "../../providers/storage/types";
import { PgBouncerEndpoint } from "../../providers/endpoint/pgbouncer";
import type { PgBouncerEndpointConfig } from "../../providers/endpoint/pgbouncer-config";
import { checkCutOver, cutoverEnv, type CutOverInputs } from "../../providers/promotion/cutover";
import { cleanupLogical, promoteLogical, rollBackLogical, type LogicalPromoteResult } from "../../providers/runner/logical-cutover";
import { makeWorld, recordingClient, type RecordingClient, type World } from "../harness/ec2";
import { LoopLab } from "../harness/loop";
import { EbsBlocks } from "../harness/ebs-blocks";
import type { Moto } from "../harness/moto";
import { sleep, stopBouncerIn, stopServersUnder } from "../harness/postgres";
import { startPgbench, type PgbenchResult, type PgbenchRun } from "../harness/pgbench";
import { NetnsHost, RecordingLocal } from "../harness/instance-hosts";

const NS = `usel${process.pid}`;
const VETH = `usel${process.pid % 1_000_000}`;
const LIVE_IP = "10.231.77.1";
const NEW_IP = "10.231.77.2";
const LIVE_ROOT = "/srv/usel-live";
const NEW_ROOT = "/srv/usel-new";
const LIVE_SOCK = "/srv/usel-live-sock";
const NEW_SOCK = "/srv/usel-new-sock";
const BOUNCER_DIR = "/srv/usel-bouncer";
const LIVE_PORT = 30700;
const NEW_PORT = 30710;
const BOUNCER_PORT = 30790;
const PG13 = "/usr/lib/postgresql/13/bin";
const PG15 = "/usr/lib/postgresql/15/bin";
const OWNER = "proj/usel/Promotion/go-live";
const DBS = ["app", "postgres"];
/** The role replication connects as (refused on unix sockets by live's pg_hba.conf). */
const REPL = "usel_repl";
/** pgbench runs this long (s) during a promotion / a roll-back; each must finish inside it. */
const PROMOTE_SECONDS = Number(process.env.UNDERSTUDY_TEST_PGBENCH_SECONDS ?? 100);
const ROLLBACK_SECONDS = 40;

let moto: Moto;
let admin: EC2Client;
let world: World;
let rec: RecordingClient;
let storage: EbsStorage;
let spec: EbsStorageSpec;
let bouncer: PgBouncerEndpoint;
const lab = new LoopLab("usel");
const blocks = new EbsBlocks(lab, () => admin);
const children: ChildProcess[] = [];
const measured: Record<string, unknown> = {};

/** Live's instance, standing in: this machine; every command recorded (did anything stop live?). */
const liveHost = new RecordingLocal();

/** The new live's instance, standing in: a network namespace of this machine. */
const newHost = new NetnsHost(NS);

function sh(...argv: string[]): string {
  return execFileSync(argv[0], argv.slice(1), { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}
function asPg(...argv: string[]): string {
  return sh("runuser", "-u", "postgres", "--", ...argv);
}
function psql(sock: string, port: number, sql: string, db = "app"): string {
  return asPg(`${PG15}/psql`, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", sock, "-p", String(port), "-d", db, "-c", sql).trim();
}
const onLive = (sql: string, db = "app") => psql(LIVE_SOCK, LIVE_PORT, sql, db);
const onNew = (sql: string, db = "app") => psql(NEW_SOCK, NEW_PORT, sql, db);
const viaBouncer = (sql: string, db = "app") => psql("127.0.0.1", BOUNCER_PORT, sql, db);
const servedPort = (db = "app") => Number(viaBouncer("SELECT current_setting('port')", db));

function liveDataDir(): string {
  return `${LIVE_ROOT}/data/13/main`;
}
/** Live's postmaster: its PID and start time (a stop or restart of live changes both). */
function livePostmaster(): string {
  const pid = fs.readFileSync(`${liveDataDir()}/postmaster.pid`, "utf8").split("\n")[0];
  return `${pid} ${onLive("SELECT pg_postmaster_start_time()", "postgres")}`;
}

/** Everything of any replication on live, as a DBA would look. */
function liveReplicationState(): Record<string, string> {
  return {
    slots: onLive("SELECT coalesce(string_agg(slot_name, ','), '') FROM pg_replication_slots", "postgres"),
    publications: DBS.map((d) => onLive("SELECT coalesce(string_agg(pubname, ','), '') FROM pg_publication", d)).join(""),
    subscriptions: onLive("SELECT coalesce(string_agg(subname, ','), '') FROM pg_subscription", "postgres"),
    settings: onLive("SELECT coalesce(string_agg(array_to_string(setconfig, ' '), ','), '') FROM pg_db_role_setting", "postgres"),
  };
}
const NOTHING = { slots: "", publications: "", subscriptions: "", settings: "" };

/** Commands on live's host that would stop, start, restart or reload live (a signal to its postmaster shows as a new PID or start time: livePostmaster). */
function liveLifecycleCommands(): string[] {
  return liveHost.seen.filter((c) => (c.includes(liveDataDir()) && /\b(stop|start|restart|reload|kill|promote)\b/.test(c)) || /\bsystemctl\b|\bpg_ctlcluster\b/.test(c));
}
/** Commands that cross between the two hosts other than over TCP (the stand-ins share one filesystem). */
function crossings(): string[] {
  return [
    ...newHost.seen.filter((c) => c.includes(LIVE_SOCK) || (c.includes(liveDataDir()) && !c.includes(NEW_ROOT))).map((c) => `new live's host: ${c}`),
    ...liveHost.seen.filter((c) => c.includes(NEW_SOCK) || c.includes(NEW_ROOT)).map((c) => `live's host: ${c}`),
  ];
}

/**
 * Every EC2 call that acts on live's volume or live's instance, by command. A tag VALUE
 * naming live (a clone's `understudy:source`) is not a call on live.
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

function bouncerConfig(): PgBouncerEndpointConfig {
  return {
    name: "usel",
    configDir: BOUNCER_DIR,
    listenPort: BOUNCER_PORT,
    authType: "trust",
    users: [{ name: "postgres" }],
    databases: { app: { host: LIVE_SOCK, port: LIVE_PORT, dbname: "app" } },
  };
}

function inputs(over: Partial<CutOverInputs> = {}): CutOverInputs {
  return {
    label: "go-live",
    owner: OWNER,
    stack: "usel",
    promote: true,
    storage: spec as unknown as StorageSpec,
    liveConnection: { host: LIVE_IP },
    endpoint: bouncerConfig(),
    database: "app",
    databases: ["app"],
    pauseTimeoutMs: 10_000,
    newServerHost: NEW_IP,
    switchoverTimeoutMs: 300_000,
    live: { dataset: world.liveData[0], pgdata: "13/main", version: 13, binDir: PG13, osUser: "postgres", port: LIVE_PORT, socketDir: LIVE_SOCK, volumes: [world.liveData[0]] },
    newLive: { dataset: "go-live-pg15", port: NEW_PORT, socketDir: NEW_SOCK, listen: "*" },
    to: 15,
    toBinDir: PG15,
    mode: "link",
    steps: [
      { name: "recover", kind: "recover", cutover: false },
      { name: "upgrade", kind: "upgrade", cutover: true },
      { name: "start", kind: "start", cutover: true },
      { name: "post-upgrade", kind: "post-upgrade", cutover: true },
    ],
    assertions: [],
    rehearsal: { name: "r", status: "passed", predictedCutoverMs: 800 },
    method: "logical",
    logical: { liveHost: LIVE_IP, newLiveHost: NEW_IP, replicationUser: REPL, maxLagBytes: 1024 * 1024, switchoverTimeoutMs: 120_000 },
    ...over,
  };
}
const hosts = () => ({ host: newHost, liveHost, endpointHost: liveHost });


/** pgbench (tpcb-like, 4 clients, rate-limited: the machine is shared) through PgBouncer. */
function pgbench(seconds: number): PgbenchRun {
  return startPgbench([`${PG15}/pgbench`, "-h", "127.0.0.1", "-p", String(BOUNCER_PORT), "-n", "-c", "4", "-j", "2", "-R", "100", "-T", String(seconds), "app"], { asUser: "postgres", children });
}

async function waitForCommits(count: () => number, from: number): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if (count() > from + 20) return;
    await sleep(100);
  }
  throw new Error("pgbench did not commit through PgBouncer within 10 s");
}

function expectCleanRun(r: PgbenchResult, what: string): void {
  console.log(`[ebs-logical] pgbench during ${what}: ${r.output.split("\n").filter((l) => /processed|failed|tps|latency average|abort/.test(l)).join(" | ")}`);
  expect(r.output).not.toMatch(/aborted|error/i);
  expect(r.failed).toBe(0);
  expect(r.processed).toBeGreaterThan(0);
  expect(r.code).toBe(0);
}

/** When moto answers CreateSnapshots: live's filesystem frozen (one point in time, as EBS), its image copied under the snapshot's id, thawed. */
function watchSnapshotsFrozen(client: EC2Client): void {
  client.middlewareStack.add(
    (next, context) => async (args) => {
      if (context.commandName !== "CreateSnapshotsCommand") return await next(args);
      sh("fsfreeze", "-f", `${LIVE_ROOT}/data`);
      try {
        const r = await next(args);
        const out = r.output as { Snapshots?: Array<{ SnapshotId?: string; VolumeId?: string }> };
        for (const s of out.Snapshots ?? []) {
          const img = blocks.images.get(s.VolumeId!);
          if (img) blocks.images.set(s.SnapshotId!, lab.copy(img, s.SnapshotId!));
        }
        return r;
      } finally {
        sh("fsfreeze", "-u", `${LIVE_ROOT}/data`);
      }
    },
    { step: "initialize", name: "uselFrozenSnapshotBlocks" },
  );
}

async function cleanupEverything(): Promise<void> {
  for (const c of children.splice(0)) if (c.exitCode === null) c.kill("SIGKILL");
  try {
    sh("fsfreeze", "-u", `${LIVE_ROOT}/data`);
  } catch {
    // not frozen
  }
  await stopBouncerIn(BOUNCER_DIR).catch(() => undefined);
  await stopServersUnder(NEW_ROOT).catch(() => undefined);
  await stopServersUnder(LIVE_ROOT).catch(() => undefined);
  lab.cleanup([LIVE_ROOT, NEW_ROOT]);
  for (const argv of [["ip", "link", "delete", `${VETH}a`], ["ip", "netns", "delete", NS]]) {
    try {
      sh(...argv);
    } catch {
      // not there
    }
  }
  for (const d of [LIVE_ROOT, NEW_ROOT, LIVE_SOCK, NEW_SOCK]) fs.rmSync(d, { recursive: true, force: true });
  // The server log a refused conversion leaves behind (by design, for the user): ours listened on NEW_PORT + 1.
  for (const d of fs.readdirSync("/tmp").filter((n) => n.startsWith("understudy-logical."))) {
    const log = `/tmp/${d}/server.log`;
    if (fs.existsSync(log) && fs.readFileSync(log, "utf8").includes(`.s.PGSQL.${NEW_PORT + 1}"`)) fs.rmSync(`/tmp/${d}`, { recursive: true, force: true });
  }
}

beforeAll(async () => {
  process.env.UNDERSTUDY_MOTO_PORTS ??= "30780-30789";
  const m = await import("../harness/moto");
  m.motoCredentials();
  moto = await m.startMoto();
  admin = recordingClient(moto.endpoint).client;
  world = await makeWorld(admin, 1);
  // The new live's instance: a network namespace; a veth pair is the network between the two.
  sh("ip", "netns", "add", NS);
  sh("ip", "-n", NS, "link", "set", "lo", "up");
  sh("ip", "link", "add", `${VETH}a`, "type", "veth", "peer", "name", `${VETH}b`);
  sh("ip", "link", "set", `${VETH}b`, "netns", NS);
  sh("ip", "addr", "add", `${LIVE_IP}/30`, "dev", `${VETH}a`);
  sh("ip", "link", "set", `${VETH}a`, "up");
  sh("ip", "-n", NS, "addr", "add", `${NEW_IP}/30`, "dev", `${VETH}b`);
  sh("ip", "-n", NS, "link", "set", `${VETH}b`, "up");
  // Live: PostgreSQL 13 on an ext4 "EBS volume" mounted at live's path.
  const image = lab.image("live-data", 256);
  const dev = lab.attach(image);
  lab.mkfs(dev, "ext4");
  fs.mkdirSync(`${LIVE_ROOT}/data`, { recursive: true });
  sh("mount", dev, `${LIVE_ROOT}/data`);
  for (const d of [`${LIVE_ROOT}/data`, LIVE_SOCK, NEW_SOCK]) {
    fs.mkdirSync(d, { recursive: true });
    sh("chown", "postgres:postgres", d);
  }
  asPg("mkdir", "-p", `${LIVE_ROOT}/data/13`);
  asPg(`${PG13}/initdb`, "-D", liveDataDir(), "--auth=trust", "-U", "postgres");
  // The DBA's choices for the method: a replication role that the other instance may use over
  // TCP, wal_level logical. The role is refused on the unix socket (and every replication
  // connection is): the stand-in instances share one filesystem, so a replication connection
  // through a socket would work here and never on two machines. The new live starts with
  // this file too (pg_upgrade copies it), so the way back is held to TCP as well.
  const hba = fs.readFileSync(`${liveDataDir()}/pg_hba.conf`, "utf8");
  fs.writeFileSync(
    `${liveDataDir()}/pg_hba.conf`,
    [
      `local all ${REPL} reject`,
      "local replication all reject",
      `host all ${REPL} ${LIVE_IP}/30 trust`,
      `host replication ${REPL} ${LIVE_IP}/30 trust`,
      `host all postgres ${LIVE_IP}/30 trust`,
      hba,
    ].join("\n"),
  );
  fs.appendFileSync(`${liveDataDir()}/postgresql.conf`, `wal_level = logical\nlisten_addresses = '${LIVE_IP}'\n`);
  asPg(`${PG13}/pg_ctl`, "start", "-w", "-D", liveDataDir(), "-l", `${LIVE_ROOT}/data/13/live.log`, "-o", `-p ${LIVE_PORT} -k ${LIVE_SOCK}`);
  onLive("CREATE DATABASE app", "postgres");
  onLive(`CREATE ROLE ${REPL} LOGIN SUPERUSER REPLICATION`, "postgres");
  asPg(`${PG15}/pgbench`, "-h", LIVE_SOCK, "-p", String(LIVE_PORT), "-i", "-s", "1", "-q", "app");
  // An insert-only table without a key: the DBA gives it a replica identity (preview would name it).
  onLive("ALTER TABLE pgbench_history REPLICA IDENTITY FULL");
  blocks.images.set(world.liveData[0], image);
  rec = recordingClient(moto.endpoint);
  watchSnapshotsFrozen(rec.client);
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
  // PgBouncer on live's instance (the host the user names), reaching live by its socket, the new live over TCP.
  bouncer = new PgBouncerEndpoint(liveHost, bouncerConfig());
  await bouncer.ensure();
  expect(servedPort()).toBe(LIVE_PORT);
}, 300_000);

afterAll(async () => {
  await cleanupEverything();
  await moto?.stop();
  console.log(`[ebs-logical] measured: ${JSON.stringify(measured, null, 2)}`);
}, 180_000);

let promoted: LogicalPromoteResult;
let postmaster = "";

describe("Promotion with method logical on EBS: live's side on live's instance, the new side on the new live's, over TCP", () => {
  it("the inputs pass the provider's checks; without the TCP addresses, or with a loopback one, they are refused naming the field", () => {
    expect(checkCutOver(inputs())).toEqual([]);
    const fields = (l: CutOverInputs["logical"]) => checkCutOver(inputs({ logical: l })).map((e) => e.field);
    expect(fields({})).toEqual(["logical.liveHost", "logical.newLiveHost"]);
    expect(fields({ liveHost: LIVE_IP })).toEqual(expect.arrayContaining(["logical.newLiveHost"]));
    expect(fields({ liveHost: "127.0.0.1", newLiveHost: NEW_IP })).toEqual(["logical.liveHost"]);
    expect(fields({ liveHost: "db1; reboot", newLiveHost: NEW_IP })).toContain("logical.liveHost");
    // On one machine (no liveConnection) the sockets serve: no address needed.
    expect(checkCutOver(inputs({ liveConnection: undefined, logical: {} }))).toEqual([]);
  });

  it("a failed attempt (live refuses the clone's replication role): refused fast, clients never moved, 0 failed, nothing of ours left on live, the attempt's volume gone", async () => {
    postmaster = livePostmaster();
    const calls0 = rec.calls.length;
    const before = Number(viaBouncer("SELECT count(*) FROM pgbench_history"));
    const bench = pgbench(25);
    await waitForCommits(() => Number(onLive("SELECT count(*) FROM pgbench_history")), before);
    const [env, s] = await cutoverEnv(inputs({ logical: { ...inputs().logical, replicationUser: "usel_nobody" } }), hosts(), { storage, switching: true });
    const t0 = Date.now();
    const e = await promoteLogical(env, s).catch((x: unknown) => x as Error);
    measured.failedAttemptSeconds = (Date.now() - t0) / 1000;
    expect(e).toBeInstanceOf(Error);
    expect((e as Error).message).toMatch(/phase "convert the clone" failed: .*live refuses the clone's replication connection .*usel_nobody/s);
    expect(bench.running()).toBe(true);
    const r = await bench.done;
    expectCleanRun(r, "the refused attempt");
    expect(servedPort()).toBe(LIVE_PORT);
    expect(Number(onLive("SELECT count(*) FROM pgbench_history"))).toBe(before + r.processed);
    expect(liveReplicationState()).toEqual(NOTHING);
    expect(await storage.volume("go-live-pg15")).toBeUndefined();
    expect(livePostmaster()).toBe(postmaster);
    expect(callsOnLive(calls0).filter((c) => !READS.has(c))).toEqual([]);
  }, 300_000);

  it("promotes under pgbench through PgBouncer: 0 failed, every committed transaction on the new live, pause under a second; live never stopped, read-only after", async () => {
    postmaster = livePostmaster();
    liveHost.seen.length = 0;
    newHost.seen.length = 0;
    const calls0 = rec.calls.length;
    const before = Number(viaBouncer("SELECT count(*) FROM pgbench_history"));
    const bench = pgbench(PROMOTE_SECONDS);
    await waitForCommits(() => Number(onLive("SELECT count(*) FROM pgbench_history")), before);
    const t0 = Date.now();
    const [env, s] = await cutoverEnv(inputs(), hosts(), { storage, switching: true });
    promoted = await promoteLogical(env, s);
    measured.promoteSeconds = (Date.now() - t0) / 1000;
    expect(bench.running(), `the promotion outlasted pgbench's ${PROMOTE_SECONDS} s`).toBe(true);
    const r = await bench.done;
    expectCleanRun(r, "the logical promotion");
    // Clients moved: PgBouncer serves PostgreSQL 15 from the new live's instance.
    expect(servedPort()).toBe(NEW_PORT);
    expect(Number(viaBouncer("SELECT current_setting('server_version_num')"))).toBeGreaterThanOrEqual(150000);
    expect(viaBouncer("SELECT inet_server_addr()::text")).toBe(`${NEW_IP}/32`);
    // Every transaction pgbench committed, before, during and after the switch, is on the new live.
    expect(Number(onNew("SELECT count(*) FROM pgbench_history"))).toBe(before + r.processed);
    const held = promoted.phases.filter((p) => p.held);
    measured.promote = { pauseWindowMs: promoted.pauseWindowMs, held, catchUp: promoted.catchUp, warnings: promoted.warnings };
    console.log(`[ebs-logical] promote: clients held ${promoted.pauseWindowMs} ms: ${JSON.stringify(held)}; before: ${promoted.phases.filter((p) => !p.held).map((p) => `${p.phase} ${p.ms}`).join(", ")}`);
    expect(promoted.phases.map((p) => p.phase)).toEqual(expect.arrayContaining(["readiness", "snapshot", "clone", "convert the clone", "replay upgrade", "subscribe", "catch up", "switch endpoint"]));
    expect(promoted.warnings).toEqual([]);
    expect(promoted.pauseWindowMs).toBeGreaterThan(0);
    expect(promoted.pauseWindowMs).toBeLessThan(1000);
    // Live: never stopped or restarted (same postmaster), read-only for new sessions, the way back subscribed over TCP.
    expect(livePostmaster()).toBe(postmaster);
    expect(liveLifecycleCommands()).toEqual([]);
    expect(onLive("SHOW default_transaction_read_only")).toBe("on");
    expect(onLive("SELECT count(*) FROM pg_subscription", "postgres")).toBe(String(DBS.length));
    expect(onLive("SELECT DISTINCT subconninfo FROM pg_subscription", "postgres")).toMatch(new RegExp(`host=${NEW_IP.replace(/\./g, "\\.")} port=${NEW_PORT}`));
    // The way forward is retired: nothing of it on live (slots, publications).
    const st = liveReplicationState();
    expect({ slots: st.slots, publications: st.publications }).toEqual({ slots: "", publications: "" });
    // Two machines: nothing crossed but TCP; on EC2 only reads and CreateSnapshots touched live.
    expect(crossings()).toEqual([]);
    expect(callsOnLive(calls0).filter((c) => !READS.has(c))).toEqual([]);
    expect(callsOnLive(calls0)).toContain("CreateSnapshotsCommand");
  }, 600_000);

  it("rolls back under pgbench: 0 failed, every write made on the new live is on live, nothing of ours left on live, live writable", async () => {
    const calls0 = rec.calls.length;
    const before = Number(onNew("SELECT count(*) FROM pgbench_history"));
    const bench = pgbench(ROLLBACK_SECONDS);
    await waitForCommits(() => Number(onNew("SELECT count(*) FROM pgbench_history")), before);
    const [env, s] = await cutoverEnv(inputs({ promote: false }), hosts(), { storage, switching: true, prior: { state: "promoted" } as never });
    const r = await rollBackLogical(env, s, { tag: promoted.tag, clusterDatabases: promoted.clusterDatabases, newLiveDataDir: promoted.newLiveDataDir, newVolumes: promoted.newLiveVolumes });
    expect(bench.running(), `the roll-back outlasted pgbench's ${ROLLBACK_SECONDS} s`).toBe(true);
    const b = await bench.done;
    expectCleanRun(b, "the logical roll-back");
    expect(servedPort()).toBe(LIVE_PORT);
    // `before` was counted on the new live: all of it, and everything since, is on live (the way back).
    expect(Number(onLive("SELECT count(*) FROM pgbench_history"))).toBe(before + b.processed);
    measured.rollBack = { pauseWindowMs: r.pauseWindowMs, warnings: r.warnings };
    console.log(`[ebs-logical] roll-back: clients held ${r.pauseWindowMs} ms`);
    expect(r.warnings).toEqual([]);
    expect(onLive("SHOW default_transaction_read_only")).toBe("off");
    expect(liveReplicationState()).toEqual(NOTHING);
    expect(livePostmaster()).toBe(postmaster);
    expect(liveLifecycleCommands()).toEqual([]);
    expect(crossings()).toEqual([]);
    expect(callsOnLive(calls0).filter((c) => !READS.has(c))).toEqual([]);
    expect(rec.calls.slice(calls0)).not.toContain("DeleteVolumeCommand");
  }, 300_000);

  it("promoted again, then destroyed: on live nothing of ours but its read-only setting, no slot on the new live; live never stopped", async () => {
    // The new live kept by the roll-back (stopped) is mounted where a clone of live's volume is
    // mounted on that instance: the user throws it away before promoting again there.
    await storage.destroyVolume("go-live-pg15", OWNER);
    const calls0 = rec.calls.length;
    const [env, s] = await cutoverEnv(inputs(), hosts(), { storage, switching: true });
    const p = await promoteLogical(env, s);
    expect(servedPort()).toBe(NEW_PORT);
    expect(liveReplicationState().subscriptions).not.toBe("");
    // Destroy (the provider's delete): everything of ours removed from both sides, the read-only setting kept on the promoted old live.
    const c = await cleanupLogical(env, s, { tag: p.tag, clusterDatabases: p.clusterDatabases }, { target: true, keepReadOnly: true });
    console.log(`[ebs-logical] destroy removed: ${c.removed.join("; ")}`);
    expect(c.remaining).toEqual([]);
    const after = liveReplicationState();
    expect({ ...after, settings: "" }).toEqual(NOTHING);
    expect(after.settings.split(",")).toHaveLength(DBS.length);
    expect(onNew("SELECT count(*) FROM pg_replication_slots", "postgres")).toBe("0");
    expect(onNew("SELECT count(*) FROM pg_publication")).toBe("0");
    expect(servedPort()).toBe(NEW_PORT);
    expect(livePostmaster()).toBe(postmaster);
    expect(liveLifecycleCommands()).toEqual([]);
    expect(crossings()).toEqual([]);
    expect(callsOnLive(calls0).filter((c2) => !READS.has(c2))).toEqual([]);
  }, 600_000);
});
