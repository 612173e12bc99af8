import { z } from "zod";

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
   * Expected host public key, as in `known_hosts` (e.g. `ssh-ed25519 AAAA...`). When set,
   * any other key is refused. Not in `@pulumi/command`; recommended for production.
   */
  hostKey?: string;
  /** Dial attempts before giving up. Default 10; -1 means no limit. */
  dialErrorLimit?: number;
  /** Seconds per dial attempt. Default 15. */
  perDialTimeout?: number;
  /** A bastion to go through first (same shape, without a further proxy). */
  proxy?: Omit<ConnectionArgs, "proxy">;
}

const hostname = z
  .string()
  .min(1, "host is required")
  .max(253)
  .regex(/^[A-Za-z0-9.:_\-\[\]%]+$/, "host must be a hostname or an IP address (letters, digits, . : - _ [ ])");
const user = z
  .string()
  .regex(/^[a-z_][a-z0-9_.-]*\$?$/i, "user must be a plain login name")
  .max(64);

const base = z.object({
  host: hostname,
  port: z.number().int().min(1).max(65535).optional(),
  user: user.optional(),
  password: z.string().optional(),
  privateKey: z.string().optional(),
  privateKeyPassword: z.string().optional(),
  agentSocketPath: z.string().optional(),
  hostKey: z
    .string()
    .regex(/^(ssh-|ecdsa-|sk-)[A-Za-z0-9@.-]+ [A-Za-z0-9+/=]+( .*)?$/, "hostKey must look like `ssh-ed25519 AAAA...`")
    .optional(),
  dialErrorLimit: z.number().int().min(-1).optional(),
  perDialTimeout: z.number().int().min(1).optional(),
});

export const connectionSchema = base.extend({ proxy: base.optional() });

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
    throw new Error(`${field}.${issue.path.join(".")}: ${issue.message}`);
  }
  const c = parsed.data;
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
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const fs = require("node:fs") as typeof import("node:fs");
    out.privateKey = fs.readFileSync(env.UNDERSTUDY_SSH_PRIVATE_KEY_FILE, "utf8");
  }
  if (env.UNDERSTUDY_SSH_PASSWORD) out.password = env.UNDERSTUDY_SSH_PASSWORD;
  return out;
}

/** `user@host:port`, never a secret. */
export function describeConnection(c: Pick<ResolvedConnection, "user" | "host" | "port">): string {
  return `${c.user}@${c.host}:${c.port}`;
}
