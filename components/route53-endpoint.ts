import * as pulumi from "@pulumi/pulumi";
import { InputError } from "../providers/errors";
import { Route53RecordType, Route53SwitchArgs, validateRecordValue, validateSwitchArgs } from "../providers/endpoint/route53";
import { loadPulumiAws } from "./aws";

export interface Route53EndpointArgs {
  /** The hosted zone id. */
  zoneId: string;
  /** The name clients connect to, e.g. `db.example.com`. */
  name: string;
  /** Default `CNAME`. */
  type?: Route53RecordType;
  /** Low, so a swap reaches clients fast (default 30 s; at most 300 here). */
  ttl?: number;
  /** The value when the record is first created: live's address. Later values belong to the cut-over. */
  initialValue: string;
  /**
   * The record exists already (it usually does: clients use it today): import it instead of
   * creating it, `<zoneId>_<name>_<type>`. Understudy then never changes its value outside a promotion.
   */
  importExisting?: boolean;
  /** Keep the record when the stack is destroyed (default true: clients depend on it). */
  retainOnDelete?: boolean;
}

/**
 * The Route53 record clients reach PostgreSQL through, declared with `@pulumi/aws` with a low
 * TTL and `ignoreChanges: ["records"]`: its value belongs to the cut-over (Route53Switch
 * swaps it), so a later `pulumi up` never puts the old value back. Returns the record and
 * the arguments for the `Route53Switch` the cut-over uses.
 *
 * @example
 * ```ts
 * const ep = route53Endpoint("db", { zoneId: "Z0123456789ABC", name: "db.example.com", initialValue: "db1.internal.example.com", importExisting: true });
 * // the cut-over: new Route53Switch(ep.switchArgs).retarget("rehearsal.internal.example.com")
 * ```
 */
export function route53Endpoint(
  name: string,
  args: Route53EndpointArgs,
  opts?: pulumi.CustomResourceOptions,
): { record: pulumi.CustomResource; fqdn: pulumi.Output<string>; switchArgs: Route53SwitchArgs } {
  const ttl = args.ttl ?? 30;
  const v = validateSwitchArgs({ zoneId: args.zoneId, name: args.name, type: args.type, ttl }, "endpoint");
  if (ttl > 300) throw new InputError("endpoint.ttl", `${ttl} s: a swap would take that long to reach clients; keep it at most 300`);
  validateRecordValue(v.type, args.initialValue, "endpoint.initialValue");
  const aws = loadPulumiAws("route53Endpoint");
  const record = new aws.route53.Record(
    name,
    { zoneId: v.zoneId, name: v.name, type: v.type, ttl: v.ttl, records: [args.initialValue], allowOverwrite: false },
    {
      ...opts,
      ignoreChanges: [...(opts?.ignoreChanges ?? []), "records"],
      retainOnDelete: args.retainOnDelete ?? true,
      import: args.importExisting ? `${v.zoneId}_${v.name}_${v.type}` : opts?.import,
    },
  );
  return { record, fqdn: record.fqdn, switchArgs: { zoneId: v.zoneId, name: v.name, type: v.type, ttl: v.ttl } };
}
