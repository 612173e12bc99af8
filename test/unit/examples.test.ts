/** The examples are written against the public API only, and they compile (strict). */
import { describe, expect, it } from "vitest";
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";

const root = path.resolve(__dirname, "../..");

describe("examples", () => {
  it("import nothing but the package's public API", () => {
    for (const dir of fs.readdirSync(path.join(root, "examples"))) {
      const file = path.join(root, "examples", dir, "index.ts");
      if (!fs.existsSync(file)) continue;
      const imports = [...fs.readFileSync(file, "utf8").matchAll(/from "([^"]+)"/g)].map((m) => m[1]);
      for (const i of imports) expect(["pulumi-understudy", "@pulumi/pulumi", "node:fs"]).toContain(i);
    }
  });

  it("type-check under strict settings", () => {
    execFileSync(path.join(root, "node_modules/.bin/tsc"), ["-p", "examples/tsconfig.json"], { cwd: root, stdio: "pipe" });
  }, 120_000);
});
