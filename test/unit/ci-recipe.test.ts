/**
 * The pull-request recipe (examples/ci): the GitHub workflow and the GitLab pipeline parsed
 * and checked for the shape that makes them safe (actionlint's run, which needs the tools
 * setup installs, is in test/integration/ci-recipe-lint.test.ts), and understudy-ci (tools/understudy-ci.ts) on the real reports in
 * test/fixtures/reports and the real `pulumi preview --json` output in test/fixtures/previews.
 */
import { describe, expect, it } from "vitest";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { parse } from "yaml";
import { decide, main, marker, noteId, parseJsonStream, renderComment } from "../../tools/understudy-ci";
import type { RehearsalReport } from "../../providers/rehearsal/report";

const REPO = path.resolve(__dirname, "../..");
const CI = path.join(REPO, "examples/ci");
const WORKFLOW = path.join(CI, "github/understudy.yml");
const GITLAB = path.join(CI, "gitlab/.gitlab-ci.yml");
const report = (f: string): RehearsalReport => JSON.parse(fs.readFileSync(path.join(REPO, "test/fixtures/reports", `${f}.json`), "utf8"));
const preview = (f: string) => JSON.parse(fs.readFileSync(path.join(REPO, "test/fixtures/previews", `${f}.json`), "utf8"));

describe("GitHub Actions workflow", () => {
  it("on a pull request: preview, decide, up only when rehearsing, one sticky comment per stack, the report as an artifact; on main: up", () => {
    const wf = parse(fs.readFileSync(WORKFLOW, "utf8"));
    expect(Object.keys(wf.on)).toEqual(["pull_request", "push"]);
    expect(wf.permissions).toEqual({ contents: "read", "pull-requests": "write" });
    const pr = wf.jobs.rehearse;
    expect(pr.if).toBe("github.event_name == 'pull_request'");
    const uses = (job: { steps: Array<{ uses?: string }> }) => job.steps.map((s) => s.uses).filter(Boolean);
    expect(uses(pr)).toEqual(["actions/checkout@v4", "actions/setup-node@v4", "pulumi/actions@v6", "pulumi/actions@v6", "actions/upload-artifact@v4", "marocchino/sticky-pull-request-comment@v2"]);
    const step = (job: { steps: Array<Record<string, unknown>> }, name: string) => job.steps.find((s) => String(s.name ?? "").startsWith(name)) as Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any -- parsed YAML
    expect(step(pr, "pulumi preview").with).toMatchObject({ command: "preview", diff: true, "comment-on-pr": false });
    expect(step(pr, "pulumi up").with.command).toBe("up");
    expect(step(pr, "pulumi up").if).toBe("steps.decide.outputs.decision == 'rehearse'");
    expect(step(pr, "rehearse now").run).toContain("npx --no-install understudy-ci decide preview.json");
    expect(step(pr, "post or update").with).toEqual({ header: "understudy-${{ matrix.stack }}", path: "comment.md" });
    expect(pr.concurrency).toEqual({ group: "understudy-${{ matrix.stack }}", "cancel-in-progress": false });
    const main = wf.jobs.promote;
    expect(main.if).toBe("github.event_name == 'push' && github.ref == 'refs/heads/main'");
    expect(uses(main)).toContain("pulumi/actions@v6");
    expect(main.steps.find((s: { uses?: string }) => s.uses === "pulumi/actions@v6").with.command).toBe("up");
    expect(main.concurrency.group).toBe(pr.concurrency.group); // never a promotion while the same stack rehearses
  });
});

describe("GitLab pipeline", () => {
  const gl = parse(fs.readFileSync(GITLAB, "utf8"));

  it("parses, with a rehearse job for merge requests and a promote job for the default branch only", () => {
    expect(gl.stages).toEqual(["rehearse", "promote"]);
    expect(gl.workflow.rules.map((r: { if: string }) => r.if)).toEqual(['$CI_PIPELINE_SOURCE == "merge_request_event"', "$CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH"]);
    for (const job of ["rehearse", "promote"]) {
      expect(gl[job].extends).toBe(".stacks");
      expect(gl[job].resource_group).toBe("understudy-$STACK");
      expect(gl[job].artifacts.when).toBe("always");
      expect(gl[job].artifacts.paths).toEqual(["understudy-reports/"]);
    }
    expect(gl.rehearse.rules).toEqual([{ if: '$CI_PIPELINE_SOURCE == "merge_request_event"' }]);
    expect(gl.promote.rules).toEqual([{ if: "$CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH" }]);
    expect(gl[".stacks"].tags).toEqual(["zfs"]);
    expect(gl[".stacks"].parallel.matrix[0].STACK.length).toBeGreaterThan(0);
  });

  it("rehearse: preview, decide, up only when rehearsing, then one note per stack found by its marker and edited in place", () => {
    const script: string[] = gl.rehearse.script;
    const at = (re: RegExp) => script.findIndex((l) => re.test(l));
    expect(at(/^pulumi preview --diff/)).toBe(0);
    expect(at(/understudy-ci decide preview\.json/)).toBeGreaterThan(at(/pulumi preview --json/));
    expect(script).toContain('if [ "$DECISION" = rehearse ]; then pulumi up --yes --non-interactive --stack "$STACK" || STATUS=$?; fi');
    const note = script.find((l) => l.includes("note-id"))!;
    expect(note).toMatch(/glab api --paginate "\$NOTES\?per_page=100" > notes\.json/);
    expect(note).toMatch(/if \[ -n "\$NOTE_ID" \]; then\s+glab api --method PUT "\$NOTES\/\$NOTE_ID"/);
    expect(script[script.length - 1]).toBe('exit "$STATUS"'); // the job fails after commenting when the rehearsal failed
    expect(gl.promote.script).toEqual(['pulumi up --yes --non-interactive --stack "$STACK"']);
  });

  it("every understudy-ci call in both files names a real command with options it accepts", () => {
    const text = [fs.readFileSync(WORKFLOW, "utf8"), fs.readFileSync(GITLAB, "utf8")].join("\n").replace(/\\\n\s*/g, " ");
    const calls = [...text.matchAll(/npx --no-install understudy-ci ([a-z-]+)([^\n]*)/g)];
    expect(calls.map((m) => m[1])).toEqual(["decide", "html", "comment", "decide", "html", "comment", "note-id"]);
    for (const [, cmd, rest] of calls) {
      const flags = [...rest.replace(/\).*$/, "").matchAll(/--([a-z]+)/g)].map((f) => f[1]).filter((f) => !["no", "non"].includes(f));
      const errs: string[] = [];
      // Dry run with placeholder values: only option errors are of interest here.
      main([cmd, "/nonexistent", ...flags.flatMap((f) => [`--${f}`, f === "decision" ? "rehearse" : "x"])], () => undefined, (s) => errs.push(s));
      expect(errs.join(""), `${cmd} ${flags.join(" ")}`).not.toMatch(/unknown option|usage:/);
    }
  });
});

describe("understudy-ci comment on real reports", () => {
  it("passed: marker first, status, every step with its snapshot, the checks, the predicted pause, what merging does", () => {
    const r = report("passed");
    const md = renderComment(r, { stack: "pg13-to-15", decision: "rehearse", timeline: "https://ci.example/artifacts/1", run: "https://ci.example/runs/1", commit: "0123456789abcdef" });
    const lines = md.split("\n");
    expect(lines[0]).toBe("<!-- understudy-report stack=pg13-to-15 -->");
    expect(lines[1]).toBe("## ✅ Upgrade rehearsal `pg13-to-15`: PASSED");
    expect(md).toContain("> Rehearsed on this pull request (`pulumi up` on clones only). Merging changes nothing for clients.");
    for (const s of r.steps) expect(md).toContain(`| ${s.index} | ${s.name} | ok | `);
    expect(md).toContain("| 3 | upgrade | ok | ");
    expect(md).toMatch(/\| `s03-upgrade` \| yes \|/);
    expect(md).toContain(`**Verification:** ${r.checks.length} of ${r.checks.length} checks passed.`);
    expect(md).toMatch(/\*\*Predicted cut-over pause:\*\* \d+\.\d s \(upgrade [\d.]+ s, start /);
    expect(md).toContain("[timeline (HTML)](https://ci.example/artifacts/1) · [CI run](https://ci.example/runs/1)");
    expect(md).toMatch(/<sub>Updated \d{4}-\d\d-\d\dT[\d:.]+Z for 0123456789ab by understudy-ci/);
    expect(md).not.toContain("Failed at step");
  });

  it("failed at a user step: the step, the reason, the last good snapshot and when, and its log", () => {
    const r = report("failed-user-step");
    const md = renderComment(r, { stack: "s" });
    expect(md).toContain("## ❌ Upgrade rehearsal `s`: FAILED");
    expect(md).toContain(`**Failed at step \`orders-note-required\`** (${r.failure!.at}): `);
    expect(md).toContain(`Last good snapshot \`${r.failure!.lastGoodSnapshot}\`, taken at ${r.failure!.lastGoodAt} (after \`smoke\`).`);
    expect(md).toContain('psql:<stdin>:1: ERROR:  column "note" of relation "orders_2025" contains null values');
    expect(md).toContain("| 8 | orders-note-required | **failed** | ");
    expect(md).not.toContain("**Verification:**");
  });

  it("failed at pg_upgrade --check: pg_upgrade's reason and the report of the objects it refuses", () => {
    const md = renderComment(report("failed-check"), { stack: "s" });
    expect(md).toContain("**Failed at step `check`**");
    expect(md).toContain('refused at "Checking for user-defined postfix operators"');
    expect(md).toContain("public.!!! (pg_catalog.int8, NONE)");
    expect(md).toContain("| 2 | check | **failed** | ");
  });

  it("failed at verify: the failed checks with both values", () => {
    const md = renderComment(report("failed-verify"), { stack: "s" });
    expect(md).toContain("**Verification:** 21 of 24 checks passed.");
    expect(md).toContain("| rows app.public.customers | `5000` | `4990` |");
    expect(md).toContain("| every order has a customer | `true` | `f` |");
  });

  it("a promotion under review: says merging promotes, with the preview open", () => {
    const md = renderComment(report("passed"), { stack: "s", decision: "promote", preview: "  ~ understudy:index:Promotion$...CutOver go-live\n      ~ promote: false => true\n" });
    expect(md).toContain("> **Merging this pull request promotes:**");
    expect(md).toContain("<details open><summary><code>pulumi preview</code>: the change under review</summary>");
    expect(md).toContain("      ~ promote: false => true");
  });

  it("a log or preview holding ``` cannot break out of its code block; a huge preview is cut to fit a comment", () => {
    const r = report("failed-user-step");
    r.steps[r.steps.length - 1].logTail = "before\n```\n## injected heading\n```";
    const md = renderComment(r, { stack: "s", preview: "x".repeat(200_000) });
    expect(md).toContain("````\nbefore\n```\n## injected heading\n```\n````");
    expect(md.length).toBeLessThan(65_536);
    expect(md).toContain("…(first 180000 characters cut)");
  });

  it("the marker is the same on every push of a stack and differs between stacks; a stack name is checked", () => {
    expect(marker("pg13-to-15")).toBe(marker("pg13-to-15"));
    expect(marker("a")).not.toBe(marker("b"));
    expect(() => marker("x --> <script>")).toThrow(/--stack: .* is not a stack name/);
  });

  it("note-id finds this stack's note across pages of GitLab's API, and no other", () => {
    const page1 = JSON.stringify([{ id: 1, body: "LGTM" }, { id: 2, body: `quoting ${marker("a")}` }]);
    const page2 = JSON.stringify([{ id: 3, body: `${marker("b")}\n## …` }, { id: 4, body: `${marker("a")}\n## ✅ …` }]);
    expect(parseJsonStream(page1 + page2)).toHaveLength(2);
    expect(parseJsonStream(`${page1}\n${page2}\n`)).toHaveLength(2);
    expect(noteId(page1 + page2, "a")).toBe("4");
    expect(noteId(page1 + page2, "b")).toBe("3");
    expect(noteId(page1, "a")).toBeUndefined();
    expect(noteId("[]", "a")).toBeUndefined();
    expect(parseJsonStream('[{"body":"a ] } \\" ["}]')).toEqual([[{ body: 'a ] } " [' }]]);
  });

  it("the command line: output on stdout, errors with exit code 2 and a message naming what is wrong", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "understudy-ci-"));
    const out: string[] = [];
    const err: string[] = [];
    const f = path.join(REPO, "test/fixtures/reports/passed.json");
    expect(main(["comment", f, "--stack", "pg13-to-15"], (s) => out.push(s), (s) => err.push(s))).toBe(0);
    expect(out.join("").split("\n")[0]).toBe(marker("pg13-to-15"));
    expect(main(["html", f], (s) => out.push(s))).toBe(0);
    expect(out.join("")).toContain("<!doctype html>");
    const bad = (argv: string[]) => {
      const e: string[] = [];
      expect(main(argv, () => undefined, (s) => e.push(s))).toBe(2);
      return e.join("");
    };
    expect(bad(["comment", f])).toMatch(/--stack is required/);
    expect(bad(["comment", f, "--stack", "s", "--decision", "yolo"])).toMatch(/--decision: rehearse or promote/);
    expect(bad(["comment", f, "--stak", "s"])).toMatch(/unknown option --stak/);
    expect(bad(["comment", path.join(dir, "none.json"), "--stack", "s"])).toMatch(/report: cannot read/);
    fs.writeFileSync(path.join(dir, "x.json"), "{}");
    expect(bad(["comment", path.join(dir, "x.json"), "--stack", "s"])).toMatch(/is not a rehearsal report/);
    expect(bad(["decide", path.join(dir, "x.json")])).toMatch(/not the output of `pulumi preview --json`/);
    expect(bad(["frobnicate"])).toMatch(/^understudy-ci: usage:/);
  });
});

describe("understudy-ci decide on real `pulumi preview --json` output", () => {
  it("a rehearsal-only stack: rehearse on the pull request", () => {
    expect(decide(preview("new-rehearsal-stack"))).toEqual({ decision: "rehearse", reason: "14 rehearsal resource change(s); live and its clients are not touched." });
  });

  it("a stack whose plan creates or changes the endpoint or the cut-over: wait for the merge", () => {
    const d = decide(preview("new-promotion-stack"));
    expect(d.decision).toBe("promote");
    expect(d.reason).toContain("create ci-go-live-endpoint");
    expect(d.reason).toContain("create ci-go-live-cutover");
  });

  it("promote: false => true on an existing stack (the same steps, edited to what such a preview says): wait for the merge", () => {
    const p = preview("new-promotion-stack");
    p.steps = p.steps.map((s: { urn: string }) => ({ ...s, op: s.urn.endsWith("::ci-go-live-cutover") ? "update" : "same", ...(s.urn.endsWith("::ci-go-live-cutover") ? { diffReasons: ["promote"] } : {}) }));
    expect(decide(p)).toEqual({ decision: "promote", reason: "the plan changes what clients connect to: update ci-go-live-cutover (promote). Applied on merge, after review." });
    p.steps = p.steps.map((s: { urn: string }) => ({ ...s, op: s.urn.endsWith("::ci-s07-smoke") ? "replace" : "same" }));
    expect(decide(p)).toEqual({ decision: "rehearse", reason: "1 rehearsal resource change(s); live and its clients are not touched." });
    p.steps = p.steps.map((s: { urn: string }) => ({ ...s, op: "same" }));
    expect(decide(p).reason).toBe("no changes.");
  });
});

