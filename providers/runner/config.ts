/**
 * Live's configuration carried over to the upgraded cluster, so that the rehearsal runs
 * with production settings and the promoted server IS a production server: every setting
 * live took from its configuration files (postgresql.conf, postgresql.auto.conf, includes)
 * is written to `understudy-live.conf` in the new data directory, included from its
 * postgresql.conf. Not copied blindly: a parameter the new version does not know is left
 * out and reported (removed or renamed between the versions), paths to live's own files
 * are not carried, and `synchronous_standby_names` is left out (live's standbys follow the
 * old cluster: commits would wait for them forever) and reported.
 */
import type { Host } from "../host/types";
import { InputError } from "../errors";
import { validatePath } from "../validate";

/** Settings a server took from its configuration files. */
export const CONFIGURED_SETTINGS_SQL = `SELECT name, setting FROM pg_settings WHERE source = 'configuration file' ORDER BY name`;

/** Never carried: they name live's own files, or the new server sets them itself. */
const NOT_CARRIED: Record<string, string> = {
  data_directory: "names live's data directory",
  config_file: "names live's configuration",
  hba_file: "names live's file (pg_hba.conf is copied into the new data directory)",
  ident_file: "names live's file (pg_ident.conf is copied into the new data directory)",
  external_pid_file: "names live's pid file",
  port: "the new server has its own port",
  unix_socket_directories: "the new server has its own socket directory",
  stats_temp_directory: "names live's directory",
  synchronous_standby_names: "live's standbys follow the old cluster: commits on the new one would wait for them; set it again once standbys follow the new live",
  primary_conninfo: "live's upstream, not the new server's",
  primary_slot_name: "live's upstream slot",
};

/** Renamed between majors: the old name, the new name, the version that renamed it. */
const RENAMED: Array<[string, string, number]> = [
  ["force_parallel_mode", "debug_parallel_query", 16],
  ["wal_keep_segments", "wal_keep_size", 13],
];

export interface CarriedConfig {
  /** The file's text. */
  text: string;
  carried: string[];
  dropped: Array<{ name: string; why: string }>;
}

/** Quote a setting's value for a configuration file. */
function quote(v: string): string {
  return `'${v.replace(/\\/g, "\\\\").replace(/'/g, "''")}'`;
}

/**
 * The file carried to a cluster of version `to` from live's configured settings
 * (`[name, setting]` rows). `known`: the parameters the new version has
 * (`postgres --describe-config`).
 */
export function carriedConfig(settings: string[][], known: Set<string>, from: number, to: number): CarriedConfig {
  const carried: string[] = [];
  const dropped: CarriedConfig["dropped"] = [];
  const lines = [
    `# Written by pulumi-understudy: live's settings (PostgreSQL ${from}) carried over to ${to}.`,
    "# Parameters left out, and why, are listed at the end.",
  ];
  for (const [name, setting] of settings) {
    if (!/^[a-z_][a-z0-9_.]*$/.test(name)) continue;
    if (NOT_CARRIED[name]) {
      dropped.push({ name, why: NOT_CARRIED[name] });
      continue;
    }
    const renamed = RENAMED.find(([old]) => old === name);
    if (!known.has(name) && !name.includes(".")) {
      dropped.push({ name, why: renamed ? `renamed to ${renamed[1]} in ${renamed[2]} (units may differ): set it by hand` : `PostgreSQL ${to} has no such parameter (removed)` });
      continue;
    }
    carried.push(name);
    lines.push(`${name} = ${quote(setting)}`);
  }
  if (dropped.length) {
    lines.push("", "# Not carried:");
    for (const d of dropped) lines.push(`#   ${d.name}: ${d.why}`);
  }
  return { text: lines.join("\n") + "\n", carried, dropped };
}

export const CARRIED_FILE = "understudy-live.conf";

/**
 * Write the carried settings into `dataDir` and include them from its postgresql.conf
 * (once). As the OS user, who owns the data directory.
 */
export async function writeCarriedConfig(host: Host, osUser: string, dataDir: string, binDir: string, settings: string[][], from: number, to: number): Promise<CarriedConfig> {
  validatePath(dataDir, "dataDir", "data directory");
  validatePath(binDir, "toBinDir", "bin directory");
  if (!Array.isArray(settings) || settings.some((r) => !Array.isArray(r) || r.length < 2)) throw new InputError("settings", "must be [name, setting] rows");
  const described = await host.runAs(osUser, [`${binDir}/postgres`, "--describe-config"], { timeoutMs: 60_000, cwd: "/" });
  const known = new Set(described.stdout.split("\n").map((l) => l.split("\t")[0]).filter(Boolean));
  const c = carriedConfig(settings, known, from, to);
  const opts = { cwd: "/", timeoutMs: 60_000 };
  const conf = `${dataDir}/postgresql.conf`;
  // The file and the look for its include line are independent: at once.
  const [, has] = await Promise.all([
    host.runAs(osUser, ["sh", "-c", 'umask 077 && cat > "$1"', "sh", `${dataDir}/${CARRIED_FILE}`], { ...opts, input: c.text }),
    host.runAs(osUser, ["grep", "-qxF", `include '${CARRIED_FILE}'`, "--", conf], { ...opts, okExitCodes: [0, 1] }),
  ]);
  if (has.exitCode !== 0) {
    await host.runAs(osUser, ["sh", "-c", 'cat >> "$1"', "sh", conf], { ...opts, input: `\n# Live's settings, carried over by pulumi-understudy.\ninclude '${CARRIED_FILE}'\n` });
  }
  return c;
}
