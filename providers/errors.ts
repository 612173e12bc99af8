/**
 * The one error type for a rejected input, at the bottom of the layers (no imports): every
 * validator in every layer throws an {@link InputError} (or a subclass that keeps its old
 * name), which carries the field as data. Providers turn it into a check failure on that
 * field; components turn it into `pulumi.InputPropertyError`. Nothing parses messages.
 */
export class InputError extends Error {
  /** Dotted path of the field as the user wrote it, e.g. `postgres.port`, `steps[2].name`. */
  readonly field: string;
  /** Why, without the field: `"/run/pg+15" contains "+"; ...`. */
  readonly reason: string;

  constructor(field: string, reason: string) {
    super(`${field}: ${reason}`);
    this.name = "InputError";
    this.field = field;
    this.reason = reason;
  }

  /** True for any InputError, including ones from another copy of this module (e.g. a program's node_modules). */
  static is(e: unknown): e is InputError {
    return (
      e instanceof InputError ||
      (!!e && typeof e === "object" && typeof (e as InputError).field === "string" && typeof (e as InputError).reason === "string" && e instanceof Error)
    );
  }
}

/** Several rejected inputs at once (a whole configuration checked before anything runs). */
export class InputErrors extends Error {
  readonly errors: InputError[];
  constructor(errors: InputError[], heading = "invalid input (nothing was run)") {
    super(`${heading}:\n${errors.map((e) => `  - ${e.message}`).join("\n")}`);
    this.name = "InputErrors";
    this.errors = errors;
  }
}

/** Run a validation; collect its InputError (re-throw anything else). */
export function collectInputError(into: InputError[], fn: () => unknown): void {
  try {
    fn();
  } catch (e) {
    if (InputError.is(e)) into.push(e);
    else throw e;
  }
}

/** The message of anything thrown. */
export function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
