/**
 * An ordered list of phases, each with its undo. The cut-over (and its roll-back) is written
 * as such a list; this module runs it:
 *
 * - phases run in order; the contiguous phases marked `held` run inside the endpoint's hold
 *   (clients paused), everything else before or after it;
 * - when a phase fails, the undo of every phase that ran (the failing one included: it may
 *   have done part of its work) is called in reverse order. Undos of held phases run while
 *   clients are still held (live serves again before they resume); undos marked
 *   `undoAfterResume` (clean-up nobody waits for, e.g. destroying a half-made clone) are
 *   deferred until clients were resumed;
 * - an `optional` phase that fails is reported and changes nothing else (e.g. statistics
 *   after clients resumed);
 * - every start, end and undo is reported to `journal` (the cut-over writes it to the host,
 *   where a later run finds it after a crash).
 *
 * Nothing here knows PostgreSQL, PgBouncer or storage: phases are closures.
 */
import { errorMessage } from "../errors";

export interface Phase<C> {
  name: string;
  /** Runs while clients are held by the endpoint. */
  held?: boolean;
  /** Failure is reported, nothing is undone, the run goes on. */
  optional?: boolean;
  run(ctx: C): Promise<void>;
  /** Put back what `run` did (also after `run` failed part-way). Must be idempotent. */
  undo?(ctx: C): Promise<void>;
  /** The undo runs after clients were resumed, not while they wait. */
  undoAfterResume?: boolean;
}

export interface PhaseTiming {
  phase: string;
  ms: number;
  held: boolean;
  status: "ok" | "failed" | "skipped" | "undone" | "undo-failed";
  error?: string;
}

export type JournalEvent =
  | { event: "start" | "done" | "failed" | "undo" | "undone" | "undo-failed"; phase: string; at: string; error?: string }
  | { event: "hold" | "resumed"; at: string };

export interface HoldResult {
  pauseWindowMs: number;
  pauseMs: number;
  resumeMs: number;
}

/** Runs `fn` with clients held (PAUSE ... RESUME); resumes whatever `fn` does. */
export type Hold = (fn: () => Promise<void>) => Promise<HoldResult>;

export interface PhaseRun {
  phases: PhaseTiming[];
  hold?: HoldResult;
}

/** A phase failed; what was undone and what could not be is data, and in the message. */
export class PhaseError extends Error {
  constructor(
    readonly phase: string,
    readonly cause: unknown,
    readonly timings: PhaseTiming[],
    readonly undoFailures: Array<{ phase: string; error: string }>,
    readonly hold?: HoldResult,
  ) {
    const undone = timings.filter((t) => t.status === "undone").map((t) => t.phase);
    super(
      `phase "${phase}" failed: ${errorMessage(cause)}` +
        (undone.length ? `\nUndone, in reverse order: ${undone.reverse().join(", ")}.` : "") +
        (undoFailures.length ? `\nUNDO FAILED: ${undoFailures.map((u) => `${u.phase}: ${u.error}`).join("; ")}.` : ""),
    );
    this.name = "PhaseError";
  }
}

export async function runPhases<C>(
  phases: Phase<C>[],
  ctx: C,
  opts: {
    hold?: Hold;
    log?: (m: string) => void;
    journal?: (e: JournalEvent) => Promise<void> | void;
    /**
     * The switchover timeout: once clients have been held this long, no further held phase
     * starts; what ran is undone (live serves again) and clients resume. Checked before each
     * held phase: one that is running is not interrupted.
     */
    holdTimeoutMs?: number;
  } = {},
): Promise<PhaseRun> {
  const log = opts.log ?? (() => undefined);
  const journal = async (e: JournalEvent) => {
    try {
      await opts.journal?.(e);
    } catch (err) {
      log(`warning: could not record ${"phase" in e ? `${e.event} ${e.phase}` : e.event} in the journal: ${errorMessage(err)}`);
    }
  };
  const at = () => new Date().toISOString();
  const timings: PhaseTiming[] = [];
  const ran: Array<{ phase: Phase<C>; timing: PhaseTiming }> = [];
  const undoFailures: Array<{ phase: string; error: string }> = [];
  const deferred: Array<{ phase: Phase<C>; timing: PhaseTiming }> = [];
  let failure: { phase: string; cause: unknown } | undefined;

  const runOne = async (p: Phase<C>) => {
    const timing: PhaseTiming = { phase: p.name, ms: 0, held: !!p.held, status: "ok" };
    timings.push(timing);
    const t0 = Date.now();
    await journal({ event: "start", phase: p.name, at: at() });
    log(`${p.name}...`);
    try {
      await p.run(ctx);
      timing.ms = Date.now() - t0;
      await journal({ event: "done", phase: p.name, at: at() });
      if (!p.optional) ran.push({ phase: p, timing });
    } catch (e) {
      timing.ms = Date.now() - t0;
      timing.status = "failed";
      timing.error = errorMessage(e).split("\n")[0];
      await journal({ event: "failed", phase: p.name, at: at(), error: timing.error });
      if (p.optional) {
        log(`warning: ${p.name} failed (nothing else depends on it): ${errorMessage(e)}`);
        return;
      }
      ran.push({ phase: p, timing });
      failure = { phase: p.name, cause: e };
      throw e;
    }
  };

  /** Undo what ran, newest first; `inHold` selects the held phases' undos (deferring the ones that wait). */
  const undo = async (which: (p: Phase<C>) => boolean) => {
    for (const r of [...ran].reverse()) {
      if (!which(r.phase) || r.timing.status === "undone" || r.timing.status === "undo-failed") continue;
      if (!r.phase.undo) continue;
      if (r.phase.undoAfterResume && r.phase.held) {
        if (!deferred.includes(r)) deferred.push(r);
        continue;
      }
      await undoOne(r);
    }
  };
  const undoOne = async (r: { phase: Phase<C>; timing: PhaseTiming }) => {
    await journal({ event: "undo", phase: r.phase.name, at: at() });
    log(`undo ${r.phase.name}...`);
    try {
      await r.phase.undo!(ctx);
      r.timing.status = "undone";
      await journal({ event: "undone", phase: r.phase.name, at: at() });
    } catch (e) {
      r.timing.status = "undo-failed";
      r.timing.error = errorMessage(e).split("\n")[0];
      undoFailures.push({ phase: r.phase.name, error: errorMessage(e) });
      await journal({ event: "undo-failed", phase: r.phase.name, at: at(), error: r.timing.error });
    }
  };

  let holdResult: HoldResult | undefined;
  let held = false;
  let i = 0;
  try {
    while (i < phases.length) {
      const p = phases[i];
      if (!p.held) {
        await runOne(p);
        i++;
        continue;
      }
      let j = i;
      while (j < phases.length && phases[j].held) j++;
      const group = phases.slice(i, j);
      if (!opts.hold) throw new Error(`phase "${p.name}" needs clients held, but no hold was given`);
      await journal({ event: "hold", at: at() });
      held = true;
      holdResult = await opts.hold(async () => {
        const heldSince = Date.now();
        try {
          for (const g of group) {
            const waited = Date.now() - heldSince;
            if (opts.holdTimeoutMs !== undefined && waited >= opts.holdTimeoutMs) {
              failure = {
                phase: g.name,
                cause: new Error(`the switchover timeout (${opts.holdTimeoutMs} ms) was reached: clients were held ${waited} ms, so "${g.name}" was not started`),
              };
              throw failure.cause;
            }
            await runOne(g);
          }
        } catch (e) {
          // Still held: put live back before clients resume.
          await undo((x) => !!x.held);
          throw e;
        }
      });
      held = false;
      await journal({ event: "resumed", at: at() });
      i = j;
    }
  } catch (e) {
    // No phase failed: holding clients itself did (e.g. PAUSE timed out); nothing held ran.
    if (!failure) failure = { phase: held ? "hold clients (PAUSE)" : (phases[i]?.name ?? "?"), cause: e };
    else if (e !== failure.cause) failure = { ...failure, cause: new Error(`${errorMessage(failure.cause)}; then: ${errorMessage(e)}`) };
    if (held) await journal({ event: "resumed", at: at() });
    // Already newest first (collected while undoing in reverse).
    for (const r of deferred) await undoOne(r);
    await undo(() => true);
    for (const t of timings) if (t.status === "ok" && !ran.some((r) => r.timing === t)) t.status = "skipped";
    throw new PhaseError(failure.phase, failure.cause, timings, undoFailures, holdResult);
  }
  return { phases: timings, ...(holdResult ? { hold: holdResult } : {}) };
}
