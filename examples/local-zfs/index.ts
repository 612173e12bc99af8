// The embedded default: everything on this machine. A snapshot schedule on the live
// dataset, a throw-away clone with PostgreSQL running on it, and an upgrade rehearsal.
import * as pulumi from "@pulumi/pulumi";
import { DatabaseClone, SnapshotSchedule, UpgradeRehearsal, ZfsClone, ZfsSnapshot } from "pulumi-understudy";

const source = { dataset: "tank/pg13", pgdata: "main", version: 13, port: 5432 };

// Hourly snapshots with a CHECKPOINT first; 24 hourly and 7 daily kept.
const hourly = new SnapshotSchedule("pg13-hourly", {
  dataset: source.dataset,
  every: "1h",
  keep: { hourly: 24, daily: 7 },
  hook: ["/usr/lib/postgresql/13/bin/psql", "-X", "-p", "5432", "-c", "CHECKPOINT"],
});

// Raw building blocks: a snapshot and a clone of it.
const snap = new ZfsSnapshot("before-friday", { dataset: source.dataset, name: "before-friday" });
const scratch = new ZfsClone("scratch", { snapshot: snap.snapshot, dataset: "tank/scratch", properties: { mountpoint: "/srv/scratch" } });

// A running copy of live for a test environment, from the newest hourly snapshot.
const test = new DatabaseClone("test-env", {
  source,
  snapshot: "latest",
  clone: { dataset: "tank/clones/test-env" },
  postgres: { port: 55432, listen: "127.0.0.1", database: "app" },
}, { dependsOn: [hourly] });

// The rehearsal of 13 -> 15.
const rehearsal = new UpgradeRehearsal("pg13-to-15", {
  source,
  clone: { dataset: "tank/rehearsals/pg13-to-15" },
  to: 15,
  postgres: { port: 55532, database: "app" },
  steps: [{ name: "smoke", command: ["/usr/local/bin/app-smoke-test"] }],
  checks: { checksumTables: ["public.orders"], assertions: [{ name: "no orphans", sql: "SELECT NOT EXISTS (SELECT 1 FROM orders o LEFT JOIN customers c ON c.id = o.customer_id WHERE c.id IS NULL)" }] },
});

export const scratchMountpoint = scratch.mountpoint;
export const testEnv = test.connectionString;
export const report = rehearsal.reportMarkdown;
export const schedule = pulumi.all([hourly.cron, hourly.logPath]);
