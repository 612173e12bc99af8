/**
 * How a command reaches another OS user: the environment goes AFTER the switch, so that
 * `sudo -n` (which resets the environment) cannot drop PGHOST/PGPORT on the way and send a
 * step to the default socket, i.e. to live. And every command the host layer runs is
 * recorded when UNDERSTUDY_COMMAND_LOG is set (what the integration tests assert on).
 */
import { afterEach, describe, expect, it } from "vitest";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { asUser } from "../../providers/host/types";
import { LocalHost } from "../../providers/host/local";
import { readCommandLog } from "../../providers/host/record";

describe("asUser", () => {
  it("non-root login: sudo -n first, then env, then the command", () => {
    const r = asUser("deploy", "postgres", ["psql", "-c", "SELECT 1"], { env: { PGHOST: "/run/clone", PGPORT: "55432" }, timeoutMs: 5 });
    expect(r.argv).toEqual(["sudo", "-n", "-u", "postgres", "--", "env", "PGHOST=/run/clone", "PGPORT=55432", "psql", "-c", "SELECT 1"]);
    expect(r.opts).toEqual({ timeoutMs: 5 });
  });
  it("non-root login with a working directory: the directory is entered after sudo (it may be the target user's 0700 directory)", () => {
    const r = asUser("deploy", "postgres", ["pg_upgrade", "--check"], { env: { A: "1" }, cwd: "/srv/x/main.pg15-pg_upgrade" });
    expect(r.argv).toEqual(["sudo", "-n", "-u", "postgres", "--", "sh", "-c", 'unset CDPATH; cd -- "$1" && shift && exec "$@"', "sh", "/srv/x/main.pg15-pg_upgrade", "env", "A=1", "pg_upgrade", "--check"]);
    expect(r.opts).toEqual({});
    // root switches with runuser from the directory it entered itself: cwd stays an option.
    expect(asUser("root", "postgres", ["id"], { cwd: "/srv/x" })).toEqual({ argv: ["runuser", "-u", "postgres", "--", "id"], opts: { cwd: "/srv/x" } });
  });
  it("root login: runuser, then env", () => {
    expect(asUser("root", "postgres", ["id"], { env: { A: "1" } }).argv).toEqual(["runuser", "-u", "postgres", "--", "env", "A=1", "id"]);
  });
  it("root from a non-root login goes through sudo -n -u root", () => {
    expect(asUser("deploy", "root", ["zfs", "list"]).argv).toEqual(["sudo", "-n", "-u", "root", "--", "zfs", "list"]);
  });
  it("the same user: no switch, env still explicit", () => {
    expect(asUser("postgres", "postgres", ["id"], { env: { A: "1" } }).argv).toEqual(["env", "A=1", "id"]);
    expect(asUser("postgres", "postgres", ["id"]).argv).toEqual(["id"]);
  });
  it("refuses bad environment names and user names before anything runs", () => {
    expect(() => asUser("root", "postgres", ["id"], { env: { "A;B": "1" } })).toThrow(/invalid environment variable name/);
    expect(() => asUser("root", "post gres", ["id"])).toThrow(/invalid OS user name/);
  });
  it("LocalHost.runAs really passes the environment to the command (as the same user)", async () => {
    const me = os.userInfo().username;
    const r = await new LocalHost().runAs(me, ["sh", "-c", 'echo "$UNDERSTUDY_T"'], { env: { UNDERSTUDY_T: "through" } });
    expect(r.stdout.trim()).toBe("through");
  });
});

describe("command record", () => {
  const file = path.join(os.tmpdir(), `understudy-cmdlog-${process.pid}.jsonl`);
  afterEach(() => {
    delete process.env.UNDERSTUDY_COMMAND_LOG;
    fs.rmSync(file, { force: true });
  });
  it("records each command before it runs, with secrets redacted; nothing without the variable", async () => {
    const h = new LocalHost();
    await h.run(["true"]);
    expect(readCommandLog(file)).toEqual([]);
    process.env.UNDERSTUDY_COMMAND_LOG = file;
    await h.run(["echo", "hunter2-secret"], { redact: ["hunter2-secret"] });
    await h.run(["false"]).catch(() => undefined);
    const log = readCommandLog(file);
    expect(log.map((c) => c.argv)).toEqual([["echo", "[secret]"], ["false"]]);
    expect(log[0].host).toBe("local");
  });
});
