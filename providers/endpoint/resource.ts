import * as pulumi from "@pulumi/pulumi";
import type { ConnectionArgs } from "../host/connection";
import { withHost } from "../host";
import { errorMessage, hostIdentity, isUnknown, progress, checkConnection } from "../common";
import { UnderstudyResource } from "../shim";
import { declaredDiff, type DiffSpec } from "../diff";
import { PgBouncerEndpoint } from "./pgbouncer";
import { resolveConfig } from "./pgbouncer-config";
import type { DatabaseTarget, PgBouncerEndpointConfig } from "./pgbouncer-config";

interface Inputs {
  connection?: ConnectionArgs;
  label: string;
  config: PgBouncerEndpointConfig;
}

interface Outputs extends Inputs {
  pid: number;
  configDir: string;
  address: string;
}

async function ensure(i: Inputs): Promise<Outputs> {
  return await withHost(i.connection, async (h) => {
    const ep = new PgBouncerEndpoint(h, i.config);
    const r = await ep.ensure();
    if (r.started) progress(i.label, `PgBouncer ${i.config.name} started on ${ep.adminAddress.host}:${ep.adminAddress.port} (pid ${r.pid})`);
    if (r.restarted) progress(i.label, `PgBouncer ${i.config.name} restarted: a listen setting changed`);
    return { ...i, pid: r.pid, configDir: ep.config.configDir, address: `${ep.adminAddress.host}:${ep.adminAddress.port}` };
  });
}

/** Another instance name is another PgBouncer; the rest of its configuration changes in place (ensure() applies it); a stopped one is started. */
export const ENDPOINT_DIFF: DiffSpec = { replace: ["config.name"], update: ["config"], ignore: ["label"], drift: (o) => o.pid === 0 };
const diff = declaredDiff(ENDPOINT_DIFF);

export const pgBouncerEndpointProvider: pulumi.dynamic.ResourceProvider = {
  async check(_o: Inputs, n: Inputs) {
    const failures: pulumi.dynamic.CheckFailure[] = [];
    failures.push(...checkConnection(n.connection));
    if (!isUnknown(n.config)) {
      try {
        resolveConfig(n.config); // validates every field; runs nothing
      } catch (e) {
        failures.push({ property: "endpoint", reason: `endpoint: ${errorMessage(e)}` });
      }
    }
    return { inputs: n, failures };
  },
  async diff(_id: string, o: Outputs, n: Inputs) {
    return diff(o as unknown as Record<string, unknown>, n as unknown as Record<string, unknown>);
  },
  async create(i: Inputs) {
    const outs = await ensure(i);
    return { id: `${hostIdentity(i.connection)}:pgbouncer:${i.config.name}`, outs };
  },
  async read(id: string, p: Outputs) {
    return await withHost(p.connection, async (h) => {
      const st = await new PgBouncerEndpoint(h, p.config).status();
      if (!st.exists) return { id: undefined as unknown as string, props: {} };
      return { id, props: { ...p, pid: st.running ? (st.pid ?? 0) : 0 } };
    });
  },
  async update(_id: string, _o: Outputs, n: Inputs) {
    return { outs: await ensure(n) };
  },
  async delete(_id: string, p: Outputs) {
    await withHost(p.connection, async (h) => {
      await new PgBouncerEndpoint(h, p.config).destroy();
      progress(p.label, `PgBouncer ${p.config.name} stopped and its configuration removed`);
    });
  },
};

export interface PgBouncerEndpointArgs {
  connection?: pulumi.Input<ConnectionArgs>;
  /** See PgBouncerEndpointConfig: name, listenPort, listenAddr, authType, users, poolMode, databases (initial targets) ... */
  config: pulumi.Input<PgBouncerEndpointConfig>;
}

/**
 * A PgBouncer instance that clients connect to instead of a server. `databases` sets the
 * initial targets only: a later `pulumi up` never moves an entry back (a Promotion moves them).
 *
 * @example
 * ```ts
 * const ep = new PgBouncerEndpointResource("app", {
 *   config: { name: "app", listenPort: 6432, authType: "trust",
 *             databases: { app: { host: "/var/run/postgresql", port: 5432, dbname: "app" } } },
 * }, { retainOnDelete: true });
 * ```
 */
export class PgBouncerEndpointResource extends UnderstudyResource {
  declare readonly pid: pulumi.Output<number>;
  declare readonly configDir: pulumi.Output<string>;
  declare readonly address: pulumi.Output<string>;

  constructor(name: string, args: PgBouncerEndpointArgs, opts?: pulumi.CustomResourceOptions) {
    super(
      "PgBouncerEndpoint",
      name,
      {
        connection: args.connection,
        label: name,
        config: args.config,
        pid: undefined,
        configDir: undefined,
        address: undefined,
      },
      opts,
      ["config"], // it can carry user passwords
    );
  }
}

export type { DatabaseTarget, PgBouncerEndpointConfig };
