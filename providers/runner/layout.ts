/**
 * A live cluster's layout over storage volumes, and the clone made to match it: every place
 * the cluster writes (data directory, a `pg_wal` elsewhere, tablespaces) is mapped to the
 * volume that holds it, all those volumes are snapshotted in one set and cloned together,
 * and on the clone every link is re-pointed at the clone's copy before anything starts.
 * Configuration kept outside the data directory (Debian's /etc/postgresql/<v>/<cluster>) is
 * copied into the clone's data directory with its absolute paths neutralised.
 */
import type { Host } from "../host/types";
import { InputError, InputErrors } from "../errors";
import type { PostgresDriver } from "../postgres/driver";
import { externalConfig, externalConfigOfStopped, linksOutside, readLinks, repoint, type ClusterLayout } from "../postgres/layout";
import type { Storage, VolumeInfo } from "../storage/types";

export interface SourcePlace {
  role: "data" | "wal" | "tablespace";
  /** A tablespace's OID. */
  oid?: string;
  /** Absolute path on live's host. */
  path: string;
  /** The volume holding it. */
  volume: string;
  /** Its path relative to that volume's mount ("" for the mount itself). */
  relative: string;
}

/** What a clone must reproduce; absent on plain layouts (everything inside PGDATA on one volume). */
export interface SourceLayout {
  /** Every volume of the cluster, the one holding PGDATA first. */
  volumes: string[];
  places: SourcePlace[];
  externalConfig: ClusterLayout["externalConfig"];
}

function relativeTo(mount: string, path: string): string {
  const m = mount.replace(/\/+$/, "");
  return path === m ? "" : path.slice(m.length + 1);
}

/**
 * Read live's layout (read-only) and map each place to a volume. A place on no volume the
 * storage manages is refused, naming it: it could not be snapshotted with the rest, and a
 * clone would write into it.
 */
export async function discoverSource(
  host: Host,
  storage: Storage,
  pg: PostgresDriver,
  source: { dataset: string; pgdata: string; osUser: string; version: number; binDir: string; socketDir: string; port: number },
): Promise<SourceLayout> {
  const primary = await storage.volume(source.dataset);
  if (!primary) throw new InputErrors([new InputError("source.dataset", `${source.dataset} does not exist on ${storage.description}`)]);
  if (!primary.mountpoint) throw new InputErrors([new InputError("source.dataset", `${source.dataset} is not mounted on ${storage.description}`)]);
  const dataDir = `${primary.mountpoint}/${source.pgdata}`;
  const links = await readLinks(host, source.osUser, dataDir);
  const places: SourcePlace[] = [{ role: "data", path: dataDir, volume: primary.id, relative: source.pgdata }];
  const problems: InputError[] = [];
  const volumes = [primary.id];
  const mounts = new Map<string, VolumeInfo>([[primary.id, primary]]);
  const add = async (role: SourcePlace["role"], path: string, what: string, oid?: string) => {
    const v = await storage.volumeOfPath(path);
    if (!v || !v.mountpoint) {
      problems.push(
        new InputError(
          "source",
          `${what} -> ${path} is on no volume of ${storage.description}: it cannot be snapshotted with the data directory, and a clone would write into it. Move it onto a volume (e.g. a dataset of the same pool), or rehearse without it; nothing was run`,
        ),
      );
      return;
    }
    if (!mounts.has(v.id)) {
      mounts.set(v.id, v);
      volumes.push(v.id);
    }
    places.push({ role, ...(oid ? { oid } : {}), path, volume: v.id, relative: relativeTo(v.mountpoint, path) });
  };
  if (links.walLink) await add("wal", links.walLink, "pg_wal");
  for (const t of links.tablespaces) await add("tablespace", t.target, `tablespace ${t.oid} (pg_tblspc/${t.oid})`, t.oid);
  if (problems.length) throw new InputErrors(problems, `the live cluster in ${dataDir} cannot be cloned safely (nothing was run)`);
  let external: ClusterLayout["externalConfig"] = [];
  try {
    external = await externalConfig((sql) => pg.adminQuery({ version: source.version, binDir: source.binDir, socketDir: source.socketDir, port: source.port }, sql), dataDir);
  } catch {
    // Live does not answer (a promotion stopped it, or rehearsing from an old snapshot while
    // it is down): where its last start took its configuration (postmaster.opts), else its
    // data directory holds it, or starting the clone says what is missing.
    const read = async (p: string) => {
      const r = await host.runAs("root", ["cat", "--", p], { okExitCodes: [0, 1], cwd: "/" });
      return r.exitCode === 0 ? r.stdout : undefined;
    };
    const opts = await read(`${dataDir}/postmaster.opts`).catch(() => undefined);
    if (opts) {
      const conf = /config[_-]file=([^"\s]+)/.exec(opts)?.[1];
      external = externalConfigOfStopped(dataDir, opts, conf?.startsWith("/") ? await read(conf).catch(() => undefined) : undefined);
    }
  }
  return { volumes, places, externalConfig: external };
}

/** True when a clone of this layout needs nothing beyond cloning the one volume. */
export function isPlain(l: SourceLayout): boolean {
  return l.volumes.length === 1 && l.places.length === 1 && l.externalConfig.length === 0;
}

const CONFIG_NAME: Record<ClusterLayout["externalConfig"][number]["setting"], string> = {
  config_file: "postgresql.conf",
  hba_file: "pg_hba.conf",
  ident_file: "pg_ident.conf",
};

/** Settings in a copied postgresql.conf that point at live's files: commented out on the clone. */
const LIVE_PATH_SETTINGS = ["data_directory", "hba_file", "ident_file", "external_pid_file", "stats_temp_directory"];

/**
 * Make a clone's data directory safe to start: every link re-pointed into the clone, live's
 * external configuration copied in (absolute paths to live's files neutralised), then the
 * guard: no link may leave the clone. Idempotent; run before anything starts on a clone.
 * `cloneMounts[i]` is where the clone of `layout.volumes[i]` is mounted.
 */
export async function prepareClone(
  host: Host,
  osUser: string,
  cloneDataDir: string,
  cloneMounts: string[],
  layout: SourceLayout | undefined,
  log: (m: string) => void,
  extraDataDirs: string[] = [],
): Promise<void> {
  if (layout) {
    const mountOf = (volume: string) => {
      const i = layout.volumes.indexOf(volume);
      if (i < 0 || !cloneMounts[i]) throw new Error(`no clone of ${volume} is mounted`);
      return cloneMounts[i].replace(/\/+$/, "");
    };
    for (const p of layout.places) {
      if (p.role === "data") continue;
      const target = p.relative ? `${mountOf(p.volume)}/${p.relative}` : mountOf(p.volume);
      const link = p.role === "wal" ? `${cloneDataDir}/pg_wal` : `${cloneDataDir}/pg_tblspc/${p.oid}`;
      await repoint(host, osUser, link, target);
    }
    for (const c of layout.externalConfig) {
      const dest = `${cloneDataDir}/${CONFIG_NAME[c.setting]}`;
      const there = await host.runAs(osUser, ["test", "-e", dest], { okExitCodes: [0, 1], cwd: "/" });
      if (there.exitCode === 0) continue;
      // Read as root (live's configuration may be readable by root only), written as the OS user.
      const text = (await host.runAs("root", ["cat", "--", c.path])).stdout;
      const content =
        c.setting === "config_file"
          ? text
              .split("\n")
              .map((l) => (new RegExp(`^\\s*(${LIVE_PATH_SETTINGS.join("|")})\\s*=`).test(l) ? `# understudy: on a clone, live's path is not used: ${l}` : l))
              .join("\n")
          : text;
      await host.runAs(osUser, ["sh", "-c", 'umask 077 && cat > "$1"', "sh", dest], { input: content, cwd: "/" });
      if (c.setting === "config_file") {
        // Debian's `include_dir = 'conf.d'` is relative to the configuration file's directory.
        const dir = c.path.slice(0, c.path.lastIndexOf("/"));
        const confd = await host.runAs("root", ["test", "-d", `${dir}/conf.d`], { okExitCodes: [0, 1] });
        if (confd.exitCode === 0) {
          await host.runAs("root", ["cp", "-a", "--", `${dir}/conf.d`, `${cloneDataDir}/conf.d`]);
          await host.runAs("root", ["chown", "-R", osUser, "--", `${cloneDataDir}/conf.d`]);
        }
      }
      log(`copied live's ${c.setting} (${c.path}) into the clone's data directory`);
    }
  }
  // The copy of live and, once pg_upgrade made it, the upgraded cluster next to it.
  const dirs = [cloneDataDir, ...extraDataDirs];
  const links = await Promise.all(dirs.map((dir) => readLinks(host, osUser, dir)));
  const outside = dirs.flatMap((dir, i) => linksOutside(links[i], cloneMounts).map((l) => `${dir}: ${l}`));
  if (outside.length) {
    throw new Error(
      `refusing to start anything on the clone: links point outside the clone (into live): ${outside.join("; ")}. ` +
        `Run \`pulumi preview\` again so the cluster's layout is discovered; nothing was started`,
    );
  }
}
