import * as pulumi from "@pulumi/pulumi";
import type { ConnectionArgs } from "../host/connection";
import { withHost } from "../host";
import { failure, hostIdentity, isUnknown, progress, checkConnection } from "../common";
import { UnderstudyResource } from "../shim";
import { declaredDiff, type DiffSpec } from "../diff";
import { PostgresDriver } from "./driver";
import { prepareClone, type SourceLayout } from "../runner/layout";
import { parentDir } from "../validate";
import { validateDataDir, validateListen, validatePort, validateSocketDir, validateVersion } from "./validate";

/** A clone of a cluster beyond one plain volume: where its volumes are mounted and what to re-point. */
export interface PrepareArgs {
  layout: SourceLayout;
  mounts: string[];
}

interface Inputs {
  connection?: ConnectionArgs;
  label: string;
  prepare?: PrepareArgs;
  dataDir: string;
  version: number;
  binDir?: string;
  osUser: string;
  port: number;
  socketDir: string;
  listen: string;
}

interface Outputs extends Inputs {
  pid?: number;
  readyMs?: number;
  removedStalePid?: number;
}

const install = (i: Inputs) => ({ version: i.version, binDir: i.binDir, field: "postgres" });

async function start(i: Inputs): Promise<Outputs> {
  return await withHost(i.connection, async (h) => {
    const pg = new PostgresDriver(h, { osUser: i.osUser });
    const st = await pg.status(i.dataDir, install(i));
    if (st.running) return { ...i, pid: st.pid };
    // A clone of a running database carries the source's postmaster.pid: removed only when no
    // process of that PID runs in this very directory (the driver refuses a live data directory).
    // Links re-pointed into the clone, and the guard: nothing starts while a link leads into live.
    await prepareClone(h, i.osUser, i.dataDir, i.prepare?.mounts ?? [parentDir(i.dataDir)], i.prepare?.layout, (m) => progress(i.label, m));
    const stale = await pg.removeStalePid(i.dataDir);
    if (stale) progress(i.label, `removed the postmaster.pid copied from the source (pid ${stale.pid})`);
    progress(i.label, `starting PostgreSQL ${i.version} on ${i.dataDir}, port ${i.port} (crash recovery of a live snapshot can take a while)`);
    const srv = await pg.start(i.dataDir, install(i), { port: i.port, socketDir: i.socketDir, listen: i.listen, onProgress: (m) => progress(i.label, m) });
    progress(i.label, `ready in ${srv.readyMs ?? "?"} ms`);
    const after = await pg.status(i.dataDir, install(i));
    return { ...i, pid: after.pid, readyMs: srv.readyMs, removedStalePid: stale?.pid };
  });
}

/** Any setting of the server is another server (stopped, started anew); a refresh that saw it stopped makes `up` start it. */
export const SERVER_DIFF: DiffSpec = {
  replace: ["dataDir", "version", "binDir", "osUser", "port", "socketDir", "listen", "prepare"],
  update: [],
  ignore: ["label"],
  drift: (o) => o.pid === 0,
};
const diff = declaredDiff(SERVER_DIFF);

export const postgresServerProvider: pulumi.dynamic.ResourceProvider = {
  async check(_o: Inputs, n: Inputs) {
    const f: pulumi.dynamic.CheckFailure[] = [];
    f.push(...checkConnection(n.connection));
    if (!isUnknown(n.dataDir)) f.push(...failure("dataDir", () => validateDataDir(n.dataDir, "postgres.dataDir")));
    if (!isUnknown(n.version)) f.push(...failure("version", () => validateVersion(n.version, "postgres.version")));
    if (!isUnknown(n.port)) f.push(...failure("port", () => validatePort(n.port, "postgres.port")));
    if (!isUnknown(n.socketDir)) f.push(...failure("socketDir", () => validateSocketDir(n.socketDir, "postgres.socketDir")));
    if (!isUnknown(n.listen)) f.push(...failure("listen", () => validateListen(n.listen, "postgres.listen")));
    return { inputs: n, failures: f };
  },
  async diff(_id: string, o: Outputs, n: Inputs) {
    return diff(o as unknown as Record<string, unknown>, n as unknown as Record<string, unknown>);
  },
  async create(i: Inputs) {
    const outs = await start(i);
    return { id: `${hostIdentity(i.connection)}:${i.dataDir}`, outs };
  },
  async read(id: string, p: Outputs) {
    return await withHost(p.connection, async (h) => {
      const exists = await h.run(["test", "-f", `${p.dataDir}/PG_VERSION`], { okExitCodes: [0, 1] });
      if (exists.exitCode !== 0) return { id: undefined as unknown as string, props: {} };
      const st = await new PostgresDriver(h, { osUser: p.osUser }).status(p.dataDir, install(p));
      // A stopped server is drift: `pulumi up` starts it again.
      if (!st.running) return { id, props: { ...p, pid: 0 } };
      return { id, props: { ...p, pid: st.pid } };
    });
  },
  async update(_id: string, _o: Outputs, n: Inputs) {
    return { outs: await start(n) };
  },
  async delete(_id: string, p: Outputs) {
    await withHost(p.connection, async (h) => {
      const r = await new PostgresDriver(h, { osUser: p.osUser }).stopIfPresent(p.dataDir, install(p), { mode: "fast" });
      if (r?.wasRunning) progress(p.label, `stopped PostgreSQL on ${p.dataDir} in ${r.durationMs} ms`);
    });
  },
};

export interface PostgresServerArgs {
  connection?: pulumi.Input<ConnectionArgs>;
  /** The data directory (on a clone: never point this at a live data directory; the driver refuses one that is running). */
  dataDir: pulumi.Input<string>;
  version: pulumi.Input<number>;
  binDir?: pulumi.Input<string>;
  osUser?: pulumi.Input<string>;
  port: pulumi.Input<number>;
  socketDir: pulumi.Input<string>;
  /** `listen_addresses`: `""` for the socket only, `127.0.0.1`, ... */
  listen?: pulumi.Input<string>;
  /** For a clone of a cluster beyond one plain volume: its layout and where each volume's clone is mounted (links are re-pointed before the start). */
  prepare?: pulumi.Input<PrepareArgs>;
}

/**
 * A PostgreSQL server running on a data directory (typically a clone): started with
 * settings that isolate it from its source (no archiving, no standbys, own pid and logs),
 * stopped cleanly on destroy. Refresh notices a stopped server and `up` starts it again.
 */
export class PostgresServer extends UnderstudyResource {
  declare readonly pid: pulumi.Output<number>;
  declare readonly readyMs: pulumi.Output<number | undefined>;
  declare readonly port: pulumi.Output<number>;
  declare readonly socketDir: pulumi.Output<string>;

  constructor(name: string, args: PostgresServerArgs, opts?: pulumi.CustomResourceOptions) {
    super(
      "PostgresServer",
      name,
      {
        connection: args.connection,
        label: name,
        dataDir: args.dataDir,
        version: args.version,
        binDir: args.binDir,
        osUser: args.osUser ?? "postgres",
        port: args.port,
        socketDir: args.socketDir,
        listen: args.listen ?? "",
        prepare: args.prepare,
        pid: undefined,
        readyMs: undefined,
        removedStalePid: undefined,
      },
      opts,
    );
  }
}
