// Waiting for an instance to end, from any process. The instance is in the database, so the wait
// reads it there: at once (it may have ended already: then that read is all it costs), when the
// write that ends an instance notifies `sagaEndedChannel`, when a runner of this process says so,
// and every `pollMs`, since a notification is lost while the LISTEN connection reconnects. The
// waits on one handle share those reads and that LISTEN: see saga-end-watcher.ts.
import type { Queryable } from '../db/db.ts';
import { AbortedError, InvalidArgumentError, KeelError } from '../errors/index.ts';
import { systemClock, type Clock, type TimerHandle } from '../time/index.ts';
import { isLostConnection, watchSagaEnd, type SagaEndWaiter } from './saga-end-watcher.ts';
import type { SagaRunner } from './saga-runner.ts';
import type { SagaInstance, SagaState, WaitedInstance } from './saga-store.ts';

export interface WaitForSagaOptions {
  /** Gives up when it aborts: rejects with `KEEL_ABORTED` (an `AbortedError`; `cause` is the signal's reason). */
  signal?: AbortSignal;
  /** Gives up after this many ms (at most 2^31 - 1): rejects with `KEEL_TIMEOUT`. Default: no limit. */
  timeoutMs?: number;
  /**
   * How often the instance is read when nothing woke the wait, in ms. Default 1 000. The waits on
   * one handle with the same `pollMs` and clock share one timer and read together, one statement
   * per tick; a wait with a shorter `pollMs` does not make the others read more often.
   */
  pollMs?: number;
  /** Times `timeoutMs` and `pollMs`. Default the system clock. */
  clock?: Clock;
  /**
   * A runner in this process: its `saga-state` events wake the wait without a round trip through
   * the database's notifications. Optional: the notifications and the poll suffice.
   */
  runner?: SagaRunner;
}

interface ResolvedOptions {
  signal: AbortSignal | undefined;
  timeoutMs: number | undefined;
  pollMs: number;
  clock: Clock;
  runner: SagaRunner | undefined;
}

/**
 * Resolves with instance `id` once it has ended — COMPLETED, COMPENSATED, or parked in
 * NEEDS_ATTENTION (an operator's `retrySaga` may resume a parked one; read `state`) — with its
 * `results` in step order. It ended already: resolves after one read. Works from any process that
 * shares the database: given a `Db` it LISTENs on `sagaEndedChannel`; given another `Queryable`
 * (a pool client) it polls only.
 *
 * An id that no instance has yet is waited for as well (a consumer may start it later), so bound
 * the wait with `timeoutMs` or `signal`. A lost connection (`KEEL_DB_UNAVAILABLE`) is waited out:
 * the next poll reads again, and a timeout's `cause` is the last such error; any other failure of
 * its read rejects: a failure of the statement (a timeout, a missing table) every wait that
 * statement read, a bad row only the waits for that row. Whatever ends the wait, it has stopped
 * listening and reading when it settles.
 * Bad arguments reject with `KEEL_INVALID_ARGUMENT` naming the field.
 *
 * The waits on one handle share the work: one LISTEN registration for all of them, a notification
 * reads only the ids it names, and the poll reads every waited id in one statement per tick (the
 * state alone of an instance that still runs). The LISTEN stops when the last wait on the handle
 * settles.
 */
export async function waitForSaga(
  db: Queryable,
  id: string,
  options: WaitForSagaOptions = {},
): Promise<SagaInstance> {
  if (db === null || typeof db !== 'object' || typeof db.query !== 'function') {
    throw new InvalidArgumentError('db', 'a keel Db or Queryable', db);
  }
  if (typeof id !== 'string' || id === '') throw new InvalidArgumentError('id', 'a saga instance id', id);
  const resolved = resolveOptions(options);
  if (resolved.signal?.aborted) {
    throw new AbortedError(`waiting for saga instance ${id}`, resolved.signal.reason);
  }
  return new SagaEndWait(db, id, resolved).result;
}

function resolveOptions(options: WaitForSagaOptions): ResolvedOptions {
  if (options === null || typeof options !== 'object') {
    throw new InvalidArgumentError(
      'options',
      'an object { signal, timeoutMs, pollMs, clock, runner }',
      options,
    );
  }
  const { signal, timeoutMs, pollMs = 1000, clock = systemClock, runner } = options;
  if (signal !== undefined && !(signal instanceof AbortSignal)) {
    throw new InvalidArgumentError('signal', 'an AbortSignal', signal);
  }
  if (timeoutMs !== undefined && !timerDelay(timeoutMs)) {
    throw new InvalidArgumentError('timeoutMs', `a number of ms > 0 and <= ${maxTimerMs}`, timeoutMs);
  }
  if (!timerDelay(pollMs)) {
    throw new InvalidArgumentError('pollMs', `a number of ms > 0 and <= ${maxTimerMs}`, pollMs);
  }
  if (clock === null || typeof clock !== 'object' || typeof clock.setTimeout !== 'function') {
    throw new InvalidArgumentError('clock', 'a keel Clock', clock);
  }
  if (runner !== undefined && typeof (runner as Partial<SagaRunner> | null)?.events?.on !== 'function') {
    throw new InvalidArgumentError('runner', 'a SagaRunner', runner);
  }
  return { signal, timeoutMs, pollMs, clock, runner };
}

/** Node fires a longer timer at once (with a warning), so a 30-day timeout would not wait at all. */
const maxTimerMs = 2 ** 31 - 1;

function timerDelay(ms: number): boolean {
  return Number.isFinite(ms) && ms > 0 && ms <= maxTimerMs;
}

/**
 * One wait: its own deadline, signal and last state seen. The reads, the LISTEN, the poll and the
 * runner's events are the watcher's, shared with the other waits on the same handle.
 */
class SagaEndWait implements SagaEndWaiter {
  readonly result: Promise<SagaInstance>;
  readonly id: string;
  readonly pollMs: number;
  readonly clock: Clock;
  readonly runner: SagaRunner | undefined;
  readonly #options: ResolvedOptions;
  #resolve!: (instance: SagaInstance) => void;
  #reject!: (error: unknown) => void;
  #settled = false;
  #lastState: SagaState | undefined;
  #lastUnavailable: unknown;
  #timeoutTimer: TimerHandle | undefined;
  readonly #unwatch: () => Promise<void>;
  readonly #onAbort = (): void => {
    this.#finish({
      error: new AbortedError(`waiting for saga instance ${this.id}`, this.#options.signal?.reason),
    });
  };

  constructor(db: Queryable, id: string, options: ResolvedOptions) {
    this.id = id;
    this.pollMs = options.pollMs;
    this.clock = options.clock;
    this.runner = options.runner;
    this.#options = options;
    this.result = new Promise<SagaInstance>((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
    options.signal?.addEventListener('abort', this.#onAbort, { once: true });
    if (options.timeoutMs !== undefined) {
      this.#timeoutTimer = options.clock.setTimeout(() => this.#timedOut(), options.timeoutMs);
    }
    this.#unwatch = watchSagaEnd(db, this);
  }

  found(instance: WaitedInstance | undefined): void {
    if (this.#settled || instance === undefined) return;
    this.#lastState = instance.state;
    if (instance.ended !== undefined) this.#finish({ instance: instance.ended });
  }

  readFailed(error: unknown): void {
    if (this.#settled) return;
    if (isLostConnection(error)) this.#lastUnavailable = error;
    else this.#finish({ error });
  }

  #timedOut(): void {
    const state = this.#lastState ?? null;
    const seen = state === null ? 'never seen' : `last seen ${state}`;
    this.#finish({
      error: new KeelError(
        'KEEL_TIMEOUT',
        `saga instance ${this.id} did not end within ${this.#options.timeoutMs} ms (${seen})`,
        {
          cause: this.#lastUnavailable,
          details: { instanceId: this.id, timeoutMs: this.#options.timeoutMs, state },
        },
      ),
    });
  }

  /** Leaves the watcher, waits for its read in flight (and the UNLISTEN, as the last wait), then settles. */
  #finish(outcome: { instance: SagaInstance } | { error: unknown }): void {
    if (this.#settled) return;
    this.#settled = true;
    const { clock, signal } = this.#options;
    signal?.removeEventListener('abort', this.#onAbort);
    if (this.#timeoutTimer !== undefined) clock.clearTimeout(this.#timeoutTimer);
    // No statement of this wait may outlive it: the caller may close the database next.
    void this.#unwatch().then(() => {
      if ('instance' in outcome) this.#resolve(outcome.instance);
      else this.#reject(outcome.error);
    });
  }
}
