/**
 * Pure parsers of PostgreSQL tool output (run with `LC_ALL=C`, so messages are English).
 */

/** What `pg_controldata` says about a data directory. */
export interface ControlData {
  /** `shut down`, `in production`, `shut down in recovery`, `in crash recovery`, `in archive recovery`, ... */
  state: string;
  /** True only for `shut down`: what pg_upgrade requires of the old cluster. */
  cleanShutdown: boolean;
  systemIdentifier: string;
  controlVersion: number;
  catalogVersion: number;
  /** `Latest checkpoint location`, e.g. `0/3000060`. */
  checkpointLocation: string;
  /** `Latest checkpoint's REDO location`: where crash recovery starts replaying. */
  redoLocation: string;
  checkpointTimeline: number;
  /** `Time of latest checkpoint` as printed. */
  checkpointTime: string;
  /** Data page checksums on (`Data page checksum version` > 0). */
  dataChecksums: boolean;
  checksumVersion: number;
  walSegmentBytes: number;
  blockSize: number;
  /** Every `key: value` line. */
  raw: Record<string, string>;
}

/** `Database cluster state` of a cluster that was shut down cleanly (nothing to recover). */
export const isCleanShutdown = (state: string | undefined): boolean => state === "shut down";

export function parseControlData(text: string): ControlData {
  const raw: Record<string, string> = {};
  for (const line of text.split("\n")) {
    const m = /^([^:]+):\s*(.*)$/.exec(line);
    if (m) raw[m[1].trim()] = m[2].trim();
  }
  const need = (k: string): string => {
    const v = raw[k];
    if (v === undefined) throw new Error(`pg_controldata output has no "${k}" line`);
    return v;
  };
  const int = (k: string, dflt?: number): number => {
    const v = raw[k];
    if (v === undefined && dflt !== undefined) return dflt;
    const n = Number(need(k));
    if (!Number.isFinite(n)) throw new Error(`pg_controldata: "${k}" is not a number: ${raw[k]}`);
    return n;
  };
  const state = need("Database cluster state");
  const checksumVersion = int("Data page checksum version", 0);
  return {
    state,
    cleanShutdown: isCleanShutdown(state),
    systemIdentifier: need("Database system identifier"),
    controlVersion: int("pg_control version number"),
    catalogVersion: int("Catalog version number"),
    checkpointLocation: need("Latest checkpoint location"),
    redoLocation: need("Latest checkpoint's REDO location"),
    checkpointTimeline: int("Latest checkpoint's TimeLineID", 1),
    checkpointTime: raw["Time of latest checkpoint"] ?? "",
    dataChecksums: checksumVersion > 0,
    checksumVersion,
    walSegmentBytes: int("Bytes per WAL segment", 16 * 1024 * 1024),
    blockSize: int("Database block size", 8192),
    raw,
  };
}

/** `0/3000060` -> 50331744n. */
export function parseLsn(lsn: string): bigint {
  const m = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/.exec(lsn.trim());
  if (!m) throw new Error(`not an LSN: ${JSON.stringify(lsn)}`);
  return (BigInt("0x" + m[1]) << 32n) + BigInt("0x" + m[2]);
}

/** `postgres (PostgreSQL) 13.16 (Debian 13.16-0+deb11u1)` -> { major: 13, full: "13.16" }. */
export function parseServerVersion(text: string): { major: number; full: string } | undefined {
  const m = /\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?(\S*)/.exec(text);
  if (!m) return undefined;
  const major = Number(m[1]);
  // 9.x had two-part majors; they are rejected elsewhere.
  return { major, full: m[2] !== undefined ? `${m[1]}.${m[2]}${m[3]}` : `${m[1]}${m[3]}` };
}

/**
 * Local ports that a new listening socket cannot take, from `ss -tanH` (all TCP sockets):
 * listeners and live connections (an outgoing connection holds an ephemeral local port,
 * 32768-60999 on Linux). TIME-WAIT does not block PostgreSQL (it sets SO_REUSEADDR).
 */
export function parseBusyPorts(ssOutput: string): Set<number> {
  const ports = new Set<number>();
  for (const line of ssOutput.split("\n")) {
    const cols = line.trim().split(/\s+/);
    if (cols.length < 5 || cols[0] === "TIME-WAIT") continue;
    const m = /:(\d+)$/.exec(cols[3]);
    if (m) ports.add(Number(m[1]));
  }
  return ports;
}

/** `pg_ctl: server is running (PID: 1234)` -> 1234. */
export function parsePgCtlStatusPid(text: string): number | undefined {
  const m = /PID:\s*(\d+)/.exec(text);
  return m ? Number(m[1]) : undefined;
}

/** What crash recovery did, from the server log (LC_MESSAGES=C). */
export interface RecoveryLog {
  crashRecovery: boolean;
  redoStart?: string;
  redoDone?: string;
  /** redoDone - redoStart, when both were logged. */
  replayedBytes?: number;
  /** "database system was not properly shut down; automatic recovery in progress" seen. */
  notProperlyShutDown: boolean;
}

export function parseRecoveryLog(log: string): RecoveryLog {
  const start = /redo starts at ([0-9A-F]+\/[0-9A-F]+)/.exec(log)?.[1];
  const done = /redo done at ([0-9A-F]+\/[0-9A-F]+)/.exec(log)?.[1];
  const notProperly = /not properly shut down|interrupted; last known up at|automatic recovery in progress/.test(log);
  const out: RecoveryLog = { crashRecovery: notProperly || !!start, notProperlyShutDown: notProperly };
  if (start) out.redoStart = start;
  if (done) out.redoDone = done;
  if (start && done) out.replayedBytes = Number(parseLsn(done) - parseLsn(start));
  return out;
}

/** The last meaningful line of a server log, for progress messages. */
export function lastLogLine(log: string): string | undefined {
  // Our own readiness probes log "FATAL: the database system is starting up": not news.
  const lines = log
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l && !/FATAL:\s+the database system is (starting up|shutting down|not yet accepting connections)/.test(l) && !/DETAIL:\s+Consistent recovery state/.test(l));
  const l = lines[lines.length - 1];
  if (!l) return undefined;
  // Drop the timestamp/pid prefix: "2026-11-24 20:17:18.454 UTC [123] LOG:  redo starts at ..."
  return l.replace(/^\d{4}-\d\d-\d\d [\d:.]+ \S+ \[\d+\] /, "");
}

/** What pg_upgrade printed when it failed. */
export interface PgUpgradeFailure {
  /** The check line that ended in `fatal`, e.g. `Checking for user-defined postfix operators`. */
  failedCheck?: string;
  /** pg_upgrade's explanation: the text between the failed check and `Failure, exiting`. */
  reason: string;
  /** Report and log files the output points at (absolute, or relative to pg_upgrade's cwd). */
  files: string[];
}

export function parsePgUpgradeFailure(stdout: string, stderr = ""): PgUpgradeFailure {
  const text = (stdout + (stderr ? "\n" + stderr : "")).replace(/\r/g, "");
  const lines = text.split("\n");
  let failedCheck: string | undefined;
  let fatalIdx = -1;
  for (let i = 0; i < lines.length; i++) {
    const m = /^(.*?)\s+fatal\s*$/.exec(lines[i]);
    if (m && m[1].trim()) {
      failedCheck = m[1].trim();
      fatalIdx = i;
      break;
    }
  }
  const endIdx = lines.findIndex((l, i) => i > fatalIdx && /^Failure, exiting/.test(l));
  let body: string[];
  if (fatalIdx >= 0) body = lines.slice(fatalIdx + 1, endIdx >= 0 ? endIdx : undefined);
  else {
    // No check failed: an operational error (e.g. "*failure*", "could not connect ...",
    // "The source cluster was not shut down cleanly."). Keep what follows the last "ok" line.
    let lastOk = -1;
    lines.forEach((l, i) => {
      if (/\s(ok|skipped|notice)\s*$/.test(l)) lastOk = i;
    });
    body = lines.slice(lastOk + 1, endIdx >= 0 ? endIdx : undefined);
  }
  const reason = body
    .map((l) => l.trimEnd())
    .join("\n")
    .replace(/\n{3,}/g, "\n\n")
    .trim();
  const files = new Set<string>();
  for (const l of lines) {
    const indented = /^\s{2,}(\S+\.(?:txt|log))\s*$/.exec(l);
    if (indented) files.add(indented[1]);
    for (const q of l.matchAll(/"([^"\s]+\.(?:txt|log))"/g)) files.add(q[1]);
  }
  return { failedCheck, reason: reason || "pg_upgrade gave no reason (see its output)", files: [...files] };
}

/** Split `psql -A -t -F '\t'` output into rows of fields. */
export function parsePsqlRows(out: string): string[][] {
  return out
    .split("\n")
    .filter((l) => l.length > 0)
    .map((l) => l.split("\t"));
}
