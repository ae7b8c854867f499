import type { Db, Tx, Unlisten } from '../db/db.ts';
import { causeOfFailure } from '../db/transaction-scope.ts';
import { InvalidArgumentError, KeelError } from '../errors/index.ts';
import { ConsumerWakeup } from '../messaging/consumer-wakeup.ts';
import { describeError } from '../messaging/describe-error.ts';
import { HealthRecord, ServiceBase, type ReportsHealth, type ServiceHealth } from '../service/index.ts';
import { systemClock, type Clock } from '../time/index.ts';
import type { Schedule, ScheduleTick } from './schedule-definition.ts';
import {
  lockNextDue,
  lockSchedule,
  readSchedules,
  recordFailure,
  recordFired,
  recordSkipped,
  recordTriggered,
  registerSchedule,
  scheduleChannel,
  type ScheduleRow,
} from './schedule-store.ts';
import { planTick } from './tick-plan.ts';

export interface SchedulerOptions {
  /** The schedules this process fires; other processes may fire the same ones. */
  schedules: readonly Schedule[];
  /**
   * The longest wait between two looks at the schedules' rows, for what another process changed
   * there (a pause, a resume, a new definition). A due tick wakes the scheduler on time however
   * long this is. Default 30 000.
   */
  pollMs?: number;
  /** Default the system clock. Ticks fire when this clock reaches them. */
  clock?: Clock;
  /** The service's name, in events and logs. Default `scheduler`. */
  name?: string;
}

export interface SchedulerEvents {
  /** A tick's writes committed. */
  fired: { schedule: string; tick: ScheduleTick };
  /** Ticks from `from` up to, not including, `until` were skipped, none fired: all were older than the catch-up window. */
  skipped: { schedule: string; from: Date; until: Date };
  /**
   * An attempt at a tick failed and its writes were rolled back. It is tried again at `retryAt`;
   * without `retryAt` it was the last attempt and the schedule moved on to its next tick.
   */
  failed: { schedule: string; tick: ScheduleTick; error: unknown; retryAt?: Date };
  /**
   * The schedule's row was planned by another definition (`stored`) than this process's (`ours`):
   * this process does not fire it. Emitted once per stored definition.
   */
  conflict: { schedule: string; ours: string; stored: string };
}

type TickOutcome =
  | { kind: 'fired'; tick: ScheduleTick }
  | { kind: 'skipped'; from: number; until: number }
  | { kind: 'failed'; tick: ScheduleTick; error: unknown; retryAt?: number }
  /** Another scheduler holds the row, or it changed since it was read: nothing done. */
  | { kind: 'passed' };

/** A recheck of a schedule another scheduler is firing: it moves on within a transaction. */
const heldRecheckMs = 1000;
/** The longest wait after a pass that failed. */
const retryAfterFailureMs = 5000;
const savepoint = 'keel_schedule_fire';

/**
 * Fires schedules: each tick once, however many processes run a `Scheduler` for it. A tick runs
 * its `fire(tx, tick)` in the transaction that locks the schedule's row and moves it to the next
 * tick, so the tick's writes commit exactly once; a scheduler that crashes mid-tick commits
 * nothing, and the tick fires elsewhere or at the next start.
 *
 * A failed attempt rolls back to a savepoint, records the failure in the same transaction and
 * is retried after the schedule's backoff, until `maxAttempts`. `start()` registers every
 * schedule (a new one's first tick is its next one after now; a changed one is re-planned the
 * same way) and then fires what is due; `stop()` lets a tick in flight commit and starts no
 * other.
 */
export class Scheduler extends ServiceBase<SchedulerEvents> implements ReportsHealth {
  readonly #db: Db;
  readonly #schedules: ReadonlyMap<string, Schedule>;
  /** Each schedule's name and timing, as `lockNextDue` takes them. */
  readonly #specs: { names: string[]; specs: string[] };
  readonly #pollMs: number;
  readonly #wakeup: ConsumerWakeup;
  readonly #stopping = new AbortController();
  /** Aborted at the drain deadline of `stop()`: the running tick's `signal`. */
  readonly #drained = new AbortController();
  readonly #conflictsSeen = new Set<string>();
  #loop: Promise<void> | undefined;
  #unlisten: Unlisten | undefined;
  readonly #health: HealthRecord<'database'>;

  constructor(db: Db, options: SchedulerOptions) {
    super(options?.name ?? 'scheduler', options?.clock ?? systemClock);
    const list: unknown = options?.schedules;
    if (!Array.isArray(list) || list.length === 0)
      throw new InvalidArgumentError('schedules', 'a non-empty list of defineSchedule(...) results', list);
    const schedules = new Map<string, Schedule>();
    options.schedules.forEach((schedule, i) => {
      if (typeof schedule?.nextTickAfter !== 'function')
        throw new InvalidArgumentError(`schedules.${i}`, 'a defineSchedule(...) result', schedule);
      if (schedules.has(schedule.name))
        throw new InvalidArgumentError(
          `schedules.${i}.name`,
          'a name no earlier schedule has',
          schedule.name,
        );
      schedules.set(schedule.name, schedule);
    });
    const pollMs = options.pollMs ?? 30_000;
    if (!Number.isSafeInteger(pollMs) || pollMs < 1)
      throw new InvalidArgumentError('pollMs', 'an integer number of ms >= 1', options.pollMs);
    this.#db = db;
    this.#schedules = schedules;
    this.#specs = {
      names: [...schedules.keys()],
      specs: [...schedules.values()].map((schedule) => schedule.spec),
    };
    this.#pollMs = pollMs;
    this.#wakeup = new ConsumerWakeup(this.clock);
    // Between two passes a scheduler waits pollMs at most, and a pass answers at its first
    // statement: no answer for two poll intervals is a pass that hangs. Not less than the wait
    // after a failed pass, so that a short pollMs does not make a slow statement a hung one.
    const silentMs = Math.max(2 * pollMs, retryAfterFailureMs);
    this.#health = new HealthRecord(this.clock, { database: { silentMs } });
  }

  /**
   * Whether the scheduler reaches its database, from its own statements (each pass's read of
   * the schedules' rows, each tick's transaction): 'failing' (`dependency` `'database'`,
   * `during` `'fire due schedules'`) after a pass that failed, as its `error` event says, or
   * when none has answered for two poll intervals (at least 5 s: a statement hangs); 'ok' again
   * after the next statement that succeeds. A tick whose `fire` throws is that tick's failure
   * (the `failed` event), not the database's: its attempt is recorded, and the scheduler stays
   * ok. A `fire` that runs for two poll intervals holds the pass as a hung statement would,
   * and counts as one. A read of memory.
   */
  health(): ServiceHealth {
    return this.#health.health(this.state);
  }

  protected override async onStart(): Promise<void> {
    this.#health.started();
    // Without its table a scheduler would only report errors from every pass: refuse to start.
    const { rows } = await this.#db.query<{ present: boolean }>(
      `SELECT to_regclass('keel_schedules') IS NOT NULL AS present`,
    );
    this.#health.succeeded('database');
    if (rows[0]?.present !== true)
      throw new KeelError(
        'KEEL_SCHEMA_MISSING',
        `the scheduler needs keel_schedules in schema ${this.#db.schema}: run scheduleMigrations first`,
      );
    for (const schedule of this.#schedules.values()) await this.#register(schedule);
    // A run asked for by hand wakes the scheduler; the pass's poll finds one whose hint was lost.
    this.#unlisten = await this.#db.listen(scheduleChannel, (name) => {
      if (this.#schedules.has(name)) this.#wakeup.wake();
    });
    this.#loop = this.#run();
  }

  protected override async onStop(drain: AbortSignal): Promise<void> {
    drain.addEventListener('abort', () => this.#drained.abort(drain.reason), { once: true });
    this.#stopping.abort();
    this.#wakeup.stop();
    await this.#loop;
    await this.#unlisten?.().catch(() => undefined);
  }

  async #register(schedule: Schedule): Promise<void> {
    const now = this.clock.now();
    await registerSchedule(this.#db, schedule, schedule.nextTickAfter(now), now);
  }

  async #run(): Promise<void> {
    while (!this.#stopping.signal.aborted) {
      let waitMs: number;
      this.#wakeup.looking();
      try {
        waitMs = await this.#pass();
      } catch (error) {
        this.#health.failed('database', error, 'fire due schedules');
        this.events.emit('error', { error, during: 'fire due schedules' });
        waitMs = Math.min(this.#pollMs, retryAfterFailureMs);
      }
      if (waitMs > 0) await this.#wakeup.pause(waitMs);
    }
  }

  /**
   * Reads the rows (for conflicts, removed rows and when the next tick is due), then fires due
   * ticks, one transaction each, until none is left that no other scheduler holds; resolves with
   * how long to wait before the next pass.
   */
  async #pass(): Promise<number> {
    let waitMs = this.#pollMs;
    let dueNow = false;
    const rows = await readSchedules(this.#db, [...this.#schedules.keys()]);
    this.#health.succeeded('database');
    const now = this.clock.now();
    const seen = new Set<string>();
    for (const row of rows) {
      seen.add(row.name);
      const schedule = this.#schedules.get(row.name)!;
      if (row.spec !== schedule.spec) this.#reportConflict(schedule, row.spec);
      else if (row.triggeredAt !== null) dueNow = true;
      else if (row.pausedAt === null) {
        const dueAt = Math.max(row.nextTick, row.retryAt ?? row.nextTick);
        if (dueAt <= now) dueNow = true;
        else waitMs = Math.min(waitMs, dueAt - now);
      }
    }
    // A row deleted while this process runs (`keel schedule remove`) comes back planned from now.
    for (const schedule of this.#schedules.values())
      if (!seen.has(schedule.name)) await this.#register(schedule);
    if (!dueNow) return waitMs;
    let moved = false;
    while (!this.#stopping.signal.aborted) {
      const outcome = await this.#tickNextDue();
      // Its transaction (or the one that recorded its failure) committed: the database answered.
      this.#health.succeeded('database');
      if (outcome === undefined) break;
      this.#report(outcome.schedule, outcome);
      moved = true;
    }
    // Nothing left but ticks other schedulers hold: they move them on within a transaction.
    // After ticks of its own, look again at once (a tick may have come due meanwhile).
    return moved ? 0 : Math.min(waitMs, heldRecheckMs);
  }

  /**
   * Fires one tick of the due schedule waiting longest that no other scheduler holds, in one
   * transaction; undefined when there is none.
   */
  async #tickNextDue(): Promise<(TickOutcome & { schedule: Schedule }) | undefined> {
    let attempted: { schedule: Schedule; tick: ScheduleTick; trigger?: number } | undefined;
    try {
      return await this.#db.transaction(async (tx) => {
        const now = this.clock.now();
        const row = await lockNextDue(tx, this.#specs, now);
        const schedule = row === undefined ? undefined : this.#schedules.get(row.name);
        if (row === undefined || schedule === undefined || !isDue(row, schedule, now)) return undefined;
        if (row.triggeredAt !== null) {
          const trigger = row.triggers;
          const tick = triggeredTick(schedule, row.triggeredAt, trigger, now, this.#drained.signal);
          attempted = { schedule, tick, trigger };
          return { ...(await this.#fireTriggered(tx, schedule, tick, trigger)), schedule };
        }
        const plan = planTick(schedule, row.nextTick, now);
        if (plan.kind === 'skip') {
          await recordSkipped(tx, schedule.name, plan.nextTick, now);
          return { kind: 'skipped', from: row.nextTick, until: plan.nextTick, schedule };
        }
        const tick = tickOf(schedule, row, plan.tick, now, this.#drained.signal);
        attempted = { schedule, tick };
        try {
          await fireWithin(tx, schedule, tick);
        } catch (error) {
          return { ...(await this.#recordFailure(tx, schedule, tick, error)), schedule };
        }
        await recordFired(tx, schedule.name, {
          tick: plan.tick,
          nextTick: schedule.nextTickAfter(plan.tick),
          now,
        });
        return { kind: 'fired', tick, schedule };
      });
    } catch (error) {
      if (attempted === undefined) throw error;
      const outcome = await this.#recordFailureAfterRollback(
        attempted.schedule,
        attempted.tick,
        error,
        attempted.trigger,
      );
      return { ...outcome, schedule: attempted.schedule };
    }
  }

  /** Fires a run asked for by hand, once: a failure is recorded, not retried. */
  async #fireTriggered(
    tx: Tx,
    schedule: Schedule,
    tick: ScheduleTick,
    trigger: number,
  ): Promise<TickOutcome> {
    try {
      await fireWithin(tx, schedule, tick);
    } catch (error) {
      const now = this.clock.now();
      await recordTriggered(tx, schedule.name, { trigger, now, error: describeError(error) });
      return { kind: 'failed', tick, error };
    }
    await recordTriggered(tx, schedule.name, { trigger, now: this.clock.now() });
    return { kind: 'fired', tick };
  }

  /**
   * The tick's whole transaction failed (a write the tick sent without waiting fails the
   * transaction, not just its savepoint; or the commit did): record the attempt in a new one,
   * unless another scheduler has moved the schedule on since. The lock is waited for: the failed
   * transaction's connection may not have ended it yet.
   */
  async #recordFailureAfterRollback(
    schedule: Schedule,
    tick: ScheduleTick,
    error: unknown,
    trigger?: number,
  ): Promise<TickOutcome> {
    return this.#db.transaction(async (tx) => {
      const row = await lockSchedule(tx, schedule.name, { wait: true });
      if (trigger !== undefined) {
        if (row?.triggeredAt === null || row?.triggers !== trigger) return { kind: 'passed' };
        await recordTriggered(tx, schedule.name, {
          trigger,
          now: this.clock.now(),
          error: describeError(error),
        });
        return { kind: 'failed', tick, error };
      }
      const unchanged =
        row !== undefined &&
        row.spec === schedule.spec &&
        row.attempts === tick.attempt - 1 &&
        (row.nextTick === tick.at.getTime() || tick.skippedFrom?.getTime() === row.nextTick);
      if (!unchanged) return { kind: 'passed' };
      return this.#recordFailure(tx, schedule, tick, error);
    });
  }

  async #recordFailure(tx: Tx, schedule: Schedule, tick: ScheduleTick, error: unknown): Promise<TickOutcome> {
    const now = this.clock.now();
    const at = tick.at.getTime();
    const message = describeError(error);
    if (tick.attempt >= schedule.maxAttempts) {
      const nextTick = schedule.nextTickAfter(at);
      await recordFailure(tx, schedule.name, {
        tick: at,
        attempts: tick.attempt,
        error: message,
        now,
        nextTick,
      });
      return { kind: 'failed', tick, error };
    }
    const retryAt = now + schedule.backoff.delay(tick.attempt, 0);
    await recordFailure(tx, schedule.name, {
      tick: at,
      attempts: tick.attempt,
      error: message,
      now,
      retryAt,
    });
    return { kind: 'failed', tick, error, retryAt };
  }

  /** Events go out after the commit: a listener never hears of a tick that rolled back. */
  #report(schedule: Schedule, outcome: TickOutcome): void {
    const name = schedule.name;
    if (outcome.kind === 'fired') this.events.emit('fired', { schedule: name, tick: outcome.tick });
    else if (outcome.kind === 'skipped')
      this.events.emit('skipped', {
        schedule: name,
        from: new Date(outcome.from),
        until: new Date(outcome.until),
      });
    else if (outcome.kind === 'failed')
      this.events.emit('failed', {
        schedule: name,
        tick: outcome.tick,
        error: outcome.error,
        ...(outcome.retryAt === undefined ? {} : { retryAt: new Date(outcome.retryAt) }),
      });
  }

  #reportConflict(schedule: Schedule, stored: string): void {
    const key = `${schedule.name}\n${stored}`;
    if (this.#conflictsSeen.has(key)) return;
    this.#conflictsSeen.add(key);
    this.events.emit('conflict', { schedule: schedule.name, ours: schedule.spec, stored });
  }
}

function isDue(row: ScheduleRow, schedule: Schedule, now: number): boolean {
  if (row.spec !== schedule.spec) return false;
  if (row.triggeredAt !== null) return true;
  return row.pausedAt === null && row.nextTick <= now && (row.retryAt === null || row.retryAt <= now);
}

/** A run by hand: the schedule's `trigger`-th, asked for at `at`, attempted once. */
function triggeredTick(
  schedule: Schedule,
  at: number,
  trigger: number,
  now: number,
  signal: AbortSignal,
): ScheduleTick {
  const tick = tickAt(schedule, at, now, signal, { attempt: 1, triggered: true });
  return { ...tick, key: `${tick.key}/triggered-${trigger}` };
}

function tickOf(
  schedule: Schedule,
  row: ScheduleRow,
  at: number,
  now: number,
  signal: AbortSignal,
): ScheduleTick {
  return tickAt(schedule, at, now, signal, {
    // Failures counted on the row were of its next tick; a later tick starts afresh.
    attempt: at === row.nextTick ? row.attempts + 1 : 1,
    ...(at > row.nextTick ? { skippedFrom: new Date(row.nextTick) } : {}),
  });
}

function tickAt(
  schedule: Schedule,
  at: number,
  now: number,
  signal: AbortSignal,
  rest: Pick<ScheduleTick, 'attempt' | 'skippedFrom' | 'triggered'>,
): ScheduleTick {
  const date = new Date(at);
  return {
    schedule: schedule.name,
    at: date,
    key: `${schedule.name}@${date.toISOString()}`,
    firedAt: new Date(now),
    signal,
    ...rest,
  };
}

/**
 * Runs the tick's writes behind a savepoint, so a failure undoes them and leaves the transaction
 * usable for recording it. The release is awaited: writes the caller sent without waiting
 * settle before the tick counts as fired.
 */
async function fireWithin(tx: Tx, schedule: Schedule, tick: ScheduleTick): Promise<void> {
  await tx.query(`SAVEPOINT ${savepoint}`);
  try {
    await schedule.fire(tx, tick);
    await tx.query(`RELEASE SAVEPOINT ${savepoint}`);
  } catch (error) {
    const cause = await causeOfFailure(tx, error);
    await tx.query(`ROLLBACK TO SAVEPOINT ${savepoint}`);
    throw cause;
  }
}
