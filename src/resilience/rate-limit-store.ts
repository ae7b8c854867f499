import { refillAndTake, type BucketState, type TakeResult, type TokenBucketLimits } from './token-bucket.ts';

export interface TakeRequest extends TokenBucketLimits {
  /** Tokens this call needs. */
  cost: number;
  /** The caller's clock, epoch ms. Stores never read their own clock, so tests can drive time. */
  now: number;
}

/**
 * Token buckets shared by every process: one bucket per key (a client, an API key, a route).
 * `take` is atomic per key: concurrent takes from any number of processes never grant more
 * than the bucket holds. Buckets start full; a bucket untouched for long enough to refill
 * completely may be forgotten (expired) by the store, which changes nothing observable.
 */
export interface RateLimitStore {
  take(key: string, request: TakeRequest): Promise<TakeResult>;
  /** Forgets the key (tests). */
  delete(key: string): Promise<void>;
}

/** Buckets held before the first sweep for full ones. */
const firstSweepAt = 1024;

/**
 * In-process buckets: the reference implementation the shared ones must agree with. A bucket that
 * has refilled completely is forgotten (a new one starts full: nothing changes for its key), in a
 * sweep each time the buckets held double, so one bucket per client IP or API key stays bounded
 * by the clients active within a refill time, not by every client ever seen.
 */
export class MemoryRateLimitStore implements RateLimitStore {
  readonly #buckets = new Map<string, { state: BucketState; fullAt: number }>();
  #sweepAt = firstSweepAt;

  async take(key: string, request: TakeRequest): Promise<TakeResult> {
    const { state, result } = refillAndTake(
      this.#buckets.get(key)?.state,
      request,
      request.cost,
      request.now,
    );
    // milliTokens refill at refillPerSecond per ms.
    const missing = request.capacity * 1000 - state.milliTokens;
    const fullAt = request.refillPerSecond > 0 ? state.at + missing / request.refillPerSecond : Infinity;
    this.#buckets.set(key, { state, fullAt });
    if (this.#buckets.size >= this.#sweepAt) this.#sweep(request.now);
    return result;
  }

  async delete(key: string): Promise<void> {
    this.#buckets.delete(key);
  }

  /** Buckets held now: the keys seen whose bucket is not yet known to be full again. */
  get size(): number {
    return this.#buckets.size;
  }

  #sweep(now: number): void {
    for (const [key, bucket] of this.#buckets) if (bucket.fullAt <= now) this.#buckets.delete(key);
    this.#sweepAt = Math.max(firstSweepAt, this.#buckets.size * 2);
  }
}
