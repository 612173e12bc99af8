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
import {
  MAX_PATH,
  MAX_SOCKET_DIR,
  MIN_MAJOR,
  MAX_MAJOR,
  parentDir,
  validateListenPort,
  validateOsUser as sharedOsUser,
  validatePath as sharedPath,
  validatePgName,
  validateSocketDir as sharedSocketDir,
  validateTimeoutMs,
  validateVersion as sharedVersion,
} from "../validate";
import { InputError } from "../errors";

export { MAX_PATH, MAX_SOCKET_DIR, MIN_MAJOR, MAX_MAJOR, parentDir };

/** The shared rule (providers/validate.ts), thrown as the driver's own error type. */
function pg<T>(fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof InputError && !(e instanceof PostgresInputError)) throw new PostgresInputError(e.field, e.reason);
    throw e;
  }
}

export const validateVersion = (value: unknown, field = "postgres.version"): number => pg(() => sharedVersion(value, field));
/** A TCP port a server may listen on: 1024..65535 (never a privileged port). */
export const validatePort = (value: unknown, field = "postgres.port"): number => pg(() => validateListenPort(value, field));
export const validatePath = (value: unknown, field: string, what = "path"): string => pg(() => sharedPath(value, field, what));
export const validateDataDir = (value: unknown, field = "postgres.dataDir"): string => validatePath(value, field, "data directory");
export const validateSocketDir = (value: unknown, field = "postgres.socketDir"): string => pg(() => sharedSocketDir(value, field));
/** Database and role names: letters, digits, `_`, starting with a letter or `_`, at most 63. */
export const validateName = (value: unknown, field: string, what = "name"): string => pg(() => validatePgName(value, field, what));
export const validateOsUser = (value: unknown, field = "postgres.osUser"): string => pg(() => sharedOsUser(value, field));
export const validateTimeout = (value: unknown, field: string): number => pg(() => validateTimeoutMs(value, field));

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


/** Where `pg` connects: a unix socket directory (absolute path) or a host name / IP address. */
export function validateConnHost(value: unknown, field = "connection.host"): string {
  if (typeof value === "string" && value.startsWith("/")) return validateSocketDir(value, field);
  if (typeof value !== "string" || !/^[A-Za-z0-9.:-]{1,253}$/.test(value) || value.startsWith("-")) {
    throw new PostgresInputError(field, `${JSON.stringify(value)} is neither a socket directory nor a host name or IP address`);
  }
  return value;
}

