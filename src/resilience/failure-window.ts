import { InvalidArgumentError } from '../errors/index.ts';
import type { OpenReason } from './circuit-state.ts';
import { requireInteger, requireNumber, requireObject, requirePositive } from './options.ts';

/** When a closed breaker opens. Plain data, so it can sit in configuration. */
export type FailureThreshold =
  /** Opens after `failures` failures in a row; any success resets the count. */
  | { kind: 'consecutive'; failures: number }
  /** Rates over the last `size` calls. */
  | ({ kind: 'count'; size: number } & RateThresholds)
  /** Rates over the last `windowMs`, sliding by `windowMs / buckets` (default 10 buckets). */
  | ({ kind: 'time'; windowMs: number; buckets?: number } & RateThresholds);

export interface RateThresholds {
  /** No verdict until the window holds this many calls. Default: `size` (count), 20 (time). */
  minimumCalls?: number;
  /** Opens when failures / calls >= this, in (0, 1]. Default 0.5. */
  failureRate?: number;
  /** A call that takes at least this long is slow. Default: slow calls are not tracked. */
  slowCallMs?: number;
  /** Opens when slow calls / calls >= this, in (0, 1]. Default 1 (every call slow). */
  slowCallRate?: number;
}

export interface WindowStats {
  calls: number;
  failures: number;
  slowCalls: number;
  /** failures / calls, 0 when there were no calls. */
  failureRate: number;
  slowCallRate: number;
}

/** Counts outcomes and decides when to open. One per breaker, reset on every transition. */
export interface FailureDetector {
  /** Needs the time when a call ends (time window, slow calls). */
  readonly usesClock: boolean;
  /** Needs the time when a call starts too (slow calls). */
  readonly tracksSlowCalls: boolean;
  /** Infinity when slow calls are not tracked. */
  readonly slowCallMs: number;
  /** Records one outcome; returns why the breaker should open, if it should. */
  record(failed: boolean, slow: boolean, now: number): OpenReason | undefined;
  stats(now: number): WindowStats;
  reset(): void;
}

export function createDetector(threshold: FailureThreshold): FailureDetector {
  requireObject('threshold', threshold);
  switch (threshold.kind) {
    case 'consecutive':
      return new ConsecutiveDetector(requireInteger('threshold.failures', threshold.failures, 1));
    case 'count': {
      const size = requireInteger('threshold.size', threshold.size, 1);
      const limits = rates(threshold, size);
      // The window never holds more than `size` calls: a larger minimum would never open.
      if (limits.minimumCalls > size)
        throw new InvalidArgumentError(
          'threshold.minimumCalls',
          `an integer in [1, size = ${size}]`,
          threshold.minimumCalls,
        );
      return new CountWindowDetector(size, limits);
    }
    case 'time': {
      const windowMs = requirePositive('threshold.windowMs', threshold.windowMs);
      const buckets = requireInteger('threshold.buckets', threshold.buckets ?? 10, 1);
      return new TimeWindowDetector(windowMs, buckets, rates(threshold, 20));
    }
    default:
      throw new InvalidArgumentError(
        'threshold.kind',
        "'consecutive', 'count' or 'time'",
        (threshold as { kind: unknown }).kind,
      );
  }
}

interface Rates {
  minimumCalls: number;
  failureRate: number;
  slowCallMs: number;
  slowCallRate: number;
}

function rates(t: RateThresholds, defaultMinimum: number): Rates {
  const rate = (field: string, value: number): number => {
    if (!(value > 0 && value <= 1))
      throw new InvalidArgumentError(`threshold.${field}`, 'a number in (0, 1]', value);
    return value;
  };
  return {
    minimumCalls: requireInteger('threshold.minimumCalls', t.minimumCalls ?? defaultMinimum, 1),
    failureRate: rate('failureRate', t.failureRate ?? 0.5),
    slowCallMs:
      t.slowCallMs === undefined ? Infinity : requireNumber('threshold.slowCallMs', t.slowCallMs, 0),
    slowCallRate: rate('slowCallRate', t.slowCallRate ?? 1),
  };
}

function verdict(r: Rates, calls: number, failures: number, slow: number): OpenReason | undefined {
  if (calls < r.minimumCalls) return undefined;
  // Divide, as the rates are documented and reported by stats(): rate × calls rounds up
  // (0.56 × 25 = 14.000000000000002), so 14 failures of 25 would not reach 0.56.
  if (failures / calls >= r.failureRate) return 'failure-rate';
  if (r.slowCallMs !== Infinity && slow / calls >= r.slowCallRate) return 'slow-call-rate';
  return undefined;
}

function stats(calls: number, failures: number, slowCalls: number): WindowStats {
  return {
    calls,
    failures,
    slowCalls,
    failureRate: calls === 0 ? 0 : failures / calls,
    slowCallRate: calls === 0 ? 0 : slowCalls / calls,
  };
}

class ConsecutiveDetector implements FailureDetector {
  readonly usesClock = false;
  readonly tracksSlowCalls = false;
  readonly slowCallMs = Infinity;
  #run = 0;
  #calls = 0;
  constructor(readonly failures: number) {}
  record(failed: boolean): OpenReason | undefined {
    this.#calls++;
    this.#run = failed ? this.#run + 1 : 0;
    return this.#run >= this.failures ? 'consecutive-failures' : undefined;
  }
  stats(): WindowStats {
    return stats(this.#calls, this.#run, 0);
  }
  reset(): void {
    this.#run = 0;
    this.#calls = 0;
  }
}

const FAILED = 1;
const SLOW = 2;

/** A ring of the last `size` outcomes with running counts: O(1) per call, no allocation. */
class CountWindowDetector implements FailureDetector {
  readonly usesClock: boolean;
  readonly tracksSlowCalls: boolean;
  readonly slowCallMs: number;
  readonly #ring: Uint8Array;
  #next = 0;
  #calls = 0;
  #failures = 0;
  #slow = 0;
  constructor(
    size: number,
    readonly rates: Rates,
  ) {
    this.#ring = new Uint8Array(size);
    this.slowCallMs = rates.slowCallMs;
    this.usesClock = this.tracksSlowCalls = rates.slowCallMs !== Infinity;
  }
  record(failed: boolean, slow: boolean): OpenReason | undefined {
    if (this.#calls === this.#ring.length) {
      const old = this.#ring[this.#next]!;
      if (old & FAILED) this.#failures--;
      if (old & SLOW) this.#slow--;
    } else this.#calls++;
    this.#ring[this.#next] = (failed ? FAILED : 0) | (slow ? SLOW : 0);
    if (failed) this.#failures++;
    if (slow) this.#slow++;
    this.#next = (this.#next + 1) % this.#ring.length;
    return verdict(this.rates, this.#calls, this.#failures, this.#slow);
  }
  stats(): WindowStats {
    return stats(this.#calls, this.#failures, this.#slow);
  }
  reset(): void {
    this.#ring.fill(0);
    this.#next = this.#calls = this.#failures = this.#slow = 0;
  }
}

/**
 * Outcomes in time buckets of `windowMs / buckets`: an outcome at time t counts while its
 * bucket, floor(t / bucketMs), is one of the last `buckets` buckets.
 */
class TimeWindowDetector implements FailureDetector {
  readonly usesClock = true;
  readonly tracksSlowCalls: boolean;
  readonly slowCallMs: number;
  readonly #bucketMs: number;
  readonly #calls: Float64Array;
  readonly #failures: Float64Array;
  readonly #slow: Float64Array;
  /** Running sums over the buckets, kept as buckets fill and clear: O(1) per call. */
  #totalCalls = 0;
  #totalFailures = 0;
  #totalSlow = 0;
  #bucket = -Infinity;

  constructor(
    windowMs: number,
    buckets: number,
    readonly rates: Rates,
  ) {
    this.#bucketMs = windowMs / buckets;
    this.#calls = new Float64Array(buckets);
    this.#failures = new Float64Array(buckets);
    this.#slow = new Float64Array(buckets);
    this.slowCallMs = rates.slowCallMs;
    this.tracksSlowCalls = rates.slowCallMs !== Infinity;
  }

  record(failed: boolean, slow: boolean, now: number): OpenReason | undefined {
    const i = this.#slide(now);
    this.#calls[i]!++;
    this.#totalCalls++;
    if (failed) {
      this.#failures[i]!++;
      this.#totalFailures++;
    }
    if (slow) {
      this.#slow[i]!++;
      this.#totalSlow++;
    }
    return verdict(this.rates, this.#totalCalls, this.#totalFailures, this.#totalSlow);
  }

  stats(now: number): WindowStats {
    this.#slide(now);
    return stats(this.#totalCalls, this.#totalFailures, this.#totalSlow);
  }

  reset(): void {
    this.#calls.fill(0);
    this.#failures.fill(0);
    this.#slow.fill(0);
    this.#totalCalls = this.#totalFailures = this.#totalSlow = 0;
  }

  #slide(now: number): number {
    const size = this.#calls.length;
    const bucket = Math.floor(now / this.#bucketMs);
    if (bucket !== this.#bucket) {
      // A clock that stepped back or a gap as long as the window empties every bucket.
      if (bucket < this.#bucket || bucket - this.#bucket >= size) this.reset();
      else for (let b = this.#bucket + 1; b <= bucket; b++) this.#clear(b);
      this.#bucket = bucket;
    }
    return ((bucket % size) + size) % size;
  }

  #clear(bucket: number): void {
    const size = this.#calls.length;
    const j = ((bucket % size) + size) % size;
    this.#totalCalls -= this.#calls[j]!;
    this.#totalFailures -= this.#failures[j]!;
    this.#totalSlow -= this.#slow[j]!;
    this.#calls[j] = 0;
    this.#failures[j] = 0;
    this.#slow[j] = 0;
  }
}
