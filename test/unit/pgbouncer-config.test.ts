import { describe, expect, it } from "vitest";
import {
  adminIdent,
  listenersOnPort,
  parseDatabases,
  parseShowDatabases,
  PgBouncerConfigError,
  renderDatabases,
  renderIni,
  renderUserlist,
  resolveConfig,
  statusMatches,
  validateAbsolutePath,
  validateEntryName,
  validateListenAddr,
  validatePort,
  validateTarget,
  validateTargetHost,
} from "../../providers/endpoint/pgbouncer-config";
import { describeHolders } from "../../providers/endpoint/pgbouncer";

const base = { name: "edge", listenPort: 6432, authType: "trust" as const };

function err(fn: () => unknown): Error {
  try {
    fn();
  } catch (e) {
    return e as Error;
  }
  throw new Error("expected an error");
}

describe("validators", () => {
  it("database entry names: conservative, and nothing that can break an ini line", () => {
    for (const ok of ["app", "app_2", "app-ro", "_x"]) expect(validateEntryName(ok)).toBe(ok);
    const hostile = [
      "app]\n[x",
      "app\nadmin_users = evil",
      "app = host=evil",
      "app;x",
      "app#x",
      "%include",
      "[pgbouncer]",
      "App",
      "1app",
      "",
      "a".repeat(64),
      "pgbouncer",
      "app x",
      'app"',
    ];
    for (const bad of hostile) {
      const e = err(() => validateEntryName(bad));
      expect(e, bad).toBeInstanceOf(PgBouncerConfigError);
      expect(e.message.startsWith("database: ")).toBe(true);
    }
    expect(err(() => validateEntryName("app]\n[x")).message).toBe(
      'database: "app]\\n[x" is not a database name this driver accepts (it contains "]"; allowed: a-z 0-9 _ -)',
    );
  });

  it("ports", () => {
    expect(validatePort(1)).toBe(1);
    expect(validatePort(65535)).toBe(65535);
    for (const bad of [0, 65536, -1, 1.5, "5432", NaN, null]) expect(() => validatePort(bad, "listenPort")).toThrow(/listenPort: .* is not a valid port/);
  });

  it("paths: absolute, conservative charset, no . or .. or doubled slashes", () => {
    expect(validateAbsolutePath("/var/lib/understudy/pgbouncer", "p")).toBe("/var/lib/understudy/pgbouncer");
    for (const bad of ["relative/dir", "./x", "/a/../etc", "/a/./b", "/a//b", "/a/b/", "/a b", "/a\nb", "/a;b", "/a$b", "/", "", "/a'b"]) {
      expect(() => validateAbsolutePath(bad, "configDir"), bad).toThrow(/^configDir: /);
    }
  });

  it("hosts: names, IPs, unix socket dirs; nothing else", () => {
    for (const ok of ["127.0.0.1", "::1", "fe80::1", "db1.example.com", "localhost", "/var/run/postgresql"]) expect(validateTargetHost(ok)).toBe(ok);
    for (const bad of ["127.0.0.1 port=1", "db\n", "-oProxy", "a_b.com", "", "1.2.3.4:5432", "/tmp/../x"]) expect(() => validateTargetHost(bad), bad).toThrow(PgBouncerConfigError);
    expect(validateListenAddr("*")).toBe("*");
    expect(() => validateListenAddr("*,evil")).toThrow(/listenAddr/);
  });

  it("targets: every field checked, unknown fields refused", () => {
    expect(validateTarget({ host: "127.0.0.1", port: 5432, dbname: "app" })).toEqual({ host: "127.0.0.1", port: 5432, dbname: "app" });
    expect(err(() => validateTarget({ host: "127.0.0.1", port: 5432, dbname: "app x=1" })).message).toMatch(/^target: dbname: "app x=1"/);
    expect(err(() => validateTarget({ host: "h", port: 5432, dbname: "app", password: "x" })).message).toMatch(/Unrecognized key.*password/);
    expect(err(() => validateTarget({ host: "h", port: 5432, dbname: "app", user: "a b" })).message).toMatch(/user: "a b"/);
  });
});

describe("resolveConfig", () => {
  it("applies defaults: transaction pooling, paths under the base dir, socket dir = config dir", () => {
    const c = resolveConfig({ name: "edge", listenPort: 6432, adminPassword: "pw-123" });
    expect(c.poolMode).toBe("transaction");
    expect(c.authType).toBe("scram-sha-256");
    expect(c.listenAddr).toBe("127.0.0.1");
    expect(c.configDir).toBe("/var/lib/understudy/pgbouncer/edge");
    expect(c.unixSocketDir).toBe(c.configDir);
    expect(c.paths.ini).toBe("/var/lib/understudy/pgbouncer/edge/pgbouncer.ini");
    expect(c.ignoreStartupParameters).toEqual(["extra_float_digits"]);
    expect(c.osUser).toBe("postgres");
  });

  it("requires passwords unless trust, and never prints them", () => {
    expect(() => resolveConfig({ name: "e", listenPort: 6432 })).toThrow(/adminPassword: is required with authType "scram-sha-256"/);
    const e = err(() =>
      resolveConfig({ name: "e", listenPort: 6432, authType: "md5", adminPassword: "Sup3r-secret", users: [{ name: "app" }] }),
    );
    expect(e.message).toMatch(/users\[0\]\.password: is required/);
    const e2 = err(() => resolveConfig({ name: "e", listenPort: 6432, authType: "md5", adminPassword: "Sup3r\nsecret" }));
    expect(e2.message).toMatch(/adminPassword: contains a control character/);
    expect(e2.message).not.toContain("Sup3r");
  });

  it("refuses a unix socket path that is too long, a config dir next to /, duplicate users", () => {
    expect(() => resolveConfig({ ...base, unixSocketDir: "/" + "a".repeat(100) })).toThrow(/unixSocketDir: .* too long/);
    expect(() => resolveConfig({ ...base, configDir: "/pgb" })).toThrow(/configDir: .* too close to \//);
    expect(() => resolveConfig({ ...base, users: [{ name: "a" }, { name: "a" }] })).toThrow(/users\[1\]\.name: "a" is listed twice/);
    expect(() => resolveConfig({ ...base, users: [{ name: "understudy_admin" }] })).toThrow(/is the admin user/);
  });
});

describe("rendering", () => {
  const c = resolveConfig({ ...base, configDir: "/srv/pgb/edge", databases: { app: { host: "10.0.0.5", port: 5432, dbname: "app" } } });

  it("pgbouncer.ini has the settings and %includes the databases file last", () => {
    const ini = renderIni(c);
    expect(ini).toContain("[pgbouncer]\n");
    for (const line of [
      "listen_addr = 127.0.0.1",
      "listen_port = 6432",
      "unix_socket_dir = /srv/pgb/edge",
      "auth_type = trust",
      "auth_file = /srv/pgb/edge/userlist.txt",
      "admin_users = understudy_admin",
      "pool_mode = transaction",
      "ignore_startup_parameters = extra_float_digits",
      "server_reset_query = DISCARD ALL",
      "logfile = /srv/pgb/edge/pgbouncer.log",
      "pidfile = /srv/pgb/edge/pgbouncer.pid",
    ]) {
      expect(ini.split("\n")).toContain(line);
    }
    expect(ini.trimEnd().split("\n").pop()).toBe("%include /srv/pgb/edge/databases.ini");
    expect(ini).not.toContain("[databases]");
  });

  it("the databases file round-trips and is sorted", () => {
    const dbs = {
      b: { host: "/var/run/postgresql", port: 5433, dbname: "b_db", user: "app", poolSize: 5 },
      a: { host: "10.0.0.5", port: 5432, dbname: "app" },
    };
    const text = renderDatabases(dbs);
    expect(text.split("\n").slice(1)).toEqual([
      "[databases]",
      "a = host=10.0.0.5 port=5432 dbname=app",
      "b = host=/var/run/postgresql port=5433 dbname=b_db user=app pool_size=5",
      "",
    ]);
    expect(parseDatabases(text)).toEqual(dbs);
  });

  it("a databases file we do not understand is refused, not rewritten", () => {
    expect(() => parseDatabases("[databases]\napp = host=h port=1 dbname=a password=x\n")).toThrow(/unsupported key\(s\) password/);
    expect(() => parseDatabases("app = host=h port=1 dbname=a\n")).toThrow(/line 1: cannot parse/);
    expect(() => parseDatabases("[databases]\n* = host=h port=1\n")).toThrow(/line 2/);
  });

  it("rendering re-validates, so a hand-built hostile target cannot reach the file", () => {
    expect(() => renderDatabases({ app: { host: "h\n[pgbouncer]", port: 1, dbname: "a" } })).toThrow(PgBouncerConfigError);
    expect(() => renderDatabases({ "x\ny": { host: "h", port: 1, dbname: "a" } })).toThrow(PgBouncerConfigError);
  });

  it("userlist quotes by doubling and puts the admin first", () => {
    const u = resolveConfig({
      name: "e",
      listenPort: 6432,
      authType: "md5",
      adminPassword: 'a"b',
      users: [{ name: "app", password: 'x "y" z' }],
    });
    expect(renderUserlist(u)).toBe(`"understudy_admin" "a""b"\n"app" "x ""y"" z"\n`);
  });
});

describe("admin console parsing", () => {
  const rows = [
    { name: "app", host: "127.0.0.1", port: 55501, database: "app", force_user: null, pool_size: 20, pool_mode: null, current_connections: 3, paused: 0, disabled: 0 },
    { name: "pgbouncer", host: null, port: 6432, database: "pgbouncer", force_user: "pgbouncer", pool_size: 2, pool_mode: "statement", current_connections: 0, paused: 0, disabled: 0 },
    { name: "ro", host: "/var/run/postgresql", port: 5432, database: "app", force_user: "reader", pool_size: 5, pool_mode: "session", current_connections: 0, paused: 1, disabled: 0 },
  ];

  it("SHOW DATABASES rows become typed entries without the admin db", () => {
    const s = parseShowDatabases(rows);
    expect(s.map((d) => d.name)).toEqual(["app", "ro"]);
    expect(s[0]).toEqual({
      name: "app", host: "127.0.0.1", port: 55501, database: "app", forceUser: null, poolSize: 20, poolMode: null,
      currentConnections: 3, paused: false, disabled: false,
    });
    expect(s[1].paused).toBe(true);
    expect(statusMatches(s[0], { host: "127.0.0.1", port: 55501, dbname: "app" })).toBe(true);
    expect(statusMatches(s[0], { host: "127.0.0.1", port: 55502, dbname: "app" })).toBe(false);
    expect(statusMatches(s[1], { host: "/var/run/postgresql", port: 5432, dbname: "app", user: "other" })).toBe(false);
  });

  it("admin identifiers are quoted when needed and validated", () => {
    expect(adminIdent("app")).toBe("app");
    expect(adminIdent("app-ro")).toBe('"app-ro"');
    expect(() => adminIdent('a"; SHUTDOWN; --')).toThrow(PgBouncerConfigError);
  });

  it("names the clients that keep PAUSE waiting", () => {
    const servers = [
      { database: "app", state: "active", link: "0x1" },
      { database: "app", state: "idle", link: "" },
      { database: "other", state: "active", link: "0x9" },
    ];
    const clients = [
      { database: "app", user: "postgres", addr: "127.0.0.1", port: 40000, ptr: "0x1", application_name: "psql" },
      { database: "app", user: "postgres", addr: "127.0.0.1", port: 40001, ptr: "0x2", application_name: "" },
    ];
    expect(describeHolders(servers, clients, "app")).toBe('1 server connection(s) busy, for client(s) postgres@127.0.0.1:40000 "psql"');
    expect(describeHolders(servers, clients, "none")).toBe("");
  });

  it("finds listeners on a port in `ss -Hltnp` output", () => {
    const out = [
      'LISTEN 0      244        127.0.0.1:55501      0.0.0.0:*    users:(("postgres",pid=123,fd=6))',
      "LISTEN 0      128          0.0.0.0:2024       0.0.0.0:*",
      'LISTEN 0      128             [::]:6432          [::]:*    users:(("pgbouncer",pid=9,fd=7))',
      "LISTEN 0      128        127.0.0.1:155501     0.0.0.0:*",
    ].join("\n");
    expect(listenersOnPort(out, 55501)).toHaveLength(1);
    expect(listenersOnPort(out, 6432)).toHaveLength(1);
    expect(listenersOnPort(out, 2024)).toHaveLength(1);
    expect(listenersOnPort(out, 5432)).toHaveLength(0);
  });
});
