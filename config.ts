/**
 * The stack configuration of the root program: a stack file *is* a rehearsal. Validated
 * with zod before any resource is declared: a bad value fails `pulumi preview`/`up` with
 * the field's name and what is expected, and nothing runs.
 */
import { z } from "zod";
import damerauLevenshtein from "damerau-levenshtein";
import { InputError } from "./providers/errors";
import { validatePath, validateSocketDir } from "./providers/validate";
import { validateListen } from "./providers/postgres/validate";
import { checkNewLiveService, type PromotionArgsPlain } from "./providers/plan/promotion";
import { AUTH_TYPES, validatePoolMode } from "./providers/endpoint/pgbouncer-config";

const ident = z.string().regex(/^[A-Za-z_][A-Za-z0-9_]{0,62}$/, "a plain identifier (letters, digits, _)");
const dataset = z.string().regex(/^[A-Za-z][A-Za-z0-9_.:-]*(\/[A-Za-z0-9_.:-]+)*$/, "a ZFS dataset name like tank/pg13");
const absPath = z.string().regex(/^\/[A-Za-z0-9_./-]*$/, "an absolute path").refine((p) => !p.split("/").includes(".."), "no ..");
const version = z.number().int("an integer major version").min(10, "10 or newer").max(18, "18 or older");
const port = z.number().int().min(1024, "a port from 1024").max(65535, "a port up to 65535");

/**
 * A provider's own validator as a zod rule: the same rule, its reason as the message (the field
 * is zod's path). The value is kept as given; its type is the validator's (e.g. PoolMode).
 */
function byProvider<T extends string>(validate: (v: unknown, field: string) => T) {
  return z.string().superRefine((v, ctx): v is T => {
    try {
      validate(v, "");
      return true;
    } catch (e) {
      if (!InputError.is(e)) throw e;
      ctx.addIssue({ code: z.ZodIssueCode.custom, message: e.reason });
      return false;
    }
  });
}

/** A command as argv (run without a shell): a non-empty array of non-empty, single-line strings. */
const argv = z
  .array(z.string().min(1, "an empty argument").regex(/^[^\0\n]*$/, "one line (no newline or NUL)"), {
    invalid_type_error: 'an argv array such as ["pg_ctlcluster", "15", "main", "start"] (it runs without a shell)',
  })
  .min(1, "a non-empty argv array (it runs without a shell)");

/**
 * `understudy:newLive`: the Promotion's `newLive` on one host (PromotionArgs.newLive without
 * `storage`, which is the EBS backend's). Each field is checked with the provider's own rule;
 * the rule between them (a command needs `dataDirLink`) is the provider's `checkNewLiveService`.
 */
const newLiveSchema = z
  .object({
    dataset: dataset.optional(),
    port: port.optional(),
    socketDir: byProvider(validateSocketDir).optional(),
    listen: byProvider(validateListen).optional(),
    logFile: byProvider((v, f) => validatePath(v, f, "log file")).optional(),
    dataDirLink: byProvider((v, f) => validatePath(v, f, "link path")).optional(),
    startCommand: argv.optional(),
    stopCommand: argv.optional(),
  })
  .strict()
  .superRefine((n, ctx) => {
    for (const e of checkNewLiveService(n)) {
      const key = e.field.replace(/^newLive\./, "") as keyof typeof n;
      // A field's own value is already judged above (the same rule); what is left is the rule between fields.
      if (n[key] !== undefined) continue;
      ctx.addIssue({ code: z.ZodIssueCode.custom, path: [key], message: e.reason });
    }
  });

/** Why `understudy:endpoint.newLiveServerHost` is refused (the root program's storage is ZFS: one host). */
export const NEW_LIVE_SERVER_HOST_REFUSAL =
  "is for a new live on another machine than live (EBS storage, see examples/aws-ebs); this program declares ZFS storage, where the new live runs on live's host: PgBouncer reaches it at endpoint.serverHost (or its socket directory)";

/** The keys that only the Promotion reads: without `understudy:endpoint` no Promotion is declared and they would be ignored. */
const promotionOnly = ["newLive", "liveStartCommand", "liveStopCommand", "switchoverTimeoutMs", "acknowledgeReplicationLoss"] as const;

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

const configObject = z
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
        authType: z.enum(AUTH_TYPES).optional(),
        pauseTimeoutMs: z.number().int().positive().optional(),
        /** Where PgBouncer reaches live and the new live over TCP (e.g. 127.0.0.1). */
        serverHost: z.string().optional(),
        /** Set with `pulumi config set --secret --path 'understudy:endpoint.users[0].password'`. */
        users: z.array(z.object({ name: z.string().min(1), password: z.string().optional() }).strict()).optional(),
        /** PgBouncer's pool_mode (PgBouncerPromotionEndpoint.poolMode; default transaction), the provider's rule. */
        poolMode: byProvider(validatePoolMode).optional(),
        /** Keep PgBouncer running when the stack is destroyed (PgBouncerPromotionEndpoint.retainOnDelete; default true). */
        retainOnDelete: z.boolean({ invalid_type_error: "must be true or false" }).optional(),
        /**
         * Refused by name: PgBouncerPromotionEndpoint.newLiveServerHost is for a new live on
         * another machine than live (EBS storage). This program declares ZFS storage, where
         * the new live runs on live's host; given, it would also switch off the plan's check
         * that the new live's ports differ from live's and PgBouncer's on that one host.
         */
        newLiveServerHost: z.never({ invalid_type_error: NEW_LIVE_SERVER_HOST_REFUSAL }).optional(),
      })
      .strict()
      .optional(),
    /** The new live of the promotion (see newLiveSchema). */
    newLive: newLiveSchema.optional(),
    /** How live is started and stopped, as argv (default: pg_ctl with the options live was started with). */
    liveStartCommand: argv.optional(),
    liveStopCommand: argv.optional(),
    /** How long a promotion or roll-back may hold clients in all (PromotionArgs.switchoverTimeoutMs; not logical.switchoverTimeoutMs, the catch-up's). */
    switchoverTimeoutMs: z.number().int("an integer (milliseconds)").min(30_000, "at least 30000 (30 s)").max(3_600_000, "at most 3600000 (1 h)").optional(),
    /**
     * Live's replication that a promotion drops (slots, standbys, subscriptions), each
     * acknowledged by the id a refused preview lists, e.g. "slot:cdc_consumer" (PromotionArgs.acknowledgeReplicationLoss).
     */
    acknowledgeReplicationLoss: z.array(z.string().regex(/^(slot|standby|subscription):[^\n\0]+$/, 'an id as a refused preview lists it: "slot:<name>", "standby:<name>" or "subscription:<database>.<name>"')).optional(),
  })
  .strict();

/** Every `understudy:` key the program reads (readStackConfig reads exactly these; any other is warned about). */
export const configKeys = Object.keys(configObject.shape) as Array<keyof typeof configObject.shape>;

export const rehearsalConfigSchema = configObject
  .refine((c) => c.to > c.source.version, { message: "must be newer than source.version", path: ["to"] })
  .refine((c) => c.postgres.port !== c.source.port, { message: "must differ from source.port (the live server's port)", path: ["postgres", "port"] })
  .refine((c) => !c.promote || c.endpoint, { message: "promote needs an endpoint (clients must reach the database through it)", path: ["promote"] })
  .refine((c) => c.logical === undefined || c.method === "logical", { message: 'is for method "logical"', path: ["logical"] })
  .refine((c) => c.newLive?.dataset === undefined || (c.newLive.dataset !== c.source.dataset && c.newLive.dataset !== c.clone.dataset), {
    message: "must differ from source.dataset and clone.dataset",
    path: ["newLive", "dataset"],
  })
  .superRefine((c, ctx) => {
    if (c.endpoint) return;
    for (const k of promotionOnly) {
      if (c[k] !== undefined) ctx.addIssue({ code: z.ZodIssueCode.custom, path: [k], message: "is for the promotion: it needs understudy:endpoint (without one no Promotion is declared)" });
    }
  });

export type RehearsalConfig = z.infer<typeof rehearsalConfigSchema>;

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

/**
 * Parse the `understudy:*` config; throws one message listing every problem with its field,
 * then the `notes` (the unknown keys' warnings, see readStackConfig).
 */
export function parseConfig(raw: Record<string, unknown>, namespace = "understudy", notes: string[] = []): RehearsalConfig {
  const r = rehearsalConfigSchema.safeParse(raw);
  if (r.success) return r.data;
  const lines = r.error.issues.map((i) => {
    const [top, ...rest] = i.path.map(String);
    const where = top ? `${namespace}:${top}${rest.length ? "." + rest.join(".") : ""}` : namespace;
    return `  - ${where}: ${i.message}`;
  });
  throw new Error(`invalid stack configuration (nothing was run):\n${[...lines, ...notes.map((n) => `  - ${n}`)].join("\n")}`);
}

/**
 * What the Promotion takes from the stack configuration besides the rehearsal, endpoint and
 * promote: only the keys given (the provider's defaults apply to the rest). Plain values, the
 * provider plan's own shape; index.ts passes them to PromotionArgs (the compiler checks they fit).
 */
export type PromotionSettings = Pick<PromotionArgsPlain, "newLive" | "liveStartCommand" | "liveStopCommand" | "switchoverTimeoutMs" | "method" | "logical"> & {
  /** Read by the Promotion component itself (live's replication is listed there), not the provider's plan. */
  acknowledgeReplicationLoss?: string[];
};

export function promotionSettings(c: RehearsalConfig): PromotionSettings {
  return {
    ...(c.newLive ? { newLive: { ...c.newLive } } : {}),
    ...(c.liveStartCommand ? { liveStartCommand: c.liveStartCommand } : {}),
    ...(c.liveStopCommand ? { liveStopCommand: c.liveStopCommand } : {}),
    ...(c.switchoverTimeoutMs !== undefined ? { switchoverTimeoutMs: c.switchoverTimeoutMs } : {}),
    ...(c.acknowledgeReplicationLoss ? { acknowledgeReplicationLoss: c.acknowledgeReplicationLoss } : {}),
    ...(c.method ? { method: c.method } : {}),
    ...(c.logical ? { logical: c.logical } : {}),
  };
}

/**
 * Every path a user can write under the namespace: the top-level keys, then one level of
 * fields of the keys that are objects (`endpoint.poolMode`), in the schema's order. A field
 * refused by name (a `never`, e.g. `endpoint.newLiveServerHost`) is not offered.
 */
function knownPaths(): Array<{ path: string; leaf: string; nested: boolean }> {
  const unwrap = (t: z.ZodTypeAny): z.ZodTypeAny => {
    if (t instanceof z.ZodOptional) return unwrap(t.unwrap() as z.ZodTypeAny);
    if (t instanceof z.ZodEffects) return unwrap(t.innerType() as z.ZodTypeAny);
    return t;
  };
  const top = configKeys.map((k) => ({ path: k, leaf: k, nested: false }));
  const nested = configKeys.flatMap((k) => {
    const t = unwrap(configObject.shape[k]);
    if (!(t instanceof z.ZodObject)) return [];
    return Object.entries(t.shape as Record<string, z.ZodTypeAny>)
      .filter(([, f]) => !(unwrap(f) instanceof z.ZodNever))
      .map(([f]) => ({ path: `${k}.${f}`, leaf: f, nested: true }));
  });
  return [...top, ...nested];
}

/** Edit distance with adjacent transpositions (Damerau-Levenshtein), case-insensitive. */
function distance(a: string, b: string): number {
  return damerauLevenshtein(a.toLowerCase(), b.toLowerCase()).steps;
}

/** The known keys nearest to an unknown one (a few edits, case ignored): top-level keys first, then fields of an object key. */
export function nearestKeys(key: string): string[] {
  // A dotted key is compared as a path; a plain one also with each field's own name (`poolMode` -> endpoint.poolMode).
  const scored = knownPaths()
    .map((p) => ({ ...p, as: key.includes(".") ? p.path : p.leaf }))
    .map((p) => ({ ...p, d: Math.min(distance(key, p.path), distance(key, p.as)) }))
    // Near: at most a third of the longer name differs (liveStopCmd -> liveStopCommand; colour is not clone).
    .filter((p) => p.d <= Math.max(1, Math.floor(Math.max(key.length, p.as.length) / 3)));
  if (!scored.length) return [];
  const best = Math.min(...scored.map((s) => s.d));
  const at = scored.filter((s) => s.d === best);
  const top = at.filter((s) => !s.nested);
  return (top.length ? top : at).slice(0, 4).map((s) => s.path);
}

/**
 * One warning per `<namespace>:` key of the stack that this program does not read, given the
 * names of all the stack's configuration keys (`pulumi.runtime.allConfig()`; values are never
 * looked at, some are secrets). A warning, not an error: the program ignored unknown keys in
 * every earlier release, so a stored stack may carry one that was never noticed, and its next
 * `pulumi up` (a roll-back among them) must not start failing over it. Each key the program
 * ever read is still read (none was renamed or removed).
 */
export function unknownConfigKeys(allKeys: Iterable<string>, namespace = "understudy"): string[] {
  const known = new Set<string>(configKeys);
  const warnings: string[] = [];
  for (const full of allKeys) {
    if (!full.startsWith(`${namespace}:`)) continue;
    const key = full.slice(namespace.length + 1);
    if (known.has(key)) continue;
    const [first] = key.split(".");
    if (key.includes(".") && known.has(first!)) {
      // `pulumi config set understudy:endpoint.poolMode session` without --path: a key of its own, named with a dot.
      const field = knownPaths().some((p) => p.path === key) ? key : (nearestKeys(key).find((k) => k.startsWith(`${first}.`)) ?? key);
      warnings.push(
        `${full} is not read: set without --path, it is a key of its own, not a field of ${namespace}:${first}. ` +
          `Remove it (pulumi config rm '${full}') and set the field with: pulumi config set --path '${namespace}:${field}' <value>`,
      );
      continue;
    }
    const near = nearestKeys(key).map((k) => `${namespace}:${k}`);
    const hint = near.length ? `; did you mean ${near.length === 1 ? near[0] : `${near.slice(0, -1).join(", ")} or ${near[near.length - 1]}`}?` : ` (the keys it reads: README.md, "The ready-made program")`;
    warnings.push(`${full} is not a key this program reads, ignored${hint}`);
  }
  return warnings;
}

/**
 * The stack's configuration as the program reads it, from the whole configuration map
 * (`pulumi.runtime.allConfig()`: `namespace:key` to its text): the known keys parsed and
 * validated (parseConfig), and a warning for each unknown key (unknownConfigKeys). When the
 * configuration is refused, the unknown keys are listed in the same error (a typo often
 * explains a missing key).
 */
export function readStackConfig(all: Record<string, string | undefined>, namespace = "understudy"): { config: RehearsalConfig; warnings: string[] } {
  const raw: Record<string, unknown> = {};
  for (const k of configKeys) {
    const v = stackConfigValue(all[`${namespace}:${k}`]);
    if (v !== undefined) raw[k] = v;
  }
  const warnings = unknownConfigKeys(Object.keys(all), namespace);
  return { config: parseConfig(raw, namespace, warnings), warnings };
}
