import { z } from "zod";
import { InputError } from "../errors";

/**
 * How to reach a host over SSH. Same field names and defaults as `@pulumi/command`'s
 * `remote.ConnectionArgs`, so an existing connection object can be passed as it is.
 * Pass it as a Pulumi secret: it is stored encrypted in state.
 */
export interface ConnectionArgs {
  /** The address of the host. */
  host: string;
  /** SSH port. Default 22. */
  port?: number;
  /** Login user. Default `root`. */
  user?: string;
  /** Password, if not using a key. */
  password?: string;
  /** Private key contents (PEM / OpenSSH format). */
  privateKey?: string;
  /** Passphrase of an encrypted private key. */
  privateKeyPassword?: string;
  /** Path to an ssh-agent socket (default `$SSH_AUTH_SOCK` when no key or password is given). */
  agentSocketPath?: string;
  /**
   * Expected host public key, `ssh-ed25519 AAAA...` (the content of the server's
   * `/etc/ssh/ssh_host_ed25519_key.pub`; a trailing comment is ignored). When set, any
   * other key is refused. Without it any host key is accepted, as in `@pulumi/command`:
   * set it in production.
   */
  hostKey?: string;
  /** Dial attempts before giving up. Default 10; -1 means no limit. */
  dialErrorLimit?: number;
  /** Seconds per dial attempt. Default 15; 0 means no limit. */
  perDialTimeout?: number;
  /** A bastion to go through first (same shape, without a further proxy). */
  proxy?: Omit<ConnectionArgs, "proxy">;
}

// `null` counts as absent (a value deleted from a stack config comes back as null).
const opt = <T extends z.ZodTypeAny>(t: T) => t.nullish().transform((v) => v ?? undefined);

const hostname = z
  .string()
  .min(1, "host is required")
  .max(253)
  .regex(/^[A-Za-z0-9.:_\-[\]%]+$/, "host must be a hostname or an IP address (letters, digits, . : - _ [ ])")
  .refine((h) => !h.startsWith("-"), "host must not start with '-'");
const user = z
  .string()
  .regex(/^[a-z_][a-z0-9_.-]*\$?$/i, "user must be a plain login name")
  .max(64);
/** Key types ssh2 can verify; the base64 blob is checked when connecting. */
const hostKey = z
  .string()
  .trim()
  .regex(
    /^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)) [A-Za-z0-9+/]+={0,2}( [^\r\n]*)?$/,
    "hostKey must be one public key line like `ssh-ed25519 AAAA... [comment]` (ed25519, rsa or ecdsa)",
  );

const fields = {
  host: hostname,
  port: opt(z.number().int().min(1).max(65535)),
  user: opt(user),
  password: opt(z.string()),
  privateKey: opt(z.string()),
  privateKeyPassword: opt(z.string()),
  agentSocketPath: opt(z.string().min(1)),
  hostKey: opt(hostKey),
  dialErrorLimit: opt(z.number().int().min(-1)),
  perDialTimeout: opt(z.number().int().min(0)),
};
// Unknown fields are refused: a misspelt `privatekey` would otherwise vanish silently and
// surface later as an authentication failure.
const base = z.object(fields).strict();

export const connectionSchema = z.object({ ...fields, proxy: opt(base) }).strict();

/** A connection with defaults applied. */
export interface ResolvedConnection extends Required<Pick<ConnectionArgs, "host" | "port" | "user" | "dialErrorLimit" | "perDialTimeout">> {
  password?: string;
  privateKey?: string;
  privateKeyPassword?: string;
  agentSocketPath?: string;
  hostKey?: string;
  proxy?: ResolvedConnection;
}

/** Validate a connection and fill in `@pulumi/command`'s defaults. Throws naming the field. */
export function resolveConnection(conn: ConnectionArgs, field = "connection"): ResolvedConnection {
  const parsed = connectionSchema.safeParse(conn);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = [field, ...issue.path].join(".");
    if (issue.code === "unrecognized_keys") {
      throw new InputError(where, `unknown field(s) ${issue.keys.join(", ")} (known: ${Object.keys(fields).join(", ")}, proxy)`);
    }
    throw new InputError(where, issue.message);
  }
  const c = parsed.data;
  // @pulumi/command's connectionArgsProvideDefaults, for the connection and its proxy.
  const fill = (x: z.infer<typeof base>): ResolvedConnection => ({
    host: x.host,
    port: x.port ?? 22,
    user: x.user ?? "root",
    dialErrorLimit: x.dialErrorLimit ?? 10,
    perDialTimeout: x.perDialTimeout ?? 15,
    password: x.password,
    privateKey: x.privateKey,
    privateKeyPassword: x.privateKeyPassword,
    agentSocketPath: x.agentSocketPath,
    hostKey: x.hostKey,
  });
  const out = fill(c);
  if (c.proxy) out.proxy = fill(c.proxy);
  return out;
}

/**
 * Credentials given at run time win over the ones stored in state, so that a rotated
 * key never makes a resource undeletable:
 * - `UNDERSTUDY_SSH_PRIVATE_KEY` (key contents) or `UNDERSTUDY_SSH_PRIVATE_KEY_FILE` (a path),
 * - `UNDERSTUDY_SSH_PASSWORD`.
 * Read when a command is about to run, never when a resource is constructed.
 */
export function applyRuntimeOverrides(c: ResolvedConnection, env: NodeJS.ProcessEnv = process.env): ResolvedConnection {
  const out = { ...c };
  if (env.UNDERSTUDY_SSH_PRIVATE_KEY) {
    out.privateKey = env.UNDERSTUDY_SSH_PRIVATE_KEY;
  } else if (env.UNDERSTUDY_SSH_PRIVATE_KEY_FILE) {
     
    const fs = require("node:fs") as typeof import("node:fs");
    const file = env.UNDERSTUDY_SSH_PRIVATE_KEY_FILE;
    try {
      out.privateKey = fs.readFileSync(file, "utf8");
    } catch (e) {
      throw new Error(`UNDERSTUDY_SSH_PRIVATE_KEY_FILE=${file}: cannot read the key: ${(e as Error).message}`, { cause: e });
    }
  }
  if (env.UNDERSTUDY_SSH_PASSWORD) out.password = env.UNDERSTUDY_SSH_PASSWORD;
  return out;
}

/** `user@host:port`, never a secret. */
export function describeConnection(c: Pick<ResolvedConnection, "user" | "host" | "port">): string {
  const host = c.host.includes(":") && !c.host.startsWith("[") ? `[${c.host}]` : c.host; // IPv6
  return `${c.user}@${host}:${c.port}`;
}
