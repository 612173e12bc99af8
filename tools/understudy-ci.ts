#!/usr/bin/env node
/**
 * `understudy-ci`: the pull-request side of a repository that holds rehearsal stacks
 * (examples/ci). Node built-ins and this package only.
 *
 *   understudy-ci decide PREVIEW.json
 *       Reads `pulumi preview --json` and prints `rehearse` when the plan touches only
 *       rehearsal resources (safe to `pulumi up` on a pull request: clones only, live is never
 *       written), or `promote` when it would change what clients connect to (a CutOver or the
 *       endpoint): that waits for the merge. The reason goes to stderr.
 *
 *   understudy-ci comment REPORT.json --stack NAME [--decision rehearse|promote]
 *       [--preview PREVIEW.txt] [--timeline URL] [--run URL] [--commit SHA]
 *       Prints the pull-request comment (Markdown) for one stack's report. Its first line is
 *       a hidden marker, `<!-- understudy-report stack=NAME -->`, by which CI finds and updates
 *       the same comment on every push instead of adding one.
 *
 *   understudy-ci marker NAME
 *       Prints that marker.
 *
 *   understudy-ci html REPORT.json
 *       Prints the timeline page (the same as the `.html` the rehearsal writes), e.g. for a
 *       report read back with `pulumi stack output report --json`.
 *
 *   understudy-ci note-id NOTES.json --stack NAME
 *       Reads merge-request notes as GitLab's API returns them (one JSON array, or several
 *       pages of arrays one after another, as `glab api --paginate` prints them) and prints the
 *       id of the note that carries the stack's marker, or nothing.
 */
import * as fs from "node:fs";
import { fmtMs, growthOf, RehearsalReport } from "../providers/rehearsal/report";
import { fmtBytes, predictionSentence } from "../providers/rehearsal/predict";
import { renderTimelineHtml } from "../providers/rehearsal/timeline";

/** The hidden marker that identifies a stack's comment. Stack names are [A-Za-z0-9_.-/]. */
export function marker(stack: string): string {
  if (!/^[A-Za-z0-9_./-]{1,100}$/.test(stack)) throw new Error(`--stack: ${JSON.stringify(stack)} is not a stack name`);
  return `<!-- understudy-report stack=${stack} -->`;
}

/** Resource types whose change moves clients: applied only after review, on merge. */
const CLIENT_FACING = /(^|\$)pulumi-nodejs:dynamic\/understudy:(CutOver|PgBouncerEndpoint)$/;

interface PreviewStep {
  op: string;
  urn: string;
  diffReasons?: string[];
}

/** The type token of a URN: urn:pulumi:stack::project::parent$type::name -> parent$type. */
const typeOf = (urn: string) => urn.split("::")[2] ?? "";

/** What CI may do on a pull request, from `pulumi preview --json`. */
export function decide(preview: { steps?: PreviewStep[] }): { decision: "rehearse" | "promote"; reason: string } {
  if (!preview || !Array.isArray(preview.steps)) throw new Error("not the output of `pulumi preview --json` (no steps)");
  const moving = preview.steps.filter((s) => s.op !== "same" && s.op !== "read" && CLIENT_FACING.test(typeOf(s.urn)));
  if (moving.length) {
    const what = moving.map((s) => `${s.op} ${s.urn.split("::").pop()}${s.diffReasons?.length ? ` (${s.diffReasons.join(", ")})` : ""}`).join("; ");
    return { decision: "promote", reason: `the plan changes what clients connect to: ${what}. Applied on merge, after review.` };
  }
  const changes = preview.steps.filter((s) => s.op !== "same").length;
  return { decision: "rehearse", reason: changes ? `${changes} rehearsal resource change(s); live and its clients are not touched.` : "no changes." };
}

const cell = (s: string | undefined) => (s ?? "").replace(/\|/g, "\\|").replace(/\r?\n/g, " ");
const fence = (text: string) => {
  const longest = Math.max(2, ...[...text.matchAll(/`+/g)].map((m) => m[0].length));
  const f = "`".repeat(longest + 1);
  return `${f}\n${text}\n${f}`;
};
/** GitHub refuses comments over 65,536 characters; keep well below. */
const LIMIT = 60_000;

export interface CommentOptions {
  stack: string;
  decision?: "rehearse" | "promote";
  preview?: string;
  timeline?: string;
  run?: string;
  commit?: string;
}

/** The pull-request comment for one stack's report. */
export function renderComment(r: RehearsalReport, o: CommentOptions): string {
  const lines: string[] = [marker(o.stack)];
  const icon = r.status === "passed" ? "✅" : r.status === "failed" ? "❌" : "⏳";
  lines.push(`## ${icon} Upgrade rehearsal \`${o.stack}\`: ${r.status.toUpperCase()}`);
  lines.push("");
  lines.push(
    `PostgreSQL ${r.source.version} → ${r.target.version}, rehearsed on clone \`${r.clone.dataset}\` of \`${r.source.snapshot}\`.` +
      (r.sourceSize ? ` Source: ${fmtBytes(r.sourceSize.bytes)}, ${r.sourceSize.relations.toLocaleString("en-US")} relations.` : "") +
      " Live was not touched.",
  );
  lines.push("");
  if (o.decision === "promote") {
    lines.push("> **Merging this pull request promotes:** the plan below changes what clients connect to. It was previewed, not applied; `pulumi up` runs on merge.");
    lines.push("");
  } else if (o.decision === "rehearse") {
    lines.push("> Rehearsed on this pull request (`pulumi up` on clones only). Merging changes nothing for clients.");
    lines.push("");
  }
  if (r.failure) {
    const f = r.failure;
    lines.push(`**Failed at step \`${f.step}\`** (${f.at}): ${f.reason}`);
    lines.push("");
    if (f.lastGoodSnapshot) {
      lines.push(`Last good snapshot \`${f.lastGoodSnapshot}\`, taken at ${f.lastGoodAt ?? "?"} (after \`${f.lastGoodStep}\`). Push a fix: the rehearsal resumes there.`);
      lines.push("");
    }
    const failedStep = r.steps.find((s) => s.status === "failed");
    if (failedStep?.logTail) {
      lines.push(`<details open><summary>Log of <code>${failedStep.name.replace(/[<>&]/g, "_")}</code></summary>`, "", fence(failedStep.logTail), "", "</details>", "");
    }
  }
  lines.push("| # | step | status | duration | snapshot after | cut-over |");
  lines.push("| ---: | --- | --- | ---: | --- | --- |");
  for (const s of r.steps) {
    lines.push(`| ${s.index} | ${cell(s.name)} | ${s.status === "failed" ? "**failed**" : "ok"} | ${fmtMs(s.durationMs)} | ${s.snapshot ? `\`${cell(s.snapshot.slice(s.snapshot.indexOf("@") + 1))}\`` : "—"} | ${s.cutover ? "yes" : ""} |`);
  }
  lines.push("");
  const failed = r.checks.filter((c) => c.status === "fail");
  if (r.checks.length) {
    lines.push(`**Verification:** ${r.checks.length - failed.length} of ${r.checks.length} checks passed.`);
    if (failed.length) {
      lines.push("");
      lines.push("| failed check | source (at snapshot) | upgraded clone |");
      lines.push("| --- | --- | --- |");
      for (const c of failed.slice(0, 30)) lines.push(`| ${cell(c.name)} | \`${cell(c.expected)}\` | \`${cell(c.actual)}\` |`);
      if (failed.length > 30) lines.push(`| … and ${failed.length - 30} more | | |`);
    }
    lines.push("");
  }
  lines.push(`**Predicted cut-over pause:** ${fmtMs(r.predictedCutover.totalMs)} (${r.predictedCutover.breakdown.map((b) => `${b.step} ${fmtMs(b.ms)}`).join(", ") || "nothing measured yet"}).`);
  if (r.cutover) lines.push(`**Measured cut-over pause:** ${fmtMs(r.cutover.pauseWindowMs)} (${r.cutover.method}, ${r.cutover.at}).`);
  const g = growthOf(r);
  if (g) lines.push(`**At this size:** ${predictionSentence(g)} Basis: ${g.basis.machine}, ${g.basis.date}, measured up to ${fmtBytes(g.basis.bytes.max)} and ${g.basis.relations.max.toLocaleString("en-US")} relations.`);
  lines.push("");
  const links = [o.timeline ? `[timeline (HTML)](${o.timeline})` : "", o.run ? `[CI run](${o.run})` : ""].filter(Boolean);
  if (links.length) {
    lines.push(links.join(" · "));
    lines.push("");
  }
  if (o.preview?.trim()) {
    const p = o.preview.length > 20_000 ? `…(first ${o.preview.length - 20_000} characters cut)\n${o.preview.slice(-20_000)}` : o.preview;
    lines.push(`<details${o.decision === "promote" ? " open" : ""}><summary><code>pulumi preview</code>: the change under review</summary>`, "", fence(p.trimEnd()), "", "</details>", "");
  }
  lines.push(`<sub>Updated ${new Date().toISOString()}${o.commit ? ` for ${o.commit.slice(0, 12)}` : ""} by understudy-ci (report generated ${r.generatedAt}).</sub>`);
  const text = lines.join("\n") + "\n";
  return text.length > LIMIT ? text.slice(0, LIMIT) + "\n\n…(cut to fit a comment; the full report is in the artifact)\n" : text;
}

/** Concatenated JSON values (pages of an API listing) -> one list. */
export function parseJsonStream(text: string): unknown[] {
  const out: unknown[] = [];
  let i = 0;
  const n = text.length;
  while (i < n) {
    while (i < n && /\s/.test(text[i])) i++;
    if (i >= n) break;
    // Find the end of one JSON value by bracket depth, skipping strings.
    const start = i;
    let depth = 0;
    let inStr = false;
    for (; i < n; i++) {
      const ch = text[i];
      if (inStr) {
        if (ch === "\\") i++;
        else if (ch === '"') inStr = false;
      } else if (ch === '"') inStr = true;
      else if (ch === "[" || ch === "{") depth++;
      else if (ch === "]" || ch === "}") {
        depth--;
        if (depth === 0) {
          i++;
          break;
        }
      }
    }
    out.push(JSON.parse(text.slice(start, i)));
  }
  return out;
}

/** The id of the note that starts with the stack's marker. */
export function noteId(notesJson: string, stack: string): string | undefined {
  const m = marker(stack);
  const notes = parseJsonStream(notesJson).flatMap((p) => (Array.isArray(p) ? p : [p])) as Array<{ id?: unknown; body?: unknown }>;
  const hit = notes.find((x) => typeof x?.body === "string" && x.body.startsWith(m) && (typeof x.id === "number" || typeof x.id === "string"));
  return hit ? String(hit.id) : undefined;
}

function args(argv: string[]): { pos: string[]; flags: Record<string, string> } {
  const pos: string[] = [];
  const flags: Record<string, string> = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a.startsWith("--")) {
      const v = argv[i + 1];
      if (v === undefined || v.startsWith("--")) throw new Error(`${a}: needs a value`);
      flags[a.slice(2)] = v;
      i++;
    } else pos.push(a);
  }
  return { pos, flags };
}

const USAGE =
  "usage: understudy-ci decide PREVIEW.json | comment REPORT.json --stack NAME [--decision rehearse|promote] [--preview FILE] [--timeline URL] [--run URL] [--commit SHA] | html REPORT.json | note-id NOTES.json --stack NAME | marker NAME";

export function main(argv: string[], out: (s: string) => void = (s) => process.stdout.write(s), err: (s: string) => void = (s) => process.stderr.write(s)): number {
  try {
    const [cmd, ...rest] = argv;
    const { pos, flags } = args(rest);
    const allowed: Record<string, string[]> = { decide: [], comment: ["stack", "decision", "preview", "timeline", "run", "commit"], marker: [], html: [], "note-id": ["stack"] };
    if (!cmd || !(cmd in allowed)) throw new Error(USAGE);
    for (const f of Object.keys(flags)) if (!allowed[cmd].includes(f)) throw new Error(`${cmd}: unknown option --${f}\n${USAGE}`);
    if (cmd === "marker") {
      if (pos.length !== 1) throw new Error(USAGE);
      out(marker(pos[0]) + "\n");
      return 0;
    }
    if (pos.length !== 1) throw new Error(USAGE);
    const read = (f: string, what: string) => {
      try {
        return fs.readFileSync(f, "utf8");
      } catch (e) {
        throw new Error(`${what}: cannot read ${f}: ${(e as Error).message}`, { cause: e });
      }
    };
    const json = (f: string, what: string) => {
      const text = read(f, what);
      try {
        return JSON.parse(text);
      } catch {
        throw new Error(`${what}: ${f} is not JSON`);
      }
    };
    if (cmd === "decide") {
      const d = decide(json(pos[0], "preview"));
      out(d.decision + "\n");
      err(d.reason + "\n");
      return 0;
    }
    if (cmd === "note-id") {
      if (!flags.stack) throw new Error("note-id: --stack is required");
      const id = noteId(read(pos[0], "notes"), flags.stack);
      if (id) out(id + "\n");
      return 0;
    }
    const report = () => {
      const r = json(pos[0], "report") as RehearsalReport;
      if (!r || !Array.isArray(r.steps) || typeof r.status !== "string") throw new Error(`report: ${pos[0]} is not a rehearsal report (no steps/status)`);
      return r;
    };
    if (cmd === "html") {
      out(renderTimelineHtml(report()));
      return 0;
    }
    if (!flags.stack) throw new Error("comment: --stack is required");
    if (flags.decision !== undefined && flags.decision !== "rehearse" && flags.decision !== "promote") throw new Error("--decision: rehearse or promote");
    const r = report();
    out(
      renderComment(r, {
        stack: flags.stack,
        decision: flags.decision as CommentOptions["decision"],
        preview: flags.preview ? read(flags.preview, "--preview") : undefined,
        timeline: flags.timeline,
        run: flags.run,
        commit: flags.commit,
      }),
    );
    return 0;
  } catch (e) {
    err(`understudy-ci: ${(e as Error).message}\n`);
    return 2;
  }
}

if (require.main === module) process.exitCode = main(process.argv.slice(2));

