/**
 * A record of every command the host layer runs, for tests and audits: when
 * `UNDERSTUDY_COMMAND_LOG` names a file, each command is appended to it as one JSON line
 * `{ "at": ISO time, "host": "local" | "user@host:port", "argv": [...] }` BEFORE it starts,
 * so a command that hangs or crashes is recorded too. The variable is read at each command
 * (never when a module loads), so it also reaches the dynamic-provider processes the Pulumi
 * engine starts. Words listed in `redact` are replaced, as in error messages.
 */
import * as fs from "node:fs";
import { redactText } from "./types";

export interface RecordedCommand {
  at: string;
  host: string;
  argv: string[];
}

export function recordCommand(host: string, argv: readonly string[], redact?: readonly string[]): void {
  const file = process.env.UNDERSTUDY_COMMAND_LOG;
  if (!file) return;
  const line: RecordedCommand = { at: new Date().toISOString(), host, argv: argv.map((a) => redactText(a, redact)) };
  fs.appendFileSync(file, JSON.stringify(line) + "\n", { mode: 0o600 });
}

/** The commands recorded in a log file (empty when the file does not exist). */
export function readCommandLog(file: string): RecordedCommand[] {
  if (!fs.existsSync(file)) return [];
  return fs
    .readFileSync(file, "utf8")
    .split("\n")
    .filter(Boolean)
    .map((l) => JSON.parse(l) as RecordedCommand);
}
