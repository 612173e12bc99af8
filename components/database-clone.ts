import * as pulumi from "@pulumi/pulumi";
import type { ConnectionArgs } from "../providers/host/connection";
import { ZfsClone, ZfsSnapshot } from "../providers/zfs/resources";
import { lookupSnapshotOutput } from "../providers/zfs/lookup";
import { PostgresServer } from "../providers/postgres/server-resource";
import { Preflight } from "../providers/rehearsal/preflight";
import { ownerId, sanitize } from "../providers/common";

/** The live PostgreSQL whose storage is cloned. It is only ever read: at most a `CHECKPOINT` is run on it. */
export interface PostgresSourceArgs {
  /** The ZFS dataset that holds the data directory, e.g. `tank/pg13`. */
  dataset: pulumi.Input<string>;
  /** The data directory's path inside the dataset (default `main`, as in Debian's /var/lib/postgresql/13/main). */
  pgdata?: string;
  /** Major version of the live server, e.g. 13. */
  version: number;
  /** Port of the live server, for the `CHECKPOINT` before a new snapshot (default 5432). */
  port?: number;
  /** Unix socket directory of the live server (default `/var/run/postgresql`). */
  socketDir?: string;
  /** Run `CHECKPOINT` on the live server right before a new snapshot, so the clone recovers in seconds (default true). */
  checkpoint?: boolean;
  /** Bin directory of that version (default Debian's `/usr/lib/postgresql/<version>/bin`). */
  binDir?: string;
  /** OS user that owns the data directory (default `postgres`). */
  osUser?: string;
}

export interface DatabaseCloneArgs {
  /** Where it all runs. Omit for this machine; an SSH connection shaped like `@pulumi/command`'s otherwise. */
  connection?: pulumi.Input<ConnectionArgs>;
  source: PostgresSourceArgs;
  /**
   * What to clone: `"new"` (default: a `CHECKPOINT`, then a fresh snapshot), `"latest"` (the
   * newest existing snapshot of the source, e.g. from a SnapshotSchedule) or the name after `@`
   * of an existing snapshot.
   */
  snapshot?: "new" | "latest" | string;
  /** Name for a new snapshot (default `understudy-<stack>-<name>`). */
  snapshotName?: string;
  /** The clone: its dataset name (its parent must exist) and optionally a mountpoint. */
  clone: { dataset: pulumi.Input<string>; mountpoint?: pulumi.Input<string> };
  /** Start PostgreSQL on the clone (omit to leave it stopped, e.g. for an upgrade rehearsal). */
  postgres?: { port: number; socketDir?: string; listen?: string; database?: string };
}

/** A libpq URI for a server: TCP to the first `listen` address, else the socket directory. Never a password. */
export function connectionUri(user: string, database: string, port: number, socketDir: string, listen?: string): string {
  return listen
    ? `postgresql://${user}@${listen.split(",")[0]}:${port}/${database}`
    : `postgresql:///${database}?host=${socketDir}&port=${port}&user=${user}`;
}

/** The source's version and data directory path, checked before anything is declared; returns pgdata. */
export function checkSourceArgs(name: string, src: PostgresSourceArgs): string {
  if (!Number.isInteger(src.version)) throw new Error(`${name}: source.version must be an integer major version, e.g. 13`);
  const pgdata = src.pgdata ?? "main";
  if (!/^[A-Za-z0-9_.-]+(\/[A-Za-z0-9_.-]+)*$/.test(pgdata) || pgdata.split("/").some((p) => p === "..")) {
    throw new Error(`${name}: source.pgdata: ${JSON.stringify(pgdata)} must be a relative path inside the dataset (letters, digits, _ . -)`);
  }
  return pgdata;
}

/**
 * A copy-on-write clone of a live PostgreSQL: a `CHECKPOINT` on the source, a ZFS snapshot,
 * a clone, and (optionally) PostgreSQL running on the clone with settings that keep it away
 * from the source. Seconds, whatever the size; the source is only read.
 *
 * @example
 * ```ts
 * const test = new DatabaseClone("friday-test", {
 *   source: { dataset: "tank/pg13", pgdata: "main", version: 13, port: 5432 },
 *   clone: { dataset: "tank/clones/friday" },
 *   postgres: { port: 55432, listen: "127.0.0.1" },
 * });
 * export const url = test.connectionString;
 * ```
 */
export class DatabaseClone extends pulumi.ComponentResource {
  /** The snapshot the clone was made from, `dataset@name`. */
  readonly snapshot: pulumi.Output<string>;
  /** The clone's dataset, mountpoint, and data directory. */
  readonly dataset: pulumi.Output<string>;
  readonly mountpoint: pulumi.Output<string>;
  readonly dataDir: pulumi.Output<string>;
  /** The clone's owner mark (snapshots of the clone made by Understudy carry it). */
  readonly owner: pulumi.Output<string>;
  /** Set when PostgreSQL runs on the clone. */
  readonly port?: pulumi.Output<number>;
  readonly socketDir?: pulumi.Output<string>;
  /** `postgresql://...` for the clone (no password: local peer/trust or your pg_hba rules apply). */
  readonly connectionString?: pulumi.Output<string>;
  /** The ZfsClone resource (for dependsOn). */
  readonly cloneResource: ZfsClone;

  constructor(name: string, args: DatabaseCloneArgs, opts?: pulumi.ComponentResourceOptions) {
    super("understudy:index:DatabaseClone", name, {}, opts);
    const src = args.source;
    const pgdata = checkSourceArgs(name, src);
    const mode = args.snapshot ?? "new";
    // With a server to start, the host is checked before anything is snapshotted or cloned:
    // version installed, port free, source present, clone name free. (An UpgradeRehearsal
    // runs its own, wider preflight and starts no server here.)
    const before: pulumi.Input<pulumi.Resource>[] = [...((opts?.dependsOn as pulumi.Input<pulumi.Resource>[] | undefined) ?? [])];
    if (args.postgres) {
      before.push(
        new Preflight(
          `${name}-preflight`,
          {
            connection: args.connection,
            label: `${name}/preflight`,
            from: { version: src.version, binDir: src.binDir },
            osUser: src.osUser ?? "postgres",
            ports: [{ field: "postgres.port", port: args.postgres.port }],
            socketDir: args.postgres.socketDir ?? "/var/run/postgresql",
            source: pulumi.output(src.dataset).apply((dataset) => ({ dataset, pgdata, snapshot: mode === "new" || mode === "latest" ? undefined : mode })),
            clone: pulumi.output(args.clone.dataset).apply((dataset) => ({ dataset, owner: ownerId("ZfsClone", `${name}-clone`) })),
          },
          { parent: this, dependsOn: opts?.dependsOn },
        ),
      );
    }
    let snapshot: pulumi.Output<string>;
    let snapDep: pulumi.Resource | undefined;
    if (mode === "new") {
      const bin = src.binDir ?? `/usr/lib/postgresql/${src.version}/bin`;
      const snap = new ZfsSnapshot(
        `${name}-source`,
        {
          connection: args.connection,
          dataset: src.dataset,
          name: args.snapshotName ?? sanitize(`understudy-${pulumi.getStack()}-${name}`),
          hook:
            src.checkpoint === false
              ? undefined
              : [`${bin}/psql`, "-X", "-q", "-h", src.socketDir ?? "/var/run/postgresql", "-p", String(src.port ?? 5432), "-d", "postgres", "-c", "CHECKPOINT"],
          hookUser: src.checkpoint === false ? undefined : (src.osUser ?? "postgres"),
        },
        { parent: this, dependsOn: before },
      );
      snapshot = snap.snapshot;
      snapDep = snap;
    } else if (mode === "latest") {
      snapshot = lookupSnapshotOutput(pulumi.output({ connection: args.connection, dataset: src.dataset })).snapshot;
    } else {
      snapshot = pulumi.interpolate`${src.dataset}@${mode}`;
    }
    const clone = new ZfsClone(
      `${name}-clone`,
      {
        connection: args.connection,
        snapshot,
        dataset: args.clone.dataset,
        properties: args.clone.mountpoint ? { mountpoint: args.clone.mountpoint } : undefined,
      },
      // A component's dependsOn is not inherited by its children: pass it on (through the snapshot when there is one).
      { parent: this, dependsOn: snapDep ? [snapDep] : before },
    );
    this.cloneResource = clone;
    this.snapshot = snapshot;
    this.dataset = clone.dataset;
    this.mountpoint = clone.mountpoint;
    this.owner = clone.owner;
    this.dataDir = pulumi.interpolate`${clone.mountpoint}/${pgdata}`;
    if (args.postgres) {
      const socketDir = args.postgres.socketDir ?? "/var/run/postgresql";
      const server = new PostgresServer(
        `${name}-postgres`,
        {
          connection: args.connection,
          dataDir: this.dataDir,
          version: src.version,
          binDir: src.binDir,
          osUser: src.osUser,
          port: args.postgres.port,
          socketDir,
          listen: args.postgres.listen ?? "",
        },
        { parent: this, dependsOn: [clone] },
      );
      this.port = server.port;
      this.socketDir = server.socketDir;
      const db = args.postgres.database ?? "postgres";
      const listen = args.postgres.listen;
      this.connectionString = pulumi
        .all([server.port, server.socketDir])
        .apply(([port, socketDir]) => connectionUri(src.osUser ?? "postgres", db, port, socketDir, listen));
    }
    this.registerOutputs({
      snapshot: this.snapshot,
      dataset: this.dataset,
      mountpoint: this.mountpoint,
      dataDir: this.dataDir,
      connectionString: this.connectionString,
    });
  }
}
