/**
 * The report's files: `<name>.json` (the data), `<name>.md` (for a pull request) and
 * `<name>.html` (the timeline picture), readable by their owner only (0600) in a directory
 * created 0700 when missing: a report names hosts, datasets, ports and log lines.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { renderMarkdown, RehearsalReport } from "./report";
import { renderTimelineHtml } from "./timeline";

export interface ReportFiles {
  json: string;
  markdown: string;
  html: string;
}

/** The files' base name for a rehearsal: anything but letters, digits, `_`, `.` and `-` becomes `_`. */
export function reportBaseName(rehearsal: string): string {
  const base = rehearsal.replace(/[^A-Za-z0-9_.-]+/g, "_").replace(/^\.+/, "_");
  return base || "_";
}

/**
 * Write the report's three files into `dir` and return their paths. Each file is written to
 * a temporary name and renamed, so a reader never sees half a report; an existing file keeps
 * no wider permissions than 0600.
 *
 * @example
 * ```ts
 * import { writeReportFiles } from "pulumi-understudy";
 * const files = writeReportFiles("understudy-reports", report);
 * // files.html: understudy-reports/pg13-to-15.html, the timeline to open in a browser
 * ```
 */
export function writeReportFiles(dir: string, report: RehearsalReport): ReportFiles {
  if (!fs.existsSync(dir)) fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const base = path.join(dir, reportBaseName(report.rehearsal));
  const files: ReportFiles = { json: `${base}.json`, markdown: `${base}.md`, html: `${base}.html` };
  const write = (file: string, text: string) => {
    const tmp = `${file}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, text, { mode: 0o600 });
    fs.chmodSync(tmp, 0o600); // the umask may have narrowed it further; never wider
    fs.renameSync(tmp, file);
  };
  write(files.json, JSON.stringify(report, null, 2) + "\n");
  write(files.markdown, renderMarkdown(report));
  write(files.html, renderTimelineHtml(report));
  return files;
}
