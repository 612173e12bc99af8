/**
 * A Debian-packaged live for the "new live as a service" tests: live is cluster 13/<name>
 * (pg_createcluster, its data directory on a zfs-fuse dataset, started by pg_ctlcluster), the
 * new live is cluster 15/<name> as a DBA prepares it (README, "The new live as a service"):
 * its data directory is the link Understudy keeps pointing at the serving generation.
 */
import * as fs from "node:fs";
import type { ChildProcess } from "node:child_process";
import { createPool, destroyPoolByName, sh } from "./zfs";
import { stopBouncerIn, stopServersUnder } from "./postgres";

export interface DebianFixture {
  /** The zpool, and the Debian cluster name of both 13/<cluster> and 15/<cluster>. */
  pool: string;
  cluster: string;
  livePort: number;
  newLivePort: number;
  bouncerName: string;
  bouncerPort: number;
  /** The Pulumi stack (its Promotion's journal is removed by cleanup). */
  stack: string;
}

export const SOCK = "/var/run/postgresql";
export const BIN13 = "/usr/lib/postgresql/13/bin";
export const BIN15 = "/usr/lib/postgresql/15/bin";
export const linkOf = (f: DebianFixture) => `/var/lib/postgresql/15/${f.cluster}`;
export const etc15Of = (f: DebianFixture) => `/etc/postgresql/15/${f.cluster}`;
export const pidFileOf = (f: DebianFixture) => `${SOCK}/15-${f.cluster}.pid`;
export const liveDataOf = (f: DebianFixture) => `/srv/${f.pool}/live/main`;
const bouncerDirOf = (f: DebianFixture) => `/var/lib/understudy/pgbouncer/${f.bouncerName}`;

/** What a DBA prepares for the new live as Debian cluster 15/<cluster>: /etc/postgresql/15/<cluster>, pointing at the link. */
export function prepareDebianNewLive(f: DebianFixture): void {
  const etc = etc15Of(f);
  const link = linkOf(f);
  sh(["install", "-d", "-o", "postgres", "-g", "postgres", "-m", "0755", etc]);
  const conf = [
    `# The new live as Debian cluster 15/${f.cluster}: its data directory is the link Understudy keeps`,
    "# pointing at the serving generation; its settings are the ones carried over from live.",
    `include '${link}/postgresql.conf'`,
    `data_directory = '${link}'`,
    `hba_file = '${link}/pg_hba.conf'`,
    `ident_file = '${link}/pg_ident.conf'`,
    `port = ${f.newLivePort}`,
    `unix_socket_directories = '${SOCK}'`,
    "listen_addresses = ''",
    `external_pid_file = '${pidFileOf(f)}'`,
    `cluster_name = '15/${f.cluster}'`,
    "",
  ].join("\n");
  for (const [file, text] of [
    ["postgresql.conf", conf],
    ["start.conf", "auto\n"],
    ["pg_ctl.conf", "pg_ctl_options = ''\n"],
    ["environment", ""],
  ]) {
    fs.writeFileSync(`${etc}/${file}`, text);
    sh(["chown", "postgres:postgres", `${etc}/${file}`]);
  }
}

/** Live as Debian cluster 13/<cluster> on a fresh pool, with database `app` initialized by pgbench (scale 1). */
export function createDebianLive(f: DebianFixture, psql: (sql: string) => void): void {
  createPool(f.pool, 4);
  for (const d of ["live", "rehearsals"]) sh(["zfs", "create", `${f.pool}/${d}`]);
  sh(["chown", "postgres:postgres", `/srv/${f.pool}/live`]);
  sh(["pg_createcluster", "13", f.cluster, "-d", liveDataOf(f), "-p", String(f.livePort), "-s", SOCK, "--", "--auth-local=trust", "--auth-host=trust"]);
  sh(["pg_ctlcluster", "13", f.cluster, "start"]);
  psql("CREATE DATABASE app");
  sh(["runuser", "-u", "postgres", "--", `${BIN13}/pgbench`, "-h", SOCK, "-p", String(f.livePort), "-i", "-q", "-s", "1", "app"]);
}

/** The Promotion's configuration: PgBouncer, the new live under pg_ctlcluster through the link, live under pg_ctlcluster. */
export function debianPromotionConfig(f: DebianFixture): Record<string, unknown> {
  return {
    endpoint: { name: f.bouncerName, listenPort: f.bouncerPort, database: "app", authType: "trust" },
    newLive: { port: f.newLivePort, dataDirLink: linkOf(f), startCommand: ["pg_ctlcluster", "15", f.cluster, "start"], stopCommand: ["pg_ctlcluster", "15", f.cluster, "stop"] },
    liveStartCommand: ["pg_ctlcluster", "13", f.cluster, "start"],
    liveStopCommand: ["pg_ctlcluster", "13", f.cluster, "stop"],
  };
}

/** Everything the fixture and its promotions made: processes, PgBouncer, both clusters, the link, the pool, the journal. */
export async function cleanupDebian(f: DebianFixture, children: ChildProcess[]): Promise<void> {
  for (const c of children.splice(0)) if (c.exitCode === null) c.kill("SIGKILL");
  await stopBouncerIn(bouncerDirOf(f));
  sh(["pg_ctlcluster", "15", f.cluster, "stop"], { allowFail: true });
  await stopServersUnder(`/srv/${f.pool}`).catch(() => undefined);
  const link = linkOf(f);
  fs.rmSync(etc15Of(f), { recursive: true, force: true });
  fs.rmSync(link, { recursive: true, force: true });
  fs.rmSync(`${link}.understudy-new`, { force: true });
  fs.rmSync(`/var/log/postgresql/postgresql-15-${f.cluster}.log`, { force: true });
  sh(["pg_dropcluster", "--stop", "13", f.cluster], { allowFail: true });
  destroyPoolByName(f.pool);
  // The cut-over's journal of this stack's Promotion (finished; the next run starts afresh).
  fs.rmSync(`/var/lib/understudy/cutover/promotion-program_${f.stack}_Promotion_${f.stack}-go-live.json`, { force: true });
}
