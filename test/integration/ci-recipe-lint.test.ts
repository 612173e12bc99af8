/**
 * The pull-request recipe's GitHub workflow linted by actionlint, with shellcheck on every
 * `run:` script. Needs the tools `scripts/setup.sh` installs, so it runs with the integration
 * tests (`npm test`), not in `npm run check`.
 *
 * actionlint: $UNDERSTUDY_ACTIONLINT, else ~/.cache/understudy/actionlint-v1.7.*\/actionlint
 * (build: GOBIN=~/.cache/understudy/actionlint-v1.7.12 go install github.com/rhysd/actionlint/cmd/actionlint@v1.7.12).
 * Missing, the test fails: it never passes without linting.
 */
import { describe, expect, it } from "vitest";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

const REPO = path.resolve(__dirname, "../..");
const CI = path.join(REPO, "examples/ci");
const WORKFLOW = path.join(CI, "github/understudy.yml");
const LINT_CONFIG = path.join(CI, "github/actionlint.yaml");

function actionlint(): string {
  const env = process.env.UNDERSTUDY_ACTIONLINT;
  if (env) {
    if (!fs.existsSync(env)) throw new Error(`UNDERSTUDY_ACTIONLINT=${env} does not exist`);
    return env;
  }
  const cache = path.join(os.homedir(), ".cache/understudy");
  const found = (fs.existsSync(cache) ? fs.readdirSync(cache) : [])
    .filter((d) => /^actionlint-v1\.7\.\d+$/.test(d) && fs.existsSync(path.join(cache, d, "actionlint")))
    .sort((a, b) => Number(a.split(".").pop()) - Number(b.split(".").pop()));
  if (!found.length) {
    throw new Error(
      "actionlint not found: set UNDERSTUDY_ACTIONLINT or build it with " +
        "`GOBIN=~/.cache/understudy/actionlint-v1.7.12 go install github.com/rhysd/actionlint/cmd/actionlint@v1.7.12` (scripts/setup.sh does)",
    );
  }
  return path.join(cache, found[found.length - 1], "actionlint");
}

function lint(file: string): { code: number; errors: Array<{ message: string; kind: string; line: number }> } {
  const r = spawnSync(actionlint(), ["-no-color", "-config-file", LINT_CONFIG, "-format", "{{json .}}", file], { encoding: "utf8" });
  if (r.error) throw r.error;
  return { code: r.status ?? -1, errors: r.stdout.trim() ? JSON.parse(r.stdout) : [] };
}

describe("GitHub Actions workflow", () => {
  it("actionlint (with shellcheck on every run: script) finds nothing", () => {
    const sc = spawnSync("shellcheck", ["--version"], { encoding: "utf8" });
    if (sc.error) throw new Error("shellcheck is not installed (apt-get install shellcheck): actionlint would skip the run: scripts");
    const r = lint(WORKFLOW);
    expect(r.errors).toEqual([]);
    expect(r.code).toBe(0);
  });

  it("actionlint does lint: a copy with a mistyped input, an unknown step output and an unquoted variable fails", () => {
    const broken = fs
      .readFileSync(WORKFLOW, "utf8")
      .replace("retention-days: 30", "retention-dayz: 30")
      .replace("steps.upload.outputs.artifact-url", "steps.uplaod.outputs.artifact-url")
      .replace('printf \'%s\\n\' "$PREVIEW" > preview.txt', "printf '%s\\n' $PREVIEW > preview.txt");
    const tmp = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "understudy-lint-")), "broken.yml");
    fs.writeFileSync(tmp, broken);
    const r = lint(tmp);
    expect(r.code).toBe(1);
    const kinds = r.errors.map((e) => e.kind);
    expect(kinds).toContain("action"); // retention-dayz is not an input of actions/upload-artifact
    expect(kinds).toContain("expression"); // steps.uplaod does not exist
    expect(kinds).toContain("shellcheck"); // SC2086
  });
});
