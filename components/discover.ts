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
