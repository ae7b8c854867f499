import { InvalidArgumentError } from '../errors/index.ts';
import { TypedEvents, type Listener, type ListenerHandle } from '../service/typed-events.ts';
import { systemClock, type Clock } from '../time/index.ts';
import { OwnedContext, type PolicyContext } from './context.ts';
import { DeadlineQueue, type Deadline } from './deadline-queue.ts';
import { TimeoutError } from './errors.ts';
import { requireObject, requirePositive } from './options.ts';
import { Policy, runPolicy, start, type Next, type Operation } from './policy.ts';

/**
 * - 'cooperative' (default): at the deadline the work's signal aborts and the policy waits for
 *   the work to stop. Rejects with `TimeoutError` (cause: the work's own error) if it fails
 *   after the abort; a result that arrives anyway is returned, since its effects happened.
 * - 'aggressive': at the deadline the signal aborts AND the call rejects at once with
 *   `TimeoutError`, while the work may still run; `error.settled` tells when it stopped.
 */
export type TimeoutMode = 'cooperative' | 'aggressive';

export interface TimeoutOptions {
  /** Default 'cooperative'. */
  mode?: TimeoutMode;
  clock?: Clock;
}

export interface TimeoutEvents {
  timeout: { timeoutMs: number };
}

/** One call: its context (which the deadline aborts) and its entry in the deadline queue. */
class Bounded extends OwnedContext implements Deadline {
  done = false;
  timedOut = false;
  reject: ((error: unknown) => void) | undefined = undefined;
  settled: Promise<void> | undefined = undefined;
  constructor(
    parent: PolicyContext,
    readonly at: number,
    readonly policy: TimeoutPolicy,
  ) {
    super(parent, parent.attempt);
  }
  expire(): void {
    this.timedOut = true;
    const error = new TimeoutError(this.policy.timeoutMs, { settled: this.settled });
    this.abort(error);
    this.policy.emitTimeout();
    this.reject?.(error);
  }
}

export class TimeoutPolicy extends Policy {
  readonly events = new TypedEvents<TimeoutEvents>();
  readonly timeoutMs: number;
  readonly mode: TimeoutMode;
  readonly #clock: Clock;
  readonly #deadlines: DeadlineQueue;

  constructor(timeoutMs: number, options: TimeoutOptions = {}) {
    super();
    this.timeoutMs = requirePositive('timeoutMs', timeoutMs);
    requireObject('options', options);
    const mode = options.mode ?? 'cooperative';
    if (mode !== 'cooperative' && mode !== 'aggressive') {
      throw new InvalidArgumentError('mode', "'cooperative' or 'aggressive'", mode);
    }
    this.mode = mode;
    this.#clock = options.clock ?? systemClock;
    this.#deadlines = new DeadlineQueue(this.#clock);
  }

  on<K extends keyof TimeoutEvents>(name: K, listener: Listener<TimeoutEvents[K]>): ListenerHandle {
    return this.events.on(name, listener);
  }

  /** Clears the policy's deadline timer; calls still running are no longer bounded. */
  dispose(): void {
    this.#deadlines.dispose();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  /** @internal */
  emitTimeout(): void {
    if (this.events.has('timeout')) this.events.emit('timeout', { timeoutMs: this.timeoutMs });
  }

  [runPolicy]<T>(fn: Operation<T>, context: PolicyContext, next: Next): Promise<T> {
    const bounded = new Bounded(context, this.#clock.now() + this.timeoutMs, this);
    this.#deadlines.add(bounded);
    return this.mode === 'cooperative'
      ? this.#cooperative(fn, bounded, next)
      : this.#aggressive(fn, bounded, next);
  }

  #cooperative<T>(fn: Operation<T>, bounded: Bounded, next: Next): Promise<T> {
    return start(next, fn, bounded).then(
      (result) => {
        this.#finish(bounded);
        return result;
      },
      (error: unknown) => {
        this.#finish(bounded);
        if (bounded.timedOut)
          throw error instanceof TimeoutError ? error : new TimeoutError(this.timeoutMs, { cause: error });
        throw error;
      },
    );
  }

  #aggressive<T>(fn: Operation<T>, bounded: Bounded, next: Next): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      bounded.reject = reject;
      const work = start(next, fn, bounded);
      // Whoever waits on the TimeoutError (a bulkhead) learns when the work really stopped.
      bounded.settled = work.then(
        () => this.#finish(bounded),
        () => this.#finish(bounded),
      );
      work.then(resolve, reject);
    });
  }

  #finish(bounded: Bounded): void {
    bounded.done = true;
    bounded.release();
    this.#deadlines.compact();
  }
}

export function timeout(timeoutMs: number, options: TimeoutOptions = {}): TimeoutPolicy {
  return new TimeoutPolicy(timeoutMs, options);
}
