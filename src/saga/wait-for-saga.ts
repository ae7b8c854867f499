// Waiting for an instance to end, from any process. The instance is in the database, so the wait
// reads it there: at once (it may have ended already: then that read is all it costs), when the
// write that ends an instance notifies `sagaEndedChannel`, when a runner of this process says so,
// and every `pollMs`, since a notification is lost while the LISTEN connection reconnects.
import type { Db, Queryable, Unlisten } from '../db/db.ts';
import { AbortedError, InvalidArgumentError, isKeelError, KeelError } from '../errors/index.ts';
import type { ListenerHandle } from '../service/typed-events.ts';
import { systemClock, type Clock, type TimerHandle } from '../time/index.ts';
import type { SagaRunner } from './saga-runner.ts';
import { readInstance, sagaEndStates, type SagaInstance } from './saga-store.ts';
import { sagaEndedChannel } from './schema.ts';

export interface WaitForSagaOptions {
  /** Gives up when it aborts: rejects with `KEEL_ABORTED` (an `AbortedError`; `cause` is the signal's reason). */
  signal?: AbortSignal;
  /** Gives up after this many ms (at most 2^31 - 1): rejects with `KEEL_TIMEOUT`. Default: no limit. */
  timeoutMs?: number;
  /** How often the instance is read when nothing woke the wait, in ms. Default 1 000. */
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
 * the next poll reads again, and a timeout's `cause` is the last such error; any other failed
 * read rejects. Whatever ends the wait, it has stopped listening and reading when it settles.
 * Bad arguments reject with `KEEL_INVALID_ARGUMENT` naming the field.
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

/** One wait: reads one at a time, a wake during a read reads once more after it. */
class SagaEndWait {
  readonly result: Promise<SagaInstance>;
  readonly #db: Queryable;
  readonly #id: string;
  readonly #options: ResolvedOptions;
  #resolve!: (instance: SagaInstance) => void;
  #reject!: (error: unknown) => void;
  #settled = false;
  #reading: Promise<void> | undefined;
  #again = false;
  #lastSeen: SagaInstance | undefined;
  #lastUnavailable: unknown;
  #pollTimer: TimerHandle | undefined;
  #timeoutTimer: TimerHandle | undefined;
  #runnerHandle: ListenerHandle | undefined;
  #listening: Promise<Unlisten | undefined> | undefined;
  readonly #onAbort = (): void => {
    this.#finish({
      error: new AbortedError(`waiting for saga instance ${this.#id}`, this.#options.signal?.reason),
    });
  };

  constructor(db: Queryable, id: string, options: ResolvedOptions) {
    this.#db = db;
    this.#id = id;
    this.#options = options;
    this.result = new Promise<SagaInstance>((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
    options.signal?.addEventListener('abort', this.#onAbort, { once: true });
    if (options.timeoutMs !== undefined) {
      this.#timeoutTimer = options.clock.setTimeout(() => this.#timedOut(), options.timeoutMs);
    }
    this.#runnerHandle = options.runner?.events.on('saga-state', (event) => {
      if (event.instanceId === id && sagaEndStates.includes(event.to)) this.#wake();
    });
    this.#wake();
  }

  async #listen(): Promise<Unlisten | undefined> {
    const listen = (this.#db as Partial<Db>).listen;
    if (typeof listen !== 'function') return undefined;
    try {
      return await listen.call(this.#db, sagaEndedChannel, (payload) => {
        if (payload === this.#id) this.#wake();
      });
    } catch {
      // Without notifications the poll still finds the end, later.
      return undefined;
    }
  }

  #wake(): void {
    if (this.#settled) return;
    if (this.#reading !== undefined) {
      this.#again = true;
      return;
    }
    if (this.#pollTimer !== undefined) this.#options.clock.clearTimeout(this.#pollTimer);
    this.#pollTimer = undefined;
    this.#reading = this.#read().finally(() => {
      this.#reading = undefined;
      if (this.#settled) return;
      if (this.#again) {
        this.#again = false;
        this.#wake();
        return;
      }
      this.#pollTimer = this.#options.clock.setTimeout(() => this.#wake(), this.#options.pollMs);
    });
  }

  async #read(): Promise<void> {
    let instance: SagaInstance | undefined;
    try {
      instance = await readInstance(this.#db, this.#id);
    } catch (error) {
      // A lost connection may come back before the caller gives up; anything else will not.
      if (isKeelError(error, 'KEEL_DB_UNAVAILABLE')) this.#lastUnavailable = error;
      else this.#finish({ error });
      return;
    }
    if (this.#settled) return;
    if (instance !== undefined) {
      this.#lastSeen = instance;
      if (sagaEndStates.includes(instance.state)) {
        this.#finish({ instance });
        return;
      }
    }
    // Not ended: listen from now on, and read once more when listening, for an end committed
    // between this read and the LISTEN.
    this.#listening ??= this.#listen().then((unlisten) => {
      this.#wake();
      return unlisten;
    });
  }

  #timedOut(): void {
    const state = this.#lastSeen?.state ?? null;
    const seen = state === null ? 'never seen' : `last seen ${state}`;
    this.#finish({
      error: new KeelError(
        'KEEL_TIMEOUT',
        `saga instance ${this.#id} did not end within ${this.#options.timeoutMs} ms (${seen})`,
        {
          cause: this.#lastUnavailable,
          details: { instanceId: this.#id, timeoutMs: this.#options.timeoutMs, state },
        },
      ),
    });
  }

  /** Stops every source of wake-ups, waits for the read in flight and the UNLISTEN, then settles. */
  #finish(outcome: { instance: SagaInstance } | { error: unknown }): void {
    if (this.#settled) return;
    this.#settled = true;
    const { clock, signal } = this.#options;
    signal?.removeEventListener('abort', this.#onAbort);
    if (this.#timeoutTimer !== undefined) clock.clearTimeout(this.#timeoutTimer);
    if (this.#pollTimer !== undefined) clock.clearTimeout(this.#pollTimer);
    this.#runnerHandle?.dispose();
    const reading = this.#reading;
    void (async () => {
      // No statement of this wait may outlive it: the caller may close the database next.
      await reading?.catch(() => undefined);
      // Read after the read in flight settled: a settled wait starts no LISTEN, but one may be under way.
      const unlisten = await this.#listening;
      await unlisten?.().catch(() => undefined);
      if ('instance' in outcome) this.#resolve(outcome.instance);
      else this.#reject(outcome.error);
    })();
  }
}
