/**
 * A rehearsal's arguments resolved once into a plan: every default applied (./defaults.ts),
 * every field validated with the shared rules, every derived value computed. The
 * `UpgradeRehearsal` component resolves it before declaring anything; its resources get
 * (slices of) the plan and check them again with the same functions; `Promotion` and the
 * cut-over take the rehearsal's plan instead of re-deriving anything from its arguments.
 */
import { InputError, InputErrors, collectInputError } from "../errors";
import {
  validateArgv,
  validateListenPort,
  validateOsUser,
  validatePath,
  validatePgName,
  validateRelativePath,
  validateSocketDir,
  validateVersion,
} from "../validate";
import { validateListen } from "../postgres/validate";
import { validateVerifySpec, type VerifySpec } from "../rehearsal/verify";
import { checkLogicalSettings } from "./logical";
import { DEFAULTS, debianBinDir, upgradedDataDir } from "./defaults";
import { planSteps, validatePlannedSteps, type PlannedStep, type UserStep } from "./steps";

export type UpgradeMode = "link" | "clone" | "copy";

/** The live PostgreSQL, resolved. It is only ever read (at most a CHECKPOINT) until a promotion. */
export interface SourcePlan {
  /** The volume holding the data directory (ZFS dataset, EBS volume). */
  dataset: string;
  /** The data directory's path inside that volume. */
  pgdata: string;
  version: number;
  binDir: string;
  port: number;
  socketDir: string;
  osUser: string;
  /** The role steps connect as; absent (the default): the cluster's bootstrap superuser, read from the clone. */
  superuser?: string;
  checkpoint: boolean;
}

/** The upgraded server on the clone, resolved. */
export interface TargetPlan {
  port: number;
  /** Private servers of the old version during the rehearsal; pg_upgrade's own two use tempPort+1 and +2. */
  tempPort: number;
  socketDir: string;
  listen: string;
  /** For steps, assertions and checks. */
  database: string;
}

export interface RehearsalPlan {
  /** The rehearsal's name (report file name, snapshot names). */
  name: string;
  source: SourcePlan;
  /** What to clone: a new snapshot set (`name` is its name), the newest existing one, or a named one. */
  snapshot: { mode: "new" | "latest" | "named"; name?: string };
  clone: { dataset: string; mountpoint?: string };
  to: number;
  toBinDir: string;
  postgres: TargetPlan;
  mode: UpgradeMode;
  steps: PlannedStep[];
  checks: VerifySpec;
  /** Absolute path on the machine running Pulumi. */
  reportDir: string;
  /** Present only when asked for (`method: "logical"`): the logical cut-over is rehearsed too. Absent: a rehearsal of `replay` only, as before. */
  method?: "logical";
  /** The logical rehearsal's settings, resolved (present with `method: "logical"`). */
  logical?: LogicalRehearsalSettings;
}

/** How the logical cut-over is rehearsed (every default in {@link LOGICAL_REHEARSAL_DEFAULTS}). */
export interface LogicalRehearsalSettings {
  /** How long live's WAL rate is sampled (two reads of `pg_current_wal_lsn()`), ms. */
  liveSampleMs: number;
  /** How long the writer runs on the stand-in before the subscription starts: the backlog the catch-up is measured on, ms. */
  backlogMs: number;
  /** How long the apply lag is sampled under the writer once caught up, ms. */
  measureMs: number;
  /** The writer's WAL rate when live's measured rate is lower (bytes/s): an idle live would leave nothing to measure. */
  minWriteBytesPerSecond: number;
  /** The held part's bounded wait for apply (as a promotion's `logical.applyTimeoutMs`), ms. */
  applyTimeoutMs: number;
  /** Readiness findings accepted by name, as a promotion's `logical.accept` (`large-objects`, `unlogged-tables`, `live-subscriptions`, `materialized-views`, `foreign-tables`). */
  accept: string[];
}

export const LOGICAL_REHEARSAL_DEFAULTS: LogicalRehearsalSettings = {
  liveSampleMs: 3000,
  backlogMs: 3000,
  measureMs: 5000,
  minWriteBytesPerSecond: 256 * 1024,
  applyTimeoutMs: 5000,
  accept: [],
};

/** What a user writes (`UpgradeRehearsalArgs` without the Pulumi and storage parts). */
export interface RehearsalArgsPlain {
  source: {
    dataset: string;
    pgdata?: string;
    version: number;
    port?: number;
    socketDir?: string;
    checkpoint?: boolean;
    binDir?: string;
    osUser?: string;
    superuser?: string;
  };
  snapshot?: string;
  snapshotName?: string;
  clone: { dataset: string; mountpoint?: string };
  to: number;
  toBinDir?: string;
  postgres: { port: number; tempPort?: number; socketDir?: string; listen?: string; database?: string };
  mode?: UpgradeMode;
  steps?: UserStep[];
  checks?: {
    rowCounts?: "exact" | "none";
    checksumTables?: string[];
    assertions?: Array<{ name: string; sql: string; database?: string }>;
    rowCountLimitBytes?: number;
    checksumSamplePercent?: number;
  };
  reportDir?: string;
  /** `"logical"`: also rehearse the logical cut-over (on a stand-in for live, never on live). @default "replay" */
  method?: "replay" | "logical";
  /** The logical rehearsal's settings (only with `method: "logical"`). */
  logical?: Partial<LogicalRehearsalSettings>;
}

/** Stands for a volume id that is an output of another resource while the program runs (its syntax is checked by the resources' `check`). */
export const UNKNOWN_ID = "<unknown>";

/** Volume-id syntax of the chosen storage (ZFS dataset names, EBS ids): injected, so this module names no backend. */
export type VolumeIdCheck = (id: unknown, field: string) => string;

const anyVolume: VolumeIdCheck = (id, field) => {
  if (typeof id !== "string" || !id) throw new InputError(field, "must be a non-empty string");
  return id;
};

/** Apply the defaults; nothing is validated here (see {@link checkRehearsalPlan}). */
function withDefaults(name: string, a: RehearsalArgsPlain, cwd: string): RehearsalPlan {
  const snap = a.snapshot ?? DEFAULTS.snapshot;
  const port = a.postgres?.port;
  return {
    name,
    source: {
      dataset: a.source?.dataset,
      pgdata: a.source?.pgdata ?? DEFAULTS.pgdata,
      version: a.source?.version,
      binDir: a.source?.binDir ?? (Number.isInteger(a.source?.version) ? debianBinDir(a.source.version) : ""),
      port: a.source?.port ?? DEFAULTS.livePort,
      socketDir: a.source?.socketDir ?? DEFAULTS.socketDir,
      osUser: a.source?.osUser ?? DEFAULTS.osUser,
      ...(a.source?.superuser !== undefined ? { superuser: a.source.superuser } : {}),
      checkpoint: a.source?.checkpoint ?? DEFAULTS.checkpoint,
    },
    snapshot: snap === "new" ? { mode: "new", name: a.snapshotName } : snap === "latest" ? { mode: "latest" } : { mode: "named", name: snap },
    clone: { dataset: a.clone?.dataset, ...(a.clone?.mountpoint !== undefined ? { mountpoint: a.clone.mountpoint } : {}) },
    to: a.to,
    toBinDir: a.toBinDir ?? (Number.isInteger(a.to) ? debianBinDir(a.to) : ""),
    postgres: {
      port,
      tempPort: a.postgres?.tempPort ?? (typeof port === "number" ? port + DEFAULTS.tempPortOffset : port),
      socketDir: a.postgres?.socketDir ?? DEFAULTS.socketDir,
      listen: a.postgres?.listen ?? "",
      database: a.postgres?.database ?? DEFAULTS.database,
    },
    mode: a.mode ?? DEFAULTS.mode,
    steps: planSteps(a.steps),
    checks: {
      rowCounts: a.checks?.rowCounts ?? DEFAULTS.rowCounts,
      checksumTables: a.checks?.checksumTables ?? [],
      assertions: a.checks?.assertions ?? [],
      // Only when asked for: a rehearsal written before these existed keeps its checks unchanged.
      ...(a.checks?.rowCountLimitBytes !== undefined ? { rowCountLimitBytes: a.checks.rowCountLimitBytes } : {}),
      ...(a.checks?.checksumSamplePercent !== undefined ? { checksumSamplePercent: a.checks.checksumSamplePercent } : {}),
    },
    reportDir: pathResolve(cwd, a.reportDir ?? DEFAULTS.reportDir),
    // Only when asked for: a rehearsal without it keeps its plan (and its resources) unchanged.
    ...(a.method === "logical" ? { method: "logical" as const, logical: { ...LOGICAL_REHEARSAL_DEFAULTS, ...(a.logical ?? {}) } } : {}),
  };
}

/** The rules on `method` and `logical` as the user wrote them (checked before the defaults hide what was given). */
export function checkMethodArgs(a: Pick<RehearsalArgsPlain, "method" | "logical">): InputError[] {
  const errors: InputError[] = [];
  if (a.method !== undefined && a.method !== "replay" && a.method !== "logical") {
    errors.push(new InputError("method", `${JSON.stringify(a.method)} is not one of replay, logical`));
  }
  if (a.logical !== undefined) {
    if (a.method !== "logical") errors.push(new InputError("logical", 'is for method "logical"'));
    if (!a.logical || typeof a.logical !== "object" || Array.isArray(a.logical)) errors.push(new InputError("logical", "must be an object"));
    else {
      const known = Object.keys(LOGICAL_REHEARSAL_DEFAULTS);
      for (const k of Object.keys(a.logical)) if (!known.includes(k)) errors.push(new InputError(`logical.${k}`, `is not a setting (known: ${known.join(", ")})`));
    }
  }
  return errors;
}

/** The rules on resolved logical-rehearsal settings (fields named `logical.<name>`). */
export function checkLogicalRehearsal(l: LogicalRehearsalSettings | undefined): InputError[] {
  const errors: InputError[] = [];
  if (l === undefined) return errors;
  const int = (v: unknown, name: string, min: number, max: number) => {
    if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max) errors.push(new InputError(`logical.${name}`, `${JSON.stringify(v)} is not a whole number in ${min}..${max}`));
  };
  int(l.liveSampleMs, "liveSampleMs", 500, 60_000);
  int(l.backlogMs, "backlogMs", 0, 600_000);
  int(l.measureMs, "measureMs", 1000, 600_000);
  int(l.minWriteBytesPerSecond, "minWriteBytesPerSecond", 1024, 1024 ** 3);
  int(l.applyTimeoutMs, "applyTimeoutMs", 100, 600_000);
  // The same rule as a promotion's logical.accept (one list of acceptable findings).
  errors.push(...checkLogicalSettings({ accept: l.accept }, "logical").filter((e) => e.field.startsWith("logical.accept")));
  return errors;
}

function pathResolve(cwd: string, p: string): string {
   
  return (require("node:path") as typeof import("node:path")).resolve(cwd, p);
}

/** Every port a rehearsal listens on, with the field that sets it (all must differ, and differ from live's). */
export function rehearsalPorts(p: Pick<RehearsalPlan, "postgres">): Array<{ field: string; port: number }> {
  const t = p.postgres.tempPort;
  return [
    { field: "postgres.port", port: p.postgres.port },
    { field: "postgres.tempPort", port: t },
    { field: "postgres.tempPort+1 (pg_upgrade's old server)", port: t + 1 },
    { field: "postgres.tempPort+2 (pg_upgrade's new server)", port: t + 2 },
  ];
}

/**
 * Every rule on a resolved plan, all problems at once. Fields are named as the user wrote
 * them (`source.port`, `postgres.tempPort`, `steps[3].sql`).
 */
export function checkRehearsalPlan(p: RehearsalPlan, volumeId: VolumeIdCheck = anyVolume): InputError[] {
  const errors: InputError[] = [];
  const check = (fn: () => unknown) => collectInputError(errors, fn);
  check(() => validateShortNameLoose(p.name, "name"));
  check(() => volumeId(p.source.dataset, "source.dataset"));
  check(() => validateRelativePath(p.source.pgdata, "source.pgdata", "relative path inside the volume"));
  check(() => validateVersion(p.source.version, "source.version"));
  check(() => validatePath(p.source.binDir, "source.binDir", "bin directory"));
  check(() => validateListenPort(p.source.port, "source.port"));
  check(() => validateSocketDir(p.source.socketDir, "source.socketDir"));
  check(() => validateOsUser(p.source.osUser, "source.osUser"));
  if (p.source.superuser !== undefined) check(() => validatePgName(p.source.superuser, "source.superuser", "role name"));
  if (typeof p.source.checkpoint !== "boolean") errors.push(new InputError("source.checkpoint", "must be true or false"));
  if (p.snapshot.mode !== "latest" && p.snapshot.name !== undefined) {
    check(() => {
      if (typeof p.snapshot.name !== "string" || !/^[A-Za-z0-9_.:-]{1,200}$/.test(p.snapshot.name)) {
        throw new InputError(p.snapshot.mode === "new" ? "snapshotName" : "snapshot", `${JSON.stringify(p.snapshot.name)} is not a snapshot name (letters, digits, _ . : -)`);
      }
    });
  }
  check(() => volumeId(p.clone.dataset, "clone.dataset"));
  if (p.clone.mountpoint !== undefined) check(() => validatePath(p.clone.mountpoint, "clone.mountpoint", "mountpoint"));
  if (typeof p.clone.dataset === "string" && p.clone.dataset === p.source.dataset) {
    errors.push(new InputError("clone.dataset", "must differ from source.dataset (the clone is a new volume)"));
  }
  check(() => {
    const to = validateVersion(p.to, "to");
    if (Number.isInteger(p.source.version) && to <= p.source.version) {
      throw new InputError("to", `${to} must be a major version newer than source.version (${p.source.version})`);
    }
  });
  check(() => validatePath(p.toBinDir, "toBinDir", "bin directory"));
  check(() => validateSocketDir(p.postgres.socketDir, "postgres.socketDir"));
  check(() => validateListen(p.postgres.listen, "postgres.listen"));
  check(() => validatePgName(p.postgres.database, "postgres.database", "database name"));
  const ports = new Map<number, string>([[p.source.port, "source.port (live)"]]);
  for (const { field, port } of rehearsalPorts(p)) {
    check(() => {
      validateListenPort(port, field);
      const other = ports.get(port);
      if (other) throw new InputError(field, `port ${port} is also ${other}; the rehearsal needs its own ports`);
      ports.set(port, field);
    });
  }
  if (!["link", "clone", "copy"].includes(p.mode)) errors.push(new InputError("mode", `${JSON.stringify(p.mode)} is not one of link, clone, copy`));
  check(() => validatePlannedSteps(p.steps, "steps"));
  check(() => validateVerifySpec(p.checks));
  check(() => {
    if (typeof p.reportDir !== "string" || !p.reportDir.startsWith("/")) throw new InputError("reportDir", "must resolve to an absolute path");
  });
  if (p.method !== undefined && p.method !== "logical") errors.push(new InputError("method", `${JSON.stringify(p.method)} is not one of replay, logical`));
  if (p.method === "logical" && p.logical === undefined) errors.push(new InputError("logical", 'is required with method "logical"'));
  errors.push(...checkLogicalRehearsal(p.logical));
  return errors;
}

function validateShortNameLoose(v: unknown, field: string): string {
  if (typeof v !== "string" || !v || v.length > 200 || /[\0\n/]/.test(v)) throw new InputError(field, `${JSON.stringify(v)} is not a resource name`);
  return v;
}

/**
 * Resolve a rehearsal: defaults, then every rule. Throws {@link InputErrors} listing every
 * problem (each an InputError naming its field); nothing has run.
 */
export function resolveRehearsalPlan(name: string, args: RehearsalArgsPlain, opts: { volumeId?: VolumeIdCheck; cwd?: string } = {}): RehearsalPlan {
  let plan: RehearsalPlan;
  try {
    plan = withDefaults(name, args, opts.cwd ?? process.cwd());
  } catch (e) {
    if (InputError.is(e)) throw new InputErrors([e], `invalid arguments for ${name} (nothing was run)`);
    throw e;
  }
  const errors = [...checkMethodArgs(args), ...checkRehearsalPlan(plan, opts.volumeId)];
  if (errors.length) throw new InputErrors(errors, `invalid arguments for ${name} (nothing was run)`);
  return plan;
}

/** What the steps run with on a clone mounted at `mountpoint`. */
export interface PgPlan {
  from: number;
  to: number;
  fromBinDir: string;
  toBinDir: string;
  osUser: string;
  /** The role steps connect as, when the user named one (`source.superuser`); absent: read from the clone. */
  superuser?: string;
  oldDataDir: string;
  newDataDir: string;
  /** Port of the upgraded server on the clone. */
  port: number;
  /** Port for private servers (old version); pg_upgrade uses tempPort+1 and +2. */
  tempPort: number;
  socketDir: string;
  listen: string;
  mode: UpgradeMode;
  database: string;
  /**
   * Start the upgraded server isolated from live (no archiving, no standbys, no outward
   * workers, forced on the command line). Default true; false only for a promotion's new live.
   */
  isolate?: boolean;
  /** Where the upgraded server logs (`pg_ctl -l`); default `<new PGDATA>/understudy-server.log`. */
  logFile?: string;
}

/** The step runner's parameters for a clone of the plan's source mounted at `mountpoint`. */
export function pgPlanFor(
  plan: Pick<RehearsalPlan, "source" | "to" | "toBinDir" | "mode">,
  mountpoint: string,
  server: Pick<TargetPlan, "port" | "tempPort" | "socketDir" | "listen" | "database">,
): PgPlan {
  return {
    from: plan.source.version,
    to: plan.to,
    fromBinDir: plan.source.binDir,
    toBinDir: plan.toBinDir,
    osUser: plan.source.osUser,
    ...(plan.source.superuser !== undefined ? { superuser: plan.source.superuser } : {}),
    oldDataDir: `${mountpoint}/${plan.source.pgdata}`,
    newDataDir: upgradedDataDir(mountpoint, plan.source.pgdata, plan.to),
    port: server.port,
    tempPort: server.tempPort,
    socketDir: server.socketDir,
    listen: server.listen,
    mode: plan.mode,
    database: server.database,
  };
}

/** Live's start/stop commands, checked (argv, no shell). */
export function checkCommand(v: unknown, field: string): string[] | undefined {
  return v === undefined ? undefined : validateArgv(v, field);
}
