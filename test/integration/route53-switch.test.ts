/**
 * Route53Switch against a REAL moto server: read the record, UPSERT it, wait for INSYNC.
 * moto reports every change INSYNC at once, so the waiting path is tested with a middleware
 * that answers GetChange `PENDING` first (and forever, for the timeout).
 */
import {
  ChangeResourceRecordSetsCommand,
  CreateHostedZoneCommand,
  ListResourceRecordSetsCommand,
  Route53Client,
} from "@aws-sdk/client-route-53";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { InputError } from "../../providers/errors";
import { Route53Switch } from "../../providers/endpoint/route53";
import { Moto, startMoto } from "../harness/moto";

let moto: Moto;
let zoneId: string;

function client(): { client: Route53Client; calls: string[] } {
  const c = new Route53Client({ region: "us-east-1", endpoint: moto.endpoint, credentials: { accessKeyId: "testing", secretAccessKey: "testing" } });
  const calls: string[] = [];
  c.middlewareStack.add((next, ctx) => async (args) => {
    calls.push(String(ctx.commandName));
    return next(args);
  }, { step: "initialize", name: "record" });
  return { client: c, calls };
}

/** GetChange answers PENDING for the first `n` polls (moto is INSYNC at once). */
function pendingFor(c: Route53Client, n: number): { polls: number } {
  const s = { polls: 0 };
  c.middlewareStack.add((next, ctx) => async (args) => {
    const r = await next(args);
    if (ctx.commandName === "GetChangeCommand" && s.polls++ < n) (r.output as { ChangeInfo: { Status: string } }).ChangeInfo.Status = "PENDING";
    if (ctx.commandName === "ChangeResourceRecordSetsCommand") (r.output as { ChangeInfo: { Status: string } }).ChangeInfo.Status = "PENDING";
    return r;
  }, { step: "initialize", name: `pending${Math.random()}`, priority: "low" });
  return s;
}

async function records(c: Route53Client) {
  return (await c.send(new ListResourceRecordSetsCommand({ HostedZoneId: zoneId }))).ResourceRecordSets ?? [];
}

beforeAll(async () => {
  moto = await startMoto();
  const { client: c } = client();
  const z = await c.send(new CreateHostedZoneCommand({ Name: "example.com", CallerReference: `t${Date.now()}` }));
  zoneId = z.HostedZone!.Id!.replace(/^\/hostedzone\//, "");
  await c.send(new ChangeResourceRecordSetsCommand({
    HostedZoneId: zoneId,
    ChangeBatch: { Changes: [{ Action: "CREATE", ResourceRecordSet: { Name: "db.example.com", Type: "CNAME", TTL: 30, ResourceRecords: [{ Value: "live-db1.internal.example.com" }] } }] },
  }));
}, 60_000);

afterAll(async () => {
  await moto?.stop();
});

describe("Route53Switch", () => {
  it("reads the current target and swaps it with one UPSERT; pause/resume do nothing", async () => {
    const { client: c, calls } = client();
    const sw = new Route53Switch({ zoneId: `/hostedzone/${zoneId}`, name: "DB.example.com.", client: c, ttl: 15 });
    expect(await sw.target()).toBe("live-db1.internal.example.com");
    await sw.pause();
    await sw.retarget("rehearsal-db2.internal.example.com");
    await sw.resume();
    expect(await sw.target()).toBe("rehearsal-db2.internal.example.com");
    expect(calls.filter((x) => x === "ChangeResourceRecordSetsCommand")).toHaveLength(1);
    const rec = (await records(c)).find((r) => r.Type === "CNAME")!;
    expect(rec.TTL).toBe(15);
  });

  it("waits until the change is INSYNC (PENDING injected for two polls)", async () => {
    const { client: c } = client();
    const s = pendingFor(c, 2);
    const lines: string[] = [];
    const sw = new Route53Switch({ zoneId, name: "db.example.com", client: c, minDelaySeconds: 1, onProgress: (m) => lines.push(m) });
    const started = Date.now();
    await sw.retarget("live-db1.internal.example.com");
    expect(s.polls).toBe(3);
    expect(Date.now() - started).toBeGreaterThanOrEqual(1000);
    expect(lines.at(-1)).toMatch(/INSYNC/);
  });

  it("gives up after the bound, saying the value is accepted (PENDING injected forever)", async () => {
    const { client: c } = client();
    pendingFor(c, 1000);
    const sw = new Route53Switch({ zoneId, name: "db.example.com", client: c, minDelaySeconds: 1, waitSeconds: 3 });
    await expect(sw.retarget("x.example.com")).rejects.toThrow(/did not report the change .* INSYNC within 3 s.*will propagate/);
  });

  it("refuses bad zone ids, names and values before any call", async () => {
    const { client: c, calls } = client();
    const field = (fn: () => unknown) => {
      try {
        fn();
      } catch (e) {
        return InputError.is(e) ? e.field : String(e);
      }
      return "no error";
    };
    expect(field(() => new Route53Switch({ zoneId: "z123; rm", name: "db.example.com", client: c }))).toBe("route53.zoneId");
    expect(field(() => new Route53Switch({ zoneId, name: "db..example.com", client: c }))).toBe("route53.name");
    expect(field(() => new Route53Switch({ zoneId, name: "$(id).example.com", client: c }))).toBe("route53.name");
    expect(field(() => new Route53Switch({ zoneId, name: "db.example.com", ttl: 0, client: c }))).toBe("route53.ttl");
    const a = new Route53Switch({ zoneId, name: "db.example.com", type: "A", client: c });
    await expect(a.retarget("10.0.0.256")).rejects.toMatchObject({ field: "value" });
    await expect(a.retarget("db.example.com")).rejects.toMatchObject({ field: "value" });
    await expect(new Route53Switch({ zoneId, name: "db.example.com", client: c }).retarget("bad name\n")).rejects.toMatchObject({ field: "value" });
    expect(calls).toEqual([]);
  });

  it("a missing record is a clear error", async () => {
    const { client: c } = client();
    await expect(new Route53Switch({ zoneId, name: "nothing.example.com", client: c }).target()).rejects.toThrow(/CNAME nothing.example.com .* does not exist/);
  });
});
