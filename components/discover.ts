/**
 * Live's layout, read when the program runs (also in `pulumi preview`, read-only): which
 * volumes hold its data directory, a `pg_wal` elsewhere and its tablespaces, and whether
 * its configuration lives outside the data directory. A place on no volume fails the
 * program here, naming it, before anything is declared to run.
 */
import * as pulumi from "@pulumi/pulumi";
import { InputError, InputErrors, errorMessage } from "../providers/errors";
import { PostgresDriver } from "../providers/postgres/driver";
import { discoverSource, isPlain, type SourceLayout } from "../providers/runner/layout";
import type { SourcePlan } from "../providers/plan/rehearsal";
import type { StorageBackend } from "./storage/types";
import { asPropertyErrors } from "./errors";

export interface DiscoveredLayout {
  /** Every volume of the cluster, PGDATA's first. */
  volumes: string[];
  /** The layout a clone must reproduce, or undefined when it is one plain volume (then nothing needs re-pointing). */
  layout?: SourceLayout;
}

export function discoverLayout(
  component: string,
  storage: StorageBackend,
  dataset: pulumi.Input<string>,
  source: Omit<SourcePlan, "dataset" | "checkpoint">,
): pulumi.Output<DiscoveredLayout> {
  return pulumi.output(dataset).apply((ds) =>
    storage.withStorage(async (s, host): Promise<DiscoveredLayout> => {
      try {
        const l = await discoverSource(host, s, new PostgresDriver(host, { osUser: source.osUser }), { ...source, dataset: ds });
        return isPlain(l) ? { volumes: l.volumes } : { volumes: l.volumes, layout: l };
      } catch (e) {
        if (e instanceof InputErrors || InputError.is(e)) throw asPropertyErrors(component, e);
        // Could not look (the host or the dataset is not reachable yet): the preflight reports
        // what is missing, and the guard on the clone refuses links into live before anything starts.
        await pulumi.log.warn(`${component}: live's layout could not be read (${errorMessage(e).split("\n")[0]}); assuming everything is in ${ds}`);
        return { volumes: [ds] };
      }
    }),
  );
}

/**
 * Every database of the cluster that clients can connect to (templates left out), read when
 * the program runs (also in preview; read-only). Asked of live first and, when live does not
 * answer (a promotion stopped it), of the new live, which holds the same databases: so the
 * list, and with it the endpoint and the cut-over, stays the same after a promotion. When
 * neither answers, `[fallback]` with a warning: the cut-over checks the list against live
 * again before holding anyone.
 */
export function discoverDatabases(
  component: string,
  storage: StorageBackend,
  servers: Array<Pick<SourcePlan, "version" | "binDir" | "socketDir" | "port" | "osUser">>,
  fallback: string,
): pulumi.Output<string[]> {
  return storage.withStorage(async (_s, host): Promise<string[]> => {
    const failures: string[] = [];
    for (const server of servers) {
      let rows: string[][];
      try {
        const pg = new PostgresDriver(host, { osUser: server.osUser });
        rows = await pg.adminQuery(
          { version: server.version, binDir: server.binDir, socketDir: server.socketDir, port: server.port },
          "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY datname",
          { database: "postgres", timeoutMs: 30_000 },
        );
      } catch (e) {
        failures.push(`port ${server.port}: ${errorMessage(e).split("\n")[0]}`);
        continue;
      }
      const names = rows.map((r) => r[0]).filter((d) => /^[A-Za-z_][A-Za-z0-9_]{0,62}$/.test(d));
      const skipped = rows.map((r) => r[0]).filter((d) => !names.includes(d));
      if (skipped.length) await pulumi.log.warn(`${component}: database(s) ${skipped.join(", ")} get no PgBouncer entry (names outside letters, digits and _): list endpoint.databases yourself`);
      return names.includes(fallback) ? names : [fallback, ...names];
    }
    await pulumi.log.warn(`${component}: the cluster's databases could not be read (${failures.join("; ")}); only ${fallback} gets a PgBouncer entry`);
    return [fallback];
  });
}
