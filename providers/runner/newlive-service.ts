/**
 * The new live as a service of the host: a STABLE path (`newLive.dataDirLink`, e.g.
 * `/var/lib/postgresql/15/main`) that the cut-over points, as a symlink, at the data directory
 * of the generation it starts, so that the user's own start/stop commands (a systemd unit,
 * `pg_ctlcluster 15 main start`) find it whichever generation (`…-live-pg15`, `…-pg15-2`, …)
 * serves. The link is only ever created or replaced by a rename of a new symlink over it
 * (`mv -T`): a real directory or file at that path is never touched.
 */
import type { Host } from "../host/types";
import { InputError } from "../errors";
import { validatePath } from "../validate";

export interface NewLiveService {
  /** Absolute path of the symlink kept pointing at the serving generation's data directory. */
  dataDirLink?: string;
  /** argv that starts / stops the new live (through the link); default pg_ctl on its data directory. */
  startCommand?: string[];
  stopCommand?: string[];
}

export type LinkState = { kind: "absent"; parentExists: boolean } | { kind: "link"; target: string; resolved?: string } | { kind: "other" };

const READ = { okExitCodes: [0, 1], cwd: "/", timeoutMs: 60_000 };

/** What is at `link` now (read-only, as root: the path may be anywhere). */
export async function linkState(host: Host, link: string): Promise<LinkState> {
  validatePath(link, "newLive.dataDirLink");
  if ((await host.runAs("root", ["test", "-L", link], READ)).exitCode === 0) {
    const t = await host.runAs("root", ["readlink", "--", link], READ);
    const r = await host.runAs("root", ["readlink", "-e", "--", link], READ);
    return { kind: "link", target: t.stdout.trim(), ...(r.exitCode === 0 && r.stdout.trim() ? { resolved: r.stdout.trim() } : {}) };
  }
  if ((await host.runAs("root", ["test", "-e", link], READ)).exitCode === 0) return { kind: "other" };
  const parent = link.slice(0, link.lastIndexOf("/")) || "/";
  return { kind: "absent", parentExists: (await host.runAs("root", ["test", "-d", parent], READ)).exitCode === 0 };
}

const inside = (p: string, dir: string) => {
  const d = dir.replace(/\/$/, "");
  return p === d || p.startsWith(`${d}/`);
};

/**
 * Why `link` cannot be the new live's stable path, or undefined: it is inside live's data
 * directory or volumes (`liveDirs`: the data directory first, then the volumes' mountpoints),
 * or it is a symlink into live's data directory, or something other than a symlink is there,
 * or its directory does not exist. Read-only.
 */
export async function linkProblem(host: Host, link: string, liveDirs: string[]): Promise<InputError | undefined> {
  const field = "newLive.dataDirLink";
  for (const d of liveDirs) {
    if (inside(link, d) || inside(d, link)) return new InputError(field, `${link} is inside live's ${d} (or holds it): the new live's link must be outside live; nothing was done`);
  }
  const st = await linkState(host, link);
  if (st.kind === "other") {
    return new InputError(field, `${link} exists and is not a symlink: Understudy never replaces a real directory or file. Move it away (or choose another path); nothing was done`);
  }
  if (st.kind === "absent" && !st.parentExists) {
    return new InputError(field, `the directory of ${link} does not exist: create it (owned by the cluster's OS user); nothing was done`);
  }
  // Its target is live's data directory (liveDirs[0]): re-pointing it would take live's name away.
  if (st.kind === "link" && st.resolved && liveDirs.length && inside(st.resolved, liveDirs[0])) {
    return new InputError(field, `${link} points at ${st.resolved}, which is live's: re-pointing it would move live's name. Choose another path; nothing was done`);
  }
  return undefined;
}

/**
 * Point `link` at `target` atomically: a new symlink next to it, renamed over it (`mv -T`,
 * which cannot replace a directory). Refuses when something other than a symlink is there.
 */
export async function pointLink(host: Host, link: string, target: string, osUser: string, log?: (m: string) => void): Promise<void> {
  validatePath(target, "newLive.dataDirLink (target)");
  const st = await linkState(host, link);
  if (st.kind === "link" && st.target === target) return;
  if (st.kind === "other") throw new InputError("newLive.dataDirLink", `${link} exists and is not a symlink: it is never replaced; nothing was started`);
  const tmp = `${link}.understudy-new`;
  const opts = { cwd: "/", timeoutMs: 60_000 };
  await host.runAs("root", ["rm", "-f", "--", tmp], opts);
  await host.runAs("root", ["ln", "-s", "--", target, tmp], opts);
  await host.runAs("root", ["chown", "-h", `${osUser}:`, "--", tmp], opts);
  await host.runAs("root", ["mv", "-T", "--", tmp, link], opts);
  log?.(`${link} -> ${target}${st.kind === "link" ? ` (was ${st.target})` : ""}`);
}

/** Whether `link` is a symlink pointing at `dir` (as given or resolved). */
export async function linkPointsAt(host: Host, link: string, dir: string): Promise<boolean> {
  const st = await linkState(host, link);
  if (st.kind !== "link") return false;
  if (st.target === dir) return true;
  const real = await host.runAs("root", ["readlink", "-e", "--", dir], READ);
  return !!st.resolved && real.exitCode === 0 && real.stdout.trim() === st.resolved;
}

/** What `newLive.dataDirLink` was before a promotion attempt re-pointed it: absent, or a symlink to `target` (as `readlink` gives it). */
export type LinkBefore = { kind: "absent" } | { kind: "link"; target: string };

/** The link and what it was before the attempt (kept in the attempt's state and in its journal on the host). */
export interface LinkRecord {
  path: string;
  before: LinkBefore;
}

/** What is at `link` before an attempt re-points it, read-only. Refuses something other than a symlink (it is never ours). */
export async function recordLink(host: Host, link: string): Promise<LinkRecord> {
  const st = await linkState(host, link);
  if (st.kind === "other") throw new InputError("newLive.dataDirLink", `${link} exists and is not a symlink: Understudy never replaces a real directory or file; nothing was done`);
  return { path: link, before: st.kind === "link" ? { kind: "link", target: st.target } : { kind: "absent" } };
}

/**
 * Put the link back as `rec` recorded it, after an undone attempt: removed if the attempt
 * created it, else re-pointed atomically (`mv -T` of a new symlink over it) at its previous
 * target, byte for byte as `readlink` read it. Only ever a symlink is changed: if something
 * else is at the path now (a user put a directory or file there), it is left and said.
 * Returns what was done (also logged). Idempotent.
 */
export async function restoreLink(host: Host, rec: LinkRecord, osUser: string, log: (m: string) => void = () => undefined): Promise<"unchanged" | "removed" | "restored" | "left"> {
  const link = rec.path;
  const st = await linkState(host, link);
  if (st.kind === "other") {
    log(`warning: ${link} is no longer a symlink (something else was put there): left as it is, not restored to ${rec.before.kind === "link" ? `-> ${rec.before.target}` : "absent"}`);
    return "left";
  }
  const opts = { cwd: "/", timeoutMs: 60_000 };
  if (rec.before.kind === "absent") {
    if (st.kind === "absent") return "unchanged";
    // Only a symlink is removed (find -type l, checked again by the one process that deletes it).
    await host.runAs("root", ["find", link, "-maxdepth", "0", "-type", "l", "-delete"], opts);
    log(`${link} removed (the undone attempt had created it; it pointed at ${st.target})`);
    return "removed";
  }
  const before = rec.before.target;
  if (st.kind === "link" && st.target === before) return "unchanged";
  const tmp = `${link}.understudy-new`;
  await host.runAs("root", ["rm", "-f", "--", tmp], opts);
  await host.runAs("root", ["ln", "-s", "--", before, tmp], opts);
  await host.runAs("root", ["chown", "-h", `${osUser}:`, "--", tmp], opts);
  // mv -T never replaces a directory: a user's directory put there meanwhile stays (and this fails).
  await host.runAs("root", ["mv", "-T", "--", tmp, link], opts);
  log(`${link} -> ${before} again (as before the undone attempt${st.kind === "link" ? `; it pointed at ${st.target}` : "; it was gone"})`);
  return "restored";
}
