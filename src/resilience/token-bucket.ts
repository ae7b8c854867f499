import { systemClock, type Clock } from '../time/index.ts';
import { requireNumber, requireObject, requirePositive } from './options.ts';

export interface TokenBucketLimits {
  /** Tokens the bucket holds at most: the largest burst. */
  capacity: number;
  /** Tokens added per second. */
  refillPerSecond: number;
}

/** A bucket's stored state. `milliTokens` is tokens × 1000: exact integer arithmetic for integer rates and times. */
export interface BucketState {
  milliTokens: number;
  /** The clock instant the bucket was last refilled, epoch ms. */
  at: number;
}

export interface TakeResult {
  granted: boolean;
  /** Whole tokens left after this call. */
  remaining: number;
  /** When not granted: ms until enough tokens for this cost. 0 when granted. */
  retryAfterMs: number;
}

/**
 * The token-bucket step every store shares, so memory, Redis (the same formula in Lua) and
 * PostgreSQL agree to the token. Time never runs backwards for a bucket: an earlier `now`
 * (another process's clock, slightly behind) adds nothing and does not move `at` back, so
 * clock skew can delay tokens but never mint extra ones.
 */
export function refillAndTake(
  state: BucketState | undefined,
  limits: TokenBucketLimits,
  cost: number,
  now: number,
): { state: BucketState; result: TakeResult } {
  const full = limits.capacity * 1000;
  let milli = state === undefined ? full : state.milliTokens;
  let at = state === undefined ? now : state.at;
  if (now > at) {
    milli = Math.min(full, milli + (now - at) * limits.refillPerSecond);
    at = now;
  }
  const need = cost * 1000;
  if (milli >= need) {
    milli -= need;
    return {
      state: { milliTokens: milli, at },
      result: { granted: true, remaining: Math.floor(milli / 1000), retryAfterMs: 0 },
    };
  }
  const retryAfterMs =
    limits.refillPerSecond > 0 ? Math.ceil((need - milli) / limits.refillPerSecond) : Infinity;
  return {
    state: { milliTokens: milli, at },
    result: { granted: false, remaining: Math.floor(milli / 1000), retryAfterMs },
  };
}

export function validateLimits(limits: TokenBucketLimits, field = 'options'): TokenBucketLimits {
  requireObject(field, limits);
  return {
    capacity: requirePositive(`${field}.capacity`, limits.capacity),
    refillPerSecond: requireNumber(`${field}.refillPerSecond`, limits.refillPerSecond, 0),
  };
}

/**
 * A local token bucket on the injected clock: exact, synchronous, no allocation per take.
 * Starts full. Never grants more than `capacity + refillPerSecond × elapsed seconds` tokens.
 */
export class TokenBucket {
  readonly capacity: number;
  readonly refillPerSecond: number;
  readonly #clock: Clock;
  #milli: number;
  #at: number;

  constructor(options: TokenBucketLimits & { clock?: Clock }) {
    const limits = validateLimits(options);
    this.capacity = limits.capacity;
    this.refillPerSecond = limits.refillPerSecond;
    this.#clock = options.clock ?? systemClock;
    this.#milli = this.capacity * 1000;
    this.#at = this.#clock.now();
  }

  /** Whole tokens available now. */
  get tokens(): number {
    this.#refill();
    return Math.floor(this.#milli / 1000);
  }

  /** Takes `cost` tokens if there are that many; otherwise takes none. */
  tryTake(cost = 1): boolean {
    this.#refill();
    const need = cost * 1000;
    if (this.#milli < need) return false;
    this.#milli -= need;
    return true;
  }

  /** Ms until `cost` tokens are available (0 when they are now). */
  retryAfterMs(cost = 1): number {
    this.#refill();
    const missing = cost * 1000 - this.#milli;
    if (missing <= 0) return 0;
    return this.refillPerSecond > 0 ? Math.ceil(missing / this.refillPerSecond) : Infinity;
  }

  /**
   * Takes `cost` tokens now, going into debt if needed, and returns the ms the caller must
   * wait before using them; returns -1 and takes nothing when that wait would exceed
   * `maxWaitMs` or never end (no refill). Debt makes waiters first come, first served.
   */
  reserve(cost: number, maxWaitMs: number): number {
    const wait = this.retryAfterMs(cost);
    // An endless wait is refused even under maxWaitMs = Infinity: Node clamps a timer of
    // Infinity to 1 ms, so sleeping it would let the call through without a token.
    if (wait > maxWaitMs || wait === Infinity) return -1;
    this.#milli -= cost * 1000;
    return wait;
  }

  /** Gives tokens back (a reservation whose caller gave up). */
  refund(cost: number): void {
    this.#milli = Math.min(this.capacity * 1000, this.#milli + cost * 1000);
  }

  #refill(): void {
    const now = this.#clock.now();
    if (now > this.#at) {
      this.#milli = Math.min(this.capacity * 1000, this.#milli + (now - this.#at) * this.refillPerSecond);
      this.#at = now;
    }
  }
}
