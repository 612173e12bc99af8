/**
 * Where a PostgreSQL cluster lives, beyond its data directory: a `pg_wal` symlinked
 * elsewhere, tablespaces (`pg_tblspc/<oid>` links), configuration outside PGDATA (Debian:
 * `/etc/postgresql/<v>/<cluster>/`). Read-only: `readlink`, `find`, `stat` as the OS user,
 * and `SHOW` on a running server.
 *
 * A clone of only the data directory still has those links pointing at LIVE's absolute
 * paths: recovery on the clone would replay WAL into live's tablespace files and
 * `pg_upgrade --link` would hard-link through them. So every place is snapshotted with the
 * data directory and the clone's links are re-pointed ({@link relinkClone}), and a guard
 * refuses a clone whose links leave the clone ({@link linksOutside}).
 */
import type { Host } from "../host/types";
import { InputError } from "../errors";
import { validatePath } from "../validate";

export interface TablespaceLink {
  /** The tablespace's OID (the link's name in pg_tblspc). */
  oid: string;
  /** Where the link points (absolute). */
  target: string;
}

export interface ClusterLayout {
  /** The data directory as given. */
  dataDir: string;
  /** `pg_wal`'s target when it is a symlink. */
  walLink?: string;
  tablespaces: TablespaceLink[];
  /** Configuration files outside the data directory (`SHOW config_file`, ...), when the server runs. */
  externalConfig: Array<{ setting: "config_file" | "hba_file" | "ident_file"; path: string }>;
}

/** Links inside a data directory (pg_wal, pg_tblspc/*), as `readlink` shows them. */
export async function readLinks(host: Host, osUser: string, dataDir: string): Promise<{ walLink?: string; tablespaces: TablespaceLink[] }> {
  validatePath(dataDir, "dataDir", "data directory");
  const opts = { okExitCodes: [0, 1], timeoutMs: 60_000, cwd: "/" };
  // Two independent reads, asked at once.
  const [wal, ts] = await Promise.all([
    host.runAs(osUser, ["readlink", "--", `${dataDir}/pg_wal`], opts),
    host.runAs(osUser, ["find", `${dataDir}/pg_tblspc`, "-mindepth", "1", "-maxdepth", "1", "-printf", "%f\\t%Y\\t%l\\n"], opts),
  ]);
  const walLink = wal.exitCode === 0 && wal.stdout.trim() ? wal.stdout.trim() : undefined;
  const tablespaces: TablespaceLink[] = [];
  for (const line of ts.stdout.split("\n").filter(Boolean)) {
    const [oid, type, target] = line.split("\t");
    if (!/^\d+$/.test(oid)) continue;
    // %Y is the type of what a link points at ("N" when it is dangling); a plain directory
    // (in-place tablespace, allow_in_place_tablespaces) is not a link: it lives in PGDATA.
    if (target) tablespaces.push({ oid, target: absolute(dataDir, `pg_tblspc`, target) });
    else if (type !== "d") throw new Error(`${dataDir}/pg_tblspc/${oid} is neither a link nor a directory`);
  }
  return { ...(walLink ? { walLink: absolute(dataDir, "", walLink) } : {}), tablespaces };
}

function absolute(dataDir: string, sub: string, target: string): string {
  if (target.startsWith("/")) return target.replace(/\/+$/, "");
  const base = sub ? `${dataDir}/${sub}` : dataDir;
  const parts: string[] = [];
  for (const p of `${base}/${target}`.split("/")) {
    if (!p || p === ".") continue;
    if (p === "..") parts.pop();
    else parts.push(p);
  }
  return "/" + parts.join("/");
}

/** Configuration files of a running server that are not inside its data directory. */
export async function externalConfig(
  query: (sql: string) => Promise<string[][]>,
  dataDir: string,
): Promise<ClusterLayout["externalConfig"]> {
  const rows = await query("SELECT name, setting FROM pg_settings WHERE name IN ('config_file', 'hba_file', 'ident_file', 'data_directory') ORDER BY name");
  const byName = Object.fromEntries(rows.map(([n, v]) => [n, v]));
  const real = (byName.data_directory ?? dataDir).replace(/\/+$/, "");
  const out: ClusterLayout["externalConfig"] = [];
  for (const setting of ["config_file", "hba_file", "ident_file"] as const) {
    const p = byName[setting];
    if (p && !p.startsWith(`${real}/`) && !p.startsWith(`${dataDir.replace(/\/+$/, "")}/`)) out.push({ setting, path: p });
  }
  return out;
}

/**
 * {@link externalConfig} of a live that does not answer (a promotion stopped it): `config_file`
 * from its `postmaster.opts` (left by its last start: pg_ctlcluster passes
 * `-c config_file=/etc/postgresql/<v>/<name>/postgresql.conf`), `hba_file`/`ident_file` from
 * that file's own lines (the last one wins). `conf`: the file's text, undefined when unreadable.
 * So the layout read while live is stopped is the one read while it ran (Debian clusters).
 */
export function externalConfigOfStopped(dataDir: string, postmasterOpts: string, conf: string | undefined): ClusterLayout["externalConfig"] {
  const m = /"(?:-c\s*)?config[_-]file=([^"\n]+)"/.exec(postmasterOpts) ?? /--config[_-]file=(\S+)/.exec(postmasterOpts);
  if (!m) return [];
  const byName: Record<string, string> = { config_file: m[1] };
  for (const line of (conf ?? "").split("\n")) {
    const x = /^\s*(hba_file|ident_file)\s*=?\s*'((?:[^']|'')*)'/.exec(line);
    if (x) byName[x[1]] = x[2].replace(/''/g, "'");
  }
  const d = dataDir.replace(/\/+$/, "");
  const out: ClusterLayout["externalConfig"] = [];
  for (const setting of ["config_file", "hba_file", "ident_file"] as const) {
    const p = byName[setting];
    if (p && p.startsWith("/") && !p.startsWith(`${d}/`)) out.push({ setting, path: p });
  }
  return out;
}

/** Links of a clone's data directory whose target is not inside one of `allowed` (the clone's own mounts). */
export function linksOutside(links: { walLink?: string; tablespaces: TablespaceLink[] }, allowed: string[]): string[] {
  const inside = (p: string) => allowed.some((a) => p === a || p.startsWith(`${a.replace(/\/+$/, "")}/`));
  const out: string[] = [];
  if (links.walLink && !inside(links.walLink)) out.push(`pg_wal -> ${links.walLink}`);
  for (const t of links.tablespaces) if (!inside(t.target)) out.push(`pg_tblspc/${t.oid} -> ${t.target}`);
  return out;
}

/** Point a link inside a clone's data directory somewhere else (as the OS user, who owns PGDATA). */
export async function repoint(host: Host, osUser: string, link: string, target: string): Promise<void> {
  validatePath(link, "link", "link");
  validatePath(target, "target", "link target");
  // -n: replace the link itself, never follow it into the directory it points at (live's!).
  await host.runAs(osUser, ["ln", "-sfnT", "--", target, link], { timeoutMs: 60_000, cwd: "/" });
}

export function checkRelative(path: string, field: string): string {
  if (path.startsWith("/") || path.split("/").includes("..")) throw new InputError(field, `${JSON.stringify(path)} must be relative to its volume`);
  return path;
}
