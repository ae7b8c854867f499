import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ManualClock } from '../time/index.ts';
import { refillAndTake, TokenBucket, type BucketState } from './token-bucket.ts';
import { propertyRuns } from '../testing/property-runs.ts';

describe('TokenBucket', () => {
  it('starts full, refills at the rate, never above capacity', async () => {
    const clock = new ManualClock(0);
    const bucket = new TokenBucket({ capacity: 3, refillPerSecond: 2, clock });
    expect([bucket.tryTake(), bucket.tryTake(), bucket.tryTake(), bucket.tryTake()]).toEqual([
      true,
      true,
      true,
      false,
    ]);
    expect(bucket.retryAfterMs()).toBe(500);
    await clock.advance(500);
    expect(bucket.tryTake()).toBe(true);
    await clock.advance(60_000);
    expect(bucket.tokens).toBe(3);
  });

  it('reserve goes into debt so waiters are served in order, and refuses waits past the limit', () => {
    const clock = new ManualClock(0);
    const bucket = new TokenBucket({ capacity: 1, refillPerSecond: 10, clock });
    expect(bucket.reserve(1, 1000)).toBe(0);
    expect(bucket.reserve(1, 1000)).toBe(100);
    expect(bucket.reserve(1, 1000)).toBe(200);
    expect(bucket.reserve(1, 150)).toBe(-1);
  });

  const op = fc.oneof(
    fc.record({ kind: fc.constant('take' as const), cost: fc.integer({ min: 1, max: 5 }) }),
    fc.record({ kind: fc.constant('wait' as const), ms: fc.nat(2000) }),
  );

  it('never grants more than capacity + rate × elapsed (local bucket)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 20 }),
        fc.integer({ min: 0, max: 50 }),
        fc.array(op, { maxLength: 100 }),
        async (capacity, rate, ops) => {
          const clock = new ManualClock(0);
          const bucket = new TokenBucket({ capacity, refillPerSecond: rate, clock });
          let granted = 0;
          for (const o of ops) {
            if (o.kind === 'wait') await clock.advance(o.ms);
            else if (bucket.tryTake(o.cost)) granted += o.cost;
            expect(granted).toBeLessThanOrEqual(capacity + (rate * clock.now()) / 1000);
          }
        },
      ),
      { numRuns: propertyRuns(100) },
    );
  });

  it('never grants more than capacity + rate × elapsed (shared step, clocks that skew backwards)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 20 }),
        fc.integer({ min: 0, max: 50 }),
        fc.array(fc.record({ cost: fc.integer({ min: 1, max: 5 }), now: fc.nat(100_000) }), {
          maxLength: 100,
        }),
        (capacity, rate, takes) => {
          let state: BucketState | undefined;
          let granted = 0;
          let latest = takes[0]?.now ?? 0;
          const first = latest;
          for (const t of takes) {
            latest = Math.max(latest, t.now);
            const step = refillAndTake(state, { capacity, refillPerSecond: rate }, t.cost, t.now);
            state = step.state;
            if (step.result.granted) granted += t.cost;
            expect(granted).toBeLessThanOrEqual(capacity + (rate * (latest - first)) / 1000);
          }
        },
      ),
    );
  });

  it('rejects bad limits naming each one', () => {
    expect(() => new TokenBucket({ capacity: 0, refillPerSecond: 1 })).toThrow(/options.capacity/);
    expect(() => new TokenBucket({ capacity: 1, refillPerSecond: -1 })).toThrow(/options.refillPerSecond/);
  });
});
