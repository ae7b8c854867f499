import { InvalidArgumentError } from '../errors/index.ts';
import { TypedEvents, type Listener, type ListenerHandle } from '../service/typed-events.ts';
import { sleep, systemClock, type Clock } from '../time/index.ts';
import type { PolicyContext } from './context.ts';
import { RateLimitedError } from './errors.ts';
import { requireNumber, requireObject } from './options.ts';
import { Policy, runPolicy, type Next, type Operation } from './policy.ts';
import type { RateLimitStore } from './rate-limit-store.ts';
import { TokenBucket, validateLimits, type TokenBucketLimits } from './token-bucket.ts';

export interface RateLimiterOptions extends TokenBucketLimits {
  /** 'reject' (default): fail at once with `RateLimitedError`. 'wait': wait for a token. */
  mode?: 'reject' | 'wait';
  /** In 'wait' mode, a call that would wait longer than this is rejected at once. Default Infinity. */
  maxWaitMs?: number;
  /**
   * Share the bucket across processes. Default: a local bucket, exact on `clock`.
   * With a store each call costs one round trip to it.
   */
  shared?: { store: RateLimitStore; key: string };
  clock?: Clock;
}

export interface RateLimiterEvents {
  rejected: { key: string | undefined; retryAfterMs: number };
}

/**
 * A token-bucket rate limiter as a policy: `execute` takes one token, then runs the work.
 * `acquire(key)` takes tokens without running anything (per-client limits in HTTP handlers).
 */
export class RateLimiterPolicy extends Policy {
  readonly events = new TypedEvents<RateLimiterEvents>();
  readonly limits: TokenBucketLimits;
  readonly mode: 'reject' | 'wait';
  readonly maxWaitMs: number;
  readonly #clock: Clock;
  readonly #local: TokenBucket | undefined;
  readonly #shared: { store: RateLimitStore; key: string } | undefined;

  constructor(options: RateLimiterOptions) {
    super();
    requireObject('options', options);
    this.limits = validateLimits(options);
    const mode = options.mode ?? 'reject';
    if (mode !== 'reject' && mode !== 'wait')
      throw new InvalidArgumentError('mode', "'reject' or 'wait'", mode);
    this.mode = mode;
    this.maxWaitMs =
      options.maxWaitMs === Infinity || options.maxWaitMs === undefined
        ? Infinity
        : requireNumber('maxWaitMs', options.maxWaitMs, 0);
    this.#clock = options.clock ?? systemClock;
    if (options.shared !== undefined) {
      const { store, key } = options.shared;
      if (typeof store?.take !== 'function')
        throw new InvalidArgumentError('shared.store', 'a RateLimitStore', store);
      if (typeof key !== 'string' || key === '')
        throw new InvalidArgumentError('shared.key', 'a non-empty string', key);
      this.#shared = { store, key };
    } else this.#local = new TokenBucket({ ...this.limits, clock: this.#clock });
  }

  on<K extends keyof RateLimiterEvents>(name: K, listener: Listener<RateLimiterEvents[K]>): ListenerHandle {
    return this.events.on(name, listener);
  }

  /**
   * Takes `cost` tokens, waiting in 'wait' mode; rejects with `RateLimitedError` when it may
   * not wait, or `AbortedError` when `signal` aborts while waiting. `key` picks a bucket in
   * the shared store (default: the configured key); a local limiter has one bucket.
   */
  async acquire(options: { cost?: number; key?: string; signal?: AbortSignal } = {}): Promise<void> {
    const cost = options.cost ?? 1;
    if (!(cost > 0 && cost <= this.limits.capacity)) {
      throw new InvalidArgumentError('cost', `a number in (0, capacity = ${this.limits.capacity}]`, cost);
    }
    if (this.#local !== undefined) return this.#acquireLocal(this.#local, cost, options.signal);
    return this.#acquireShared(cost, options.key ?? this.#shared!.key, options.signal);
  }

  async [runPolicy]<T>(fn: Operation<T>, context: PolicyContext, next: Next): Promise<T> {
    const local = this.#local;
    // The common case, a local bucket with a token, stays synchronous.
    if (local === undefined || !local.tryTake(1)) {
      if (local !== undefined) await this.#acquireLocal(local, 1, context.abortSignal());
      else await this.#acquireShared(1, this.#shared!.key, context.abortSignal());
    }
    return next.call(fn, context);
  }

  async #acquireLocal(bucket: TokenBucket, cost: number, signal: AbortSignal | undefined): Promise<void> {
    if (this.mode === 'reject') {
      if (bucket.tryTake(cost)) return;
      throw this.#reject(undefined, bucket.retryAfterMs(cost));
    }
    const wait = bucket.reserve(cost, this.maxWaitMs);
    if (wait < 0) throw this.#reject(undefined, bucket.retryAfterMs(cost));
    if (wait === 0) return;
    try {
      await sleep(wait, { clock: this.#clock, signal });
    } catch (error) {
      bucket.refund(cost);
      throw error;
    }
  }

  async #acquireShared(cost: number, key: string, signal: AbortSignal | undefined): Promise<void> {
    const { store } = this.#shared!;
    const deadline = this.#clock.now() + this.maxWaitMs;
    for (;;) {
      const now = this.#clock.now();
      const result = await store.take(key, { ...this.limits, cost, now });
      if (result.granted) return;
      if (this.mode === 'reject' || result.retryAfterMs === Infinity || now + result.retryAfterMs > deadline)
        throw this.#reject(key, result.retryAfterMs);
      await sleep(result.retryAfterMs, { clock: this.#clock, signal });
    }
  }

  #reject(key: string | undefined, retryAfterMs: number): RateLimitedError {
    if (this.events.has('rejected')) this.events.emit('rejected', { key, retryAfterMs });
    return new RateLimitedError(retryAfterMs);
  }
}

export function rateLimiter(options: RateLimiterOptions): RateLimiterPolicy {
  return new RateLimiterPolicy(options);
}
