/**
 * Input rules of the PostgreSQL driver, checked before any command runs. They are
 * deliberately conservative: several of these values end up inside strings that a shell
 * parses even though Understudy itself never uses a shell — `pg_ctl` runs the server
 * through `/bin/sh -c "exec postgres -D \"<dataDir>\" <-o options> >> \"<logFile>\""`,
 * and `pg_upgrade` runs `pg_ctl` through `system()` with the data directories and its
 * `-o/-O` options between double quotes. So paths and server settings may not contain
 * quotes, `$`, backticks, backslashes, spaces or newlines.
 */
import { PostgresInputError } from "./errors";

/** Majors this driver knows how to drive (pg_upgrade, pg_controldata, GUC names). */
export const MIN_MAJOR = 10;
export const MAX_MAJOR = 18;

/** `13`, `"13"` -> 13. Rejects 9.6, minors like 13.2, anything outside 10..18. */
export function validateVersion(value: unknown, field = "postgres.version"): number {
  let n: number;
  if (typeof value === "number") n = value;
  else if (typeof value === "string" && /^\s*\d+(\.\d+)?\s*$/.test(value)) n = Number(value.trim());
  else throw new PostgresInputError(field, `${JSON.stringify(value)} is not a PostgreSQL major version (an integer, ${MIN_MAJOR}..${MAX_MAJOR})`);
  if (n === 9.6 || (n >= 9 && n < 10)) {
    throw new PostgresInputError(field, `${n} is not supported: PostgreSQL 9.6 and older are out of scope (${MIN_MAJOR}..${MAX_MAJOR})`);
  }
  if (!Number.isInteger(n)) {
    throw new PostgresInputError(field, `${value} is not a major version: since PostgreSQL 10 the major is one number (use ${Math.trunc(n)})`);
  }
  if (n < MIN_MAJOR || n > MAX_MAJOR) {
    throw new PostgresInputError(field, `${n} is outside the supported majors ${MIN_MAJOR}..${MAX_MAJOR}`);
  }
  return n;
}

/** A TCP port a server may listen on: 1024..65535 (never a privileged port). */
export function validatePort(value: unknown, field = "postgres.port"): number {
  const n = typeof value === "string" && /^\d+$/.test(value) ? Number(value) : value;
  if (typeof n !== "number" || !Number.isInteger(n) || n < 1024 || n > 65535) {
    throw new PostgresInputError(field, `${JSON.stringify(value)} is not a port in 1024..65535`);
  }
  return n;
}

const PATH_COMPONENT = /^[A-Za-z0-9_.+@-]+$/;
export const MAX_PATH = 1024;
/** sun_path is 108 bytes: `<dir>/.s.PGSQL.<port>` must fit in 107 characters. */
export const MAX_SOCKET_DIR = 107 - "/.s.PGSQL.65535".length;

/**
 * An absolute path made of letters, digits and `_ . + @ -` components; no `.`/`..`
 * components, no doubled or trailing slash, not `/` itself. Returns it unchanged.
 */
export function validatePath(value: unknown, field: string, what = "path"): string {
  if (typeof value !== "string") throw new PostgresInputError(field, `${what} must be a string`);
  if (value.length === 0) throw new PostgresInputError(field, `${what} is empty`);
  if (value.length > MAX_PATH) throw new PostgresInputError(field, `${what} is longer than ${MAX_PATH} characters`);
  if (!value.startsWith("/")) throw new PostgresInputError(field, `${JSON.stringify(value)} must be an absolute path`);
  if (value === "/") throw new PostgresInputError(field, `"/" is not allowed as a ${what}`);
  const parts = value.slice(1).split("/");
  for (const p of parts) {
    if (p === "") throw new PostgresInputError(field, `${JSON.stringify(value)} has an empty component (doubled or trailing "/")`);
    if (p === "." || p === "..") throw new PostgresInputError(field, `${JSON.stringify(value)} must not contain "${p}" components`);
    if (!PATH_COMPONENT.test(p)) {
      const bad = [...p].find((ch) => !/[A-Za-z0-9_.+@-]/.test(ch)) ?? "?";
      throw new PostgresInputError(
        field,
        `${JSON.stringify(value)} contains ${JSON.stringify(bad)}; a ${what} may only use letters, digits and _ . + @ - (it is passed through pg_ctl's shell)`,
      );
    }
  }
  return value;
}

export function validateDataDir(value: unknown, field = "postgres.dataDir"): string {
  return validatePath(value, field, "data directory");
}

export function validateSocketDir(value: unknown, field = "postgres.socketDir"): string {
  const p = validatePath(value, field, "socket directory");
  if (p.length > MAX_SOCKET_DIR) {
    throw new PostgresInputError(field, `${JSON.stringify(p)} is too long for a unix socket directory (at most ${MAX_SOCKET_DIR} characters)`);
  }
  return p;
}

/** Database and role names: letters, digits, `_`, starting with a letter or `_`, at most 63. */
export function validateName(value: unknown, field: string, what = "name"): string {
  if (typeof value !== "string" || !/^[A-Za-z_][A-Za-z0-9_]{0,62}$/.test(value)) {
    throw new PostgresInputError(
      field,
      `${JSON.stringify(value)} is not an accepted ${what} (letters, digits and _, starting with a letter or _, at most 63 characters)`,
    );
  }
  return value;
}

export function validateOsUser(value: unknown, field = "postgres.osUser"): string {
  if (typeof value !== "string" || !/^[a-z_][a-z0-9_-]{0,31}$/.test(value)) {
    throw new PostgresInputError(field, `${JSON.stringify(value)} is not a valid OS user name`);
  }
  return value;
}

/** `listen_addresses`: "" (unix socket only), `*`, `localhost` or IP literals, comma-separated. */
export function validateListen(value: unknown, field = "postgres.listen"): string {
  if (typeof value !== "string") throw new PostgresInputError(field, "must be a string");
  if (value === "") return value;
  const parts = value.split(",").map((s) => s.trim());
  for (const p of parts) {
    const ok =
      p === "*" ||
      p === "localhost" ||
      /^(25[0-5]|2[0-4]\d|1?\d?\d)(\.(25[0-5]|2[0-4]\d|1?\d?\d)){3}$/.test(p) ||
      (/^[0-9A-Fa-f:]+$/.test(p) && p.includes(":") && p.length <= 39);
    if (!ok) throw new PostgresInputError(field, `${JSON.stringify(p)} is not "", "*", "localhost" or an IP address`);
  }
  return parts.join(",");
}

/** A server setting name for `-c name=value` (a GUC, optionally `ext.name`). */
export function validateSettingName(value: unknown, field = "postgres.settings"): string {
  if (typeof value !== "string" || !/^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)?$/.test(value) || value.length > 63) {
    throw new PostgresInputError(field, `${JSON.stringify(value)} is not a server setting name`);
  }
  return value;
}

/**
 * A server setting value. It is single-quoted inside the shell strings of pg_ctl and
 * pg_upgrade, so quotes, `$`, backticks, backslashes and control characters are refused.
 */
export function validateSettingValue(name: string, value: unknown, field = "postgres.settings"): string {
  const v = typeof value === "number" || typeof value === "boolean" ? String(value) : value;
  if (typeof v !== "string" || v.length > 512 || !/^[A-Za-z0-9 _./:,+@%=*-]*$/.test(v)) {
    throw new PostgresInputError(
      `${field}.${name}`,
      `${JSON.stringify(value)} may only use letters, digits, spaces and _ . / : , + @ % = * - (it is passed through a shell by pg_ctl)`,
    );
  }
  return v;
}

/** Locale names for initdb (`C`, `C.UTF-8`, `en_US.UTF-8`, `de_DE@euro`). */
export function validateLocale(value: unknown, field = "postgres.locale"): string {
  if (typeof value !== "string" || !/^[A-Za-z0-9_.@-]{1,64}$/.test(value)) {
    throw new PostgresInputError(field, `${JSON.stringify(value)} is not a locale name`);
  }
  return value;
}

export function validateEncoding(value: unknown, field = "postgres.encoding"): string {
  if (typeof value !== "string" || !/^[A-Za-z0-9_]{1,32}$/.test(value)) {
    throw new PostgresInputError(field, `${JSON.stringify(value)} is not an encoding name`);
  }
  return value;
}

export function validateTimeout(value: unknown, field: string): number {
  if (typeof value !== "number" || !Number.isFinite(value) || value < 100 || value > 7 * 24 * 3600 * 1000) {
    throw new PostgresInputError(field, `${JSON.stringify(value)} is not a timeout in milliseconds (100 ms .. 7 days)`);
  }
  return value;
}

/** Where `pg` connects: a unix socket directory (absolute path) or a host name / IP address. */
export function validateConnHost(value: unknown, field = "connection.host"): string {
  if (typeof value === "string" && value.startsWith("/")) return validateSocketDir(value, field);
  if (typeof value !== "string" || !/^[A-Za-z0-9.:-]{1,253}$/.test(value) || value.startsWith("-")) {
    throw new PostgresInputError(field, `${JSON.stringify(value)} is neither a socket directory nor a host name or IP address`);
  }
  return value;
}

/** The parent directory of an absolute path. */
export function parentDir(p: string): string {
  const t = p.replace(/\/$/, "");
  const i = t.lastIndexOf("/");
  return i <= 0 ? "/" : t.slice(0, i);
}
