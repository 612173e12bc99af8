import type * as pulumi from "@pulumi/pulumi";
import * as pulumiRuntime from "@pulumi/pulumi";

/**
 * The provider object Pulumi serializes into state for every dynamic resource of ours.
 *
 * It is deliberately tiny and constant: each method `require`s the real implementation
 * by package name when it runs. Two reasons:
 * - Pulumi's closure serializer cannot capture our modules by value (zod schemas hold
 *   native bound functions; ssh2 and pg have native parts);
 * - the engine replaces a resource whenever its serialized provider text changes, so a
 *   by-value provider would replace every clone after any upgrade of this package.
 * The implementation is resolved from the program's `node_modules` (the provider process
 * runs in the program directory), so state never holds an absolute path.
 */
export function dynamicProvider(kind: string): pulumi.dynamic.ResourceProvider {
  return {
    async check(olds: unknown, news: unknown) {
      return require("pulumi-understudy/dist/providers/dispatch.js").dispatch(kind, "check", [olds, news]);
    },
    async diff(id: string, olds: unknown, news: unknown) {
      return require("pulumi-understudy/dist/providers/dispatch.js").dispatch(kind, "diff", [id, olds, news]);
    },
    async create(inputs: unknown) {
      return require("pulumi-understudy/dist/providers/dispatch.js").dispatch(kind, "create", [inputs]);
    },
    async read(id: string, props: unknown) {
      return require("pulumi-understudy/dist/providers/dispatch.js").dispatch(kind, "read", [id, props]);
    },
    async update(id: string, olds: unknown, news: unknown) {
      return require("pulumi-understudy/dist/providers/dispatch.js").dispatch(kind, "update", [id, olds, news]);
    },
    async delete(id: string, props: unknown) {
      return require("pulumi-understudy/dist/providers/dispatch.js").dispatch(kind, "delete", [id, props]);
    },
  } as pulumi.dynamic.ResourceProvider;
}

/**
 * Base of every Understudy dynamic resource: the constant shim as provider, the type token
 * `pulumi-nodejs:dynamic/understudy:<kind>`, and `connection` plus every property named in
 * `secretProps` kept secret in state, as inputs AND outputs: `additionalSecretOutputs` alone
 * encrypts the outputs, while the engine stores the inputs as they came (a password in a
 * PgBouncer config would sit in the state file in clear).
 */
export abstract class UnderstudyResource extends pulumiRuntime.dynamic.Resource {
  protected constructor(
    kind: string,
    name: string,
    props: Record<string, unknown> & { connection?: unknown },
    opts?: pulumiRuntime.CustomResourceOptions,
    secretProps: string[] = [],
  ) {
    const inputs: Record<string, unknown> = { ...props };
    for (const k of ["connection", ...secretProps]) {
      if (inputs[k] !== undefined && inputs[k] !== null) inputs[k] = pulumiRuntime.secret(inputs[k]);
    }
    super(
      dynamicProvider(kind),
      name,
      inputs,
      { ...opts, additionalSecretOutputs: ["connection", ...secretProps, ...(opts?.additionalSecretOutputs ?? [])] },
      "understudy",
      kind,
    );
  }
}
