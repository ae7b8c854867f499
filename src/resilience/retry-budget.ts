import { systemClock, type Clock } from '../time/index.ts';
import { requireInteger, requireNumber, requireObject, requirePositive } from './options.ts';

export interface RetryBudgetOptions {
  /** Retries allowed as a share of calls in the window. Default 0.2 (one retry per five calls). */
  ratio?: number;
  /** Retries always allowed per second, so a quiet service can still retry. Default 10. */
  minRetriesPerSecond?: number;
  /** The sliding window, in ms. Default 10 000. */
  windowMs?: number;
  /** How many buckets the window slides by. Default 10. */
  buckets?: number;
  clock?: Clock;
}

/**
 * Caps retries at a share of calls over a sliding window (failsafe-go's and Finagle's retry
 * budget). Per-call retry limits multiply through a fleet: three layers of three attempts
 * turn one user request into 27 calls on a struggling dependency. A budget shared by every
 * retry policy in a process keeps the extra load at `ratio` whatever the outage looks like.
 */
export class RetryBudget {
  readonly #ratio: number;
  readonly #minRetries: number;
  readonly #bucketMs: number;
  readonly #calls: Float64Array;
  readonly #retries: Float64Array;
  readonly #clock: Clock;
  #bucket = -1;

  constructor(options: RetryBudgetOptions = {}) {
    requireObject('options', options);
    this.#ratio = requireNumber('ratio', options.ratio ?? 0.2, 0);
    const perSecond = requireNumber('minRetriesPerSecond', options.minRetriesPerSecond ?? 10, 0);
    const windowMs = requirePositive('windowMs', options.windowMs ?? 10_000);
    const buckets = requireInteger('buckets', options.buckets ?? 10, 1);
    this.#minRetries = (perSecond * windowMs) / 1000;
    this.#bucketMs = windowMs / buckets;
    this.#calls = new Float64Array(buckets);
    this.#retries = new Float64Array(buckets);
    this.#clock = options.clock ?? systemClock;
  }

  /** Counts one call (a first attempt). Retry policies call this; so may any caller. */
  recordCall(): void {
    this.#calls[this.#slide()]!++;
  }

  /** Takes one retry from the budget; false when the window has used its share. */
  tryRetry(): boolean {
    const index = this.#slide();
    let calls = 0;
    let retries = 0;
    for (let i = 0; i < this.#calls.length; i++) {
      calls += this.#calls[i]!;
      retries += this.#retries[i]!;
    }
    if (retries + 1 > this.#minRetries + this.#ratio * calls) return false;
    this.#retries[index]!++;
    return true;
  }

  /** Clears the buckets that fell out of the window; returns the current bucket's index. */
  #slide(): number {
    const bucket = Math.floor(this.#clock.now() / this.#bucketMs);
    const size = this.#calls.length;
    if (bucket !== this.#bucket) {
      // A clock that stepped back, or a gap longer than the window, clears everything.
      const stale = bucket < this.#bucket ? size : Math.min(size, bucket - this.#bucket);
      for (let i = 1; i <= stale; i++) {
        const index = (((this.#bucket + i) % size) + size) % size;
        this.#calls[index] = 0;
        this.#retries[index] = 0;
      }
      if (bucket < this.#bucket) {
        this.#calls.fill(0);
        this.#retries.fill(0);
      }
      this.#bucket = bucket;
    }
    return ((bucket % size) + size) % size;
  }
}

export function retryBudget(options: RetryBudgetOptions = {}): RetryBudget {
  return new RetryBudget(options);
}
