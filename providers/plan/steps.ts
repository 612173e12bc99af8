/**
 * The ordered steps of a rehearsal: the built-in ones and the user's, each validated, each
 * error naming the step and the field.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { InputError } from "../errors";
import { validateArgv, validatePgName, validateShortName, validateTimeoutMs } from "../validate";

/** Built-in steps, in order, and user steps (`sql`, `command`). */
export type StepKind = "recover" | "check" | "upgrade" | "start" | "post-upgrade" | "analyze" | "sql" | "command" | "verify";

/** One step of a rehearsal plan, as the rehearsal runs it and a promotion replays it. */
export interface PlannedStep {
  name: string;
  kind: StepKind;
  /** Replayed while clients are held during a promotion. */
  cutover: boolean;
  sql?: string;
  command?: string[];
  database?: string;
  timeoutMs?: number;
}

/** A step of your own, run on the clone. Exactly one of `sql`, `sqlFile`, `command`. */
export interface UserStep {
  /** Letters, digits, `-` and `_`; becomes part of the step's snapshot name. */
  name: string;
  /** SQL run with psql (ON_ERROR_STOP) on the clone. */
  sql?: string;
  /** A file with SQL, read when the program runs. */
  sqlFile?: string;
  /** argv run on the host as the OS user, with PGHOST/PGPORT/PGDATABASE/PGUSER pointing at the clone (e.g. an application smoke test). */
  command?: string[];
  /**
   * `before-upgrade` runs on the old version (fixes that pg_upgrade needs).
   * @default "after-upgrade"
   */
  phase?: "before-upgrade" | "after-upgrade";
  /**
   * Replayed while clients wait during a promotion.
   * @default true before the upgrade, false after
   */
  cutover?: boolean;
  /**
   * Database to run in.
   * @default the rehearsal's `postgres.database`
   */
  database?: string;
  /** @default 30 minutes for commands, 10 minutes for SQL */
  timeoutMs?: number;
}

export const BUILTIN_STEPS = ["recover", "check", "upgrade", "start", "post-upgrade", "analyze", "verify"] as const;

/** Turn user steps into the ordered plan, validating everything (throws InputError naming the step and field). */
export function planSteps(steps: UserStep[] = []): PlannedStep[] {
  if (!Array.isArray(steps)) throw new InputError("steps", "must be a list of steps");
  const seen = new Set<string>();
  const user = steps.map((s, i): PlannedStep & { phase: string } => {
    const where = `steps[${i}]${s && typeof s.name === "string" && s.name ? ` (${s.name})` : ""}`;
    if (!s || typeof s !== "object") throw new InputError(where, "must be an object");
    validateShortName(s.name, `${where}.name`);
    if ((BUILTIN_STEPS as readonly string[]).includes(s.name)) throw new InputError(`${where}.name`, `"${s.name}" is a built-in step name`);
    if (seen.has(s.name)) throw new InputError(`${where}.name`, `"${s.name}" is used twice`);
    seen.add(s.name);
    const given = [s.sql !== undefined, s.sqlFile !== undefined, s.command !== undefined].filter(Boolean).length;
    if (given !== 1) throw new InputError(where, "give exactly one of sql, sqlFile, command");
    let sql = s.sql;
    if (s.sqlFile !== undefined) {
      try {
        sql = fs.readFileSync(path.resolve(s.sqlFile), "utf8");
      } catch (e) {
        throw new InputError(`${where}.sqlFile`, `cannot read ${s.sqlFile}: ${(e as Error).message}`);
      }
    }
    if (sql !== undefined && (typeof sql !== "string" || !sql.trim())) throw new InputError(`${where}.sql`, "is empty");
    if (s.command !== undefined) validateArgv(s.command, `${where}.command`);
    const phase = s.phase ?? "after-upgrade";
    if (phase !== "before-upgrade" && phase !== "after-upgrade") throw new InputError(`${where}.phase`, "must be before-upgrade or after-upgrade");
    if (s.cutover !== undefined && typeof s.cutover !== "boolean") throw new InputError(`${where}.cutover`, "must be true or false");
    if (s.database !== undefined) validatePgName(s.database, `${where}.database`, "database name");
    if (s.timeoutMs !== undefined) validateTimeoutMs(s.timeoutMs, `${where}.timeoutMs`);
    return {
      name: s.name,
      kind: s.command ? "command" : "sql",
      cutover: s.cutover ?? phase === "before-upgrade",
      sql,
      command: s.command,
      database: s.database,
      timeoutMs: s.timeoutMs,
      phase,
    };
  });
  const strip = ({ phase: _p, ...x }: PlannedStep & { phase: string }): PlannedStep => x;
  return [
    { name: "recover", kind: "recover", cutover: false },
    ...user.filter((s) => s.phase === "before-upgrade").map(strip),
    // pg_upgrade runs the same checks first: the replay during a promotion skips this step.
    { name: "check", kind: "check", cutover: false },
    { name: "upgrade", kind: "upgrade", cutover: true },
    { name: "start", kind: "start", cutover: true },
    { name: "post-upgrade", kind: "post-upgrade", cutover: true },
    { name: "analyze", kind: "analyze", cutover: false },
    ...user.filter((s) => s.phase === "after-upgrade").map(strip),
    { name: "verify", kind: "verify", cutover: false },
  ];
}

/** Check an already planned list (as a provider receives it): same rules, nothing read from disk. */
export function validatePlannedSteps(steps: unknown, field = "steps"): PlannedStep[] {
  if (!Array.isArray(steps)) throw new InputError(field, "must be a list of steps");
  const kinds = new Set<string>(["recover", "check", "upgrade", "start", "post-upgrade", "analyze", "sql", "command", "verify"]);
  steps.forEach((s: PlannedStep, i) => {
    const where = `${field}[${i}]`;
    if (!s || typeof s !== "object" || !kinds.has(s.kind)) throw new InputError(`${where}.kind`, `${JSON.stringify(s?.kind)} is not a step kind`);
    validateShortName(s.name, `${where}.name`);
    if (s.kind === "sql" && (typeof s.sql !== "string" || !s.sql.trim())) throw new InputError(`${where}.sql`, "must be non-empty SQL");
    if (s.kind === "command") validateArgv(s.command, `${where}.command`);
    if (s.database !== undefined) validatePgName(s.database, `${where}.database`, "database name");
    if (s.timeoutMs !== undefined) validateTimeoutMs(s.timeoutMs, `${where}.timeoutMs`);
  });
  return steps as PlannedStep[];
}
