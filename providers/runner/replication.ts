/**
 * Replication that a promotion does not carry: `pg_upgrade` brings over no replication slot,
 * no standby and no subscription state. Before a promotion, live is read (read-only: three
 * catalog views) and every such item is listed; the promotion refuses unless the user has
 * acknowledged each one by its id, so that nobody loses a standby or a CDC consumer by
 * surprise. Pulumi-free.
 */
import type { PostgresDriver } from "../postgres/driver";

export interface ReplicationItem {
  /** What the user writes in `acknowledgeReplicationLoss`: `slot:<name>`, `standby:<name>`, `subscription:<database>.<name>`. */
  id: string;
  kind: "slot" | "standby" | "subscription";
  /** What it is, as live reports it. */
  detail: string;
  /** How to rebuild it on the new live. */
  rebuild: string;
}

/** One statement, three views; our own slots, senders and subscriptions (`understudy_*`: the logical method's way back) are left out. */
export const REPLICATION_SQL = `
SELECT 'slot', slot_name::text, slot_type || coalesce(' slot, plugin ' || plugin, ' slot') || coalesce(', database ' || database, '') || CASE WHEN active THEN ', active' ELSE ', inactive' END
  FROM pg_replication_slots WHERE slot_name::text NOT LIKE 'understudy\\_%'
UNION ALL
SELECT 'standby', coalesce(nullif(application_name, ''), host(client_addr), 'local'), 'standby connected from ' || coalesce(host(client_addr), 'the local socket') || ', ' || coalesce(state, '?') || ', ' || coalesce(sync_state, '?')
  FROM pg_stat_replication WHERE coalesce(application_name, '') NOT LIKE 'understudy\\_%'
UNION ALL
SELECT 'subscription', d.datname || '.' || s.subname, 'subscription ' || CASE WHEN s.subenabled THEN 'enabled' ELSE 'disabled' END || coalesce(', slot ' || s.subslotname, '')
  FROM pg_subscription s JOIN pg_database d ON d.oid = s.subdbid WHERE s.subname::text NOT LIKE 'understudy\\_%'
ORDER BY 1, 2;
`;

const REBUILD: Record<ReplicationItem["kind"], string> = {
  slot: "create it again on the new live (pg_create_physical_replication_slot / pg_create_logical_replication_slot) before its consumer reconnects; a logical consumer must resynchronise from the new slot's position",
  standby: "rebuild it from the new live (a new base backup, or a clone of the new live's volumes), then point it at the new live",
  subscription: "create it again on the new live (CREATE SUBSCRIPTION ... WITH (copy_data = false) once you know the publisher's position), or let the publisher resynchronise",
};

/** Rows of {@link REPLICATION_SQL} as items. */
export function replicationItems(rows: string[][]): ReplicationItem[] {
  return rows
    .filter((r) => r.length >= 3 && (r[0] === "slot" || r[0] === "standby" || r[0] === "subscription"))
    .map(([kind, name, detail]) => ({ id: `${kind}:${name}`, kind: kind as ReplicationItem["kind"], detail: detail ?? "", rebuild: REBUILD[kind as ReplicationItem["kind"]] }));
}

/** Live's replication, read through psql on its socket as the OS user. */
export async function readReplication(pg: PostgresDriver, live: { version: number; binDir?: string; socketDir: string; port: number }): Promise<ReplicationItem[]> {
  return replicationItems(await pg.adminQuery(live, REPLICATION_SQL, { timeoutMs: 60_000 }));
}

/** The items not acknowledged by id. */
export function unacknowledged(items: readonly ReplicationItem[], acknowledged: readonly string[]): ReplicationItem[] {
  const ok = new Set(acknowledged);
  return items.filter((i) => !ok.has(i.id));
}

/** The refusal: every item with what it is and how to rebuild it, and what to write. */
export function replicationRefusal(items: readonly ReplicationItem[]): string {
  return (
    `live has replication that the promotion would drop (pg_upgrade carries no slots, standbys or subscriptions):\n` +
    items.map((i) => `  - ${i.id}: ${i.detail}; afterwards: ${i.rebuild}`).join("\n") +
    `\nAcknowledge each by adding its id to acknowledgeReplicationLoss (e.g. ${JSON.stringify(items.map((i) => i.id))}) once you have a plan to rebuild it. Nothing was stopped or changed.`
  );
}
