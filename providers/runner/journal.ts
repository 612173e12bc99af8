/**
 * The cut-over's journal, kept on the host (not only in Pulumi's state): written before
 * clients are held, with every name the attempt will use, and marked finished when it ends.
 * If the engine dies in between (`kill -9`, a lost laptop), the next run finds an unfinished
 * journal and recovers from what the host shows — live running or not, the endpoint on
 * which target, paused or not — before it does anything else (./cutover.ts,
 * `recoverInterrupted`). Writing it costs nothing while clients wait: nothing is written
 * between PAUSE and RESUME.
 */
import type { Host } from "../host/types";
import type { DatabaseTarget } from "../endpoint/pgbouncer-config";
import type { LinkRecord } from "./newlive-service";

export const JOURNAL_DIR = "/var/lib/understudy/cutover";

export interface JournalEntry {
  op: "promote" | "rollback";
  startedAt: string;
  /** Live's volumes and the final snapshot set's name (promote). */
  liveVolumes: string[];
  finalSnapshot?: string;
  /** The new live's volumes (promote: made by this attempt; rollback: kept, never removed). */
  newVolumes: string[];
  /** The new cluster initdb'ed before clients were held (replay): a private directory removed with the attempt's other leftovers. */
  staged?: string;
  /** The upgraded cluster's directory, when known before the attempt (rollback). */
  newDataDir?: string;
  database: string;
  /** Every PgBouncer entry held and switched (absent in older journals: `[database]`). */
  databases?: string[];
  /** The cut-over method (absent: replay). */
  method?: "replay" | "logical";
  /** The logical method's names: its tag and the cluster's databases (what cleanup removes on live). */
  logical?: { tag: string; databases: string[] };
  /** Promote: `newLive.dataDirLink` as it was before the attempt (absent in older journals, and without a link): what recovery of an undone attempt puts back. */
  dataDirLink?: LinkRecord;
  liveTarget: DatabaseTarget;
  newTarget: DatabaseTarget;
  owner: string;
  finished?: { at: string; outcome: "promoted" | "rolled-back" | "undone" | "recovered" };
}

/** A journal file per cut-over resource, named from its owner mark (safe characters only). */
export function journalPath(owner: string): string {
  return `${JOURNAL_DIR}/${owner.replace(/[^A-Za-z0-9_.-]+/g, "_")}.json`;
}

export class HostJournal {
  constructor(
    private readonly host: Host,
    readonly path: string,
  ) {}

  async load(): Promise<JournalEntry | undefined> {
    const r = await this.host.runAs("root", ["cat", "--", this.path], { okExitCodes: [0, 1] });
    if (r.exitCode !== 0 || !r.stdout.trim()) return undefined;
    try {
      return JSON.parse(r.stdout) as JournalEntry;
    } catch {
      return undefined;
    }
  }

  /** Atomic write as root: a private temporary file renamed over the journal. */
  async save(e: JournalEntry): Promise<void> {
    const dir = this.path.slice(0, this.path.lastIndexOf("/"));
    await this.host.runAs("root", ["sh", "-c", 'umask 077 && mkdir -p "$1" && cat > "$2.tmp" && mv -f "$2.tmp" "$2"', "sh", dir, this.path], {
      input: JSON.stringify(e, null, 2) + "\n",
    });
  }

  async finish(e: JournalEntry, outcome: NonNullable<JournalEntry["finished"]>["outcome"]): Promise<void> {
    await this.save({ ...e, finished: { at: new Date().toISOString(), outcome } });
  }
}
