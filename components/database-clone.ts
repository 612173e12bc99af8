import * as pulumi from "@pulumi/pulumi";
import type { ConnectionArgs } from "../providers/host/connection";
import { PostgresServer, type PrepareArgs } from "../providers/postgres/server-resource";
import type { SourceLayout } from "../providers/runner/layout";
import { discoverLayout } from "./discover";
import { Preflight } from "../providers/rehearsal/preflight";
import { DEFAULTS, debianBinDir, defaultSnapshotName } from "../providers/plan/defaults";
import { InputError } from "../providers/errors";
import { validateRelativePath, validateVersion } from "../providers/validate";
import type { StorageBackend } from "./storage/types";
import { ZfsStorage } from "./storage/zfs";
import { inputPropertyError } from "./errors";

/** The live PostgreSQL whose storage is cloned. It is only ever read: at most a `CHECKPOINT` is run on it. */
export interface PostgresSourceArgs {
  /** The volume that holds the data directory: a ZFS dataset (`tank/pg13`) or, with `EbsStorage`, live's EBS volume id. */
  dataset: pulumi.Input<string>;
  /**
   * The data directory's path inside the volume.
   * @default "main" (as in Debian's /var/lib/postgresql/13/main)
   */
  pgdata?: string;
  /** Major version of the live server, e.g. 13. */
  version: number;
  /**
   * Port of the live server, for the `CHECKPOINT` before a new snapshot.
   * @default 5432
   */
  port?: number;
  /**
   * Unix socket directory of the live server.
   * @default "/var/run/postgresql"
   */
  socketDir?: string;
  /**
   * Run `CHECKPOINT` on the live server right before a new snapshot, so the clone recovers in seconds.
   * @default true
   */
  checkpoint?: boolean;
  /**
   * Bin directory of that version.
   * @default Debian's `/usr/lib/postgresql/<version>/bin`
   */
  binDir?: string;
  /**
   * OS user that owns the data directory.
   * @default "postgres"
   */
  osUser?: string;
  /**
   * (`UpgradeRehearsal`) The role the rehearsal's steps connect as (psql, pg_upgrade -U,
   * vacuumdb). Steps reach the servers started on the clone by peer for the OS user whatever
   * live's pg_hba.conf says; no password is ever asked for.
   * @default the cluster's bootstrap superuser (the role with OID 10), read from the clone
   */
  superuser?: string;
}

export interface DatabaseCloneArgs {
  /** Where it all runs. Omit for this machine; an SSH connection shaped like `@pulumi/command`'s otherwise. Ignored when `storage` is given (it carries its own). */
  connection?: pulumi.Input<ConnectionArgs>;
  /**
   * The storage holding live and the clone.
   * @default `new ZfsStorage({ connection })`
   */
  storage?: StorageBackend;
  source: PostgresSourceArgs;
  /**
   * What to clone: `"new"` (a `CHECKPOINT`, then a fresh snapshot), `"latest"` (the
   * newest existing snapshot of the source, e.g. from a SnapshotSchedule) or the name after `@`
   * of an existing snapshot.
   * @default "new"
   */
  snapshot?: "new" | "latest" | string;
  /**
   * Name for a new snapshot.
   * @default `understudy-<stack>-<name>`
   */
  snapshotName?: string;
  /** The clone: its volume id (ZFS: a dataset whose parent exists) and optionally a mountpoint. */
  clone: { dataset: pulumi.Input<string>; mountpoint?: pulumi.Input<string> };
  /** Start PostgreSQL on the clone (omit to leave it stopped, e.g. for an upgrade rehearsal). */
  postgres?: { port: number; socketDir?: string; listen?: string; database?: string };
}

/** A libpq URI for a server: TCP to the first `listen` address, else the socket directory. Never a password. */
export function connectionUri(user: string, database: string, port: number, socketDir: string, listen?: string): string {
  return listen ? `postgresql://${user}@${listen.split(",")[0]}:${port}/${database}` : `postgresql:///${database}?host=${socketDir}&port=${port}&user=${user}`;
}

/** The source's version and data directory path, checked before anything is declared; returns pgdata. */
export function checkSourceArgs(name: string, src: PostgresSourceArgs): string {
  const pgdata = src.pgdata ?? DEFAULTS.pgdata;
  try {
    validateVersion(src.version, "source.version");
    validateRelativePath(pgdata, "source.pgdata", "relative path inside the volume");
  } catch (e) {
    if (InputError.is(e)) throw inputPropertyError(name, e);
    throw e;
  }
  return pgdata;
}

/**
 * A copy-on-write clone of a live PostgreSQL: a `CHECKPOINT` on the source, a snapshot set,
 * a clone set, and (optionally) PostgreSQL running on the clone with settings that keep it
 * away from the source. Seconds, whatever the size; the source is only read.
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
  /** The snapshot the clone was made from, `<volume>@<name>`. */
  readonly snapshot: pulumi.Output<string>;
  /** The clone's primary volume, mountpoint, and data directory. */
  readonly dataset: pulumi.Output<string>;
  readonly mountpoint: pulumi.Output<string>;
  readonly dataDir: pulumi.Output<string>;
  /** Every volume of the clone set, the primary first. */
  readonly volumes: pulumi.Output<string[]>;
  /** Where each of them is mounted. */
  readonly mounts: pulumi.Output<string[]>;
  /** The clone's owner mark (snapshots of the clone made by Understudy carry it). */
  readonly owner: pulumi.Output<string>;
  /** Set when PostgreSQL runs on the clone. */
  readonly port?: pulumi.Output<number>;
  readonly socketDir?: pulumi.Output<string>;
  /** `postgresql://...` for the clone (no password: local peer/trust or your pg_hba rules apply). */
  readonly connectionString?: pulumi.Output<string>;
  /** The resource that makes the clone (for dependsOn). */
  readonly cloneResource: pulumi.Resource;
  /** The storage it runs on. */
  readonly storage: StorageBackend;
  /** Live's volumes (PGDATA's first), as discovered when the program ran. */
  readonly sourceVolumes: pulumi.Output<string[]>;
  /** Live's layout when it is more than one plain volume (links re-pointed on the clone), else undefined. */
  readonly layout: pulumi.Output<SourceLayout | undefined>;

  constructor(name: string, args: DatabaseCloneArgs, opts?: pulumi.ComponentResourceOptions) {
    super("understudy:index:DatabaseClone", name, {}, opts);
    const src = args.source;
    const pgdata = checkSourceArgs(name, src);
    const storage = (this.storage = args.storage ?? new ZfsStorage({ connection: args.connection }));
    const mode = args.snapshot ?? DEFAULTS.snapshot;
    const osUserOf = src.osUser ?? DEFAULTS.osUser;
    // Which volumes hold live (PGDATA, a pg_wal elsewhere, tablespaces): read now, also in a preview.
    const discovered = discoverLayout(name, storage, src.dataset, {
      pgdata,
      version: src.version,
      binDir: src.binDir ?? debianBinDir(src.version),
      port: src.port ?? DEFAULTS.livePort,
      socketDir: src.socketDir ?? DEFAULTS.socketDir,
      osUser: osUserOf,
    });
    const sourceVolumes = discovered.apply((d) => d.volumes);
    this.sourceVolumes = sourceVolumes;
    this.layout = discovered.apply((d) => d.layout);
    // With a server to start, the host is checked before anything is snapshotted or cloned:
    // version installed, port free, source present, clone name free. (An UpgradeRehearsal
    // runs its own, wider preflight and starts no server here.)
    const before: pulumi.Input<pulumi.Resource>[] = [...((opts?.dependsOn as pulumi.Input<pulumi.Resource>[] | undefined) ?? [])];
    const osUser = osUserOf;
    if (args.postgres) {
      before.push(
        new Preflight(
          `${name}-preflight`,
          {
            connection: storage.connection,
            storage: storage.spec,
            label: `${name}/preflight`,
            from: { version: src.version, binDir: src.binDir },
            osUser,
            ports: [{ field: "postgres.port", port: args.postgres.port }],
            socketDir: args.postgres.socketDir ?? DEFAULTS.socketDir,
            source: pulumi.output(src.dataset).apply((dataset) => ({ dataset, pgdata, snapshot: mode === "new" || mode === "latest" ? undefined : mode })),
            clone: pulumi.output(args.clone.dataset).apply((dataset) => ({ dataset, owner: storage.cloneOwner(`${name}-clone`) })),
          },
          { parent: this, dependsOn: opts?.dependsOn },
        ),
      );
    }
    let set;
    let snapDeps: pulumi.Resource[] = [];
    if (mode === "new") {
      const bin = src.binDir ?? debianBinDir(src.version);
      const declared = storage.snapshotSet(
        `${name}-source`,
        {
          volumes: sourceVolumes,
          snapshotName: args.snapshotName ?? defaultSnapshotName(pulumi.getStack(), name),
          hook:
            src.checkpoint === false
              ? undefined
              : [`${bin}/psql`, "-X", "-q", "-h", src.socketDir ?? DEFAULTS.socketDir, "-p", String(src.port ?? DEFAULTS.livePort), "-d", "postgres", "-c", "CHECKPOINT"],
          hookUser: src.checkpoint === false ? undefined : osUser,
        },
        { parent: this, dependsOn: before },
      );
      set = declared.set;
      snapDeps = declared.resources;
    } else if (mode === "latest") {
      set = storage.latestSnapshotSet(sourceVolumes);
    } else {
      set = storage.existingSnapshotSet(sourceVolumes, mode);
    }
    const requests = pulumi
      .all([pulumi.output(args.clone.dataset), sourceVolumes, pulumi.output(args.clone.mountpoint)])
      .apply(([target, sources, mountpoint]) => storage.cloneRequests(target, sources, mountpoint));
    // A component's dependsOn is not inherited by its children: pass it on (through the snapshot when there is one).
    const clone = storage.cloneSet(`${name}-clone`, { set, requests }, { parent: this, dependsOn: snapDeps.length ? snapDeps : before });
    this.cloneResource = clone.resources[0];
    this.snapshot = set.apply((s) => s.members[0].id);
    this.volumes = clone.volumes.apply((v) => v.map((x) => x.id));
    this.mounts = clone.volumes.apply((v) => v.map((x) => x.mountpoint ?? ""));
    this.dataset = clone.volumes.apply((v) => v[0].id);
    this.mountpoint = clone.volumes.apply((v) => v[0].mountpoint ?? "");
    this.owner = clone.owner;
    this.dataDir = pulumi.interpolate`${this.mountpoint}/${pgdata}`;
    if (args.postgres) {
      const socketDir = args.postgres.socketDir ?? DEFAULTS.socketDir;
      const server = new PostgresServer(
        `${name}-postgres`,
        {
          connection: storage.connection,
          dataDir: this.dataDir,
          version: src.version,
          binDir: src.binDir,
          osUser: src.osUser,
          port: args.postgres.port,
          socketDir,
          listen: args.postgres.listen ?? "",
          // Only for a cluster beyond one plain volume: its links re-pointed into the clone first.
          prepare: pulumi
            .all([discovered, clone.volumes])
            .apply(([d, v]) => (d.layout ? { layout: d.layout, mounts: v.map((x) => x.mountpoint ?? "") } : undefined)) as pulumi.Input<PrepareArgs>,
        },
        { parent: this, dependsOn: clone.resources },
      );
      this.port = server.port;
      this.socketDir = server.socketDir;
      const db = args.postgres.database ?? DEFAULTS.database;
      const listen = args.postgres.listen;
      this.connectionString = pulumi.all([server.port, server.socketDir]).apply(([port, socketDir]) => connectionUri(osUser, db, port, socketDir, listen));
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
