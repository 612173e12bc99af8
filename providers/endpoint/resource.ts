import * as pulumi from "@pulumi/pulumi";
import type { ConnectionArgs } from "../host/connection";
import { withHost } from "../host";
import { errorMessage, hostIdentity, isUnknown, progress, checkConnection } from "../common";
import { UnderstudyResource } from "../shim";
import { declaredDiff, type DiffSpec } from "../diff";
import { PgBouncerEndpoint } from "./pgbouncer";
import { ADMIN_PASSWORD_LATER, checkConfig } from "./pgbouncer-config";
import type { Host } from "../host/types";
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
  /** The admin console's password: the config's, else generated once (absent in 0.1.0 state until its first update). */
  adminPassword?: string;
}

/** 32 characters from a CSPRNG (192 bits), letters and digits: safe in a userlist and in a URL. */
export function generatePassword(): string {
  const { randomInt } = require("node:crypto") as typeof import("node:crypto");
  const alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
  let s = "";
  for (let k = 0; k < 32; k++) s += alphabet[randomInt(alphabet.length)];
  return s;
}

/** The admin password to use: the config's wins, else the one stored, else a new one. */
function adminPasswordFor(config: PgBouncerEndpointConfig, stored: string | undefined): string {
  return config.adminPassword ?? stored ?? generatePassword();
}

async function ensure(i: Inputs, adminPassword: string): Promise<Outputs> {
  return await withHost(i.connection, async (h) => {
    const ep = new PgBouncerEndpoint(h, { ...i.config, adminPassword });
    const r = await ep.ensure();
    if (r.started) progress(i.label, `PgBouncer ${i.config.name} started on ${ep.adminAddress.host}:${ep.adminAddress.port} (pid ${r.pid})`);
    if (r.restarted) progress(i.label, `PgBouncer ${i.config.name} restarted: a listen setting changed`);
    return { ...i, pid: r.pid, configDir: ep.config.configDir, address: `${ep.adminAddress.host}:${ep.adminAddress.port}`, adminPassword };
  });
}

/** The driver for stored state (read, delete: neither logs into the admin console). */
function driverFor(h: Host, p: Outputs): PgBouncerEndpoint {
  return new PgBouncerEndpoint(h, { ...p.config, adminPassword: p.config.adminPassword ?? p.adminPassword ?? ADMIN_PASSWORD_LATER });
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
        checkConfig(n.config); // validates every field (the admin password may come later: generated); runs nothing
      } catch (e) {
        failures.push({ property: "endpoint", reason: `endpoint: ${errorMessage(e)}` });
      }
    }
    return { inputs: n, failures };
  },
  async diff(_id: string, o: Outputs, n: Inputs) {
    // State written before queryWaitTimeoutMs existed (0.1.0): gaining it is not a change by
    // itself (the cut-over raises query_wait_timeout on the host when it switches).
    let news = n;
    if (o.config && o.config.queryWaitTimeoutMs === undefined && n.config && !isUnknown(n.config) && n.config.queryWaitTimeoutMs !== undefined) {
      const { queryWaitTimeoutMs: _added, ...rest } = n.config;
      news = { ...n, config: rest };
    }
    return diff(o as unknown as Record<string, unknown>, news as unknown as Record<string, unknown>);
  },
  async create(i: Inputs) {
    const outs = await ensure(i, adminPasswordFor(i.config, undefined));
    return { id: `${hostIdentity(i.connection)}:pgbouncer:${i.config.name}`, outs };
  },
  async read(id: string, p: Outputs) {
    return await withHost(p.connection, async (h) => {
      const st = await driverFor(h, p).status();
      if (!st.exists) return { id: undefined as unknown as string, props: {} };
      return { id, props: { ...p, pid: st.running ? (st.pid ?? 0) : 0 } };
    });
  },
  async update(_id: string, o: Outputs, n: Inputs) {
    // Kept across updates; an endpoint made by 0.1.0 (none stored) gets one now.
    return { outs: await ensure(n, adminPasswordFor(n.config, o.adminPassword)) };
  },
  async delete(_id: string, p: Outputs) {
    await withHost(p.connection, async (h) => {
      await driverFor(h, p).destroy();
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
 *   config: { name: "app", listenPort: 6432, authType: "trust", // trust: loopback only (listenAddr defaults to 127.0.0.1)
 *             databases: { app: { host: "/var/run/postgresql", port: 5432, dbname: "app" } } },
 * }, { retainOnDelete: true });
 * ```
 */
export class PgBouncerEndpointResource extends UnderstudyResource {
  declare readonly pid: pulumi.Output<number>;
  declare readonly configDir: pulumi.Output<string>;
  declare readonly address: pulumi.Output<string>;
  /**
   * The admin console's password (user `understudy_admin` unless `adminUser` says
   * otherwise): `config.adminPassword` when given, else 32 random characters generated at
   * creation and kept across updates. A secret output.
   */
  declare readonly adminPassword: pulumi.Output<string>;

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
        adminPassword: undefined,
      },
      opts,
      ["config", "adminPassword"], // they carry passwords
    );
  }
}

export type { DatabaseTarget, PgBouncerEndpointConfig };
