import * as pulumi from "@pulumi/pulumi";
import type { ConnectionArgs } from "../host/connection";
import { withHost } from "../host";
import type { Host } from "../host/types";
import { openStorage, storageSyntax, validateStorageSpec, type Storage, type StorageSpec } from "../storage";
import { declaredDiff } from "../diff";
import type { UnderstudyProvider } from "../dispatch";
import { PostgresDriver, PgBinary } from "../postgres/driver";
import { PostgresInputError } from "../postgres/errors";
import { validateOsUser, validatePath, validatePort, validateSocketDir, validateVersion } from "../postgres/validate";
import { errorMessage, failure, isUnknown, progress, checkConnection } from "../common";
import { UnderstudyResource } from "../shim";
import { InputError } from "../errors";

/**
 * What an {@link UpgradeRehearsal} needs from the host, checked before anything is
 * snapshotted, cloned or started: both PostgreSQL versions installed (with pg_upgrade),
 * every port the rehearsal will listen on free, the source dataset there (holding a
 * data directory of `from`), the clone's dataset free (or ours, from an earlier run) and
 * its parent there. Read-only: `stat`, `ss`, `cat`, `postgres --version` and the storage's own reads.
 */
export interface PreflightInputs {
  connection?: ConnectionArgs;
  /** The storage backend (absent in 0.1.0 state: ZFS). */
  storage?: StorageSpec;
  label: string;
  from: { version: number; binDir?: string };
  /** The target of an upgrade (omitted for a plain DatabaseClone). */
  to?: { version: number; binDir?: string };
  osUser: string;
  /** Every port the rehearsal listens on, with the config field that sets it. */
  ports: Array<{ field: string; port: number }>;
  /** Socket directory of the upgraded server (a lock file there means the port is taken). */
  socketDir: string;
  /** `snapshot`: the name after `@` of an existing snapshot to clone (not for "new"/"latest"). */
  source: { dataset: string; pgdata: string; snapshot?: string };
  /** `owner`: the owner mark the clone gets (an existing dataset with it is ours). */
  clone: { dataset: string; owner: string };
}

export interface PreflightOutputs extends PreflightInputs {
  checkedAt: string;
  /** `postgres --version` of each side, e.g. `13.16`. */
  fromVersion: string;
  toVersion: string;
}

const OLD_BINS: PgBinary[] = ["pg_ctl", "postgres", "pg_controldata", "pg_isready", "psql"];
const NEW_BINS: PgBinary[] = ["pg_ctl", "postgres", "initdb", "pg_controldata", "pg_upgrade", "pg_isready", "psql", "vacuumdb"];

/** The driver names fields after its own arguments; say them as the rehearsal's config does. */
function configField(field: string): string {
  return (
    { "to.version": "to", "to.binDir": "toBinDir", "from.version": "source.version", "from.binDir": "source.binDir" } as Record<string, string>
  )[field] ?? field;
}

function asProblem(e: unknown, side: "from" | "to"): string {
  if (e instanceof PostgresInputError) {
    const field = configField(e.field);
    const what = e.reason.replace("or set binDir", `or set ${side === "to" ? "toBinDir" : "source.binDir"}`);
    return `${field}: ${what}`;
  }
  return `${side === "to" ? "to" : "source.version"}: ${errorMessage(e)}`;
}

/** Ports held by a live server whose data directory is inside our own clone (e.g. the upgraded server of an earlier run). */
async function portsOfOurServers(host: Host, mountpoint: string): Promise<Set<number>> {
  const ours = new Set<number>();
  // As root: the clone's data directories are 0700 and the pids are the cluster user's (a
  // non-root login would see nothing and count our own servers' ports as taken).
  const found = await host.runAs("root", ["find", mountpoint, "-maxdepth", "2", "-name", "postmaster.pid", "-type", "f"], { okExitCodes: [0, 1], timeoutMs: 60_000 });
  for (const file of found.stdout.split("\n").filter(Boolean)) {
    const r = await host.runAs("root", ["head", "-n", "4", "--", file], { okExitCodes: [0, 1], timeoutMs: 60_000 });
    const [pid, , , port] = r.stdout.split("\n").map((s) => s.trim());
    if (!/^\d+$/.test(pid ?? "") || !/^\d+$/.test(port ?? "")) continue;
    const alive = await host.runAs("root", ["kill", "-0", pid], { okExitCodes: [0, 1], timeoutMs: 60_000 });
    if (alive.exitCode === 0) ours.add(Number(port));
  }
  return ours;
}

export async function runPreflight(host: Host, i: PreflightInputs, storage: Storage = openStorage(i.storage, host)): Promise<{ problems: string[]; fromVersion?: string; toVersion?: string }> {
  const problems: string[] = [];
  const pg = new PostgresDriver(host, { osUser: i.osUser });
  let fromVersion: string | undefined;
  let toVersion: string | undefined;
  try {
    fromVersion = (await pg.resolveInstall({ version: i.from.version, binDir: i.from.binDir, field: "from" }, OLD_BINS, "from")).fullVersion;
  } catch (e) {
    problems.push(asProblem(e, "from"));
  }
  if (i.to) {
    try {
      toVersion = (await pg.resolveInstall({ version: i.to.version, binDir: i.to.binDir, field: "to" }, NEW_BINS, "to")).fullVersion;
    } catch (e) {
      problems.push(asProblem(e, "to"));
    }
  }

  const src = await storage.volume(i.source.dataset);
  if (!src) {
    problems.push(`source.dataset: ${i.source.dataset} does not exist on ${host.description}`);
  } else {
    if (src.mountpoint?.startsWith("/")) {
      const dir = `${src.mountpoint}/${i.source.pgdata}`;
      // Read as the cluster's OS user: a data directory is 0700, and the login may be another user.
      const v = await pg.dataDirVersion(dir, "source.pgdata").catch(() => undefined);
      if (v === undefined) problems.push(`source.pgdata: ${dir} on ${host.description} is not a PostgreSQL data directory (no PG_VERSION readable by ${i.osUser})`);
      else if (v !== i.from.version) {
        problems.push(`source.version: ${i.from.version}, but ${dir} on ${host.description} holds a PostgreSQL ${v} cluster`);
      }
      // A standby (or a cluster in archive recovery) as source: refused here, before anything is
      // snapshotted; a clone of it would follow its primary or its archive.
      for (const f of ["standby.signal", "recovery.signal", "recovery.conf"]) {
        const t = await host.run(["test", "-e", `${dir}/${f}`], { okExitCodes: [0, 1], timeoutMs: 60_000 });
        if (t.exitCode === 0) {
          problems.push(
            `source.dataset: ${dir} on ${host.description} holds ${f}: the source is a standby or a cluster in archive recovery. Rehearse from the primary (a clone of a standby would try to follow its primary or archive); nothing was snapshotted`,
          );
        }
      }
    }
    if (i.source.snapshot && !(await storage.findSnapshotSet([i.source.dataset], i.source.snapshot).catch(() => undefined))) {
      problems.push(`snapshot: ${i.source.dataset}@${i.source.snapshot} does not exist on ${host.description}`);
    }
  }

  const clone = await storage.volume(i.clone.dataset);
  let ours = new Set<number>();
  if (clone) {
    const owner = clone.owner ?? "";
    if (owner !== i.clone.owner) {
      problems.push(
        `clone.dataset: ${i.clone.dataset} already exists on ${host.description} (${owner ? `created by ${owner}` : "not created by Understudy"}); choose another name`,
      );
    } else if (clone.mountpoint?.startsWith("/")) {
      ours = await portsOfOurServers(host, clone.mountpoint);
    }
  } else {
    const why = await storage.checkNewVolume(i.clone.dataset);
    if (why) problems.push(`clone.dataset: ${why}`);
  }

  for (const { field, port } of i.ports) {
    if (ours.has(port)) continue;
    try {
      await pg.assertPortFree(port, field, field === "postgres.port" ? i.socketDir : undefined);
    } catch (e) {
      problems.push(errorMessage(e));
    }
  }
  return { problems, fromVersion, toVersion };
}

function staticChecks(news: PreflightInputs): pulumi.dynamic.CheckFailure[] {
  const f: pulumi.dynamic.CheckFailure[] = [];
  f.push(...checkConnection(news.connection));
  if (!isUnknown(news.from)) {
    f.push(...failure("from", () => validateVersion(news.from.version, "source.version")));
    if (news.from.binDir !== undefined) f.push(...failure("from", () => validatePath(news.from.binDir, "source.binDir", "bin directory")));
  }
  if (news.to && !isUnknown(news.to)) {
    const to = news.to;
    f.push(...failure("to", () => validateVersion(to.version, "to")));
    if (to.binDir !== undefined) f.push(...failure("to", () => validatePath(to.binDir, "toBinDir", "bin directory")));
  }
  if (!isUnknown(news.osUser)) f.push(...failure("osUser", () => validateOsUser(news.osUser, "source.osUser")));
  if (!isUnknown(news.socketDir)) f.push(...failure("socketDir", () => validateSocketDir(news.socketDir, "postgres.socketDir")));
  if (!isUnknown(news.ports)) {
    f.push(
      ...failure("ports", () => {
        const seen = new Map<number, string>();
        for (const p of news.ports) {
          validatePort(p.port, p.field);
          const other = seen.get(p.port);
          if (other) throw new InputError(p.field, `port ${p.port} is also ${other}; the rehearsal needs distinct ports`);
          seen.set(p.port, p.field);
        }
      }),
    );
  }
  const storage = news.storage === undefined || isUnknown(news.storage) ? undefined : news.storage;
  if (storage) f.push(...failure("storage", () => validateStorageSpec(storage, "storage")));
  // Volume and snapshot syntax is the backend's.
  let syntax: ReturnType<typeof storageSyntax> | undefined;
  try {
    syntax = storageSyntax(storage);
  } catch {
    syntax = undefined; // reported above
  }
  if (syntax && !isUnknown(news.source)) {
    f.push(...failure("source", () => syntax!.validateVolumeId(news.source.dataset, "source.dataset")));
    if (news.source.snapshot !== undefined) f.push(...failure("source", () => syntax!.validateSnapshotName(news.source.snapshot, "snapshot")));
  }
  if (syntax && !isUnknown(news.clone)) f.push(...failure("clone", () => syntax!.validateVolumeId(news.clone.dataset, "clone.dataset")));
  return f;
}

/** Anything the checks depend on changed: check again (replace). Credentials alone: in place. */
export const PREFLIGHT_DIFF = { replace: ["from", "to", "osUser", "ports", "socketDir", "source", "clone", "storage"], update: [], ignore: ["label"], deleteBeforeReplace: false };
const diff = declaredDiff(PREFLIGHT_DIFF);

export const preflightProvider: UnderstudyProvider = {
  migrate: (p) => ({ ...p, storage: p.storage ?? { kind: "zfs" } }),

  async check(_olds: PreflightInputs, news: PreflightInputs) {
    return { inputs: news, failures: staticChecks(news) };
  },

  async diff(_id: string, olds: PreflightOutputs, news: PreflightInputs) {
    return diff(olds as unknown as Record<string, unknown>, news as unknown as Record<string, unknown>);
  },

  async create(i: PreflightInputs) {
    return await withHost(i.connection, async (host) => {
      const r = await runPreflight(host, i);
      if (r.problems.length) {
        throw new Error(
          `preflight of ${i.label} on ${host.description} failed; nothing was snapshotted, cloned or started:\n` +
            r.problems.map((p) => `  - ${p}`).join("\n"),
        );
      }
      progress(i.label, `PostgreSQL ${r.fromVersion} and ${r.toVersion} installed, ports ${i.ports.map((p) => p.port).join(", ")} free, ${i.source.dataset} ready`);
      const outs: PreflightOutputs = { ...i, checkedAt: new Date().toISOString(), fromVersion: r.fromVersion!, toVersion: r.toVersion! };
      return { id: `${i.clone.dataset}#preflight`, outs };
    });
  },

  async read(id: string, props: PreflightOutputs) {
    return { id, props };
  },

  async update(_id: string, olds: PreflightOutputs, news: PreflightInputs) {
    return { outs: { ...olds, connection: news.connection } };
  },

  async delete() {
    // Nothing to remove: the checks changed nothing.
  },
};

export type PreflightArgs = { [K in keyof PreflightInputs]: pulumi.Input<PreflightInputs[K]> };

/** The checks an {@link UpgradeRehearsal} runs before anything else (everything else depends on it). */
export class Preflight extends UnderstudyResource {
  declare readonly checkedAt: pulumi.Output<string>;
  declare readonly fromVersion: pulumi.Output<string>;
  declare readonly toVersion: pulumi.Output<string>;

  constructor(name: string, args: PreflightArgs, opts?: pulumi.CustomResourceOptions) {
    super(
      "RehearsalPreflight",
      name,
      {
        ...args,
        checkedAt: undefined,
        fromVersion: undefined,
        toVersion: undefined,
      },
      opts,
    );
  }
}
