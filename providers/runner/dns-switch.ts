/**
 * A DNS record (Route53 on AWS) as the cut-over's {@link EndpointSwitch}: the same phases as
 * with PgBouncer, the swap is the record's value.
 *
 * A record maps the cut-over's targets by their host only: live's target host (`serverHost`)
 * is the record's value while live serves, the new live's (`newServerHost`) after the swap.
 * Clients keep connecting to `<record>:<port>`, so both servers listen on the same port (the
 * promotion's check refuses otherwise).
 *
 * DNS cannot hold clients. `hold` runs the held phases with nobody held: while live is stopped
 * clients' connections fail, and after the swap they reach the new live once their cached
 * answer expires (the record's TTL). The "pause window" it reports is the whole held part of
 * the cut-over, the time clients could not work; add the TTL for what they see.
 *
 * No Pulumi, no SDK here: the record is an interface (Route53Switch implements it).
 */
import { errorMessage } from "../errors";
import type { DatabaseTarget } from "../endpoint/pgbouncer-config";
import type { CutoverSpec, EndpointSwitch } from "./cutover";
import { liveTarget, newLiveTarget } from "./cutover";

/** What the cut-over needs of a DNS record (providers/endpoint/route53.ts `Route53Switch`). */
export interface DnsRecord {
  readonly description: string;
  /** Seconds clients may keep the old answer. */
  readonly ttl: number;
  /** The record's value now. */
  target(): Promise<string>;
  /** Change the value and wait until the DNS service has it everywhere (bounded). */
  retarget(value: string): Promise<void>;
}

const norm = (v: string) => v.replace(/\.$/, "").toLowerCase();

export function dnsEndpointSwitch(record: DnsRecord, s: CutoverSpec, log: (m: string) => void = () => undefined): EndpointSwitch {
  const liveValue = liveTarget(s).host;
  const newValue = newLiveTarget(s).host;
  const targetOf = (value: string, db: string): DatabaseTarget => {
    if (norm(value) === norm(liveValue)) return liveTarget(s, db);
    if (norm(value) === norm(newValue)) return newLiveTarget(s, db);
    throw new Error(`${record.description} points at ${value}: neither live's address (${liveValue}) nor the new live's (${newValue}); nothing was done`);
  };
  const valueOf = (targets: Record<string, DatabaseTarget>): string => {
    const hosts = [...new Set(Object.values(targets).map((t) => t.host))];
    if (hosts.length !== 1) throw new Error(`${record.description} holds one address; the databases were to move to ${hosts.join(", ")}`);
    return hosts[0];
  };
  return {
    description: `${record.description} (DNS: clients are not held; TTL ${record.ttl} s)`,
    current: async (db) => targetOf(await record.target(), db),
    hold: async (_databases, fn) => {
      const t0 = Date.now();
      const before = await record.target();
      let moved = false;
      try {
        await fn({
          retarget: async (targets) => {
            const v = valueOf(targets);
            moved = norm(v) !== norm(before);
            await record.retarget(v);
          },
        });
      } catch (e) {
        // The phases' undo puts the record back; this is the last resort for a swap that ran outside them.
        if (moved && norm(await record.target().catch(() => before)) !== norm(before)) {
          await record.retarget(before).catch((err) => log(`warning: could not put ${record.description} back to ${before}: ${errorMessage(err)}`));
        }
        throw e;
      }
      return { pauseWindowMs: Date.now() - t0, phases: { pauseMs: 0, resumeMs: 0 } };
    },
    paused: async () => false,
    resume: async () => undefined,
  };
}
