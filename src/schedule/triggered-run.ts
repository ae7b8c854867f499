import type { Db, Unlisten } from '../db/db.ts';
import { AbortedError, InvalidArgumentError, NotFoundError } from '../errors/index.ts';
import { ConsumerWakeup } from '../messaging/consumer-wakeup.ts';
import { systemClock, type Clock } from '../time/index.ts';
import {
  readSchedules,
  scheduleRunsChannel,
  triggerScheduleRun,
  type ScheduleRow,
  type TriggeredRun,
} from './schedule-store.ts';

export interface WaitForRunOptions {
  /**
   * How long to wait for a scheduler to do the run, in ms; 0 looks once. After it the outcome is
   * `pending`: the run stays asked for. Default 60 000.
   */
  timeoutMs?: number;
  /**
   * The longest wait between two reads of the schedule's row. A scheduler's notification wakes
   * the wait as soon as it has done the run; the reads find an outcome whose notification was
   * lost, and a removed row, which sends none. Default 1000.
   */
  pollMs?: number;
  /** Default the system clock. The timeout and the reads are timed by it. */
  clock?: Clock;
  /** Ends the wait with `KEEL_ABORTED`; the run stays asked for. */
  signal?: AbortSignal;
}

/** What became of a run by hand, as its schedule's row tells it. */
export type TriggeredRunOutcome =
  /** A scheduler fired it: `fire(tx, tick)` committed at `at`. */
  | { kind: 'fired'; run: TriggeredRun; at: Date }
  /** A scheduler attempted it and `fire` threw `error` at `at`: rolled back and not retried. */
  | { kind: 'failed'; run: TriggeredRun; at: Date; error: string }
  /**
   * No scheduler did it within the timeout (none runs that defines the schedule, or one with a
   * definition of another timing): it stays asked for, and the next one that looks fires it.
   */
  | { kind: 'pending'; run: TriggeredRun; waitedMs: number }
  /** The schedule's row was removed (`keel schedule remove`) while the run was pending: it will not run. */
  | { kind: 'removed'; run: TriggeredRun }
  /**
   * It was done, but the row no longer says how: `overtaken`, a later run by hand was done too
   * before the wait looked (the row keeps the last one's outcome); `not-recorded`, a scheduler of
   * a keel before `keel_schedule_0003_trigger_outcome` did it.
   */
  | { kind: 'unknown'; run: TriggeredRun; reason: 'overtaken' | 'not-recorded' };

interface ResolvedWaitOptions {
  timeoutMs: number;
  pollMs: number;
  clock: Clock;
  signal: AbortSignal | undefined;
}

/** Applies the defaults and refuses what the wait cannot use, naming the option. */
function resolveOptions(options: WaitForRunOptions): ResolvedWaitOptions {
  const timeoutMs = options.timeoutMs ?? 60_000;
  if (typeof timeoutMs !== 'number' || !Number.isFinite(timeoutMs) || timeoutMs < 0)
    throw new InvalidArgumentError('timeoutMs', 'a finite number of ms >= 0', options.timeoutMs);
  const pollMs = options.pollMs ?? 1000;
  if (!Number.isSafeInteger(pollMs) || pollMs < 1)
    throw new InvalidArgumentError('pollMs', 'an integer number of ms >= 1', options.pollMs);
  return { timeoutMs, pollMs, clock: options.clock ?? systemClock, signal: options.signal };
}

/**
 * Asks for a run of the schedule by hand (as `triggerSchedule`) and waits for its outcome (as
 * `waitForTriggeredRun`). Rejects with `KEEL_NOT_FOUND` when there is no such schedule, and
 * with `KEEL_INVALID_ARGUMENT` for a bad option, before asking for anything.
 */
export async function triggerScheduleAndWait(
  db: Db,
  name: string,
  options: WaitForRunOptions = {},
): Promise<TriggeredRunOutcome> {
  const { clock } = resolveOptions(options);
  const run = await triggerScheduleRun(db, name, clock.now());
  if (run === undefined) throw new NotFoundError('schedule', name);
  return waitForTriggeredRun(db, run, options);
}

/**
 * Waits until a scheduler has done `run` (from `triggerScheduleRun`), or until `timeoutMs`
 * passed, and resolves with its outcome; a failed run is an outcome, not a rejection. It LISTENs
 * for the scheduler's notification and reads the row at least every `pollMs` besides, so it works
 * where notifications are lost. Several may wait for one run. Waiting asks for nothing: a run
 * still pending at the timeout stays asked for.
 *
 * Runs are told apart by their number alone: a row removed and registered again counts its runs
 * from 0, so a wait that outlives that and as many runs by hand as its own number may misreport.
 */
export async function waitForTriggeredRun(
  db: Db,
  run: TriggeredRun,
  options: WaitForRunOptions = {},
): Promise<TriggeredRunOutcome> {
  const { timeoutMs, pollMs, clock, signal } = resolveOptions(options);
  if (typeof run?.schedule !== 'string' || run.schedule === '')
    throw new InvalidArgumentError('run.schedule', "the schedule's name", run?.schedule);
  if (!Number.isSafeInteger(run.run) || run.run < 1)
    throw new InvalidArgumentError('run.run', "the run's number, an integer >= 1", run.run);
  const aborted = (): AbortedError =>
    new AbortedError(`waiting for run ${run.run} of ${run.schedule}`, signal?.reason);
  if (signal?.aborted) throw aborted();
  const wakeup = new ConsumerWakeup(clock);
  const stop = (): void => wakeup.stop();
  signal?.addEventListener('abort', stop, { once: true });
  const deadline = clock.now() + timeoutMs;
  let unlisten: Unlisten | undefined;
  try {
    // Listening before the first read: an outcome committed after it is heard of.
    unlisten = await listenForRuns(db, run.schedule, () => wakeup.wake());
    for (;;) {
      wakeup.looking();
      const [row] = await readSchedules(db, [run.schedule]);
      const outcome = outcomeOf(row, run);
      if (outcome !== undefined) return outcome;
      const left = deadline - clock.now();
      if (left <= 0) return { kind: 'pending', run, waitedMs: timeoutMs };
      await wakeup.pause(Math.min(pollMs, left));
      if (signal?.aborted) throw aborted();
    }
  } finally {
    signal?.removeEventListener('abort', stop);
    wakeup.stop();
    await unlisten?.().catch(() => undefined);
  }
}

/** LISTENs for schedulers' outcomes of `schedule`; undefined where the Db cannot: the reads alone find them. */
async function listenForRuns(db: Db, schedule: string, wake: () => void): Promise<Unlisten | undefined> {
  try {
    return await db.listen(scheduleRunsChannel, (name) => {
      if (name === schedule) wake();
    });
  } catch {
    return undefined;
  }
}

/** The run's outcome as `row` tells it; undefined while it is pending. */
function outcomeOf(row: ScheduleRow | undefined, run: TriggeredRun): TriggeredRunOutcome | undefined {
  // A count below the run's: the row was removed and registered again since it was asked for.
  if (row === undefined || row.triggers < run.run) return { kind: 'removed', run };
  if (row.lastTrigger === run.run) {
    const at = new Date(row.lastTriggerDoneAt!);
    return row.lastTriggerError === null
      ? { kind: 'fired', run, at }
      : { kind: 'failed', run, at, error: row.lastTriggerError };
  }
  if (row.triggeredAt !== null && row.triggers === run.run) return undefined;
  // A later run was asked for (only possible once this one was done) or this one was cleared.
  if (row.lastTrigger !== null && row.lastTrigger > run.run)
    return { kind: 'unknown', run, reason: 'overtaken' };
  return { kind: 'unknown', run, reason: 'not-recorded' };
}
