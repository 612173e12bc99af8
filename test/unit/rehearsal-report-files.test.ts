/**
 * writeReportFiles (providers/rehearsal/report-files.ts): the three files of a report, on the
 * real file system, owner-only.
 */
import { afterEach, describe, expect, it } from "vitest";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { reportBaseName, writeReportFiles } from "../../providers/rehearsal/report-files";
import { renderMarkdown, RehearsalReport } from "../../providers/rehearsal/report";
import { renderTimelineHtml } from "../../providers/rehearsal/timeline";

const report = (): RehearsalReport => JSON.parse(fs.readFileSync(path.resolve(__dirname, "../fixtures/reports/failed-user-step.json"), "utf8"));
const mode = (p: string) => fs.statSync(p).mode & 0o777;
const dirs: string[] = [];
const scratch = () => {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), "understudy-report-files-"));
  dirs.push(d);
  return d;
};
afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

describe("writeReportFiles", () => {
  it("writes <name>.json, .md and .html, mode 0600, into a directory it creates 0700", () => {
    const dir = path.join(scratch(), "nested", "reports");
    const r = report();
    const files = writeReportFiles(dir, r);
    expect(files).toEqual({
      json: path.join(dir, "failed-user-step.json"),
      markdown: path.join(dir, "failed-user-step.md"),
      html: path.join(dir, "failed-user-step.html"),
    });
    expect(mode(dir)).toBe(0o700);
    for (const f of Object.values(files)) expect(mode(f), f).toBe(0o600);
    expect(JSON.parse(fs.readFileSync(files.json, "utf8"))).toEqual(r);
    expect(fs.readFileSync(files.markdown, "utf8")).toBe(renderMarkdown(r));
    expect(fs.readFileSync(files.html, "utf8")).toBe(renderTimelineHtml(r));
    expect(fs.readdirSync(dir).sort()).toEqual(["failed-user-step.html", "failed-user-step.json", "failed-user-step.md"]); // no temporary files left
  });

  it("replaces files from an earlier run and narrows a wider mode to 0600, even under a permissive umask", () => {
    const dir = scratch();
    fs.writeFileSync(path.join(dir, "failed-user-step.md"), "old", { mode: 0o644 });
    fs.chmodSync(path.join(dir, "failed-user-step.md"), 0o666);
    const old = process.umask(0);
    try {
      const files = writeReportFiles(dir, report());
      expect(fs.readFileSync(files.markdown, "utf8")).toMatch(/^# Upgrade rehearsal `failed-user-step`: FAILED/);
      for (const f of Object.values(files)) expect(mode(f), f).toBe(0o600);
    } finally {
      process.umask(old);
    }
    expect(mode(dir)).toBe(0o700); // made by mkdtemp; an existing directory is left as it is
  });

  it("keeps the name inside the directory whatever the rehearsal is called", () => {
    expect(reportBaseName("pg13-to-15")).toBe("pg13-to-15");
    expect(reportBaseName("../../etc/passwd")).toBe("__.._etc_passwd");
    expect(reportBaseName("a b/c")).toBe("a_b_c");
    expect(reportBaseName("..")).toBe("_");
    expect(reportBaseName("")).toBe("_");
    const dir = scratch();
    const r = report();
    r.rehearsal = "../escape";
    const files = writeReportFiles(dir, r);
    expect(path.dirname(files.json)).toBe(dir);
  });
});
