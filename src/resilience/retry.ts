import { InvalidArgumentError, isKeelError } from '../errors/index.ts';
import { TypedEvents, type Listener, type ListenerHandle } from '../service/typed-events.ts';
import { exponentialBackoff, sleep, systemClock, type Backoff, type Clock } from '../time/index.ts';
import { AttemptContext, type PolicyContext } from './context.ts';
import { retryAfterOf } from './errors.ts';
import { requireFunction, requireInteger, requireNumber, requireObject } from './options.ts';
import { Policy, runPolicy, start, type Next, type Operation } from './policy.ts';
import type { RetryBudget } from './retry-budget.ts';

export interface RetryOptions {
  /**
   * Calls of the function in total, the first one included: `maxAttempts: 3` means at most
   * three calls, that is at most two retries. `1` disables retrying; `Infinity` retries until
   * success, a non-retryable outcome, the budget or the signal stops it. Default 3.
   */
  maxAttempts?: number;
  /** Wait before each retry. Default `exponentialBackoff()`: 100 ms doubling, full jitter, 30 s cap. */
  backoff?: Backoff;
  /**
   * Which errors are worth another attempt. Default: every error except keel's argument,
   * validation, abort, permanent-failure and isolated-circuit errors, which no retry can fix.
   */
  handle?: (error: unknown, attempt: number) => boolean;
  /** Which results count as failures to retry (a 503 response, say). Default: none. */
  handleResult?: (result: unknown, attempt: number) => boolean;
  /**
   * The delay an error asks for (an HTTP `Retry-After`). The wait is the longer of it and the
   * backoff. Default: the error's numeric `retryAfterMs` (set by breakers and rate limiters).
   */
  retryAfter?: (error: unknown) => number | undefined;
  /** An error asking for a longer wait than this ends the retrying at once. Default 60 000. */
  maxRetryAfterMs?: number;
  /** Shared budget that caps retries to a share of calls. Default: none. */
  budget?: RetryBudget;
  clock?: Clock;
}

export interface RetryEvent {
  /** The attempt that failed (1 for the first call). */
  attempt: number;
  delayMs: number;
  /** The error, or undefined when a result was classified as a failure. */
  error: unknown;
  result: unknown;
}

export type GiveUpReason = 'max-attempts' | 'budget' | 'retry-after-too-long';

export interface GiveUpEvent {
  attempts: number;
  reason: GiveUpReason;
  error: unknown;
  result: unknown;
}

export interface RetryEvents {
  retry: RetryEvent;
  giveUp: GiveUpEvent;
}

const neverRetried = new Set([
  'KEEL_INVALID_ARGUMENT',
  'KEEL_VALIDATION_FAILED',
  'KEEL_ABORTED',
  'KEEL_PERMANENT_FAILURE',
  'KEEL_CIRCUIT_ISOLATED',
]);

/** The default classification: everything but the errors no second attempt can fix. */
export function isRetryable(error: unknown): boolean {
  return !(isKeelError(error) && neverRetried.has(error.code));
}

/**
 * Retries an operation. When retries run out, the last error is rethrown unchanged (or the
 * last result returned), so callers classify the real failure, not a wrapper.
 * The wait between attempts ends at once when the signal aborts, with `AbortedError`.
 */
export class RetryPolicy extends Policy {
  readonly events = new TypedEvents<RetryEvents>();
  readonly maxAttempts: number;
  readonly #backoff: Backoff;
  readonly #handle: (error: unknown, attempt: number) => boolean;
  readonly #handleResult: ((result: unknown, attempt: number) => boolean) | undefined;
  readonly #retryAfter: (error: unknown) => number | undefined;
  readonly #maxRetryAfterMs: number;
  readonly #budget: RetryBudget | undefined;
  readonly #clock: Clock;

  constructor(options: RetryOptions = {}) {
    super();
    requireObject('options', options);
    this.maxAttempts = requireInteger('maxAttempts', options.maxAttempts ?? 3, 1, true);
    if (options.backoff !== undefined && typeof options.backoff?.delay !== 'function') {
      throw new InvalidArgumentError(
        'backoff',
        'a Backoff (an object with delay(retry, previous))',
        options.backoff,
      );
    }
    this.#backoff = options.backoff ?? exponentialBackoff();
    this.#handle = requireFunction('handle', options.handle) ?? isRetryable;
    this.#handleResult = requireFunction('handleResult', options.handleResult);
    this.#retryAfter = requireFunction('retryAfter', options.retryAfter) ?? retryAfterOf;
    this.#maxRetryAfterMs = requireNumber('maxRetryAfterMs', options.maxRetryAfterMs ?? 60_000, 0);
    this.#budget = options.budget;
    this.#clock = options.clock ?? systemClock;
  }

  on<K extends keyof RetryEvents>(name: K, listener: Listener<RetryEvents[K]>): ListenerHandle {
    return this.events.on(name, listener);
  }

  [runPolicy]<T>(fn: Operation<T>, context: PolicyContext, next: Next): Promise<T> {
    this.#budget?.recordCall();
    // The first attempt reuses the caller's context when it already says attempt 1.
    const first = start(next, fn, context.attempt === 1 ? context : new AttemptContext(context, 1));
    // Fast path: a success needs no work, so only a failure enters the retry loop.
    if (this.#handleResult === undefined) {
      // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- the attempt's error, unchanged
      return first.catch((error: unknown) => this.#loop(fn, context, next, Promise.reject(error)));
    }
    return this.#loop(fn, context, next, first);
  }

  async #loop<T>(fn: Operation<T>, context: PolicyContext, next: Next, pending: Promise<T>): Promise<T> {
    let previousDelay = 0;
    for (let attempt = 1; ; attempt++) {
      let delay: number;
      try {
        const result = await pending;
        if (this.#handleResult === undefined || !this.#handleResult(result, attempt)) return result;
        delay = this.#delayAfter(attempt, context, undefined, result, previousDelay);
        if (delay < 0) return result;
      } catch (error) {
        if (context.aborted || !this.#handle(error, attempt)) throw error;
        delay = this.#delayAfter(attempt, context, error, undefined, previousDelay);
        if (delay < 0) throw error;
      }
      // Aborts at once, not after the delay: a cancelled request must not wait out a backoff.
      if (delay > 0) await sleep(delay, { clock: this.#clock, signal: context.abortSignal() });
      previousDelay = delay;
      pending = start(next, fn, new AttemptContext(context, attempt + 1));
    }
  }

  /** The wait before the next attempt, or -1 to give up. */
  #delayAfter(
    attempt: number,
    context: PolicyContext,
    error: unknown,
    result: unknown,
    previous: number,
  ): number {
    if (context.aborted) return -1;
    if (attempt >= this.maxAttempts) return this.#giveUp(attempt, 'max-attempts', error, result);
    const asked = error === undefined ? undefined : this.#retryAfter(error);
    if (asked !== undefined && asked > this.#maxRetryAfterMs) {
      return this.#giveUp(attempt, 'retry-after-too-long', error, result);
    }
    if (this.#budget !== undefined && !this.#budget.tryRetry())
      return this.#giveUp(attempt, 'budget', error, result);
    const backoff = this.#backoff.delay(attempt, previous);
    const delay = asked === undefined ? backoff : Math.max(asked, backoff);
    if (this.events.has('retry')) this.events.emit('retry', { attempt, delayMs: delay, error, result });
    return delay;
  }

  #giveUp(attempts: number, reason: GiveUpReason, error: unknown, result: unknown): number {
    if (this.events.has('giveUp')) this.events.emit('giveUp', { attempts, reason, error, result });
    return -1;
  }
}

export function retry(options: RetryOptions = {}): RetryPolicy {
  return new RetryPolicy(options);
}
