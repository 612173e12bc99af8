import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { LocalWorkspace, PulumiCommand, Stack, ConfigMap } from "@pulumi/pulumi/automation";

export const REPO = path.resolve(__dirname, "../..");

/** The Pulumi CLI that scripts/setup.sh built (its bin dir is exported as UNDERSTUDY_PULUMI_BIN). */
export function pulumiBin(): string {
  const bin = process.env.UNDERSTUDY_PULUMI_BIN;
  if (!bin || !fs.existsSync(path.join(bin, "pulumi"))) {
    throw new Error("UNDERSTUDY_PULUMI_BIN is not set or has no pulumi: run the tests with `npm test` (it runs scripts/setup.sh)");
  }
  return bin;
}

export function tempDir(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `understudy-${prefix}-`));
}

/**
 * A Pulumi program directory: Pulumi.yaml + the given files, with node_modules linked to
 * the repo's (where `pulumi-understudy` resolves to the repo itself, as built in dist/).
 */
export function makeProgram(name: string, files: Record<string, string>, opts: { linkNodeModules?: boolean } = {}): string {
  const dir = tempDir(name);
  fs.writeFileSync(path.join(dir, "Pulumi.yaml"), `name: ${name}\nruntime: nodejs\nmain: index.js\n`);
  fs.writeFileSync(path.join(dir, "package.json"), JSON.stringify({ name, private: true, main: "index.js" }));
  for (const [f, text] of Object.entries(files)) fs.writeFileSync(path.join(dir, f), text);
  if (opts.linkNodeModules !== false) fs.symlinkSync(path.join(REPO, "node_modules"), path.join(dir, "node_modules"));
  return dir;
}

/** A fixture program from test/fixtures/<fixture>, in a fresh directory. */
export function fixtureProgram(fixture: string): string {
  const src = path.join(REPO, "test/fixtures", fixture);
  const files: Record<string, string> = {};
  for (const f of fs.readdirSync(src)) files[f] = fs.readFileSync(path.join(src, f), "utf8");
  return makeProgram(fixture, files);
}

export interface TestBackend {
  url: string;
  dir: string;
  env: Record<string, string>;
}

/** A local file backend in a temp dir. */
export function fileBackend(): TestBackend {
  const dir = tempDir("state");
  return {
    url: `file://${dir}`,
    dir,
    env: {
      PULUMI_BACKEND_URL: `file://${dir}`,
      PULUMI_CONFIG_PASSPHRASE: "understudy-tests",
      PULUMI_SKIP_UPDATE_CHECK: "true",
      PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION: "true",
      PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK: "true",
      PATH: `${pulumiBin()}:${process.env.PATH}`,
    },
  };
}

/** A stack of a program directory on a backend, through the Automation API and the real CLI. */
export async function openStack(workDir: string, stackName: string, backend: TestBackend, config: ConfigMap = {}): Promise<Stack> {
  const pulumiCommand = await PulumiCommand.get({ root: path.dirname(pulumiBin()), skipVersionCheck: true });
  const stack = await LocalWorkspace.createOrSelectStack(
    { stackName, workDir },
    { envVars: backend.env, pulumiCommand },
  );
  if (Object.keys(config).length) await stack.setAllConfig(config);
  return stack;
}

/** Collected engine output, for assertions on what a user sees. */
export function collector(): { lines: string[]; onOutput: (s: string) => void; text: () => string } {
  const lines: string[] = [];
  return { lines, onOutput: (s: string) => lines.push(s), text: () => lines.join("") };
}

/** Run `fn`, expect it to reject, return the error's message (and stdout/stderr for CLI errors). */
export async function failureOf(fn: () => Promise<unknown>): Promise<string> {
  try {
    await fn();
  } catch (e) {
    const err = e as { message?: string; stdout?: string; stderr?: string };
    return [err.message, err.stdout, err.stderr].filter(Boolean).join("\n");
  }
  throw new Error("expected the operation to fail, but it succeeded");
}
