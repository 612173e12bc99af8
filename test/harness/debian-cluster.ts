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
  /** The rehearsal's PostgreSQL 15 on its clone. */
  rehearsalPort: number;
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

/** psql as the OS user postgres, one statement, unaligned and tuples only. */
export function debianPsql(host: string, port: number, sql: string, bin = BIN15, db = "app"): string {
  return sh(["runuser", "-u", "postgres", "--", `${bin}/psql`, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", host, "-p", String(port), "-d", db, "-c", sql]).trim();
}

/** A query as clients send it: through the fixture's PgBouncer. */
export const viaBouncerOf = (f: DebianFixture) => (sql: string) => debianPsql("127.0.0.1", f.bouncerPort, sql);

/** The port of the server PgBouncer sends clients to now. */
export const servedPortOf = (f: DebianFixture) => () => Number(viaBouncerOf(f)("SELECT current_setting('port')"));

/** `Database cluster state` of pg_controldata. */
export function controlState(dataDir: string, bin = BIN15): string {
  const out = sh(["runuser", "-u", "postgres", "--", `${bin}/pg_controldata`, dataDir]);
  return /Database cluster state:\s*(.*)/.exec(out)?.[1].trim() ?? "?";
}

/** The CutOver resource's outputs in the stack's state. */
export async function cutOverState(stack: { exportStack(): Promise<{ deployment: { resources?: Array<{ type: string; outputs?: unknown }> } }> }): Promise<Record<string, unknown>> {
  const r = ((await stack.exportStack()).deployment.resources ?? []).find((x) => x.type.endsWith(":CutOver"));
  if (!r?.outputs) throw new Error("no CutOver in the stack's state");
  return r.outputs as Record<string, unknown>;
}

/** The fixture program's `rehearsal` config: live 13/<cluster> rehearsed to 15 on a clone in the fixture's pool. */
export function debianRehearsalConfig(f: DebianFixture, reportDir: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    source: { dataset: `${f.pool}/live`, pgdata: "main", version: 13, port: f.livePort, socketDir: SOCK },
    clone: { dataset: `${f.pool}/rehearsals/${f.stack}` },
    to: 15,
    postgres: { port: f.rehearsalPort, database: "app" },
    ...extra,
    reportDir,
  };
}

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
export function createDebianLive(f: DebianFixture): void {
  createPool(f.pool, 4);
  for (const d of ["live", "rehearsals"]) sh(["zfs", "create", `${f.pool}/${d}`]);
  sh(["chown", "postgres:postgres", `/srv/${f.pool}/live`]);
  sh(["pg_createcluster", "13", f.cluster, "-d", liveDataOf(f), "-p", String(f.livePort), "-s", SOCK, "--", "--auth-local=trust", "--auth-host=trust"]);
  sh(["pg_ctlcluster", "13", f.cluster, "start"]);
  debianPsql(SOCK, f.livePort, "CREATE DATABASE app", BIN13, "postgres");
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
