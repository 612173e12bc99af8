/**
 * The rehearsal of the `logical` cut-over, with no Pulumi in it. Live is never written to:
 * the only thing read from live is its WAL position, twice (`pg_current_wal_lsn()`), for its
 * write rate. Everything else runs between two clones:
 *
 *   live's WAL rate (read) -> the stand-in for live: a clone of the snapshot the upgrade
 *   started from (the old version, cleanly stopped), started privately with wal_level =
 *   logical -> the upgraded clone restarted as a subscriber -> a table of ours on both sides
 *   -> readiness, publications and slots on the stand-in (the promotion's own
 *   LogicalReplication) -> a writer on the stand-in at live's WAL rate -> backlog ->
 *   subscription (copy_data = false, create_slot = false, origin at the slot's LSN) ->
 *   catch-up measured -> apply lag sampled under the writer -> writer stopped (PAUSE) ->
 *   the held part timed: capture on the stand-in (marker, sequences, schema), finish on the
 *   upgraded clone (bounded wait for apply, setval, subscriptions disabled) -> everything
 *   removed: the subscriptions and our table on the upgraded clone, which is restarted as it
 *   was; the stand-in stopped and its volume destroyed.
 *
 * The upgraded clone holds exactly the stand-in's data at the start (both are the same
 * snapshot: one upgraded, one not), so the subscription needs no initial copy, as in a
 * promotion.
 */
import type { PostgresDriver } from "../postgres/driver";
import { LogicalReplication, NotReadyError, lsnDiff, requiredTargetSettings, type ServerRef } from "../postgres/logical";
import type { LogicalRehearsalSettings, PgPlan } from "../plan/rehearsal";
import { LOGICAL_DEFAULTS } from "../plan/logical";
import { logicalTag } from "./logical-cutover";
import { startNew, stepSuperuser, type CloneSet, type RunnerEnv } from "./steps";
import type { LogicalRehearsalRecord } from "../rehearsal/report";
import { predictLogicalPause } from "../rehearsal/report";
import { errorMessage } from "../errors";

/** Our table on both sides, dropped afterwards (the user's tables and the verification's counts are unchanged). */
export const WRITER_TABLE = "understudy_rehearsal_writer";
const WRITER_APP = "understudy_rehearsal_writer";
const CLUSTER_DATABASES_SQL = "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY datname";

export interface LogicalRehearsalSpec {
  /** The rehearsal's server plan on its clone (the upgraded server runs: the rehearsal's last step left it running). */
  pg: PgPlan;
  /** Live, read only (its WAL position). */
  live: ServerRef;
  clone: CloneSet;
  /** Short name of the clone's snapshot set the upgrade started from (the old version, cleanly stopped). */
  fromSnapshot: string;
  settings: LogicalRehearsalSettings;
  /** Names everything of ours (the tag of publications, slots, subscriptions): differs from any promotion's. */
  owner: string;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Rows per commit so that the writer commits about 50 times a second at `rate` (an INSERT of our row writes about 300 bytes of WAL). */
export function writerBatch(rate: number): number {
  return Math.max(1, Math.min(2000, Math.round(rate / 50 / 300)));
}

/**
 * The writer's script: inserts into our table, one commit per batch, paced by the WAL it has
 * written (pg_current_wal_lsn) against `rate` bytes per second, for at most `maxMs`
 * (it is terminated earlier, by its application_name).
 */
export function writerSql(rate: number, maxMs: number): string {
  if (!Number.isFinite(rate) || rate <= 0) throw new Error(`writer rate ${rate} is not a positive number`);
  const batch = writerBatch(rate);
  return [
    `SET application_name = '${WRITER_APP}';`,
    `DO $understudy$ DECLARE t0 timestamptz := clock_timestamp(); l0 pg_lsn := pg_current_wal_lsn(); BEGIN
       LOOP
         INSERT INTO public.${WRITER_TABLE} (pad) SELECT repeat(md5(random()::text), 6) FROM generate_series(1, ${batch});
         COMMIT;
         WHILE (pg_current_wal_lsn() - l0) > ${Math.round(rate)}::numeric * extract(epoch FROM clock_timestamp() - t0)::numeric
               AND clock_timestamp() < t0 + interval '${Math.ceil(maxMs / 1000)} seconds' LOOP
           PERFORM pg_sleep(0.005);
         END LOOP;
         -- Stopped like clients at a PAUSE: after its last commit, when the stop row (id -1) is there.
         EXIT WHEN clock_timestamp() >= t0 + interval '${Math.ceil(maxMs / 1000)} seconds'
                OR EXISTS (SELECT 1 FROM public.${WRITER_TABLE} WHERE id = -1);
       END LOOP;
     END $understudy$;`,
  ].join("\n");
}

/** Mean and maximum of a list (undefined when empty). */
function stats(xs: number[]): { mean: number; max: number } | undefined {
  if (!xs.length) return undefined;
  return { mean: xs.reduce((a, b) => a + b, 0) / xs.length, max: Math.max(...xs) };
}

/**
 * Rehearse the logical cut-over on a stand-in for live (see the file's comment). Throws on
 * failure after removing everything it made; the error says what was left, if anything.
 */
export async function rehearseLogical(env: RunnerEnv, s: LogicalRehearsalSpec): Promise<LogicalRehearsalRecord> {
  const { storage, log } = env;
  const p = s.pg;
  const o = s.settings;
  const at = new Date().toISOString();
  if (s.clone.volumes.length !== 1 || s.clone.layout) {
    throw new Error(
      "the logical cut-over is rehearsed only for a cluster on one plain volume: the stand-in for live would keep links into the rehearsal's clone (pg_wal, tablespaces, configuration elsewhere). Nothing was run",
    );
  }
  const su = await stepSuperuser(env, p);
  const pg: PostgresDriver = env.pg.superuserGiven && env.pg.superuser === su ? env.pg : env.pg.as(su);
  const q1 = async (srv: ServerRef, sql: string, db = "postgres") => (await pg.adminQuery(srv, sql, { database: db }))[0]?.[0] ?? "";

  // 1. Live's write rate: two reads of its WAL position. Nothing else touches live.
  log(`live's WAL rate: sampling pg_current_wal_lsn() over ${o.liveSampleMs} ms (read only)`);
  const l0 = await q1(s.live, "SELECT pg_current_wal_lsn()");
  const tl0 = Date.now();
  await sleep(o.liveSampleMs);
  const l1 = await q1(s.live, "SELECT pg_current_wal_lsn()");
  const sampledMs = Date.now() - tl0;
  const liveRate = Number(lsnDiff(l1, l0)) / (sampledMs / 1000);
  const writerRate = Math.max(liveRate, o.minWriteBytesPerSecond);
  const liveWalLevel = await q1(s.live, "SELECT current_setting('wal_level')");
  const liveWarnings =
    liveWalLevel === "logical"
      ? []
      : [`[wal_level] live runs with wal_level = ${liveWalLevel}: a promotion with the logical method needs wal_level = logical (a restart of live: the user's change; the stand-in was started with it)`];
  log(`live wrote ${Math.round(liveRate)} bytes/s of WAL; the writer on the stand-in runs at ${Math.round(writerRate)} bytes/s`);

  // 2. The stand-in for live: a clone of the snapshot the upgrade started from.
  const primary = s.clone.volumes[0];
  const standInId = storage.siblingVolume(primary, `${primary.split("/").pop()}-standin`);
  const old = await storage.volume(standInId);
  if (old) {
    if (old.owner !== s.clone.owner) throw new Error(`${standInId} exists and is not ours (owner ${old.owner ?? "none"}): the stand-in for live needs that name. Nothing was run`);
    log(`removing the stand-in ${standInId} an earlier attempt left`);
    await pg.stopIfPresent(`${old.mountpoint}${p.oldDataDir.slice(s.clone.mountpoint.length)}`, { version: p.from, binDir: p.fromBinDir, field: "from" }, { mode: "fast" }).catch(() => undefined);
    await storage.destroyVolume(standInId, s.clone.owner);
  }
  const set = await storage.findSnapshotSet(s.clone.volumes, s.fromSnapshot);
  if (!set) throw new Error(`the clone's snapshot ${primary}@${s.fromSnapshot} (where the upgrade started) is gone: run the rehearsal again`);
  const [vol] = await storage.clone(set, [{ source: primary, target: standInId }], s.clone.owner);
  if (!vol.mountpoint) throw new Error(`the stand-in ${standInId} is not mounted`);
  const standInDir = `${vol.mountpoint}${p.oldDataDir.slice(s.clone.mountpoint.length)}`;
  log(`stand-in for live: ${standInId} (a clone of ${primary}@${s.fromSnapshot}), PGDATA ${standInDir}`);

  const oldInst = await pg.resolveInstall({ version: p.from, binDir: p.fromBinDir, field: "from" }, ["pg_ctl", "psql"]);
  const newInst = { version: p.to, binDir: p.toBinDir, field: "to" };
  const cloneRef: ServerRef = { version: p.to, binDir: p.toBinDir, socketDir: p.socketDir, port: p.port };
  const left: string[] = [];
  let record: LogicalRehearsalRecord | undefined;
  let failure: unknown;
  let cloneRestarted = false;
  try {
    const priv = await pg.withPrivateServer(
      "logical stand-in",
      standInDir,
      oldInst,
      p.tempPort,
      { onProgress: log, settings: { wal_level: "logical", max_replication_slots: 20, max_wal_senders: 20 } },
      async (srv) => {
        const standIn: ServerRef = { version: p.from, binDir: p.fromBinDir, socketDir: srv.socketDir, port: srv.port };
        const databases = (await pg.adminQuery(standIn, CLUSTER_DATABASES_SQL)).map((r) => r[0]);
        if (!databases.includes(p.database)) throw new Error(`the database ${p.database} (postgres.database) is not in the cluster`);
        // The upgraded clone must carry no enabled subscription of live's (its workers start below).
        const foreign = (await pg.adminQuery(cloneRef, "SELECT d.datname || '.' || s.subname FROM pg_subscription s JOIN pg_database d ON d.oid = s.subdbid WHERE s.subenabled ORDER BY 1")).map((r) => r[0]);
        if (foreign.length) throw new Error(`the upgraded clone has enabled subscriptions (${foreign.join(", ")}): they would pull from live's publishers once workers run. Not rehearsed`);
        const exists = await q1(standIn, `SELECT to_regclass('public.${WRITER_TABLE}') IS NOT NULL`, p.database);
        if (exists === "t") throw new Error(`live has a table public.${WRITER_TABLE} (the name the rehearsal's writer needs). Not rehearsed`);

        // 3. The upgraded clone as a subscriber (settings on the command line; no file changes).
        log("restarting the upgraded clone with a subscriber's settings");
        await pg.stop(p.newDataDir, newInst, { mode: "fast" });
        cloneRestarted = true;
        await pg.start(p.newDataDir, newInst, { port: p.port, socketDir: p.socketDir, listen: p.listen, isolate: true, settings: requiredTargetSettings(databases.length), ...(p.logFile ? { logFile: p.logFile } : {}), onProgress: log });

        // From here on, whatever happens, nothing of ours stays on the upgraded clone (the finally below).
        const lr = new LogicalReplication(pg, { tag: logicalTag(`${s.owner}:rehearsal`), databases, live: standIn });
        const lr2 = lr.withTarget(cloneRef);
        let stopWriter: () => Promise<unknown> = async () => undefined;
        try {
          // 4. Our table, on both sides, before the publications (they list the tables that exist).
          const ddl = `CREATE TABLE public.${WRITER_TABLE} (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, pad text NOT NULL);`;
          await pg.adminQuery(cloneRef, `DROP TABLE IF EXISTS public.${WRITER_TABLE};\n${ddl}`, { database: p.database });
          await pg.adminQuery(standIn, ddl, { database: p.database });

          // 5. Readiness, publications and slots: the promotion's own machinery, on the stand-in.
          const ready = await lr.readiness({ fingerprints: true, accept: o.accept ?? [] });
          if (!ready.ok) throw new NotReadyError(ready.problems);
          const start = await lr.createSlots();

          // 6. The writer at live's rate, a backlog, then the subscription.
          const maxWriterMs = o.backlogMs + o.measureMs + 15 * 60_000;
          const wl0 = await q1(standIn, "SELECT pg_current_wal_lsn()");
          const tw0 = Date.now();
          let stopping = false;
          const writer = pg.adminQuery(standIn, writerSql(writerRate, maxWriterMs), { database: p.database, timeoutMs: maxWriterMs + 60_000 }).then(
            () => undefined,
            (e: unknown) => (stopping ? undefined : e),
          );
          stopWriter = async () => {
            // As PAUSE: the writer finishes its transaction and stops (the stop row, replicated like
            // any other row); terminated only if it has not stopped within 5 s.
            await pg.adminQuery(standIn, `INSERT INTO public.${WRITER_TABLE} (id, pad) OVERRIDING SYSTEM VALUE VALUES (-1, 'stop') ON CONFLICT DO NOTHING;`, { database: p.database }).catch(() => undefined);
            const done = await Promise.race([writer.then(() => "stopped"), sleep(5000).then(() => "running")]);
            if (done === "running") {
              stopping = true;
              await pg.adminQuery(standIn, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = '${WRITER_APP}'`).catch(() => undefined);
            }
            return await writer;
          };
          await sleep(o.backlogMs);
          const subAt = await q1(standIn, "SELECT pg_current_wal_lsn()");
          const backlogBytes = Number(lsnDiff(subAt, start.lsn));
          log(`subscribing the upgraded clone (backlog ${backlogBytes} bytes)`);
          const ts = Date.now();
          await lr2.subscribe(start);
          // Catch-up: until the subscriber has confirmed everything written before it subscribed.
          let catchUpMs: number | undefined;
          for (;;) {
            const writerErr = await Promise.race([writer, sleep(200).then(() => "running")]);
            if (writerErr !== "running" && writerErr) throw writerErr;
            const r = await lr2.lag();
            const d = r.databases.find((x) => x.database === p.database);
            if (d && d.workerPid !== null && Number.isFinite(d.lagBytes) && Number(lsnDiff(r.currentLsn, subAt)) >= d.lagBytes) {
              catchUpMs = Date.now() - ts;
              break;
            }
            if (Date.now() - ts > 10 * 60_000) throw new Error(`the upgraded clone did not catch up with a backlog of ${backlogBytes} bytes within 10 min (lag ${d?.lagBytes} bytes)`);
          }
          log(`caught up in ${catchUpMs} ms`);
          // Apply lag under the writer.
          const lagBytes: number[] = [];
          const lagSeconds: number[] = [];
          const tm = Date.now();
          while (Date.now() - tm < o.measureMs) {
            const r = await lr2.lag();
            const d = r.databases.find((x) => x.database === p.database);
            if (d && Number.isFinite(d.lagBytes)) lagBytes.push(d.lagBytes);
            if (d?.replayLagSeconds != null) lagSeconds.push(d.replayLagSeconds);
            await sleep(250);
          }
          // The promotion's gate before PAUSE (its "catch up" step): every database's apply worker
          // running and at most maxLagBytes behind. Without it the hold started while the workers
          // of the other databases had not even started: PostgreSQL 15's launcher starts workers
          // at most once per wal_retrieve_retry_interval (5 s), and the subscriptions are enabled
          // one database after another, so the second database's worker starts about 5 s after the
          // first — after the measurement above — and the held wait paid for its start (~1.2 s).
          const tg = Date.now();
          const gate = await lr2.waitCaughtUp({ maxLagBytes: LOGICAL_DEFAULTS.maxLagBytes, timeoutMs: LOGICAL_DEFAULTS.switchoverTimeoutMs, pollMs: 100 });
          const gateMs = Date.now() - tg;
          log(`every database caught up (lag ${gate.maxLagBytes} bytes, every apply worker running) after ${gateMs} ms more`);
          // The last schema check before the hold, as a promotion makes it: its catalog stamps
          // let the held capture fingerprint again only a database whose catalogs changed.
          const stamps = await lr2.checkSchema(ready.fingerprints!);
          // PAUSE: clients (the writer) stop; then the held part, timed.
          const writerErr = await stopWriter();
          if (writerErr) throw writerErr;
          const writerMs = Date.now() - tw0;
          const wl1 = await q1(standIn, "SELECT pg_current_wal_lsn()");
          const achieved = Number(lsnDiff(wl1, wl0)) / (writerMs / 1000);
          const rows = Number(await q1(standIn, `SELECT count(*) FROM public.${WRITER_TABLE}`, p.database));
          const tc = Date.now();
          const capture = await lr2.capture("forward", { baseline: ready.fingerprints, stamps });
          const captureMs = Date.now() - tc;
          // The wait for apply inside finish, server-side, in the same script as the sequences and
          // the subscriptions: exactly the promotion's held phase. (Polling from outside instead
          // cost a psql start per poll: 0.8-1.4 s against the promotion's 117-174 ms.)
          const tf = Date.now();
          const fin = await lr2.finish(capture, { waitAppliedMs: o.applyTimeoutMs });
          const finishMs = Date.now() - tf;
          const applied = Number(await q1(cloneRef, `SELECT count(*) FROM public.${WRITER_TABLE}`, p.database));
          if (applied !== rows) throw new Error(`after the held part the upgraded clone has ${applied} of the writer's ${rows} rows: the cut-over would lose transactions`);
          const lb = stats(lagBytes);
          const ls = stats(lagSeconds);
          const applyBytes = Number(lsnDiff(subAt, start.lsn));
          record = {
            status: "ok",
            at,
            standIn: { volume: standInId, snapshot: `${primary}@${s.fromSnapshot}`, version: p.from },
            databases,
            liveWal: { bytesPerSecond: Math.round(liveRate), sampledMs },
            writer: { database: p.database, table: `public.${WRITER_TABLE}`, targetBytesPerSecond: Math.round(writerRate), achievedBytesPerSecond: Math.round(achieved), ms: writerMs, rows, floor: writerRate > liveRate },
            catchUp: { backlogBytes, ms: catchUpMs, bytesPerSecond: catchUpMs > 0 ? Math.round(applyBytes / (catchUpMs / 1000)) : 0 },
            applyLag: {
              samples: lagBytes.length,
              meanBytes: Math.round(lb?.mean ?? 0),
              maxBytes: Math.round(lb?.max ?? 0),
              // In time: the WAL sender's replay_lag when it reports one; else the bytes behind at the writer's rate.
              ...(ls ? { meanSeconds: ls.mean, maxSeconds: ls.max, secondsFrom: "replay_lag" as const } : achieved > 0 ? { meanSeconds: (lb?.mean ?? 0) / achieved, maxSeconds: (lb?.max ?? 0) / achieved, secondsFrom: "bytes-at-write-rate" as const } : {}),
            },
            gate: { maxLagBytes: LOGICAL_DEFAULTS.maxLagBytes, lagBytes: gate.maxLagBytes, ms: gateMs, workers: gate.databases.filter((d) => d.workerPid !== null).length },
            held: [
              { step: "capture on live (marker, sequences, schema)", ms: captureMs },
              { step: "applied on the new live (bounded wait past the marker, server-side), sequences set, subscriptions disabled, flush", ms: finishMs },
            ],
            sequencesSet: fin.sequencesSet,
            warnings: [...liveWarnings, ...ready.items.filter((i) => i.severity === "warning").map((i) => `[${i.code}] ${i.message}`)],
            predicted: predictLogicalPause({ captureMs, finishMs }),
          };
        } finally {
          await stopWriter().catch(() => undefined);
          // Nothing of ours stays on the upgraded clone.
          try {
            await lr2.unsubscribe();
            await pg.adminQuery(cloneRef, `DROP TABLE IF EXISTS public.${WRITER_TABLE};`, { database: p.database });
          } catch (e) {
            left.push(`on the upgraded clone: subscription ${lr.names.subscription} or table public.${WRITER_TABLE} (${errorMessage(e).split("\n")[0]})`);
          }
        }
      },
    );
    log(`stand-in stopped (ready in ${priv.readyMs} ms, stopped in ${priv.stopMs} ms)`);
  } catch (e) {
    failure = e;
  } finally {
    // The upgraded clone as the rehearsal left it: running with its own settings (isolated, no workers).
    if (cloneRestarted) {
      try {
        await pg.stopIfPresent(p.newDataDir, newInst, { mode: "fast" });
        await startNew({ ...env, pg }, p, su);
      } catch (e) {
        left.push(`the upgraded clone could not be restarted with its own settings (${errorMessage(e).split("\n")[0]})`);
      }
    }
    try {
      await pg.stopIfPresent(standInDir, oldInst, { mode: "fast" }).catch(() => undefined);
      const r = await storage.destroyVolume(standInId, s.clone.owner);
      if (r === "not-owned") left.push(`the stand-in ${standInId} (not ours?)`);
      else log(`stand-in ${standInId} ${r}`);
    } catch (e) {
      left.push(`the stand-in ${standInId} (${errorMessage(e).split("\n")[0]})`);
    }
  }
  if (failure !== undefined) {
    const msg = `the logical cut-over rehearsal failed: ${errorMessage(failure)}${left.length ? `\nLeft behind: ${left.join("; ")}` : ""}\nLive was not touched (read: its WAL position).`;
    throw new Error(msg, { cause: failure });
  }
  if (left.length) throw new Error(`the logical cut-over was rehearsed, but removing what it made failed: ${left.join("; ")}`);
  return record!;
}
