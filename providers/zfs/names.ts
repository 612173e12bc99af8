import { isArgv } from "../host/types";
import { InputError } from "../errors";
import { validateOsUser, validatePath } from "../validate";
/**
 * ZFS naming rules, checked before any command runs. We accept the subset that both
 * zfs-fuse and OpenZFS 2.x accept: components of letters, digits and `_ - . :`; no
 * spaces (OpenZFS allows them, many tools do not); `.` and `..` are not components;
 * names are at most 255 bytes; a pool name starts with a letter and is not a reserved
 * vdev word.
 */
const COMPONENT = /^[A-Za-z0-9_.:-]+$/;
const RESERVED_POOL = /^(mirror|raidz\d?|draid\d?|spare|log|cache|special|dedup)/;
export const MAX_NAME = 255;

export class ZfsNameError extends InputError {
  constructor(field: string, value: unknown, why: string) {
    super(field, `${JSON.stringify(value)} is not a valid ZFS name: ${why}`);
    this.name = "ZfsNameError";
  }
}

function checkComponent(field: string, full: string, c: string, what: string): void {
  if (c.length === 0) throw new ZfsNameError(field, full, `empty ${what} (doubled or trailing "/")`);
  if (c === "." || c === "..") throw new ZfsNameError(field, full, `"${c}" is not allowed as a ${what}`);
  if (!COMPONENT.test(c)) {
    const bad = [...c].find((ch) => !/[A-Za-z0-9_.:-]/.test(ch)) ?? "?";
    throw new ZfsNameError(field, full, `${what} contains ${JSON.stringify(bad)}; only letters, digits and _ - . : are allowed`);
  }
}

/** A filesystem or volume name like `tank/db/pg13`. Returns it unchanged. */
export function validateDataset(value: unknown, field = "dataset"): string {
  if (typeof value !== "string") throw new ZfsNameError(field, value, "must be a string");
  if (value.length > MAX_NAME) throw new ZfsNameError(field, value.slice(0, 40) + "…", `longer than ${MAX_NAME} characters`);
  if (value.includes("@")) throw new ZfsNameError(field, value, "a dataset name has no @ (that is a snapshot)");
  if (value.startsWith("/")) throw new ZfsNameError(field, value, "a dataset name has no leading / (it is not a path)");
  const parts = value.split("/");
  parts.forEach((p, i) => checkComponent(field, value, p, i === 0 ? "pool name" : "dataset component"));
  if (!/^[A-Za-z]/.test(parts[0])) throw new ZfsNameError(field, value, "the pool name must start with a letter");
  if (RESERVED_POOL.test(parts[0])) throw new ZfsNameError(field, value, `the pool name "${parts[0]}" is reserved`);
  return value;
}

/** The short part after `@`, like `before-upgrade`. */
export function validateSnapshotShortName(value: unknown, field = "name"): string {
  if (typeof value !== "string") throw new ZfsNameError(field, value, "must be a string");
  if (value.includes("@") || value.includes("/")) throw new ZfsNameError(field, value, "a snapshot name has no @ or /");
  checkComponent(field, value, value, "snapshot name");
  return value;
}

/** A full snapshot name `pool/ds@snap`. */
export function validateSnapshot(value: unknown, field = "snapshot"): string {
  if (typeof value !== "string") throw new ZfsNameError(field, value, "must be a string");
  const at = value.indexOf("@");
  if (at < 0) throw new ZfsNameError(field, value, "a snapshot name is dataset@name");
  validateDataset(value.slice(0, at), field);
  validateSnapshotShortName(value.slice(at + 1), field);
  if (value.length > MAX_NAME) throw new ZfsNameError(field, value.slice(0, 40) + "…", `longer than ${MAX_NAME} characters`);
  return value;
}

/** A user property `module:name` (lower case, as ZFS requires). */
export function validateUserProperty(value: unknown, field = "property"): string {
  if (typeof value !== "string" || !/^[a-z0-9_.-]+:[a-z0-9_.:-]+$/.test(value) || value.length > 255) {
    throw new InputError(field, `${JSON.stringify(value)} is not a valid ZFS user property (lower-case "module:name")`);
  }
  return value;
}

/** A native property we allow users to set on clones. */
const NATIVE_SETTABLE = new Set([
  "mountpoint", "canmount", "readonly", "compression", "atime", "recordsize", "quota",
  "refquota", "reservation", "refreservation", "primarycache", "secondarycache", "logbias",
  "sync", "exec", "setuid", "devices", "snapdir", "xattr", "copies", "checksum",
]);

export function validatePropertyName(value: unknown, field = "properties"): string {
  if (typeof value === "string" && NATIVE_SETTABLE.has(value)) return value;
  if (typeof value === "string" && value.includes(":")) return validateUserProperty(value, field);
  throw new InputError(field, `${JSON.stringify(value)} is not a property Understudy sets (native: ${[...NATIVE_SETTABLE].join(", ")}; or a user property module:name)`);
}

/** Property values go into argv as `name=value`: printable, no newline, bounded. */
export function validatePropertyValue(name: string, value: unknown, field = "properties"): string {
  if (typeof value !== "string") throw new InputError(`${field}.${name}`, "value must be a string");
  if (value.length > 1024 || /[\0\n\r]/.test(value)) {
    throw new InputError(`${field}.${name}`, "value must be one printable line of at most 1024 characters");
  }
  if (name === "mountpoint" && !(value === "none" || value === "legacy")) validatePath(value, `${field}.mountpoint`, "mountpoint");
  return value;
}

/** Split `pool/ds@snap`. */
export function splitSnapshot(name: string): { dataset: string; snap: string } {
  const at = name.indexOf("@");
  return { dataset: name.slice(0, at), snap: name.slice(at + 1) };
}

/**
 * A consistency hook run right before a snapshot (ZfsSnapshot, SnapshotSchedule): an argv
 * (no shell) and the OS user to run it as.
 */
export function validateHook(hook: unknown, user: unknown): void {
  if (hook !== undefined && !isArgv(hook)) throw new InputError("hook", "must be a non-empty argv array of single-line strings");
  if (user !== undefined) validateOsUser(user, "hookUser");
}

