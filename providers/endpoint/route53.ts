/**
 * Promotion on AWS: the endpoint clients use is a Route53 record, and the swap is an UPSERT
 * of its value, waited for until Route53 reports the change `INSYNC` (the SDK's waiter, bounded).
 *
 * DNS has no hold: {@link Route53Switch.pause} and {@link Route53Switch.resume} do nothing.
 * Clients keep the old answer until its TTL expires (keep the record's TTL low, e.g. 30 s, and
 * mind clients that cache longer, such as the JVM); so the cut-over must have stopped live
 * cleanly BEFORE the swap: a client still holding the old address then fails to connect
 * instead of writing to the old live. PgBouncer in front (providers/endpoint/pgbouncer.ts)
 * is the way to really hold clients.
 *
 * No Pulumi here; the SDK is required inside methods. The cut-over calls it from its swap
 * phase; the record itself is declared with `@pulumi/aws` (components/route53-endpoint.ts)
 * with `ignoreChanges: ["records"]`, because the cut-over owns its value.
 */
import type { Route53Client } from "@aws-sdk/client-route-53";
import { InputError } from "../errors";

export type Route53RecordType = "CNAME" | "A" | "AAAA";

export interface Route53SwitchArgs {
  /** The hosted zone, `Z0123456789ABCDEFGHIJ` (a `/hostedzone/` prefix is accepted). */
  zoneId: string;
  /** The record's name, e.g. `db.example.com` (a trailing dot is accepted). */
  name: string;
  /** Default `CNAME`. */
  type?: Route53RecordType;
  /** TTL written with each swap (default 30 s). */
  ttl?: number;
  /** Another Route53 endpoint URL (moto in tests). */
  endpoint?: string;
  /** How long to wait for INSYNC (default 300 s). */
  waitSeconds?: number;
  /** Shortest poll interval (default 5 s, the SDK's own for this waiter is 30). */
  minDelaySeconds?: number;
  /** A client to use instead (tests add middleware). */
  client?: Route53Client;
  onProgress?: (message: string) => void;
}

/** Upper-case letters and digits (AWS ids start with Z; moto's do not). */
const ZONE = /^[A-Z0-9]{1,32}$/;
const LABEL = /^(?!-)[A-Za-z0-9_-]{1,63}(?<!-)$/;

function fqdn(v: unknown, field: string): string {
  if (typeof v !== "string") throw new InputError(field, `${JSON.stringify(v)} must be a string`);
  const name = v.replace(/\.$/, "").toLowerCase();
  if (name.length === 0 || name.length > 253 || !name.split(".").every((l) => LABEL.test(l)) || !name.includes(".")) {
    throw new InputError(field, `${JSON.stringify(v)} is not a DNS name (labels of letters, digits, - and _, separated by dots)`);
  }
  return name;
}

/** Check a record value for its type (no I/O). */
export function validateRecordValue(type: Route53RecordType, v: unknown, field = "value"): string {
  if (typeof v !== "string") throw new InputError(field, `${JSON.stringify(v)} must be a string`);
  if (type === "A") {
    const parts = v.split(".");
    if (parts.length !== 4 || !parts.every((p) => /^(0|[1-9]\d{0,2})$/.test(p) && Number(p) <= 255)) throw new InputError(field, `${JSON.stringify(v)} is not an IPv4 address`);
    return v;
  }
  if (type === "AAAA") {
    if (!/^[0-9a-fA-F:]{2,39}$/.test(v) || !v.includes(":")) throw new InputError(field, `${JSON.stringify(v)} is not an IPv6 address`);
    return v.toLowerCase();
  }
  return fqdn(v, field);
}

export function validateSwitchArgs(a: Route53SwitchArgs, field = "route53"): { zoneId: string; name: string; type: Route53RecordType; ttl: number } {
  const zoneId = typeof a.zoneId === "string" ? a.zoneId.replace(/^\/hostedzone\//, "") : a.zoneId;
  if (typeof zoneId !== "string" || !ZONE.test(zoneId)) throw new InputError(`${field}.zoneId`, `${JSON.stringify(a.zoneId)} is not a hosted zone id (up to 32 upper-case letters and digits, like Z0123456789ABC)`);
  const type = a.type ?? "CNAME";
  if (!["CNAME", "A", "AAAA"].includes(type)) throw new InputError(`${field}.type`, `${JSON.stringify(type)} must be CNAME, A or AAAA`);
  const ttl = a.ttl ?? 30;
  if (!Number.isInteger(ttl) || ttl < 1 || ttl > 86400) throw new InputError(`${field}.ttl`, `${JSON.stringify(ttl)} must be an integer number of seconds from 1 to 86400`);
  return { zoneId, name: fqdn(a.name, `${field}.name`), type, ttl };
}

type Sdk = typeof import("@aws-sdk/client-route-53");

/** The Route53 record clients connect through; the cut-over's swap. */
export class Route53Switch {
  readonly zoneId: string;
  readonly name: string;
  readonly type: Route53RecordType;
  readonly ttl: number;
  private clientCache?: Route53Client;

  constructor(private readonly args: Route53SwitchArgs) {
    const v = validateSwitchArgs(args);
    this.zoneId = v.zoneId;
    this.name = v.name;
    this.type = v.type;
    this.ttl = v.ttl;
  }

  /** For messages. */
  get description(): string {
    return `route53 ${this.type} ${this.name} in ${this.zoneId}`;
  }

  private sdk(): Sdk {
     
    return require("@aws-sdk/client-route-53") as Sdk;
  }

  private get client(): Route53Client {
    if (this.args.client) return this.args.client;
    if (!this.clientCache) {
      const { Route53Client } = this.sdk();
      // Route53 is global; its API lives in us-east-1.
      this.clientCache = new Route53Client({ region: "us-east-1", endpoint: this.args.endpoint, maxAttempts: 8, retryMode: "standard" });
    }
    return this.clientCache;
  }

  /** The record's current value (the first, for a multi-value record). */
  async target(): Promise<string> {
    const { ListResourceRecordSetsCommand } = this.sdk();
    const r = await this.client.send(
      new ListResourceRecordSetsCommand({ HostedZoneId: this.zoneId, StartRecordName: this.name, StartRecordType: this.type, MaxItems: 1 }),
    );
    const rec = (r.ResourceRecordSets ?? []).find((x) => (x.Name ?? "").replace(/\.$/, "").toLowerCase() === this.name && x.Type === this.type);
    const value = rec?.ResourceRecords?.[0]?.Value;
    if (!value) throw new Error(`${this.description} does not exist (or is an alias record, which Understudy does not swap)`);
    return value.replace(/\.$/, "");
  }

  /** UPSERT the record to `value` and wait until Route53 reports the change INSYNC (bounded). */
  async retarget(value: string): Promise<void> {
    const v = validateRecordValue(this.type, value, "value");
    const { ChangeResourceRecordSetsCommand, waitUntilResourceRecordSetsChanged } = this.sdk();
    const r = await this.client.send(
      new ChangeResourceRecordSetsCommand({
        HostedZoneId: this.zoneId,
        ChangeBatch: {
          Comment: "understudy cut-over",
          Changes: [{ Action: "UPSERT", ResourceRecordSet: { Name: this.name, Type: this.type, TTL: this.ttl, ResourceRecords: [{ Value: v }] } }],
        },
      }),
    );
    const id = r.ChangeInfo?.Id;
    this.args.onProgress?.(`${this.description} -> ${v} (change ${id}, ${r.ChangeInfo?.Status})`);
    if (!id || r.ChangeInfo?.Status === "INSYNC") return;
    const maxWait = this.args.waitSeconds ?? 300;
    const minDelay = Math.min(this.args.minDelaySeconds ?? 5, maxWait / 2);
    try {
      await waitUntilResourceRecordSetsChanged({ client: this.client, maxWaitTime: maxWait, minDelay, maxDelay: Math.max(minDelay, 30) }, { Id: id });
    } catch (e) {
      throw new Error(
        `${this.description} was changed to ${v} but Route53 did not report the change ${id} INSYNC within ${maxWait} s (${(e as Error).name}); ` +
          `the new value is accepted and will propagate: check with \`aws route53 get-change --id ${id}\``,
        { cause: e },
      );
    }
    this.args.onProgress?.(`${this.description}: change ${id} INSYNC`);
  }

  /** DNS cannot hold clients: nothing to do (see the module comment). */
  async pause(): Promise<void> {
    return;
  }

  /** DNS cannot hold clients: nothing to do. */
  async resume(): Promise<void> {
    return;
  }
}

/**
 * A Route53 record as a promotion's endpoint, as plain data in the cut-over's inputs (state).
 * The record's values for live and the new live are the cut-over's `serverHost` and
 * `newServerHost`; its own Pulumi resource (components/route53-endpoint.ts) is declared apart.
 */
export interface Route53EndpointSpec {
  kind: "route53";
  zoneId: string;
  name: string;
  type?: Route53RecordType;
  /** TTL written with each swap (default 30 s, at most 300). */
  ttl?: number;
  /** Another Route53 API endpoint (moto in tests). */
  apiEndpoint?: string;
  /** How long to wait for INSYNC (default 300 s). */
  waitSeconds?: number;
  minDelaySeconds?: number;
}

export function isRoute53Spec(e: unknown): e is Route53EndpointSpec {
  return !!e && typeof e === "object" && (e as { kind?: unknown }).kind === "route53";
}

/** Every rule on a Route53 endpoint spec (no I/O); throws InputError naming `field.*`. */
export function validateRoute53Spec(e: Route53EndpointSpec, field = "endpoint"): ReturnType<typeof validateSwitchArgs> {
  const allowed = ["kind", "zoneId", "name", "type", "ttl", "apiEndpoint", "waitSeconds", "minDelaySeconds"];
  for (const k of Object.keys(e)) if (!allowed.includes(k)) throw new InputError(`${field}.${k}`, `is not a field of a Route53 endpoint (${allowed.join(", ")})`);
  const v = validateSwitchArgs({ zoneId: e.zoneId, name: e.name, type: e.type, ttl: e.ttl }, field);
  if (v.ttl > 300) throw new InputError(`${field}.ttl`, `${v.ttl} s: clients would keep the old address that long after the swap; keep it at most 300`);
  if (e.apiEndpoint !== undefined && (typeof e.apiEndpoint !== "string" || !/^https?:\/\/[A-Za-z0-9.:[\]-]+(\/[A-Za-z0-9._~/-]*)?$/.test(e.apiEndpoint))) {
    throw new InputError(`${field}.apiEndpoint`, `${JSON.stringify(e.apiEndpoint)} is not an http(s) URL`);
  }
  for (const k of ["waitSeconds", "minDelaySeconds"] as const) {
    const n = e[k];
    if (n !== undefined && (!Number.isInteger(n) || n < 1 || n > 3600)) throw new InputError(`${field}.${k}`, `${JSON.stringify(n)} must be an integer number of seconds from 1 to 3600`);
  }
  return v;
}

/** The switch a Route53 endpoint spec names. */
export function route53SwitchOf(e: Route53EndpointSpec, onProgress?: (m: string) => void): Route53Switch {
  return new Route53Switch({
    zoneId: e.zoneId,
    name: e.name,
    type: e.type,
    ttl: e.ttl,
    endpoint: e.apiEndpoint,
    waitSeconds: e.waitSeconds,
    minDelaySeconds: e.minDelaySeconds,
    onProgress,
  });
}
