/**
 * Errors of the PostgreSQL driver. Every message says what failed, where (host, data
 * directory, step) and what is left behind, so that a failed `pulumi up` can be acted on
 * without reading the provider's code.
 */

import { InputError } from "../errors";

/** An input was rejected before anything ran on any host. `field` names it (e.g. `postgres.port`). */
export class PostgresInputError extends InputError {
  constructor(field: string, message: string) {
    super(field, message);
    this.name = "PostgresInputError";
  }
}

export interface PostgresErrorArgs {
  /** The step that failed, e.g. `start`, `recover`, `pg_upgrade --check`. */
  step: string;
  /** `Host.description` of where it ran. */
  host: string;
  /** What failed, in a sentence. */
  message: string;
  dataDir?: string;
  /** What is still there after the failure (servers, directories, files), or "nothing". */
  leftBehind?: string;
  /** Tail of a log or command output that shows the cause. */
  detail?: string;
  cause?: unknown;
}

/** A step failed on a host. */
export class PostgresError extends Error {
  readonly step: string;
  readonly host: string;
  /** The `message` argument alone (without step, host and left-behind). */
  readonly what: string;
  readonly dataDir?: string;
  readonly leftBehind?: string;
  readonly detail?: string;

  constructor(a: PostgresErrorArgs) {
    const where = `on ${a.host}${a.dataDir ? ` (data directory ${a.dataDir})` : ""}`;
    let msg = `postgres ${a.step} failed ${where}: ${a.message}`;
    if (a.leftBehind) msg += `\nLeft behind: ${a.leftBehind}`;
    if (a.detail) msg += `\n${a.detail}`;
    super(msg, a.cause === undefined ? undefined : { cause: a.cause });
    this.name = "PostgresError";
    this.step = a.step;
    this.host = a.host;
    this.what = a.message;
    this.dataDir = a.dataDir;
    this.leftBehind = a.leftBehind;
    this.detail = a.detail;
  }
}

/**
 * `pg_upgrade` (or `pg_upgrade --check`) refused. `reason` is pg_upgrade's own explanation
 * (the paragraph after the failed check), `failedCheck` the check line that said `fatal`,
 * `files` the contents of the report files it pointed at (e.g. `postfix_ops.txt`,
 * `loadable_libraries.txt`, the tail of `pg_upgrade_server.log`).
 */
export class PgUpgradeError extends PostgresError {
  readonly reason: string;
  readonly failedCheck?: string;
  readonly output: string;
  readonly files: Record<string, string>;
  readonly checkOnly: boolean;

  constructor(a: PostgresErrorArgs & {
    reason: string;
    failedCheck?: string;
    output: string;
    files: Record<string, string>;
    checkOnly: boolean;
  }) {
    super(a);
    this.name = "PgUpgradeError";
    this.reason = a.reason;
    this.failedCheck = a.failedCheck;
    this.output = a.output;
    this.files = a.files;
    this.checkOnly = a.checkOnly;
  }
}
