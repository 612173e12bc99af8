/**
 * The pure half of the logical cut-over (providers/postgres/logical-sql.ts) and the plan
 * validation of providers/postgres/logical.ts: quoting, names, connection strings, the
 * tagged-JSON protocol of its psql scripts, readiness rules, fingerprints. No server.
 */
import { describe, expect, it } from "vitest";
import { InputError } from "../../providers/errors";
import {
  acceptFindings,
  checkRecoveryStop,
  ClusterFacts,
  conninfo,
  createPublicationSql,
  createSubscriptionSql,
  DatabaseFacts,
  databaseKey,
  diffFingerprints,
  dropSlotsSql,
  evaluateReadiness,
  evaluateTarget,
  formatLsn,
  logicalNames,
  lsnDiff,
  makeFingerprint,
  markerSql,
  maxLsn,
  parseTagged,
  parseTaggedByDatabase,
  quoteIdent,
  quoteLiteral,
  readOnlySql,
  recoveryStop,
  requiredTargetSettings,
  scriptAcross,
  setvalSql,
  undoReadOnlySql,
  validateDatabases,
  validateLsn,
  validateSource,
  validateTag,
} from "../../providers/postgres/logical-sql";
import { validatePlan } from "../../providers/postgres/logical";

const HOSTILE = ["x'; DROP TABLE t; --", 'a"b', "a\\b", "$understudy$", "with space", "ünï", "a\nb", ""];

function inputError(fn: () => unknown): InputError {
  try {
    fn();
  } catch (e) {
    expect(InputError.is(e), `expected an InputError, got ${(e as Error).message}`).toBe(true);
    return e as InputError;
  }
  throw new Error("did not throw");
}

describe("quoting", () => {
  it("quoteIdent doubles quotes and refuses what PostgreSQL would truncate or cannot hold", () => {
    expect(quoteIdent("pgbench_history")).toBe('"pgbench_history"');
    expect(quoteIdent('we"ird')).toBe('"we""ird"');
    expect(quoteIdent("Ünïcode")).toBe('"Ünïcode"');
    expect(inputError(() => quoteIdent("")).reason).toMatch(/empty/);
    expect(inputError(() => quoteIdent("a\0b")).reason).toMatch(/NUL/);
    expect(quoteIdent("x".repeat(63))).toHaveLength(65);
    expect(inputError(() => quoteIdent("x".repeat(64))).reason).toMatch(/63 bytes/);
    expect(inputError(() => quoteIdent("é".repeat(32))).reason).toMatch(/63 bytes/); // 64 bytes in UTF-8
  });

  it("quoteLiteral writes what quote_literal writes", () => {
    expect(quoteLiteral("plain")).toBe("'plain'");
    expect(quoteLiteral("it's")).toBe("'it''s'");
    expect(quoteLiteral("a\\b'c")).toBe("E'a\\\\b''c'");
    expect(quoteLiteral("")).toBe("''");
    expect(inputError(() => quoteLiteral("a\0")).reason).toMatch(/NUL/);
  });
});

describe("names", () => {
  it("a tag is short, lower-case and safe; everything is derived from it", () => {
    expect(validateTag("prod1")).toBe("prod1");
    for (const bad of ["Prod", "1abc", "a".repeat(21), "a-b", ...HOSTILE]) {
      expect(inputError(() => validateTag(bad)).field).toBe("logical.tag");
    }
    const n = logicalNames("prod1");
    expect(n).toMatchObject({
      prefix: "understudy_prod1_",
      physicalSlot: "understudy_prod1_wal",
      publication: "understudy_prod1_pub",
      subscription: "understudy_prod1_sub",
      reversePublication: "understudy_prod1_back",
      reverseSubscription: "understudy_prod1_back",
      readOnlyMarker: "understudy.read_only_prod1",
    });
    // Slots are cluster-wide: one per database, distinct, lower-case, within NAMEDATALEN.
    const slots = ["app", "App", "billing", "x".repeat(63)].map((d) => n.slot(d));
    expect(new Set(slots).size).toBe(4);
    for (const s of [...slots, ...["app", "App"].map((d) => n.reverseSlot(d))]) {
      expect(s).toMatch(/^understudy_prod1_[db][0-9a-f]{8}$/);
      expect(s.length).toBeLessThanOrEqual(63);
      expect(s.startsWith(n.prefix)).toBe(true);
    }
    expect(n.slot("app")).toBe(`understudy_prod1_d${databaseKey("app")}`);
    expect(logicalNames("a".repeat(20)).reverseSlot("app").length).toBeLessThanOrEqual(63);
  });

  it("database lists: non-empty, distinct, names psql can be pointed at", () => {
    expect(validateDatabases(["app", "postgres"])).toEqual(["app", "postgres"]);
    expect(inputError(() => validateDatabases([])).field).toBe("logical.databases");
    expect(inputError(() => validateDatabases(["app", "app"])).reason).toMatch(/twice/);
    for (const bad of HOSTILE) expect(inputError(() => validateDatabases(["app", bad])).field).toBe("logical.databases[1]");
  });
});

describe("LSNs", () => {
  it("format, validate, compare", () => {
    expect(formatLsn(0x1_0300_0060n)).toBe("1/3000060");
    expect(validateLsn("0/3000060", "x")).toBe("0/3000060");
    expect(validateLsn("a/bc", "x")).toBe("A/BC");
    expect(inputError(() => validateLsn("0/3000060; DROP", "start.lsn")).field).toBe("start.lsn");
    expect(inputError(() => validateLsn(undefined, "start.lsn")).field).toBe("start.lsn");
    expect(lsnDiff("0/5000000", "0/4000000")).toBe(0x1000000n);
    expect(maxLsn(["0/5645DC0", "1/0", "0/FFFFFFFF"])).toBe("1/0");
  });
});

describe("connection strings", () => {
  it("carry no password and nothing that needs quoting", () => {
    const src = validateSource({ host: "/var/run/postgresql", port: 5432, user: "postgres", sslmode: "require", passfile: "/etc/understudy/pgpass" }, "liveSource");
    expect(conninfo(src, { dbname: "app", application_name: "understudy_x_d12345678" })).toBe(
      "host=/var/run/postgresql port=5432 user=postgres dbname=app passfile=/etc/understudy/pgpass sslmode=require application_name=understudy_x_d12345678",
    );
    expect(inputError(() => validateSource({ host: "db1", port: 5432, user: "u", password: "secret" }, "liveSource")).field).toBe("liveSource.password");
    expect(inputError(() => validateSource({ host: "db1", port: 5432, user: "u", sslmode: "maybe" }, "liveSource")).field).toBe("liveSource.sslmode");
    expect(inputError(() => validateSource({ host: "db1", port: 80, user: "u" }, "liveSource")).field).toBe("liveSource.port");
    for (const bad of ["db 1", "db'1", "-oProxyCommand=x", "a\nb"]) expect(inputError(() => validateSource({ host: bad, port: 5432, user: "u" }, "liveSource")).field).toBe("liveSource.host");
    for (const bad of HOSTILE) expect(inputError(() => validateSource({ host: "db1", port: 5432, user: bad }, "liveSource")).field).toBe("liveSource.user");
    expect(inputError(() => conninfo({ host: "db1", port: 5432, user: "u" }, { dbname: "a b" })).field).toBe("conninfo.dbname");
  });
});

describe("the tagged-JSON protocol of psql scripts", () => {
  it("parses one tag and a JSON document per row, and refuses anything else", () => {
    const m = parseTagged([
      ["slot", '"0/5645DC0"'],
      ["sequences", '[["public", "we\\"ird\\tname", "42"]]'],
    ]);
    expect(m.get("slot")).toBe("0/5645DC0");
    expect(m.get("sequences")).toEqual([["public", 'we"ird\tname', "42"]]);
    expect(() => parseTagged([["ALTER SUBSCRIPTION"]])).toThrow(/unexpected psql output row/);
    expect(() => parseTagged([["slot", "not json"]])).toThrow(/not JSON/);
    expect(() => parseTagged([["Bad Tag", "1"]])).toThrow(/unexpected/);
  });

  it("splits a script over several databases, merging a database's passes", () => {
    const script = scriptAcross(["app", "shop"], (db) => `SELECT '${db}x', '1';`, "app");
    expect(script.startsWith("SELECT 'db'")).toBe(true); // already connected to app
    expect(script).toContain("\\connect shop\n");
    expect(() => scriptAcross(["app", "x; \\! rm -rf /"], () => "")).toThrow(InputError);
    const m = parseTaggedByDatabase([
      ["db", '"app"'],
      ["setval", "2"],
      ["db", '"shop"'],
      ["setval", "1"],
      ["db", '"app"'],
      ["slot", '"0/1"'],
    ]);
    expect([...m.keys()]).toEqual(["app", "shop"]);
    expect(m.get("app")).toEqual(new Map<string, unknown>([["setval", 2], ["slot", "0/1"]]));
    expect(() => parseTaggedByDatabase([["setval", "1"]])).toThrow(/before any database/);
  });
});

describe("SQL built from values read back from a server", () => {
  it("setval quotes every name and accepts integers only", () => {
    const sql = setvalSql([
      ["public", "orders_id_seq", "4421"],
      ["we'ird", 'x"; DROP TABLE t; --', "-9223372036854775808"],
    ]);
    expect(sql).toContain(`('"public"."orders_id_seq"', 4421::bigint)`);
    expect(sql).toContain(`('"we''ird"."x""; DROP TABLE t; --"', -9223372036854775808::bigint)`);
    expect(() => setvalSql([["public", "s", "1; DROP TABLE t"]])).toThrow(/not an integer/);
    expect(() => setvalSql([["public", "s", "1.5"]])).toThrow(/not an integer/);
    expect(setvalSql([])).toContain("to_jsonb(0)");
  });

  it("publications list the tables that exist (not FOR ALL TABLES) and refuse tables without a replica identity", () => {
    const sql = createPublicationSql("understudy_x_pub", "it's ours");
    expect(sql).not.toMatch(/FOR ALL TABLES/);
    expect(sql).toContain("' FOR TABLE ' || tables");
    expect(sql).toMatch(/RAISE EXCEPTION 'understudy: table\(s\) without a primary key or replica identity/);
    expect(sql).toContain("COMMENT ON PUBLICATION \"understudy_x_pub\" IS 'it''s ours';");
  });

  it("slot, subscription and marker statements quote what they carry", () => {
    expect(dropSlotsSql(["understudy_x_wal", "a'b"])).toContain("ARRAY['understudy_x_wal', 'a''b']::text[]");
    const sub = createSubscriptionSql({ subscription: "understudy_x_sub", publication: "understudy_x_pub", slot: "understudy_x_d1", conninfo: "host=/run port=5432 user=postgres dbname=app", startLsn: "0/5645dc0" });
    expect(sub).toContain(`CREATE SUBSCRIPTION "understudy_x_sub" CONNECTION 'host=/run port=5432 user=postgres dbname=app' PUBLICATION "understudy_x_pub" WITH (create_slot = false, copy_data = false, enabled = false, slot_name = 'understudy_x_d1');`);
    expect(sub).toContain("'0/5645DC0'::pg_lsn");
    expect(sub.indexOf("pg_replication_origin_advance")).toBeLessThan(sub.indexOf('ALTER SUBSCRIPTION "understudy_x_sub" ENABLE'));
    expect(() => createSubscriptionSql({ subscription: "s", publication: "p", slot: "x", conninfo: "c", startLsn: "0/1'; --" })).toThrow(InputError);
    expect(markerSql("understudy", "forward it's")).toContain("pg_logical_emit_message(true, 'understudy', 'forward it''s')");
    expect(markerSql("understudy", "x", false)).toContain("SET synchronous_commit = off;");
  });

  it("read-only settings are per database, remember the prior value, and undo only where marked", () => {
    const ro = readOnlySql("app", "understudy.read_only_x");
    expect(ro.indexOf("ALTER DATABASE %I SET %s = %L")).toBeLessThan(ro.indexOf("SET default_transaction_read_only = on"));
    expect(ro).toContain("RETURN;"); // a second call keeps the first prior value
    expect(undoReadOnlySql("app", "understudy.read_only_x")).toContain("IF prior IS NULL THEN RETURN; END IF;");
    for (const bad of HOSTILE) expect(() => readOnlySql(bad, "understudy.read_only_x")).toThrow(InputError);
  });
});

// ------------------------------------------------------------------------------ readiness

const names = logicalNames("main");

function cluster(over: Partial<ClusterFacts> = {}): ClusterFacts {
  return {
    version: 130016,
    walLevel: "logical",
    inRecovery: false,
    maxReplicationSlots: 10,
    maxWalSenders: 10,
    maxWorkerProcesses: 8,
    maxLogicalWorkers: 4,
    maxSlotWalKeepSizeMb: "-1",
    slots: [],
    walSenders: 0,
    logicalWorkers: 0,
    origins: 0,
    databases: ["app", "postgres"],
    subscriptions: [],
    synchronousStandbyNames: "",
    currentLsn: "0/5000000",
    ...over,
  };
}

function db(name: string, over: Partial<DatabaseFacts> = {}): DatabaseFacts {
  return { name, tables: 4, noIdentity: [], fullIdentity: [], fullNoEquality: [], unlogged: [], materializedViews: [], foreignTables: [], largeObjects: 0, sequences: [], ...over };
}

const codes = (items: { code: string; severity: string }[], sev = "error") => items.filter((i) => i.severity === sev).map((i) => i.code);

describe("readiness rules", () => {
  it("a ready cluster has no problems", () => {
    expect(codes(evaluateReadiness(cluster(), [db("app"), db("postgres")], ["app", "postgres"], names))).toEqual([]);
  });

  it("wal_level: the user's change, never ours", () => {
    const [p] = evaluateReadiness(cluster({ walLevel: "replica" }), [db("app"), db("postgres")], ["app", "postgres"], names);
    expect(p).toMatchObject({ code: "wal-level", severity: "error", objects: ["wal_level"] });
    expect(p.message).toMatch(/wal_level = replica/);
    expect(p.message).toMatch(/restart of live: that is your change/);
    expect(p.message).toMatch(/never restarts live/);
  });

  it("free slots and WAL senders, not counting our own from an earlier attempt", () => {
    const dbs = [db("app"), db("postgres")];
    // 3 needed (2 logical + 1 physical): 8 of 10 used by others -> refused.
    const used = Array.from({ length: 8 }, (_, i) => [`other${i}`, "physical", "", true, "reserved"] as [string, string, string, boolean, string]);
    const slots = evaluateReadiness(cluster({ slots: used }), dbs, ["app", "postgres"], names).find((i) => i.code === "replication-slots");
    expect(slots?.message).toMatch(/max_replication_slots = 10 with 8 in use by others; .*needs 3 free/);
    // Our own slots do not count: 7 others + 3 of ours -> fits.
    const ours = [names.physicalSlot, names.slot("app"), names.slot("postgres")].map((s) => [s, "logical", "app", true, "reserved"] as [string, string, string, boolean, string]);
    const r = evaluateReadiness(cluster({ slots: [...used.slice(0, 7), ...ours], walSenders: 3 }), dbs, ["app", "postgres"], names);
    expect(codes(r)).toEqual([]);
    expect(r.find((i) => i.code === "leftover-slots")?.severity).toBe("info");
    expect(codes(evaluateReadiness(cluster({ walSenders: 9 }), dbs, ["app", "postgres"], names))).toEqual(["wal-senders"]);
  });

  it("every database of the cluster, and only existing ones", () => {
    const r = evaluateReadiness(cluster({ databases: ["app", "billing", "postgres"] }), [db("app")], ["app", "nope"], names);
    expect(r.find((i) => i.code === "unknown-database")?.objects).toEqual(["nope"]);
    expect(r.find((i) => i.code === "database-not-listed")?.objects).toEqual(["billing", "postgres"]);
  });

  it("tables without a replica identity, FULL tables the subscriber cannot match, unlogged tables, large objects: named", () => {
    const r = evaluateReadiness(
      cluster(),
      [db("app", { noIdentity: ["public.pgbench_history", '"odd"."Name"'], fullNoEquality: ["public.events"], unlogged: ["public.cache"], largeObjects: 3 }), db("postgres")],
      ["app", "postgres"],
      names,
    );
    const by = (c: string) => r.find((i) => i.code === c);
    expect(by("replica-identity")).toMatchObject({ severity: "error", database: "app", objects: ["public.pgbench_history", '"odd"."Name"'] });
    expect(by("replica-identity")?.message).toMatch(/app: 2 table\(s\) have neither a primary key nor a replica identity.*public\.pgbench_history/);
    expect(by("full-identity-equality")?.message).toMatch(/public\.events/);
    expect(by("unlogged-tables")?.objects).toEqual(["public.cache"]);
    expect(by("large-objects")?.message).toMatch(/3 large object/);
  });

  it("sequences and materialized views are shown, not refused", () => {
    const r = evaluateReadiness(cluster(), [db("app", { sequences: ["public.s"], materializedViews: ["public.mv"] }), db("postgres")], ["app", "postgres"], names);
    expect(codes(r)).toEqual([]);
    expect(r.find((i) => i.code === "sequences")).toMatchObject({ severity: "info", objects: ["public.s"] });
    expect(r.find((i) => i.code === "materialized-views")?.severity).toBe("warning");
  });

  it("synchronous_standby_names with * is refused (our streams would become synchronous standbys)", () => {
    for (const v of ["*", "ANY 1 (*)", "FIRST 2 (a, *)"]) expect(codes(evaluateReadiness(cluster({ synchronousStandbyNames: v }), [db("app"), db("postgres")], ["app", "postgres"], names))).toEqual(["synchronous-standbys"]);
    expect(codes(evaluateReadiness(cluster({ synchronousStandbyNames: "ANY 1 (s1, s2)" }), [db("app"), db("postgres")], ["app", "postgres"], names))).toEqual([]);
  });

  it("says in preview when roll-back cannot keep the new live's writes, naming the databases", () => {
    const r = evaluateReadiness(cluster({ maxLogicalWorkers: 4, logicalWorkers: 3 }), [db("app"), db("postgres")], ["app", "postgres"], names);
    const w = r.find((i) => i.code === "rollback-workers");
    expect(w?.severity).toBe("warning");
    expect(w?.objects).toEqual(["max_logical_replication_workers", "postgres"]);
    expect(w?.message).toMatch(/roll-back cannot keep the new live's writes for postgres/);
  });

  it("a user may accept large objects or unlogged tables, never a missing replica identity", () => {
    const items = evaluateReadiness(cluster(), [db("app", { largeObjects: 2, noIdentity: ["public.t"] }), db("postgres")], ["app", "postgres"], names);
    const accepted = acceptFindings(items, ["large-objects"]);
    expect(accepted.find((i) => i.code === "large-objects")).toMatchObject({ severity: "warning" });
    expect(accepted.find((i) => i.code === "large-objects")?.message).toMatch(/\(accepted\)$/);
    expect(codes(accepted)).toEqual(["replica-identity"]);
    expect(inputError(() => acceptFindings(items, ["large-objects", "replica-identity"])).field).toBe("logical.accept[1]");
  });

  it("the new side's settings", () => {
    expect(requiredTargetSettings(3)).toEqual({ wal_level: "logical", max_replication_slots: 10, max_wal_senders: 10, max_logical_replication_workers: 5, max_worker_processes: 11 });
    expect(requiredTargetSettings(20).max_replication_slots).toBe(42);
    expect(() => requiredTargetSettings(0)).toThrow(InputError);
    expect(evaluateTarget(cluster({ walLevel: "replica", maxLogicalWorkers: 4 }), 3)[0]).toMatchObject({ code: "target-settings", objects: ["wal_level", "max_logical_replication_workers", "max_worker_processes"] });
    expect(evaluateTarget(cluster({ maxLogicalWorkers: 5, maxWorkerProcesses: 11 }), 3)).toEqual([]);
  });
});

describe("the conversion's recovery stop", () => {
  const log13 = `2026-12-02 18:12:27.445 UTC [13479] LOG:  started streaming WAL from primary at 0/5000000 on timeline 1
2026-12-02 18:12:27.498 UTC [13464] LOG:  recovery stopping before WAL location (LSN) "0/5645DC0"
2026-12-02 18:12:27.498 UTC [13464] LOG:  redo done at 0/5645DC0`;
  it("accepts only a stop right before the start point", () => {
    expect(recoveryStop(log13)).toEqual({ lsn: "0/5645DC0", before: true });
    expect(() => checkRecoveryStop(log13, "0/5645DC0")).not.toThrow();
    expect(() => checkRecoveryStop(log13.replace("stopping before", "stopping after"), "0/5645DC0")).toThrow(/stopped after 0\/5645DC0, not before 0\/5645DC0: transactions at the start point would be applied twice/);
    expect(() => checkRecoveryStop(log13, "0/5645DD0")).toThrow(/stopped before 0\/5645DC0, not before 0\/5645DD0/);
    expect(() => checkRecoveryStop("LOG:  database system is ready to accept connections", "0/5645DC0")).toThrow(/does not show recovery stopping/);
  });
});

describe("schema fingerprints", () => {
  it("equal schemas, equal digests; a difference names what DDL added, removed or changed", () => {
    const a = makeFingerprint("shop", { "table public.orders": "1", "index public.orders_pkey": "2", "table public.gone": "3" });
    const same = makeFingerprint("shop", { "index public.orders_pkey": "2", "table public.gone": "3", "table public.orders": "1" });
    expect(same.digest).toBe(a.digest);
    expect(diffFingerprints(a, same)).toEqual({ database: "shop", added: [], removed: [], changed: [] });
    const b = makeFingerprint("shop", { "table public.orders": "changed", "index public.orders_pkey": "2", "table public.added_later": "4" });
    expect(diffFingerprints(a, b)).toEqual({ database: "shop", added: ["table public.added_later"], removed: ["table public.gone"], changed: ["table public.orders"] });
    // Stored without entries: the difference is still detected, without names.
    expect(diffFingerprints({ ...a, entries: undefined }, b).changed[0]).toMatch(/details were not kept/);
  });
});

describe("plan validation (nothing runs)", () => {
  const live = { version: 13, socketDir: "/var/run/postgresql", port: 5432 };
  it("fills the replication sources and names bad fields", () => {
    const p = validatePlan({ tag: "main", databases: ["app"], live, target: { version: 15, socketDir: "/tmp/s", port: 5433 } }, "postgres");
    expect(p.liveSource).toEqual({ host: "/var/run/postgresql", port: 5432, user: "postgres" });
    expect(p.targetSource).toEqual({ host: "/tmp/s", port: 5433, user: "postgres" });
    expect(inputError(() => validatePlan({ tag: "main", databases: ["app"], live: { ...live, port: 80 } }, "postgres")).field).toBe("logical.live.port");
    expect(inputError(() => validatePlan({ tag: "main", databases: ["app"], live, target: live }, "postgres")).field).toBe("logical.target");
    expect(inputError(() => validatePlan({ tag: "main", databases: ["app"], live, target: { ...live, version: 12, port: 5433 } }, "postgres")).field).toBe("logical.target.version");
    expect(inputError(() => validatePlan({ tag: "main", databases: ["app"], live, liveSource: { host: "/x", port: 5432, user: "u", password: "p" } as never }, "postgres")).field).toBe("logical.liveSource.password");
    expect(inputError(() => validatePlan({ tag: "Main", databases: ["app"], live }, "postgres")).field).toBe("logical.tag");
  });
});
