/**
 * The new live as a service (issue 10, item 4's last part), without PostgreSQL: the plan's
 * rules on `newLive.dataDirLink` / `startCommand` / `stopCommand` (both the PgBouncer and the
 * DNS plan, and the CutOver's own check that the engine runs in preview), old state without
 * the fields, and the link itself on the local filesystem (a temporary directory): created,
 * re-pointed atomically, never over a real directory, never into live.
 */
import { describe, expect, it } from "vitest";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { resolveDnsPromotionPlan, resolvePromotionPlan } from "../../providers/plan/promotion";
import { resolveRehearsalPlan } from "../../providers/plan/rehearsal";
import { InputErrors } from "../../providers/errors";
import { checkCutOver, migrateCutOver, specOf, type CutOverInputs } from "../../providers/promotion/cutover";
import { linkPointsAt, linkProblem, pointLink, recordLink, restoreLink } from "../../providers/runner/newlive-service";
import { LocalHost } from "../../providers/host/local";
import { externalConfigOfStopped } from "../../providers/postgres/layout";

const rehearsal = resolveRehearsalPlan("r", {
  source: { dataset: "live/data", version: 13, port: 5432 },
  clone: { dataset: "clones/r" },
  to: 15,
  postgres: { port: 55432, database: "app" },
});
const opts = { sibling: (of: string, n: string) => [...of.split("/").slice(0, -1), n].join("/"), sanitize: (s: string) => s };
const endpoint = { name: "app", listenPort: 6432, database: "app", authType: "trust" as const };

function fieldsOf(fn: () => unknown): string[] {
  try {
    fn();
    return [];
  } catch (e) {
    if (!(e instanceof InputErrors)) throw e;
    return e.errors.map((x) => x.field);
  }
}
const bouncer = (newLive: Record<string, unknown>) => fieldsOf(() => resolvePromotionPlan("go", { endpoint, newLive }, rehearsal, opts));
const dns = (newLive: Record<string, unknown>) =>
  fieldsOf(() => resolveDnsPromotionPlan("go", { database: "app", liveAddress: "10.0.0.1", newLiveAddress: "10.0.0.2", newLive }, rehearsal, opts));

describe("newLive.dataDirLink / startCommand / stopCommand in the plan", () => {
  const start = ["pg_ctlcluster", "15", "main", "start"];
  const stop = ["pg_ctlcluster", "15", "main", "stop"];

  it("are carried into the plan as given", () => {
    const p = resolvePromotionPlan("go", { endpoint, newLive: { dataDirLink: "/var/lib/postgresql/15/main", startCommand: start, stopCommand: stop } }, rehearsal, opts);
    expect(p.newLive).toMatchObject({ dataDirLink: "/var/lib/postgresql/15/main", startCommand: start, stopCommand: stop });
    const none = resolvePromotionPlan("go", { endpoint }, rehearsal, opts);
    expect(Object.keys(none.newLive)).not.toContain("dataDirLink");
    expect(Object.keys(none.newLive)).not.toContain("startCommand");
  });

  for (const [name, check] of [["PgBouncer plan", bouncer], ["DNS plan", dns]] as const) {
    it(`${name}: a command needs the link, each field is validated, naming it`, () => {
      expect(check({ dataDirLink: "/var/lib/postgresql/15/main", startCommand: start, stopCommand: stop })).toEqual([]);
      expect(check({ dataDirLink: "/var/lib/postgresql/15/main" })).toEqual([]);
      expect(check({ startCommand: start })).toEqual(["newLive.dataDirLink"]);
      expect(check({ stopCommand: stop })).toEqual(["newLive.dataDirLink"]);
      expect(check({ dataDirLink: "var/lib/postgresql/15/main", startCommand: start })).toEqual(["newLive.dataDirLink"]);
      expect(check({ dataDirLink: "/var/lib/postgresql/15/../main" })).toEqual(["newLive.dataDirLink"]);
      expect(check({ dataDirLink: "/var/lib/post gresql" })).toEqual(["newLive.dataDirLink"]);
      expect(check({ dataDirLink: "/x", startCommand: "pg_ctlcluster 15 main start" })).toEqual(["newLive.startCommand"]);
      expect(check({ dataDirLink: "/x", stopCommand: [] })).toEqual(["newLive.stopCommand"]);
      expect(check({ dataDirLink: "/x", startCommand: ["a\nb"] })).toEqual(["newLive.startCommand"]);
    });
  }
});

const inputs = (newLive: Record<string, unknown>): CutOverInputs =>
  ({
    label: "go",
    owner: "o",
    stack: "s",
    promote: true,
    endpoint: { name: "app", listenPort: 6432, authType: "trust", databases: { app: { host: "/var/run/postgresql", port: 5432, dbname: "app" } } },
    database: "app",
    pauseTimeoutMs: 10_000,
    live: { dataset: "live/data", pgdata: "main", version: 13, osUser: "postgres", port: 5432, socketDir: "/var/run/postgresql" },
    newLive: { dataset: "clones/go-live-pg15", port: 55442, socketDir: "/var/run/postgresql", listen: "", ...newLive },
    to: 15,
    mode: "link",
    steps: [],
    assertions: [],
    rehearsal: { name: "r", status: "passed", predictedCutoverMs: 1000 },
  }) as unknown as CutOverInputs;

describe("the CutOver's check (preview) and its state", () => {
  it("refuses a start command without the link, and a malformed link, naming the field", () => {
    const f = (n: Record<string, unknown>) => checkCutOver(inputs(n)).map((e) => e.field);
    expect(f({ dataDirLink: "/var/lib/postgresql/15/main", startCommand: ["pg_ctlcluster", "15", "main", "start"] })).toEqual([]);
    expect(f({ startCommand: ["pg_ctlcluster", "15", "main", "start"] })).toEqual(["newLive.dataDirLink"]);
    expect(f({ dataDirLink: "relative" })).toEqual(["newLive.dataDirLink"]);
  });

  it("state written before the fields existed: migrated as it is, the spec has no link and no commands (pg_ctl, as before)", () => {
    const old = inputs({}) as unknown as Record<string, unknown>;
    const m = migrateCutOver({ ...old, state: "promoted", events: [] }) as unknown as CutOverInputs;
    const spec = specOf(m);
    expect(spec.newLive.dataDirLink).toBeUndefined();
    expect(spec.newLive.startCommand).toBeUndefined();
    expect(checkCutOver(m)).toEqual([]);
  });

  it("carries the fields into the cut-over's spec", () => {
    const spec = specOf(inputs({ dataDirLink: "/l", startCommand: ["a"], stopCommand: ["b"] }));
    expect(spec.newLive).toMatchObject({ dataDirLink: "/l", startCommand: ["a"], stopCommand: ["b"] });
  });
});

describe("the link on the host (a temporary directory)", () => {
  const host = new LocalHost();
  const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), "usnl-link-"));

  it("is made, then re-pointed atomically to the next generation", async () => {
    const d = tmp();
    const link = `${d}/15-main`;
    fs.mkdirSync(`${d}/gen1`);
    fs.mkdirSync(`${d}/gen2`);
    expect(await linkProblem(host, link, [`${d}/live`])).toBeUndefined();
    await pointLink(host, link, `${d}/gen1`, "root");
    expect(fs.readlinkSync(link)).toBe(`${d}/gen1`);
    expect(await linkPointsAt(host, link, `${d}/gen1`)).toBe(true);
    expect(await linkProblem(host, link, [`${d}/live`])).toBeUndefined();
    await pointLink(host, link, `${d}/gen2`, "root");
    expect(fs.readlinkSync(link)).toBe(`${d}/gen2`);
    expect(await linkPointsAt(host, link, `${d}/gen1`)).toBe(false);
    expect(fs.existsSync(`${link}.understudy-new`)).toBe(false);
    fs.rmSync(d, { recursive: true });
  });

  it("never replaces a real directory (refused, and untouched)", async () => {
    const d = tmp();
    const link = `${d}/15-main`;
    fs.mkdirSync(link);
    fs.writeFileSync(`${link}/PG_VERSION`, "15\n");
    expect((await linkProblem(host, link, []))?.message).toMatch(/newLive.dataDirLink: .* exists and is not a symlink/);
    await expect(pointLink(host, link, `${d}/gen1`, "root")).rejects.toThrow(/is not a symlink/);
    expect(fs.lstatSync(link).isDirectory()).toBe(true);
    expect(fs.readFileSync(`${link}/PG_VERSION`, "utf8")).toBe("15\n");
    fs.rmSync(d, { recursive: true });
  });

  it("refuses a path inside live, a link that points into live, and a missing directory", async () => {
    const d = tmp();
    fs.mkdirSync(`${d}/live/main`, { recursive: true });
    expect((await linkProblem(host, `${d}/live/main/x`, [`${d}/live`]))?.message).toMatch(/inside live's/);
    fs.symlinkSync(`${d}/live/main`, `${d}/13-main`);
    expect((await linkProblem(host, `${d}/13-main`, [`${d}/live/main`, `${d}/live`]))?.message).toMatch(/points at .*live's/);
    expect((await linkProblem(host, `${d}/nodir/15-main`, [`${d}/live`]))?.message).toMatch(/directory of .* does not exist/);
    fs.rmSync(d, { recursive: true });
  });
});

describe("the link put back after an undone attempt (record, then restore; a temporary directory)", () => {
  const host = new LocalHost();
  const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), "uslu-link-"));

  it("absent before: the link the attempt made is removed; restoring again changes nothing", async () => {
    const d = tmp();
    const link = `${d}/15-main`;
    const rec = await recordLink(host, link);
    expect(rec).toEqual({ path: link, before: { kind: "absent" } });
    await pointLink(host, link, `${d}/gen1`, "root");
    const log: string[] = [];
    expect(await restoreLink(host, rec, "root", (m) => log.push(m))).toBe("removed");
    expect(fs.lstatSync(link, { throwIfNoEntry: false })).toBeUndefined();
    expect(log).toEqual([`${link} removed (the undone attempt had created it; it pointed at ${d}/gen1)`]);
    expect(await restoreLink(host, rec, "root", (m) => log.push(m))).toBe("unchanged");
    expect(log).toHaveLength(1);
    fs.rmSync(d, { recursive: true });
  });

  it("a link before: re-pointed at exactly its previous target (a relative one stays relative), atomically", async () => {
    const d = tmp();
    const link = `${d}/15-main`;
    fs.mkdirSync(`${d}/gen1`);
    fs.symlinkSync("gen1", link);
    const rec = await recordLink(host, link);
    expect(rec.before).toEqual({ kind: "link", target: "gen1" });
    await pointLink(host, link, `${d}/gen2`, "root");
    const log: string[] = [];
    expect(await restoreLink(host, rec, "root", (m) => log.push(m))).toBe("restored");
    expect(fs.readlinkSync(link)).toBe("gen1");
    expect(fs.existsSync(`${link}.understudy-new`)).toBe(false);
    expect(log[0]).toMatch(/15-main -> gen1 again \(as before the undone attempt; it pointed at .*gen2\)/);
    expect(await restoreLink(host, rec, "root")).toBe("unchanged");
    // Gone meanwhile: made again as it was.
    fs.unlinkSync(link);
    expect(await restoreLink(host, rec, "root")).toBe("restored");
    expect(fs.readlinkSync(link)).toBe("gen1");
    fs.rmSync(d, { recursive: true });
  });

  for (const before of ["absent", "a link"] as const) {
    it(`${before} before, a real directory or file there now: left as it is, and said`, async () => {
      const d = tmp();
      const link = `${d}/15-main`;
      if (before === "a link") fs.symlinkSync(`${d}/gen1`, link);
      const rec = await recordLink(host, link);
      fs.rmSync(link, { force: true });
      fs.mkdirSync(link);
      fs.writeFileSync(`${link}/PG_VERSION`, "15\n");
      const log: string[] = [];
      expect(await restoreLink(host, rec, "root", (m) => log.push(m))).toBe("left");
      expect(fs.readFileSync(`${link}/PG_VERSION`, "utf8")).toBe("15\n");
      expect(log[0]).toMatch(/15-main is no longer a symlink .*left as it is/);
      fs.rmSync(link, { recursive: true });
      fs.writeFileSync(link, "a file\n");
      expect(await restoreLink(host, rec, "root")).toBe("left");
      expect(fs.readFileSync(link, "utf8")).toBe("a file\n");
      fs.rmSync(d, { recursive: true });
    });
  }

  it("recording refuses something other than a symlink (it is never ours)", async () => {
    const d = tmp();
    fs.mkdirSync(`${d}/15-main`);
    await expect(recordLink(host, `${d}/15-main`)).rejects.toThrow(/newLive.dataDirLink: .* is not a symlink/);
    fs.rmSync(d, { recursive: true });
  });
});

describe("a stopped Debian live's external configuration (the layout read after a promotion stopped it)", () => {
  const opts = `/usr/lib/postgresql/13/bin/postgres "-D" "/srv/p/live/main" "-c" "config_file=/etc/postgresql/13/main/postgresql.conf"\n`;
  const conf = [
    "data_directory = '/srv/p/live/main'",
    "hba_file = '/etc/postgresql/13/main/pg_hba.conf'\t# host-based authentication file",
    "#ident_file = '/elsewhere'",
    "ident_file = '/etc/postgresql/13/main/pg_ident.conf'",
  ].join("\n");

  it("is what the running live reports: config_file from postmaster.opts, hba_file and ident_file from that file", () => {
    expect(externalConfigOfStopped("/srv/p/live/main", opts, conf)).toEqual([
      { setting: "config_file", path: "/etc/postgresql/13/main/postgresql.conf" },
      { setting: "hba_file", path: "/etc/postgresql/13/main/pg_hba.conf" },
      { setting: "ident_file", path: "/etc/postgresql/13/main/pg_ident.conf" },
    ]);
  });

  it("is empty for a live started without config_file (its configuration is in PGDATA)", () => {
    expect(externalConfigOfStopped("/srv/p/live/main", `/usr/lib/postgresql/13/bin/postgres "-D" "/srv/p/live/main" "-p" "5432"\n`, undefined)).toEqual([]);
  });
});
