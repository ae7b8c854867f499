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

/** In-process buckets: the reference implementation the shared ones must agree with. */
export class MemoryRateLimitStore implements RateLimitStore {
  readonly #buckets = new Map<string, BucketState>();

  async take(key: string, request: TakeRequest): Promise<TakeResult> {
    const { state, result } = refillAndTake(this.#buckets.get(key), request, request.cost, request.now);
    this.#buckets.set(key, state);
    return result;
  }

  async delete(key: string): Promise<void> {
    this.#buckets.delete(key);
  }
}
