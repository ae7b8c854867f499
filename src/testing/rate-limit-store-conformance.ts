import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { RateLimitStore } from '../resilience/rate-limit-store.ts';
import { refillAndTake, type BucketState } from '../resilience/token-bucket.ts';
import { referenceInstant } from '../time/index.ts';
import { propertyRuns } from './property-runs.ts';

export interface RateLimitStoreTarget {
  /** Shown in the suite's name. */
  name: string;
  /** A store isolated from every other test (its own key prefix or schema). */
  create: () => Promise<RateLimitStore>;
  destroy?: (store: RateLimitStore) => Promise<void>;
  /** Set when the backing server is missing: every scenario is skipped, stating this reason. */
  skip?: string;
}

const t0 = referenceInstant;

/**
 * The one suite every `RateLimitStore` passes: the token-bucket rules, atomicity under
 * concurrent takes, and agreement with `refillAndTake`, the reference step.
 */
export function rateLimitStoreConformance(target: RateLimitStoreTarget): void {
  const title = `RateLimitStore conformance: ${target.name}${target.skip ? ` (skipped: ${target.skip})` : ''}`;
  describe.skipIf(target.skip !== undefined)(title, () => {
    async function withStore(fn: (store: RateLimitStore) => Promise<void>): Promise<void> {
      const store = await target.create();
      try {
        await fn(store);
      } finally {
        await target.destroy?.(store);
      }
    }
    const limits = { capacity: 3, refillPerSecond: 2 };

    it('starts full, grants up to capacity, then refuses with the wait for the next token', () =>
      withStore(async (store) => {
        const results = [];
        for (let i = 0; i < 4; i++) results.push(await store.take('k', { ...limits, cost: 1, now: t0 }));
        expect(results.map((r) => r.granted)).toEqual([true, true, true, false]);
        expect(results.map((r) => r.remaining)).toEqual([2, 1, 0, 0]);
        expect(results[3]!.retryAfterMs).toBe(500);
      }));

    it('refills at the rate on the caller clock, never above capacity', () =>
      withStore(async (store) => {
        for (let i = 0; i < 3; i++) await store.take('k', { ...limits, cost: 1, now: t0 });
        expect((await store.take('k', { ...limits, cost: 1, now: t0 + 499 })).granted).toBe(false);
        expect((await store.take('k', { ...limits, cost: 1, now: t0 + 500 })).granted).toBe(true);
        const later = await store.take('k', { ...limits, cost: 1, now: t0 + 3_600_000 });
        expect(later).toEqual({ granted: true, remaining: 2, retryAfterMs: 0 });
      }));

    it('takes a cost of several tokens at once, or none', () =>
      withStore(async (store) => {
        expect((await store.take('k', { ...limits, cost: 2, now: t0 })).granted).toBe(true);
        const refused = await store.take('k', { ...limits, cost: 2, now: t0 });
        expect(refused).toEqual({ granted: false, remaining: 1, retryAfterMs: 500 });
        expect((await store.take('k', { ...limits, cost: 1, now: t0 })).granted).toBe(true);
      }));

    it('mints nothing for a caller whose clock is behind', () =>
      withStore(async (store) => {
        for (let i = 0; i < 3; i++) await store.take('k', { ...limits, cost: 1, now: t0 + 10_000 });
        expect((await store.take('k', { ...limits, cost: 1, now: t0 })).granted).toBe(false);
        expect((await store.take('k', { ...limits, cost: 1, now: t0 + 10_499 })).granted).toBe(false);
      }));

    it('never grants more than capacity to concurrent takes', () =>
      withStore(async (store) => {
        const results = await Promise.all(
          Array.from({ length: 40 }, () =>
            store.take('hot', { capacity: 10, refillPerSecond: 1, cost: 1, now: t0 }),
          ),
        );
        expect(results.filter((r) => r.granted)).toHaveLength(10);
      }));

    it('keeps keys apart, and a deleted key starts full again', () =>
      withStore(async (store) => {
        await store.take('a', { capacity: 1, refillPerSecond: 1, cost: 1, now: t0 });
        expect((await store.take('b', { capacity: 1, refillPerSecond: 1, cost: 1, now: t0 })).granted).toBe(
          true,
        );
        expect((await store.take('a', { capacity: 1, refillPerSecond: 1, cost: 1, now: t0 })).granted).toBe(
          false,
        );
        await store.delete('a');
        expect((await store.take('a', { capacity: 1, refillPerSecond: 1, cost: 1, now: t0 })).granted).toBe(
          true,
        );
      }));

    it('agrees with the reference step on random sequences', () =>
      withStore(async (store) => {
        let run = 0;
        await fc.assert(
          fc.asyncProperty(
            fc.integer({ min: 1, max: 10 }),
            fc.integer({ min: 0, max: 20 }),
            fc.array(
              fc.record({ cost: fc.integer({ min: 1, max: 4 }), dt: fc.integer({ min: -200, max: 1500 }) }),
              { maxLength: 15 },
            ),
            async (capacity, rate, takes) => {
              const key = `prop-${run++}`;
              let state: BucketState | undefined;
              let now = t0;
              for (const { cost, dt } of takes) {
                now += dt;
                const expected = refillAndTake(state, { capacity, refillPerSecond: rate }, cost, now);
                state = expected.state;
                expect(await store.take(key, { capacity, refillPerSecond: rate, cost, now })).toEqual(
                  expected.result,
                );
              }
            },
          ),
          { numRuns: propertyRuns(25) },
        );
      }));
  });
}
