/**
 * Input errors, as components raise them: the SDK's `InputPropertyError` (one field) and
 * `InputPropertiesError` (several), so that `pulumi preview` names the property of the
 * component and nothing is declared.
 */
import * as pulumi from "@pulumi/pulumi";
import { InputError, InputErrors } from "../providers/errors";

export function inputPropertyError(component: string, e: InputError): Error {
  return new pulumi.InputPropertyError({ propertyPath: e.field, reason: `${component}: ${e.reason}` });
}

/** Rethrow an InputError/InputErrors as the SDK's errors; anything else unchanged. */
export function asPropertyErrors(component: string, e: unknown): unknown {
  if (e instanceof InputErrors || (e instanceof Error && Array.isArray((e as InputErrors).errors))) {
    const errs = (e as InputErrors).errors;
    return new pulumi.InputPropertiesError({
      message: `${component}: ${errs.length} invalid argument${errs.length === 1 ? "" : "s"} (nothing was declared or run):\n${errs.map((x) => `  - ${x.message}`).join("\n")}`,
      errors: errs.map((x) => ({ propertyPath: x.field, reason: x.reason })),
    });
  }
  if (InputError.is(e)) return inputPropertyError(component, e);
  return e;
}

/** Run `fn`; its input errors leave as the SDK's property errors. */
export function checked<T>(component: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    throw asPropertyErrors(component, e);
  }
}
