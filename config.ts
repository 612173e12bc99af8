/**
 * The stack configuration of the root program: a stack file *is* a rehearsal. Validated
 * with zod before any resource is declared: a bad value fails `pulumi preview`/`up` with
 * the field's name and what is expected, and nothing runs.
 */
import { z } from "zod";

const ident = z.string().regex(/^[A-Za-z_][A-Za-z0-9_]{0,62}$/, "a plain identifier (letters, digits, _)");
const dataset = z.string().regex(/^[A-Za-z][A-Za-z0-9_.:-]*(\/[A-Za-z0-9_.:-]+)*$/, "a ZFS dataset name like tank/pg13");
const absPath = z.string().regex(/^\/[A-Za-z0-9_./-]*$/, "an absolute path").refine((p) => !p.split("/").includes(".."), "no ..");
const version = z.number().int("an integer major version").min(10, "10 or newer").max(18, "18 or older");
const port = z.number().int().min(1024, "a port from 1024").max(65535, "a port up to 65535");

const connectionFields = {
  host: z.string().min(1),
  port: z.number().int().min(1).max(65535).optional(),
  user: z.string().optional(),
  password: z.string().optional(),
  privateKey: z.string().optional(),
  privateKeyPassword: z.string().optional(),
  hostKey: z.string().optional(),
  agentSocketPath: z.string().optional(),
  dialErrorLimit: z.number().int().optional(),
  perDialTimeout: z.number().int().optional(),
};

export const connectionSchema = z
  .object({
    ...connectionFields,
    proxy: z.object(connectionFields).strict().optional(),
  })
  .strict();

const step = z
  .object({
    name: z.string().regex(/^[A-Za-z0-9_-]{1,40}$/, "1-40 letters, digits, - or _"),
    sql: z.string().min(1).optional(),
    sqlFile: z.string().min(1).optional(),
    command: z.array(z.string()).min(1).optional(),
    phase: z.enum(["before-upgrade", "after-upgrade"]).optional(),
    cutover: z.boolean().optional(),
    database: ident.optional(),
    timeoutMs: z.number().int().positive().optional(),
  })
  .strict()
  .refine((s) => [s.sql, s.sqlFile, s.command].filter((x) => x !== undefined).length === 1, "give exactly one of sql, sqlFile, command");

export const rehearsalConfigSchema = z
  .object({
    host: connectionSchema.optional(),
    source: z
      .object({
        dataset,
        pgdata: z.string().regex(/^[A-Za-z0-9_.-]+(\/[A-Za-z0-9_.-]+)*$/, "a relative path inside the dataset").optional(),
        version,
        port: port.optional(),
        socketDir: absPath.optional(),
        checkpoint: z.boolean().optional(),
        binDir: absPath.optional(),
        osUser: z.string().regex(/^[a-z_][a-z0-9_-]{0,31}$/).optional(),
        superuser: ident.optional(),
      })
      .strict(),
    snapshot: z.string().regex(/^[A-Za-z0-9_.:-]+$/, '"new", "latest" or a snapshot name').optional(),
    clone: z.object({ dataset, mountpoint: absPath.optional() }).strict(),
    to: version,
    toBinDir: absPath.optional(),
    postgres: z
      .object({ port, tempPort: port.optional(), socketDir: absPath.optional(), listen: z.string().optional(), database: ident.optional() })
      .strict(),
    mode: z.enum(["link", "clone", "copy"]).optional(),
    steps: z.array(step).optional(),
    checks: z
      .object({
        rowCounts: z.enum(["exact", "none"]).optional(),
        checksumTables: z.array(z.string()).optional(),
        assertions: z.array(z.object({ name: z.string().min(1), sql: z.string().min(1), database: ident.optional() }).strict()).optional(),
        rowCountLimitBytes: z.number().int().nonnegative().optional(),
        checksumSamplePercent: z.number().positive().max(100).optional(),
      })
      .strict()
      .optional(),
    reportDir: z.string().optional(),
    promote: z.boolean().optional(),
    method: z.enum(["replay", "logical"]).optional(),
    logical: z
      .object({
        maxLagBytes: z.number().int().nonnegative().optional(),
        switchoverTimeoutMs: z.number().int().min(30_000).max(3_600_000).optional(),
        applyTimeoutMs: z.number().int().min(100).max(600_000).optional(),
        retainedWalLimitBytes: z.number().int().positive().optional(),
        accept: z.array(z.enum(["large-objects", "unlogged-tables", "live-subscriptions", "materialized-views", "foreign-tables"])).optional(),
      })
      .strict()
      .optional(),
    endpoint: z
      .object({
        name: z.string().regex(/^[a-z0-9][a-z0-9-]{0,40}$/, "lower-case letters, digits and -"),
        listenPort: port,
        database: ident,
        databases: z.array(ident).min(1).optional(),
        listenAddr: z.string().optional(),
        authType: z.enum(["trust", "md5", "scram-sha-256"]).optional(),
        pauseTimeoutMs: z.number().int().positive().optional(),
        /** Where PgBouncer reaches live and the new live over TCP (e.g. 127.0.0.1). */
        serverHost: z.string().optional(),
        /** Set with `pulumi config set --secret --path 'understudy:endpoint.users[0].password'`. */
        users: z.array(z.object({ name: z.string().min(1), password: z.string().optional() }).strict()).optional(),
      })
      .strict()
      .optional(),
  })
  .strict()
  .refine((c) => c.to > c.source.version, { message: "must be newer than source.version", path: ["to"] })
  .refine((c) => c.postgres.port !== c.source.port, { message: "must differ from source.port (the live server's port)", path: ["postgres", "port"] })
  .refine((c) => !c.promote || c.endpoint, { message: "promote needs an endpoint (clients must reach the database through it)", path: ["promote"] })
  .refine((c) => c.logical === undefined || c.method === "logical", { message: 'is for method "logical"', path: ["logical"] });

export type RehearsalConfig = z.infer<typeof rehearsalConfigSchema>;

/** Parse the `understudy:*` config; throws one message listing every problem with its field. */
/**
 * One stack configuration value as Pulumi stores it: JSON when it parses (objects, numbers,
 * booleans: `pulumi config set --path` and `--type` write JSON), the plain string otherwise
 * (`pulumi config set understudy:method logical`). The schema then says what is wrong with it.
 */
export function stackConfigValue(text: string | undefined): unknown {
  if (text === undefined) return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text;
  }
}

export function parseConfig(raw: Record<string, unknown>, namespace = "understudy"): RehearsalConfig {
  const r = rehearsalConfigSchema.safeParse(raw);
  if (r.success) return r.data;
  const lines = r.error.issues.map((i) => {
    const [top, ...rest] = i.path.map(String);
    const where = top ? `${namespace}:${top}${rest.length ? "." + rest.join(".") : ""}` : namespace;
    return `  - ${where}: ${i.message}`;
  });
  throw new Error(`invalid stack configuration (nothing was run):\n${lines.join("\n")}`);
}
