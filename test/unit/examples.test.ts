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

  it("are runnable Pulumi projects: Pulumi.yaml (TypeScript, index.ts), package.json depending on the package, a README", () => {
    const dirs = fs.readdirSync(path.join(root, "examples")).filter((d) => fs.existsSync(path.join(root, "examples", d, "index.ts")));
    expect(dirs.length).toBeGreaterThanOrEqual(3);
    for (const dir of dirs) {
      const at = (f: string) => path.join(root, "examples", dir, f);
      const yaml = fs.readFileSync(at("Pulumi.yaml"), "utf8");
      expect(yaml, dir).toMatch(/^name: \S+/m);
      expect(yaml, dir).toMatch(/^runtime:\n {2}name: nodejs\n {2}options:\n {4}typescript: true/m);
      expect(yaml, dir).toMatch(/^main: index\.ts$/m);
      const pkg = JSON.parse(fs.readFileSync(at("package.json"), "utf8"));
      expect(Object.keys(pkg.dependencies), dir).toEqual(expect.arrayContaining(["pulumi-understudy", "@pulumi/pulumi"]));
      expect(fs.readFileSync(at("README.md"), "utf8"), dir).toMatch(/pulumi up/);
    }
  });

  it("type-check under strict settings", () => {
    execFileSync(path.join(root, "node_modules/.bin/tsc"), ["-p", "examples/tsconfig.json"], { cwd: root, stdio: "pipe" });
  }, 120_000);
});
