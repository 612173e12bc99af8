/**
 * The validators every layer shares: one rule per kind of value, so that a value checked in
 * `pulumi preview` by one provider can never be refused later by another after live was
 * stopped (a path PgBouncer refused while PostgreSQL accepted it did exactly that).
 * Each returns the value (normalized) or throws {@link InputError} naming the field.
 *
 * The charsets are deliberately conservative: paths and settings end up in strings that a
 * shell parses even though Understudy never builds one itself (`pg_ctl` runs the server
 * through `sh -c`, `pg_upgrade` runs `pg_ctl` through `system()`), and in PgBouncer's ini
 * files. So paths may not contain quotes, `$`, backticks, backslashes, spaces, `;`, `#`,
 * `=` or newlines.
 */
import { InputError } from "./errors";

/** Majors Understudy knows how to drive (pg_upgrade, pg_controldata, setting names). */
export const MIN_MAJOR = 10;
export const MAX_MAJOR = 18;
export const MAX_PATH = 1024;
/** sun_path is 108 bytes: `<dir>/.s.PGSQL.<port>` must fit in 107 characters. */
export const MAX_SOCKET_DIR = 107 - "/.s.PGSQL.65535".length;
const PATH_CHAR = /[A-Za-z0-9_.-]/;
const PATH_COMPONENT = /^[A-Za-z0-9_.-]+$/;

export function show(v: unknown): string {
  if (typeof v === "string") return JSON.stringify(v.length > 80 ? v.slice(0, 80) + "…" : v);
  return JSON.stringify(v) ?? String(v);
}

/** `13`, `"13"` -> 13. Rejects 9.6, minors like 13.2, anything outside 10..18. */
export function validateVersion(value: unknown, field = "version"): number {
  let n: number;
  if (typeof value === "number") n = value;
  else if (typeof value === "string" && /^\s*\d+(\.\d+)?\s*$/.test(value)) n = Number(value.trim());
  else throw new InputError(field, `${show(value)} is not a PostgreSQL major version (an integer, ${MIN_MAJOR}..${MAX_MAJOR})`);
  if (n >= 9 && n < 10) {
    throw new InputError(field, `${n} is not supported: PostgreSQL 9.6 and older are out of scope (${MIN_MAJOR}..${MAX_MAJOR})`);
  }
  if (!Number.isInteger(n)) {
    throw new InputError(field, `${show(value)} is not a major version: since PostgreSQL 10 the major is one number (use ${Math.trunc(n)})`);
  }
  if (n < MIN_MAJOR || n > MAX_MAJOR) throw new InputError(field, `${n} is outside the supported majors ${MIN_MAJOR}..${MAX_MAJOR}`);
  return n;
}

/** A port a server we start listens on (PostgreSQL, PgBouncer): 1024..65535, never a privileged port. */
export function validateListenPort(value: unknown, field = "port"): number {
  const n = typeof value === "string" && /^\d+$/.test(value) ? Number(value) : value;
  if (typeof n !== "number" || !Number.isInteger(n) || n < 1024 || n > 65535) {
    throw new InputError(field, `${show(value)} is not a port in 1024..65535`);
  }
  return n;
}

/** A port we connect to (a server someone else runs): 1..65535. */
export function validatePortNumber(value: unknown, field = "port"): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < 1 || value > 65535) {
    throw new InputError(field, `${show(value)} is not a valid port (an integer 1..65535)`);
  }
  return value;
}

/**
 * An absolute path made of letters, digits and `_ . -` components; no `.`/`..`
 * components, no doubled or trailing slash, not `/` itself.
 */
export function validatePath(value: unknown, field: string, what = "path"): string {
  if (typeof value !== "string") throw new InputError(field, `${what} must be a string`);
  if (value.length === 0) throw new InputError(field, `${what} is empty`);
  if (value.length > MAX_PATH) throw new InputError(field, `${what} is longer than ${MAX_PATH} characters`);
  if (!value.startsWith("/")) throw new InputError(field, `${show(value)} must be an absolute path`);
  if (value === "/") throw new InputError(field, `"/" is not allowed as a ${what}`);
  for (const p of value.slice(1).split("/")) {
    if (p === "") throw new InputError(field, `${show(value)} has an empty component (doubled or trailing "/")`);
    if (p === "." || p === "..") throw new InputError(field, `${show(value)} must not contain "${p}" components`);
    if (!PATH_COMPONENT.test(p)) {
      const bad = [...p].find((ch) => !PATH_CHAR.test(ch)) ?? "?";
      throw new InputError(field, `${show(value)} contains ${JSON.stringify(bad)}; a ${what} may only use letters, digits and _ . - (it is passed through shells and ini files)`);
    }
  }
  return value;
}

/** A path relative to a volume's root (e.g. PGDATA inside a dataset): same charset, no leading `/`, no `..`. */
export function validateRelativePath(value: unknown, field: string, what = "relative path"): string {
  if (typeof value !== "string" || value.startsWith("/")) throw new InputError(field, `${show(value)} must be a ${what} (no leading /)`);
  validatePath(`/${value}`, field, what);
  return value;
}

export function validateSocketDir(value: unknown, field = "socketDir"): string {
  const p = validatePath(value, field, "socket directory");
  if (p.length > MAX_SOCKET_DIR) {
    throw new InputError(field, `${show(p)} is too long for a unix socket directory (at most ${MAX_SOCKET_DIR} characters)`);
  }
  return p;
}

/** Database and role names as Understudy accepts them: letters, digits, `_`, starting with a letter or `_`, at most 63. */
export function validatePgName(value: unknown, field: string, what = "name"): string {
  if (typeof value !== "string" || !/^[A-Za-z_][A-Za-z0-9_]{0,62}$/.test(value)) {
    throw new InputError(field, `${show(value)} is not an accepted ${what} (letters, digits and _, starting with a letter or _, at most 63 characters)`);
  }
  return value;
}

/** An OS account name (what `runuser -u` and `sudo -u` take). */
export function validateOsUser(value: unknown, field = "osUser"): string {
  if (typeof value !== "string" || !/^[a-z_][a-z0-9_-]{0,31}$/.test(value)) {
    throw new InputError(field, `${show(value)} is not a valid OS user name`);
  }
  return value;
}

/** Milliseconds within [min, max]; the defaults cover every wait Understudy has (100 ms .. 7 days). */
export function validateTimeoutMs(value: unknown, field: string, bounds: { min?: number; max?: number } = {}): number {
  const min = bounds.min ?? 100;
  const max = bounds.max ?? 7 * 24 * 3600 * 1000;
  if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
    throw new InputError(field, `${show(value)} is not a timeout in milliseconds (an integer ${min}..${max})`);
  }
  return value;
}

/** A command given as argv (run without a shell): a non-empty array of single-line strings. */
export function validateArgv(value: unknown, field: string): string[] {
  if (!Array.isArray(value) || value.length === 0 || !value.every((a) => typeof a === "string" && !/[\0\n]/.test(a))) {
    throw new InputError(field, "must be a non-empty argv array of single-line strings (it runs without a shell)");
  }
  return value as string[];
}

/** A name of ours that becomes part of snapshot names, file names and ids: 1-40 of `[A-Za-z0-9_-]`. */
export function validateShortName(value: unknown, field: string): string {
  if (typeof value !== "string" || !/^[A-Za-z0-9_-]{1,40}$/.test(value)) {
    throw new InputError(field, "must be 1-40 letters, digits, - or _");
  }
  return value;
}

/** The parent directory of an absolute path. */
export function parentDir(p: string): string {
  const t = p.replace(/\/$/, "");
  const i = t.lastIndexOf("/");
  return i <= 0 ? "/" : t.slice(0, i);
}
