/**
 * dnsEndpointSwitch (providers/runner/dns-switch.ts): a DNS record as the cut-over's endpoint.
 * The record is a fake here (an in-memory value); the real Route53Switch against moto runs in
 * test/integration/ebs-promotion.test.ts and route53-switch.test.ts.
 */
import { describe, expect, it } from "vitest";
import { dnsEndpointSwitch, type DnsRecord } from "../../providers/runner/dns-switch";
import type { CutoverSpec } from "../../providers/runner/cutover";

function record(value: string): DnsRecord & { value: string; changes: string[] } {
  const r = {
    description: "route53 CNAME db.example.com in Z1",
    ttl: 30,
    value,
    changes: [] as string[],
    target: async () => r.value,
    retarget: async (v: string) => {
      r.changes.push(v);
      r.value = v;
    },
  };
  return r;
}

const spec = {
  database: "app",
  databases: ["app", "reports"],
  serverHost: "db1.internal",
  newServerHost: "db2.internal",
  source: { socketDir: "/run/postgresql", port: 5432 },
  newLive: { socketDir: "/run/postgresql", port: 5432 },
} as unknown as CutoverSpec;

describe("dnsEndpointSwitch", () => {
  it("maps the record's value to live's or the new live's target, and refuses a value that is neither, naming both", async () => {
    const r = record("DB1.internal.");
    const sw = dnsEndpointSwitch(r, spec);
    expect(await sw.current("reports")).toEqual({ host: "db1.internal", port: 5432, dbname: "reports" });
    r.value = "db2.internal";
    expect(await sw.current("app")).toEqual({ host: "db2.internal", port: 5432, dbname: "app" });
    r.value = "someone-else.internal";
    await expect(sw.current("app")).rejects.toThrow(/points at someone-else\.internal: neither live's address \(db1\.internal\) nor the new live's \(db2\.internal\); nothing was done/);
  });

  it("holds nobody: runs the phases, swaps with one change, reports the whole run as the pause", async () => {
    const r = record("db1.internal");
    const sw = dnsEndpointSwitch(r, spec);
    const res = await sw.hold(["app", "reports"], async (ctl) => {
      await new Promise((ok) => setTimeout(ok, 30));
      await ctl.retarget({ app: { host: "db2.internal", port: 5432, dbname: "app" }, reports: { host: "db2.internal", port: 5432, dbname: "reports" } });
    }, { pauseTimeoutMs: 10 });
    expect(r.changes).toEqual(["db2.internal"]);
    expect(res.pauseWindowMs).toBeGreaterThanOrEqual(25);
    expect(res.phases).toEqual({ pauseMs: 0, resumeMs: 0 });
    expect(await sw.paused("app")).toBe(false);
  });

  it("refuses databases moving to two addresses (one record), and puts the record back when the phases fail after the swap", async () => {
    const r = record("db1.internal");
    const sw = dnsEndpointSwitch(r, spec);
    await expect(sw.hold(["app"], async (ctl) => {
      await ctl.retarget({ app: { host: "db2.internal", port: 5432, dbname: "app" }, reports: { host: "db3.internal", port: 5432, dbname: "reports" } });
    }, { pauseTimeoutMs: 10 })).rejects.toThrow(/holds one address; the databases were to move to db2\.internal, db3\.internal/);
    expect(r.changes).toEqual([]);
    await expect(sw.hold(["app"], async (ctl) => {
      await ctl.retarget({ app: { host: "db2.internal", port: 5432, dbname: "app" } });
      throw new Error("verify failed");
    }, { pauseTimeoutMs: 10 })).rejects.toThrow(/verify failed/);
    expect(r.changes).toEqual(["db2.internal", "db1.internal"]);
    expect(r.value).toBe("db1.internal");
  });
});
