/**
 * How each rehearsal step's time grows with data size and with relation count, measured with
 * the library's own drivers (the calls the rehearsal steps make) on a file-backed zfs-fuse pool:
 *
 *   - size axis: one PostgreSQL 13 cluster grown in place from ~10 MB to GROWTH_SIZES' largest
 *     (1 GB tables of ~140-byte rows with a bigint primary key), a handful of relations;
 *   - relation axis: another cluster grown from 100 to GROWTH_TABLES' largest tables (each a
 *     heap, its primary key index, a TOAST table and its index: four relations), a few MB.
 *
 * At each level: CHECKPOINT on the source, then on a fresh clone of it: snapshot + clone,
 * recover (crash recovery with 13, clean stop), verification on the old version (row counts,
 * full checksums, 1% sampled checksums), pg_upgrade --check, pg_upgrade --link, start 15,
 * vacuumdb --analyze-in-stages, row counts on 15; then the clone is destroyed.
 *
 * Prints Markdown tables, the fitted model (time = a + b·bytes + c·relations per step, the
 * object to paste into providers/rehearsal/predict.ts) and what each step grows with.
 * Raw results go to bench/results/growth-<axis>.json (after every level, so a long run that
 * is stopped keeps what it measured).
 *
 *   npm run bench -- growth
 *   GROWTH_SIZES=10M,100M,1G,4G GROWTH_TABLES=100,1000 npm run bench -- growth
 *   GROWTH_AXES=relations ...   (size | relations | size,relations; default both)
 *   GROWTH_REPORT_ONLY=1 ...    (print tables and the fit from the saved results)
 *
 * Pool `usgrow` (sparse image in /var/tmp/understudy-pools), ports 29010-29029.
 */
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { destroyPoolByName, POOL_DIR, sh } from "../test/harness/zfs";
import { LocalHost } from "../providers/host/local";
import { ZfsDriver } from "../providers/zfs/driver";
import { PostgresDriver } from "../providers/postgres/driver";
import { collect } from "../providers/rehearsal/verify";
import { fitGrowth, fmtBytes, fmtDuration, growsWith, GrowthModel, GrowthPoint, predictGrowth, predictionSentence, StepGrowth } from "../providers/rehearsal/predict";

const POOL = "usgrow";
const MNT = `/srv/${POOL}`;
const BIN13 = "/usr/lib/postgresql/13/bin";
const SOCK = `/tmp/understudy-${POOL}-sock`;
const OWNER = "bench/growth";
const RESULTS = path.resolve(__dirname, "results");

interface Axis {
  name: "size" | "relations";
  dataset: string;
  port: number;
  /** Ports for the clone: recover/private servers, pg_upgrade's old and new, the upgraded server. */
  tempPort: number;
  newPort: number;
}
const AXES: Record<Axis["name"], Axis> = {
  size: { name: "size", dataset: `${POOL}/size`, port: 29010, tempPort: 29011, newPort: 29014 },
  relations: { name: "relations", dataset: `${POOL}/rels`, port: 29020, tempPort: 29021, newPort: 29024 },
};

/** The steps measured at every level, in rehearsal order. */
const STEPS = ["clone", "recover", "counts13", "checksums", "sampled", "check", "upgrade", "start", "analyze", "counts15"] as const;
type Step = (typeof STEPS)[number];
const LABEL: Record<Step, string> = {
  clone: "snapshot + clone",
  recover: "recover (crash recovery, clean stop)",
  counts13: "row counts, every table (PostgreSQL 13)",
  checksums: "checksums, every row of every table",
  sampled: "checksums, 1% sample by primary key",
  check: "pg_upgrade --check",
  upgrade: "pg_upgrade --link",
  start: "start PostgreSQL 15",
  analyze: "vacuumdb --analyze-in-stages",
  counts15: "row counts, every table (PostgreSQL 15)",
};

interface Level {
  target: string;
  bytes: number;
  relations: number;
  tables: number;
  loadMs: number;
  checkpointMs: number;
  ms: Partial<Record<Step, number>>;
  errors: Partial<Record<Step, string>>;
}

interface AxisResult {
  axis: Axis["name"];
  machine: string;
  date: string;
  levels: Level[];
}

const say = (m: string) => process.stderr.write(`[growth ${new Date().toISOString().slice(11, 19)}] ${m}\n`);
const psql = (port: number, sql: string, db = "postgres") =>
  execFileSync("runuser", ["-u", "postgres", "--", `${BIN13}/psql`, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", SOCK, "-p", String(port), "-d", db, "-f", "-"], {
    input: sql,
    encoding: "utf8",
    maxBuffer: 256 * 1024 * 1024,
  }).trim();

function parseSize(s: string): number {
  const m = /^(\d+(?:\.\d+)?)([KMGT]?)$/i.exec(s.trim());
  if (!m) throw new Error(`GROWTH_SIZES: ${JSON.stringify(s)} is not a size like 10M or 4G`);
  return Math.round(Number(m[1]) * 1024 ** " KMGT".indexOf((m[2] || " ").toUpperCase()));
}

function machine(): string {
  const cpu = fs.readFileSync("/proc/cpuinfo", "utf8").match(/model name\s*:\s*(.*)/)?.[1]?.trim() ?? "unknown CPU";
  return `${cpu}, ${os.cpus().length} cores, ${Math.round(os.totalmem() / 2 ** 30)} GiB`;
}

async function timed<T>(fn: () => Promise<T>): Promise<{ ms: number; v: T }> {
  const t = process.hrtime.bigint();
  const v = await fn();
  return { ms: Number(process.hrtime.bigint() - t) / 1e6, v };
}

// ------------------------------------------------------------------------------ the sources

function ensurePool(sizeBytes: number): void {
  if (sh(["zpool", "list", "-H", "-o", "name"], { allowFail: true }).split("\n").includes(POOL)) return;
  fs.mkdirSync(POOL_DIR, { recursive: true });
  const img = `${POOL_DIR}/${POOL}.img`;
  sh(["truncate", "-s", String(sizeBytes), img]);
  sh(["zpool", "create", "-f", "-m", MNT, POOL, img]);
  say(`pool ${POOL} on ${img} (sparse, ${fmtBytes(sizeBytes)})`);
}

/** A PostgreSQL 13 source cluster on its own dataset, configured for bulk loading, started. */
function ensureSource(a: Axis): string {
  const pgdata = `/srv/${a.dataset}/main`;
  if (!sh(["zfs", "list", "-H", "-o", "name", a.dataset], { allowFail: true }).trim()) sh(["zfs", "create", a.dataset]);
  fs.mkdirSync(SOCK, { recursive: true });
  sh(["chown", "postgres:postgres", `/srv/${a.dataset}`, SOCK]);
  if (!fs.existsSync(`${pgdata}/PG_VERSION`)) {
    sh(["runuser", "-u", "postgres", "--", `${BIN13}/initdb`, "-D", pgdata, "--data-checksums", "--locale=C.UTF-8", "--encoding=UTF8", "-U", "postgres", "--auth-local=peer"]);
    // wal_level=minimal: tables created and filled in one transaction skip the WAL (half the writes).
    // max_locks_per_transaction: pg_dump inside pg_upgrade locks every table in one transaction.
    fs.appendFileSync(
      `${pgdata}/postgresql.conf`,
      "\n# bench/growth.ts\nwal_level = minimal\nmax_wal_senders = 0\narchive_mode = off\nshared_buffers = 512MB\nmax_wal_size = 8GB\n" +
        "checkpoint_timeout = 1h\nsynchronous_commit = off\nmax_locks_per_transaction = 256\nautovacuum = off\n",
    );
  }
  return pgdata;
}

function startSource(a: Axis, pgdata: string): void {
  try {
    execFileSync("runuser", ["-u", "postgres", "--", `${BIN13}/pg_ctl`, "-D", pgdata, "status"], { stdio: "ignore" });
  } catch {
    sh(["runuser", "-u", "postgres", "--", `${BIN13}/pg_ctl`, "-D", pgdata, "-l", `/srv/${a.dataset}/server.log`, "-w", "-t", "600", "-o", `-p ${a.port} -k ${SOCK} -c listen_addresses=''`, "start"]);
  }
}

function stopSource(pgdata: string): void {
  sh(["runuser", "-u", "postgres", "--", `${BIN13}/pg_ctl`, "-D", pgdata, "-m", "fast", "-w", "-t", "600", "stop"], { allowFail: true });
}

/** The same facts verify.ts's collect() records in the baseline, summed over both databases. */
function clusterSize(port: number): { bytes: number; relations: number; tables: number } {
  const out = { bytes: 0, relations: 0, tables: 0 };
  for (const db of ["postgres", "app"]) {
    const [bytes, relations, tables] = psql(
      port,
      "SELECT pg_database_size(current_database()), (SELECT count(*) FROM pg_class WHERE oid >= 16384), " +
        "(SELECT count(*) FROM pg_class WHERE oid >= 16384 AND relkind IN ('r','p','m'))",
      db,
    ).split("|");
    out.bytes += Number(bytes);
    out.relations += Number(relations);
    out.tables += Number(tables);
  }
  return out;
}

/** Grow the size axis' cluster to `target` bytes: 1 GiB tables, created and filled in one transaction each. */
function growBytes(port: number, target: number): void {
  for (;;) {
    const now = clusterSize(port).bytes;
    if (now >= target * 0.97) return;
    const n = Number(psql(port, "SELECT count(*) FROM pg_class WHERE relname LIKE 'big\\_%' AND relkind = 'r'", "app")) + 1;
    const chunk = Math.min(target - now, 1024 ** 3);
    // ~170 bytes per row on disk with the primary key index (measured: 141 heap + ~29 index).
    const rows = Math.max(1000, Math.floor(chunk / 170));
    const t = `big_${String(n).padStart(3, "0")}`;
    say(`  loading ${t}: ${rows.toLocaleString("en-US")} rows (~${fmtBytes(chunk)}; cluster at ${fmtBytes(now)})`);
    psql(
      port,
      `BEGIN;\nCREATE TABLE ${t} (id bigint NOT NULL, at timestamptz NOT NULL, qty int NOT NULL, pad text NOT NULL);\n` +
        `INSERT INTO ${t} SELECT g, '2026-01-01'::timestamptz + g * interval '1 second', (g % 1000)::int, repeat(md5(g::text), 3) FROM generate_series(1, ${rows}) g;\n` +
        `ALTER TABLE ${t} ADD PRIMARY KEY (id);\nCOMMIT;\n` +
        // As autovacuum would have on a settled live database: hint bits set, visibility map, statistics.
        `VACUUM (ANALYZE) ${t};\n`,
      "app",
    );
  }
}

/** Grow the relation axis' cluster to `target` tables (4 relations each), 500 per transaction. */
function growTables(port: number, target: number): void {
  const now = Number(psql(port, "SELECT count(*) FROM pg_class WHERE relname LIKE 'rel\\_%' AND relkind = 'r'", "app"));
  for (let from = now + 1; from <= target; from += 500) {
    const to = Math.min(target, from + 499);
    psql(
      port,
      `DO $$ BEGIN FOR i IN ${from}..${to} LOOP
         EXECUTE format('CREATE TABLE rel_%s (id int PRIMARY KEY, name text NOT NULL, at timestamptz NOT NULL DEFAULT now())', lpad(i::text, 5, '0'));
         EXECUTE format('INSERT INTO rel_%s (id, name) SELECT g, md5(g::text) FROM generate_series(1, 20) g', lpad(i::text, 5, '0'));
       END LOOP; END $$;`,
      "app",
    );
  }
}

// ------------------------------------------------------------------------------ one level

async function measureLevel(a: Axis, tag: string, lvl: Level): Promise<void> {
  const host = new LocalHost();
  const z = new ZfsDriver(host);
  const pg = new PostgresDriver(host);
  const snap = `${a.dataset}@g-${tag}`;
  const clone = `${POOL}/clone-${a.name}-${tag}`;
  const oldDir = `/srv/${clone}/main`;
  const newDir = `/srv/${clone}/main.pg15`;
  const run = async <T>(step: Step, fn: () => Promise<T>): Promise<T | undefined> => {
    try {
      const r = await timed(fn);
      lvl.ms[step] = Math.round(r.ms);
      say(`  ${LABEL[step].padEnd(42)} ${fmtDuration(r.ms)}`);
      return r.v;
    } catch (e) {
      lvl.errors[step] = (e as Error).message.split("\n").slice(0, 6).join(" ");
      say(`  ${LABEL[step]} FAILED: ${lvl.errors[step]}`);
      return undefined;
    }
  };
  lvl.checkpointMs = Math.round((await timed(async () => psql(a.port, "CHECKPOINT"))).ms);
  try {
    await run("clone", async () => {
      await z.snapshot(snap, { "understudy:owner": OWNER });
      await z.clone(snap, clone, { "understudy:owner": OWNER });
    });
    await run("recover", () => pg.recoverCrashConsistent(oldDir, 13, a.tempPort));
    const inst13 = await pg.resolveInstall(13, ["pg_ctl", "psql"]);
    const bigTables = a.name === "size" ? psql(a.port, "SELECT string_agg('public.' || relname, ',' ORDER BY relname) FROM pg_class WHERE relname LIKE 'big\\_%' AND relkind = 'r'", "app").split(",").filter(Boolean) : [];
    const sumTables = a.name === "size" ? bigTables.map((t) => `app.${t}`) : Array.from({ length: 100 }, (_, i) => `app.public.rel_${String(i + 1).padStart(5, "0")}`);
    await pg.withPrivateServer("bench", oldDir, inst13, a.tempPort, {}, async (srv) => {
      const q = (sql: string, db: string) => pg.adminQuery(srv, sql, { database: db, timeoutMs: 24 * 3600_000 });
      await run("counts13", () => collect(q, { rowCounts: "exact", checksumTables: [], assertions: [] }));
      await run("checksums", () => collect(q, { rowCounts: "none", checksumTables: sumTables, assertions: [] }));
      await run("sampled", () => collect(q, { rowCounts: "none", checksumTables: sumTables, assertions: [], checksumSamplePercent: 1 }));
    });
    const opts = { mode: "link" as const, oldPort: a.tempPort + 1, newPort: a.tempPort + 2 };
    await run("check", () => pg.upgradeCheck(oldDir, newDir, 13, 15, opts));
    const up = await run("upgrade", () => pg.upgrade(oldDir, newDir, 13, 15, opts));
    if (!up) return;
    await run("start", () => pg.start(newDir, 15, { port: a.newPort, socketDir: SOCK }));
    await run("analyze", () => pg.postUpgrade(newDir, 15, { server: { port: a.newPort, socketDir: SOCK }, analyze: "in-stages", updateExtensionsSql: up.updateExtensionsSql }));
    const srv15 = { version: 15, socketDir: SOCK, port: a.newPort };
    await run("counts15", () => collect((sql, db) => pg.adminQuery(srv15, sql, { database: db, timeoutMs: 24 * 3600_000 }), { rowCounts: "exact", checksumTables: [], assertions: [] }));
  } finally {
    await pg.stopIfPresent(newDir, 15, { mode: "fast" }).catch(() => undefined);
    await pg.stopIfPresent(oldDir, 13, { mode: "fast" }).catch(() => undefined);
    for (let i = 0; i < 20; i++) {
      if (!sh(["zfs", "list", "-H", "-o", "name", clone], { allowFail: true }).trim()) break;
      if (sh(["zfs", "destroy", "-r", clone], { allowFail: true }) !== "" || !sh(["zfs", "list", "-H", "-o", "name", clone], { allowFail: true }).trim()) break;
      await new Promise((r) => setTimeout(r, 1000));
    }
    sh(["zfs", "destroy", snap], { allowFail: true });
  }
}

async function runAxis(a: Axis, targets: string[]): Promise<AxisResult> {
  const res: AxisResult = { axis: a.name, machine: machine(), date: new Date().toISOString().slice(0, 10), levels: [] };
  const pgdata = ensureSource(a);
  startSource(a, pgdata);
  if (!psql(a.port, "SELECT 1 FROM pg_database WHERE datname = 'app'")) psql(a.port, "CREATE DATABASE app");
  if (!psql(a.port, "SELECT 1 FROM pg_database WHERE datname = 'app'")) throw new Error("database app missing");
  try {
    for (const target of targets) {
      say(`${a.name} axis: level ${target}`);
      const t0 = Date.now();
      if (a.name === "size") growBytes(a.port, parseSize(target));
      else growTables(a.port, Number(target));
      const loadMs = Date.now() - t0;
      const size = clusterSize(a.port);
      say(`  source: ${fmtBytes(size.bytes)}, ${size.relations} relations, ${size.tables} tables (loaded in ${fmtDuration(loadMs)})`);
      const lvl: Level = { target, ...size, loadMs, checkpointMs: 0, ms: {}, errors: {} };
      await measureLevel(a, target.toLowerCase(), lvl);
      res.levels.push(lvl);
      fs.mkdirSync(RESULTS, { recursive: true });
      fs.writeFileSync(path.join(RESULTS, `growth-${a.name}.json`), JSON.stringify(res, null, 2) + "\n");
    }
  } finally {
    stopSource(pgdata);
  }
  return res;
}

// ------------------------------------------------------------------------------ tables and fit

const cellMs = (l: Level, s: Step) => (l.errors[s] ? "failed" : l.ms[s] === undefined ? "" : fmtDuration(l.ms[s]!));

function table(r: AxisResult): string {
  const out = [
    `| ${r.axis === "size" ? "size" : "tables"} | bytes | relations | ${STEPS.map((s) => LABEL[s]).join(" | ")} |`,
    `| ${["---", "---:", "---:", ...STEPS.map(() => "---:")].join(" | ")} |`,
  ];
  for (const l of r.levels) {
    out.push(`| ${l.target} | ${fmtBytes(l.bytes)} | ${l.relations.toLocaleString("en-US")} | ${STEPS.map((s) => cellMs(l, s)).join(" | ")} |`);
  }
  return out.join("\n");
}

/** Steps of the model: what a rehearsal and a replay cut-over consist of, from the measured ones. */
const MODEL_STEPS: Array<{ key: string; from: Step; in: StepGrowth["in"] }> = [
  { key: "clone", from: "clone", in: ["rehearsal", "cutover"] },
  { key: "recover", from: "recover", in: ["rehearsal"] },
  { key: "baseline", from: "counts13", in: ["rehearsal"] },
  { key: "check", from: "check", in: ["rehearsal"] },
  { key: "upgrade", from: "upgrade", in: ["rehearsal", "cutover"] },
  { key: "start", from: "start", in: ["rehearsal", "cutover"] },
  { key: "analyze", from: "analyze", in: ["rehearsal"] },
  { key: "verify", from: "counts15", in: ["rehearsal"] },
  { key: "checksum", from: "checksums", in: [] },
  { key: "checksumSampled", from: "sampled", in: [] },
];

/** What the measurements cannot show, per step. */
const NOTES: Record<string, string> = {
  clone: "ZFS snapshot and clone are constant-time by design (copy-on-write); EBS snapshots are not (see the EBS backend).",
  analyze:
    "The size axis grew by adding 1 GB tables, so bytes and large tables grew together. ANALYZE samples at most 300 x statistics_target rows " +
    "per table: with fewer, larger tables it grows with the number of tables rather than their size. Read the per-GB term as an upper bound.",
  baseline: "count(*) reads each table (an index-only scan when the visibility map allows). Above rowCountLimitBytes a table is compared by size instead.",
  verify: "The same counts on the upgraded clone. Above rowCountLimitBytes a table is compared by size instead.",
  upgrade: "pg_upgrade --link dumps and restores the schema and links each relation's files: it grows with relations, not bytes.",
};

function fit(results: AxisResult[]): GrowthModel {
  const levels = results.flatMap((r) => r.levels);
  const bytes = levels.map((l) => l.bytes);
  const rels = levels.map((l) => l.relations);
  const maxB = Math.max(...bytes);
  const maxR = Math.max(...rels);
  const steps: GrowthModel["steps"] = {};
  for (const m of MODEL_STEPS) {
    const pts: GrowthPoint[] = levels.filter((l) => l.ms[m.from] !== undefined).map((l) => ({ bytes: l.bytes, relations: l.relations, ms: l.ms[m.from]! }));
    if (!pts.length) continue;
    // A term that does not matter within the measured range (noise, e.g. a snapshot that took
    // 0.9 s once) is dropped and the step refitted without it: it must not be extrapolated.
    const first = fitGrowth(pts);
    const w = growsWith(first, maxB, maxR);
    const g = fitGrowth(pts, { bytes: w === "bytes" || w === "both", relations: w === "relations" || w === "both" });
    const label = m.key === "baseline" ? "baseline row counts (old version)" : m.key === "verify" ? "verification row counts (new version)" : LABEL[m.from];
    steps[m.key] = { label, a: round(g.a), b: g.b, c: round(g.c, 4), growsWith: growsWith(g, maxB, maxR), in: m.in, ...(NOTES[m.key] ? { note: NOTES[m.key] } : {}) };
  }
  const r0 = results[0];
  return {
    basis: {
      machine: r0?.machine ?? machine(),
      date: results.map((r) => r.date).sort().pop() ?? "",
      storage: "zfs-fuse 0.7 on a sparse file (file-backed pool), one shared virtual disk",
      versions: "PostgreSQL 13 -> 15 (Debian), pg_upgrade --link",
      bytes: { min: Math.min(...bytes), max: maxB },
      relations: { min: Math.min(...rels), max: maxR },
      command: "npm run bench -- growth",
      note:
        "Warm cache: the clone shares its blocks with the source just loaded. Checksums are per byte checksummed and are " +
        "not in the totals (you choose the tables). Extrapolating far beyond the measured range assumes the same per-byte " +
        "and per-relation rates: faster disks and more cores lower b; pg_upgrade --jobs lowers c for many databases.",
    },
    steps,
  };
}

const round = (x: number, d = 0) => Number(x.toFixed(d));

function modelTable(m: GrowthModel): string {
  const out = [
    "| step | a: fixed | b: per GB | c: per 1,000 relations | grows with | in |",
    "| --- | ---: | ---: | ---: | --- | --- |",
  ];
  for (const [k, g] of Object.entries(m.steps)) {
    out.push(`| ${g.label} (\`${k}\`) | ${fmtDuration(g.a)} | ${g.b ? fmtDuration(g.b * 1024 ** 3) : "—"} | ${g.c ? fmtDuration(g.c * 1000) : "—"} | ${g.growsWith} | ${g.in.join(", ") || "per table you checksum"} |`);
  }
  return out.join("\n");
}

function predictionTable(m: GrowthModel): string {
  const cases = [
    { bytes: 10 * 1024 ** 3, relations: 1_000 },
    { bytes: 1024 ** 4, relations: 10_000 },
    { bytes: 100 * 1024 ** 4, relations: 40_000 },
  ];
  const out = ["| source | " + Object.values(m.steps).map((g) => g.label).join(" | ") + " | rehearsal | cut-over pause (replay) |", "| --- |" + " ---: |".repeat(Object.keys(m.steps).length + 2)];
  for (const c of cases) {
    const p = predictGrowth(c, m);
    out.push(`| ${fmtBytes(c.bytes)}, ${c.relations.toLocaleString("en-US")} relations | ${p.steps.map((s) => fmtDuration(s.ms)).join(" | ")} | ${fmtDuration(p.rehearsalMs)} | ${fmtDuration(p.cutoverMs)} |`);
  }
  out.push("");
  out.push(predictionSentence(predictGrowth(cases[2], m)));
  return out.join("\n");
}

function print(results: AxisResult[], tookMs?: number): void {
  for (const r of results) {
    console.log(`\n### ${r.axis === "size" ? "Step time against data size" : "Step time against relation count"} (${r.date}, ${r.machine})\n`);
    console.log(table(r));
    const errs = r.levels.flatMap((l) => Object.entries(l.errors).map(([s, e]) => `- ${l.target}, ${LABEL[s as Step]}: ${e}`));
    if (errs.length) console.log("\nFailures:\n" + errs.join("\n"));
    console.log(`\nLoading the source: ${r.levels.map((l) => `${l.target} ${fmtDuration(l.loadMs)}`).join(", ")}.`);
  }
  const model = fit(results);
  console.log("\n### Fitted growth: time = a + b·bytes + c·relations\n");
  console.log(modelTable(model));
  console.log("\n### Predictions from the fit\n");
  console.log(predictionTable(model));
  if (tookMs !== undefined) console.log(`\nThe benchmark ran ${fmtDuration(tookMs)}.`);
  console.log("\n<details><summary>The model for providers/rehearsal/predict.ts</summary>\n\n```ts\nexport const GROWTH_MODEL: GrowthModel = " + JSON.stringify(model, null, 2) + ";\n```\n</details>");
}

async function main(): Promise<void> {
  const axes = (process.env.GROWTH_AXES ?? "size,relations").split(",").map((s) => s.trim()) as Array<Axis["name"]>;
  const sizes = (process.env.GROWTH_SIZES ?? "10M,100M,1G,4G,10G,20G").split(",");
  const tables = (process.env.GROWTH_TABLES ?? "100,1000,3000,10000").split(",");
  const load = (ax: string): AxisResult | undefined => {
    const f = path.join(RESULTS, `growth-${ax}.json`);
    return fs.existsSync(f) ? (JSON.parse(fs.readFileSync(f, "utf8")) as AxisResult) : undefined;
  };
  if (process.env.GROWTH_REPORT_ONLY) {
    print(["size", "relations"].map(load).filter((r): r is AxisResult => !!r));
    return;
  }
  const t0 = Date.now();
  const largest = Math.max(...sizes.map(parseSize));
  ensurePool(Math.ceil((largest * 1.8 + 8 * 1024 ** 3) / 1024 ** 3) * 1024 ** 3);
  const results: AxisResult[] = [];
  try {
    for (const ax of ["size", "relations"] as const) {
      if (axes.includes(ax)) results.push(await runAxis(AXES[ax], ax === "size" ? sizes : tables));
      else {
        const prior = load(ax);
        if (prior) results.push(prior);
      }
    }
  } finally {
    if (!process.env.GROWTH_KEEP) destroyPoolByName(POOL);
  }
  print(results, Date.now() - t0);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
