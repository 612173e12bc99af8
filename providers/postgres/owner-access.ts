/**
 * How Understudy's steps reach a server it started on a CLONE whatever live's local
 * authentication is (`scram-sha-256`, `md5`, ...), without a password: a marked block at the
 * top of the clone's pg_hba.conf lets the OS user that owns the data directory in as the
 * bootstrap superuser by `peer` authentication, through a map in the clone's pg_ident.conf.
 * Only that OS user gets in (it can already read and rewrite every file of the cluster):
 * nothing is granted that it does not have. The block is removed again byte for byte (a
 * promoted new live runs with live's files as they were).
 *
 * Also the parse of a single-user backend's output (how the bootstrap superuser is read
 * without any password). Pure functions: the driver does the I/O.
 */
import { validateName, validateOsUser } from "./validate";

/** The pg_ident.conf map the block uses. */
export const OWNER_MAP = "understudy_owner";
export const BLOCK_BEGIN = "# BEGIN understudy owner access: added on a clone by pulumi-understudy, removed again by it; do not edit";
export const BLOCK_END = "# END understudy owner access";

/** A role or OS user name as a pg_hba.conf / pg_ident.conf token: quoted, so that a name like `all` is never a keyword. */
function token(name: string): string {
  return `"${name}"`;
}

/** The pg_hba.conf block: socket connections as `superuser`, by peer, through the map. */
export function ownerHbaBlock(superuser: string): string {
  const su = validateName(superuser, "postgres.superuser", "role name");
  return `${BLOCK_BEGIN}\nlocal   all   ${token(su)}   peer   map=${OWNER_MAP}\n${BLOCK_END}\n`;
}

/** The pg_ident.conf block: the OS user that owns the data directory may be `superuser`. */
export function ownerIdentBlock(osUser: string, superuser: string): string {
  const os = validateOsUser(osUser, "postgres.osUser");
  const su = validateName(superuser, "postgres.superuser", "role name");
  return `${BLOCK_BEGIN}\n${OWNER_MAP}   ${token(os)}   ${token(su)}\n${BLOCK_END}\n`;
}

/** `text` without any Understudy block (each from its BEGIN line through its END line and that line's newline); otherwise byte for byte. */
export function withoutOwnerBlock(text: string): string {
  let out = text;
  for (;;) {
    const b = out.indexOf(`${BLOCK_BEGIN}\n`);
    if (b < 0 || (b > 0 && out[b - 1] !== "\n")) return out;
    const e = out.indexOf(`${BLOCK_END}\n`, b);
    if (e < 0) return out;
    out = out.slice(0, b) + out.slice(e + BLOCK_END.length + 1);
  }
}

/** `text` with `block` first (pg_hba.conf: the first matching line decides) and no other Understudy block. */
export function withOwnerBlock(text: string, block: string): string {
  return block + withoutOwnerBlock(text);
}

/**
 * The name in a single-user backend's answer to `SELECT rolname FROM pg_authid WHERE oid = 10`
 * (`\t 1: rolname = "admin"\t(typeid = 19, ...)`), or undefined when there is none.
 */
export function parseSingleUserRolname(stdout: string): string | undefined {
  const m = /^\s*1: rolname = "([^"\n]*)"\s/m.exec(stdout);
  return m ? m[1] : undefined;
}
