/**
 * Input rules of the PostgreSQL driver, and the promise that a rejected input runs nothing:
 * the driver is given a host that fails the test if any command reaches it.
 */
import { describe, expect, it } from "vitest";
import type { Host, RunOptions, RunResult } from "../../providers/host/types";
import { PostgresDriver, isolationSettings, optionString } from "../../providers/postgres/driver";
import { PostgresInputError } from "../../providers/postgres/errors";
import { validateConnection } from "../../providers/postgres/sql";
import {
  validateDataDir,
  validateListen,
  validateName,
  validatePort,
  validateSettingValue,
  validateSocketDir,
  validateVersion,
} from "../../providers/postgres/validate";

/** A host that records commands and runs none (this is a unit test: no PostgreSQL here). */
class NoCommandsHost implements Host {
  readonly description = "nowhere";
  readonly ran: string[][] = [];
  async run(argv: readonly string[], _o?: RunOptions): Promise<RunResult> {
    this.ran.push([...argv]);
    throw new Error(`a command ran although the input was invalid: ${argv.join(" ")}`);
  }
  async runAs(_u: string, argv: readonly string[], o?: RunOptions): Promise<RunResult> {
    return this.run(argv, o);
  }
  async writeFile(): Promise<void> {
    throw new Error("writeFile called");
  }
  async close(): Promise<void> {}
}

const HOSTILE_PATHS = [
  "relative/data",
  "/srv/../etc",
  "/srv/./x",
  "/srv//x",
  "/srv/x/",
  "/",
  "/srv/$(touch /tmp/pwned)",
  "/srv/`id`",
  "/srv/a b",
  "/srv/a'b",
  '/srv/a"b',
  "/srv/a\\b",
  "/srv/a;rm -rf /",
  "/srv/a\nb",
  "/srv/a\0b",
  "/srv/a|b",
  "/srv/ä",
  "",
];

describe("validation", () => {
  it("versions: integer majors 10..18; 9.6 and minors refused with the field named", () => {
    expect(validateVersion(13)).toBe(13);
    expect(validateVersion("15")).toBe(15);
    expect(() => validateVersion(9.6)).toThrow(/postgres\.version: 9\.6 is not supported/);
    expect(() => validateVersion("9.6")).toThrow(/9\.6 is not supported/);
    expect(() => validateVersion(13.2)).toThrow(/use 13/);
    expect(() => validateVersion(19, "to.version")).toThrow(/^to\.version: 19 is outside/);
    expect(() => validateVersion(9)).toThrow(/not supported/);
    expect(() => validateVersion("13; rm")).toThrow(PostgresInputError);
    expect(() => validateVersion(undefined)).toThrow(PostgresInputError);
  });
  it("ports", () => {
    expect(validatePort(55432)).toBe(55432);
    expect(validatePort("5433")).toBe(5433);
    for (const p of [0, 80, 1023, 65536, 5432.5, "54x", -1, null]) expect(() => validatePort(p)).toThrow(/postgres\.port: .* is not a port in 1024\.\.65535/);
  });
  it("paths: absolute, conservative, no .. — hostile names are refused", () => {
    expect(validateDataDir("/srv/pool/clone/pg13")).toBe("/srv/pool/clone/pg13");
    expect(validateDataDir("/var/lib/postgresql/13/main")).toBe("/var/lib/postgresql/13/main");
    for (const p of HOSTILE_PATHS) expect(() => validateDataDir(p), JSON.stringify(p)).toThrow(/^postgres\.dataDir: /);
  });
  it("socket directories fit in sun_path", () => {
    expect(validateSocketDir("/tmp/understudy-pg.abcdefgh")).toBeTruthy();
    expect(() => validateSocketDir("/tmp/" + "x".repeat(100))).toThrow(/too long for a unix socket/);
  });
  it("names", () => {
    expect(validateName("postgres", "f")).toBe("postgres");
    for (const n of ["", "1abc", "a-b", "a b", 'a"b', "x".repeat(64), "-U"]) expect(() => validateName(n, "f")).toThrow(/^f: /);
  });
  it("listen addresses", () => {
    expect(validateListen("")).toBe("");
    expect(validateListen("127.0.0.1")).toBe("127.0.0.1");
    expect(validateListen("127.0.0.1, ::1")).toBe("127.0.0.1,::1");
    for (const l of ["0.0.0.0'", "example.com", "256.1.1.1", "$(id)"]) expect(() => validateListen(l)).toThrow(PostgresInputError);
  });
  it("settings values cannot escape pg_ctl's shell string", () => {
    expect(optionString([["port", "5433"], ["listen_addresses", ""]])).toBe("-c port='5433' -c listen_addresses=''");
    for (const v of ["a'b", "$(id)", "`id`", "a\\b", "a\nb", 'a"b']) expect(() => validateSettingValue("x", v)).toThrow(/postgres\.settings\.x/);
    expect(() => optionString([["bad name", "1"]])).toThrow(PostgresInputError);
  });
  it("isolation settings depend on the major", () => {
    const k13 = isolationSettings(13).map(([k]) => k);
    const k15 = isolationSettings(15).map(([k]) => k);
    const k11 = isolationSettings(11).map(([k]) => k);
    expect(k13).toContain("stats_temp_directory");
    expect(k15).not.toContain("stats_temp_directory");
    expect(k15).toContain("primary_conninfo");
    expect(k11).not.toContain("primary_conninfo");
    expect(k13).toContain("archive_mode");
  });
  it("connections", () => {
    expect(validateConnection({ host: "/tmp/s", port: 5432, user: "postgres" }).database).toBe("postgres");
    expect(() => validateConnection({ host: "-oProxyCommand=x", port: 5432, user: "postgres" })).toThrow(/connection\.host/);
    expect(() => validateConnection({ host: "127.0.0.1", port: 5432, user: "a;b" })).toThrow(/connection\.user/);
  });
});

describe("a rejected input runs nothing", () => {
  const host = new NoCommandsHost();
  const d = new PostgresDriver(host);
  const cases: Array<[string, () => Promise<unknown>, RegExp]> = [
    ["start: hostile data dir", () => d.start("/srv/x;reboot", 13, { port: 55432, socketDir: "/tmp/s" }), /postgres\.dataDir/],
    ["start: port 80", () => d.start("/srv/x", 13, { port: 80, socketDir: "/tmp/s" }), /postgres\.port/],
    ["start: version 9.6", () => d.start("/srv/x", 9.6, { port: 55432, socketDir: "/tmp/s" }), /postgres\.version: 9\.6/],
    ["start: hostile setting", () => d.start("/srv/x", 13, { port: 55432, socketDir: "/tmp/s", settings: { work_mem: "1MB' -c x='y" } }), /postgres\.settings\.work_mem/],
    ["start: hostile listen", () => d.start("/srv/x", 13, { port: 55432, socketDir: "/tmp/s", listen: "*' -c" }), /postgres\.listen/],
    ["start: hostile binDir", () => d.start("/srv/x", { version: 13, binDir: "/opt/$(id)/bin" }, { port: 55432, socketDir: "/tmp/s" }), /postgres\.binDir/],
    ["initdb: relative", () => d.initdb("data", 13), /postgres\.dataDir/],
    ["initdb: locale", () => d.initdb("/srv/x", 13, { locale: "C.UTF-8; id" }), /postgres\.locale/],
    ["recover: ..", () => d.recoverCrashConsistent("/srv/../etc", 13, 55432), /dataDir/],
    ["recover: port", () => d.recoverCrashConsistent("/srv/x", 13, 99999), /tempPort/],
    ["upgrade: same dirs", () => d.upgrade("/srv/x", "/srv/x", 13, 15), /newDataDir/],
    ["upgrade: downgrade", () => d.upgrade("/srv/a", "/srv/b", 15, 13), /to\.version: 13 is not newer than 15/],
    ["upgrade: mode", () => d.upgrade("/srv/a", "/srv/b", 13, 15, { mode: "move" as never }), /mode/],
    ["upgradeCheck: 19", () => d.upgradeCheck("/srv/a", "/srv/b", 13, 19), /to\.version: 19/],
    ["stop: hostile", () => d.stop("/srv/a`id`", 13), /postgres\.dataDir/],
    ["controlData: hostile", () => d.controlData("/srv/a b", 13), /postgres\.dataDir/],
    ["query: hostile connection", () => d.query({ host: "/tmp/s", port: 1, user: "postgres" }, "select 1"), /connection\.port/],
  ];
  for (const [name, fn, re] of cases) {
    it(name, async () => {
      await expect(fn()).rejects.toThrow(re);
      await expect(fn()).rejects.toBeInstanceOf(PostgresInputError);
      expect(host.ran).toEqual([]);
    });
  }
  it("the constructor validates the OS user", () => {
    expect(() => new PostgresDriver(host, { osUser: "root; id" })).toThrow(/postgres\.osUser/);
  });
});
