import { describe, expect, it } from 'vitest';
import { MemoryRateLimitStore } from './rate-limit-store.ts';

const limits = { capacity: 10, refillPerSecond: 5 };

describe('MemoryRateLimitStore', () => {
  it('forgets buckets that refilled, so one per client stays bounded by the clients still active', async () => {
    const store = new MemoryRateLimitStore();
    // 5,000 clients take a token each at t = 0: each bucket is full again 200 ms later.
    for (let i = 0; i < 5000; i++) await store.take(`ip-${i}`, { ...limits, cost: 1, now: 0 });
    expect(store.size).toBe(5000); // none refilled yet: every bucket kept
    // A second wave, after the first refilled: the sweeps drop the first wave's buckets.
    for (let i = 0; i < 5000; i++) await store.take(`ip-${5000 + i}`, { ...limits, cost: 1, now: 1000 });
    expect(store.size).toBeLessThanOrEqual(5000); // not 10,000
    // An emptied bucket is not full again for 2 s: it is kept, and still empty.
    for (let i = 0; i < 10; i++) await store.take('busy', { ...limits, cost: 1, now: 1000 });
    for (let i = 0; i < 5000; i++) await store.take(`ip-${10_000 + i}`, { ...limits, cost: 1, now: 1500 });
    expect(await store.take('busy', { ...limits, cost: 3, now: 1500 })).toMatchObject({ granted: false });
  });

  it('forgetting changes nothing a client sees: a forgotten bucket answers as a full one', async () => {
    const kept = new MemoryRateLimitStore();
    const swept = new MemoryRateLimitStore();
    await kept.take('a', { ...limits, cost: 4, now: 0 });
    await swept.take('a', { ...limits, cost: 4, now: 0 });
    // Enough other clients to sweep one store, after 'a' refilled at 800 ms.
    for (let i = 0; i < 2048; i++) await swept.take(`x-${i}`, { ...limits, cost: 1, now: 900 });
    for (const now of [1000, 1000, 1001, 1500]) {
      expect(await swept.take('a', { ...limits, cost: 6, now })).toEqual(
        await kept.take('a', { ...limits, cost: 6, now }),
      );
    }
  });
});
