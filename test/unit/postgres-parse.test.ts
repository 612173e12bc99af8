/** Parsers of PostgreSQL tool output, on output captured from PostgreSQL 13 and 15 on Debian. */
import { describe, expect, it } from "vitest";
import {
  lastLogLine,
  parseControlData,
  parseBusyPorts,
  parseLsn,
  parsePgCtlStatusPid,
  parsePgUpgradeFailure,
  parsePsqlRows,
  parseRecoveryLog,
  parseServerVersion,
} from "../../providers/postgres/parse";

const CONTROLDATA_13 = `pg_control version number:            1300
Catalog version number:               202007201
Database system identifier:           7711836639822084030
Database cluster state:               in production
pg_control last modified:             Tue Nov 24 20:24:49 2026
Latest checkpoint location:           0/181DF98
Latest checkpoint's REDO location:    0/181DF60
Latest checkpoint's REDO WAL file:    000000010000000000000001
Latest checkpoint's TimeLineID:       1
Latest checkpoint's oldestCommitTsXid:0
Time of latest checkpoint:            Tue Nov 24 20:24:49 2026
Database block size:                  8192
Bytes per WAL segment:                16777216
Data page checksum version:           1
Mock authentication nonce:            dd5c3239063d5361bf1099e69714940249cc82c2a641921a5e22ff31983c7311
`;

describe("parseControlData", () => {
  it("reads state, checkpoint, checksums", () => {
    const c = parseControlData(CONTROLDATA_13);
    expect(c.state).toBe("in production");
    expect(c.cleanShutdown).toBe(false);
    expect(c.checkpointLocation).toBe("0/181DF98");
    expect(c.redoLocation).toBe("0/181DF60");
    expect(c.dataChecksums).toBe(true);
    expect(c.controlVersion).toBe(1300);
    expect(c.walSegmentBytes).toBe(16 * 1024 * 1024);
    expect(c.systemIdentifier).toBe("7711836639822084030");
    expect(c.raw["Latest checkpoint's oldestCommitTsXid"]).toBe("0");
  });
  it("knows a clean shutdown and checksums off", () => {
    const c = parseControlData(
      CONTROLDATA_13.replace("in production", "shut down").replace("Data page checksum version:           1", "Data page checksum version:           0"),
    );
    expect(c.cleanShutdown).toBe(true);
    expect(c.dataChecksums).toBe(false);
  });
  it("fails on output that is not pg_controldata's", () => {
    expect(() => parseControlData("pg_controldata: fatal: could not open file")).toThrow(/Database cluster state/);
  });
});

describe("small parsers", () => {
  it("LSNs", () => {
    expect(parseLsn("0/3000060")).toBe(0x3000060n);
    expect(parseLsn("1/0")).toBe(1n << 32n);
    expect(() => parseLsn("zz")).toThrow();
  });
  it("server versions", () => {
    expect(parseServerVersion("postgres (PostgreSQL) 13.16 (Debian 13.16-0+deb11u1)\n")).toEqual({ major: 13, full: "13.16" });
    expect(parseServerVersion("postgres (PostgreSQL) 15.8 (Debian 15.8-0+deb12u1)")).toEqual({ major: 15, full: "15.8" });
    expect(parseServerVersion("postgres (PostgreSQL) 18beta1")).toEqual({ major: 18, full: "18beta1" });
    expect(parseServerVersion("garbage")).toBeUndefined();
  });
  it("busy ports from ss -tanH: listeners and live connections' local ports, not TIME-WAIT", () => {
    const out = [
      "LISTEN     0      128      0.0.0.0:2024      0.0.0.0:*",
      "LISTEN     0      244        [::1]:5432         [::]:*",
      "LISTEN     0      4096 127.0.0.53%lo:53      0.0.0.0:*",
      "ESTAB      0      0      127.0.0.1:58010   127.0.0.1:5432",
      "TIME-WAIT  0      0      127.0.0.1:41000   127.0.0.1:5432",
    ].join("\n");
    expect([...parseBusyPorts(out)].sort((a, b) => a - b)).toEqual([53, 2024, 5432, 58010]);
  });
  it("pg_ctl status", () => {
    expect(parsePgCtlStatusPid("pg_ctl: server is running (PID: 4242)\n/usr/lib/postgresql/13/bin/postgres \"-D\" ...")).toBe(4242);
    expect(parsePgCtlStatusPid("pg_ctl: no server running")).toBeUndefined();
  });
  it("psql rows", () => {
    expect(parsePsqlRows("UTF8\tC.UTF-8\tC.UTF-8\n\n")).toEqual([["UTF8", "C.UTF-8", "C.UTF-8"]]);
  });
  it("recovery log", () => {
    const log = [
      "2026-11-24 20:30:01.100 UTC [100] LOG:  database system was interrupted; last known up at 2026-11-24 20:29:40 UTC",
      "2026-11-24 20:30:01.120 UTC [100] LOG:  database system was not properly shut down; automatic recovery in progress",
      "2026-11-24 20:30:01.130 UTC [100] LOG:  redo starts at 0/2000028",
      "2026-11-24 20:30:04.500 UTC [100] LOG:  redo done at 0/3000060",
      "2026-11-24 20:30:04.600 UTC [99] LOG:  database system is ready to accept connections",
    ].join("\n");
    const r = parseRecoveryLog(log);
    expect(r).toMatchObject({ crashRecovery: true, redoStart: "0/2000028", redoDone: "0/3000060", notProperlyShutDown: true });
    expect(r.replayedBytes).toBe(0x3000060 - 0x2000028);
    expect(lastLogLine(log)).toBe("LOG:  database system is ready to accept connections");
    expect(lastLogLine(log.split("\n").slice(0, 3).join("\n") + "\n2026-11-24 20:30:02.000 UTC [101] FATAL:  the database system is starting up\n")).toBe(
      "LOG:  redo starts at 0/2000028",
    );
    expect(parseRecoveryLog("LOG:  database system was shut down at ...").crashRecovery).toBe(false);
  });
});

describe("parsePgUpgradeFailure", () => {
  it("finds the failed check, its explanation and the report file (pg_upgrade 15, postfix operators)", () => {
    const out = `Performing Consistency Checks
-----------------------------
Checking cluster versions                                   ok
Checking for reg* data types in user tables                 ok
Checking for user-defined postfix operators                 fatal

Your installation contains user-defined postfix operators, which are not
supported anymore.  Consider dropping the postfix operators and replacing
them with prefix operators or function calls.
A list of user-defined postfix operators is in the file:
    /srv/x/pg15/pg_upgrade_output.d/20261124T201718.454/postfix_ops.txt

Failure, exiting
`;
    const f = parsePgUpgradeFailure(out);
    expect(f.failedCheck).toBe("Checking for user-defined postfix operators");
    expect(f.reason).toMatch(/^Your installation contains user-defined postfix operators/);
    expect(f.reason).not.toMatch(/Failure, exiting/);
    expect(f.files).toEqual(["/srv/x/pg15/pg_upgrade_output.d/20261124T201718.454/postfix_ops.txt"]);
  });
  it("reports operational failures and the logs they point at", () => {
    const out = `Performing Consistency Checks
-----------------------------
Checking cluster versions                                   ok

The source cluster was not shut down cleanly.
Failure, exiting
`;
    expect(parsePgUpgradeFailure(out).reason).toBe("The source cluster was not shut down cleanly.");
    const out2 = `Checking cluster versions                                   ok

*failure*
Consult the last few lines of "/srv/x/pg15/pg_upgrade_output.d/123/log/pg_upgrade_server.log" for
the probable cause of the failure.
Failure, exiting
`;
    const f2 = parsePgUpgradeFailure(out2);
    expect(f2.failedCheck).toBeUndefined();
    expect(f2.reason).toMatch(/\*failure\*/);
    expect(f2.files).toEqual(["/srv/x/pg15/pg_upgrade_output.d/123/log/pg_upgrade_server.log"]);
  });
  it("loadable libraries (relative path in older pg_upgrade)", () => {
    const out = `Checking for presence of required libraries                 fatal

Your installation references loadable libraries that are missing from the
new installation.  You can add these libraries to the new installation,
or remove the functions using them from the old installation.  A list of
problem libraries is in the file:
    loadable_libraries.txt

Failure, exiting`;
    const f = parsePgUpgradeFailure(out);
    expect(f.failedCheck).toBe("Checking for presence of required libraries");
    expect(f.files).toEqual(["loadable_libraries.txt"]);
  });
});
