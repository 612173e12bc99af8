/**
 * Resource construction without an engine (pulumi.runtime.setMocks): what a program
 * registers — type tokens, secrets, owner marks. The providers themselves are tested
 * through the real engine in test/integration.
 */
import { beforeAll, describe, expect, it } from "vitest";
import * as pulumi from "@pulumi/pulumi";

const registered: Array<{ type: string; name: string; inputs: Record<string, unknown> }> = [];

beforeAll(async () => {
  await pulumi.runtime.setMocks(
    {
      newResource: (args) => {
        registered.push({ type: args.type, name: args.name, inputs: args.inputs });
        return { id: `${args.name}-id`, state: { ...args.inputs, snapshot: `${args.inputs.dataset}@${args.inputs.name}` } };
      },
      call: () => ({}),
    },
    "proj",
    "stk",
    false,
  );
});

function resolve<T>(o: pulumi.Output<T>): Promise<T> {
  return new Promise((r) => o.apply((v) => r(v)));
}

describe("ZfsSnapshot and ZfsClone registration", () => {
  it("uses stable type tokens, marks ownership by stack and name, and keeps the connection secret", async () => {
    const { ZfsSnapshot, ZfsClone } = await import("../../understudy");
    const conn = { host: "db1.example", user: "ops", privateKey: "-----BEGIN KEY-----\nxyz\n-----END KEY-----" };
    const snap = new ZfsSnapshot("pre", { dataset: "tank/db", name: "pre", connection: conn });
    const clone = new ZfsClone("cl", { snapshot: snap.snapshot, dataset: "tank/cl" });
    await resolve(snap.snapshot);
    await resolve(clone.id);
    const s = registered.find((r) => r.name === "pre")!;
    expect(s.type).toBe("pulumi-nodejs:dynamic/understudy:ZfsSnapshot");
    expect(s.inputs.owner).toBe("proj/stk/ZfsSnapshot/pre");
    // Sent to the engine wrapped as a secret (Pulumi's secret signature), so state encrypts it.
    expect(s.inputs.connection).toEqual({ "4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270", value: conn });
    expect(await pulumi.isSecret(snap.snapshot)).toBe(false);
    // The serialized provider is the constant shim: it requires the implementation by package name.
    expect(String(s.inputs.__provider)).toContain("pulumi-understudy/dist/providers/dispatch.js");
    const c = registered.find((r) => r.name === "cl")!;
    expect(c.type).toBe("pulumi-nodejs:dynamic/understudy:ZfsClone");
    expect(c.inputs.snapshot).toBe("tank/db@pre");
    expect(c.inputs.connection).toBeUndefined();
  });
});
