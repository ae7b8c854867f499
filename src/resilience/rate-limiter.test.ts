import { describe, expect, it } from 'vitest';
import { ManualClock } from '../time/index.ts';
import { RateLimitedError } from './errors.ts';
import { MemoryRateLimitStore } from './rate-limit-store.ts';
import { rateLimiter } from './rate-limiter.ts';

describe('rateLimiter', () => {
  it("'reject' mode fails at once with retryAfterMs once the bucket is empty", async () => {
    const clock = new ManualClock(0);
    const policy = rateLimiter({ capacity: 2, refillPerSecond: 1, clock });
    await policy.execute(() => 1);
    await policy.execute(() => 2);
    const error = (await policy.execute(() => 3).catch((e: unknown) => e)) as RateLimitedError;
    expect(error).toBeInstanceOf(RateLimitedError);
    expect(error.code).toBe('KEEL_RATE_LIMITED');
    expect(error.retryAfterMs).toBe(1000);
  });

  it("'wait' mode waits for a token, first come first served", async () => {
    const clock = new ManualClock(0);
    const policy = rateLimiter({ capacity: 1, refillPerSecond: 10, mode: 'wait', clock });
    const done: number[] = [];
    const calls = [1, 2, 3].map((n) => policy.execute(() => done.push(n)));
    await clock.advance(100);
    expect(done).toEqual([1, 2]);
    await clock.advance(100);
    await Promise.all(calls);
    expect(done).toEqual([1, 2, 3]);
  });

  it("'wait' mode gives the token back when the caller aborts the wait", async () => {
    const clock = new ManualClock(0);
    const policy = rateLimiter({ capacity: 1, refillPerSecond: 1, mode: 'wait', clock });
    await policy.execute(() => 0);
    const controller = new AbortController();
    const waiting = policy.execute(() => 1, controller.signal);
    controller.abort();
    await expect(waiting).rejects.toMatchObject({ code: 'KEEL_ABORTED' });
    await clock.advance(1000);
    await expect(policy.execute(() => 2)).resolves.toBe(2);
  });

  it('shares buckets through a store, by key', async () => {
    const clock = new ManualClock(0);
    const store = new MemoryRateLimitStore();
    const a = rateLimiter({ capacity: 1, refillPerSecond: 1, clock, shared: { store, key: 'client-a' } });
    const b = rateLimiter({ capacity: 1, refillPerSecond: 1, clock, shared: { store, key: 'client-a' } });
    await a.execute(() => 'a');
    await expect(b.execute(() => 'b')).rejects.toBeInstanceOf(RateLimitedError);
    await expect(b.acquire({ key: 'client-b' })).resolves.toBeUndefined();
  });

  it("'wait' mode over a store waits the store's retryAfterMs, within maxWaitMs", async () => {
    const clock = new ManualClock(0);
    const store = new MemoryRateLimitStore();
    const policy = rateLimiter({
      capacity: 1,
      refillPerSecond: 2,
      mode: 'wait',
      maxWaitMs: 600,
      clock,
      shared: { store, key: 'k' },
    });
    await policy.execute(() => 0);
    let done = false;
    const second = policy.execute(() => (done = true));
    await clock.advance(499);
    expect(done).toBe(false);
    await clock.advance(1);
    await second;
    expect(done).toBe(true);
    const tooLong = rateLimiter({
      capacity: 1,
      refillPerSecond: 1,
      mode: 'wait',
      maxWaitMs: 100,
      clock,
      shared: { store, key: 'slow' },
    });
    await tooLong.execute(() => 0);
    await expect(tooLong.execute(() => 1)).rejects.toBeInstanceOf(RateLimitedError);
  });

  it("'wait' mode rejects at once when no token can ever come (refillPerSecond 0), locally and over a store", async () => {
    // A wait of Infinity used to be slept: forever on this clock, and about 1 ms on Node's
    // timers (which clamp an out-of-range delay to 1), letting the call through unpaid.
    const clock = new ManualClock(0);
    const local = rateLimiter({ capacity: 1, refillPerSecond: 0, mode: 'wait', clock });
    const shared = rateLimiter({
      capacity: 1,
      refillPerSecond: 0,
      mode: 'wait',
      clock,
      shared: { store: new MemoryRateLimitStore(), key: 'quota' },
    });
    for (const policy of [local, shared]) {
      await policy.execute(() => 'first');
      let ran = false;
      const second = policy.execute(() => (ran = true)).catch((e: unknown) => e);
      await clock.advance(0);
      const error = await Promise.race([second, Promise.resolve('still waiting')]);
      expect(error).toBeInstanceOf(RateLimitedError);
      expect((error as RateLimitedError).retryAfterMs).toBe(Infinity);
      expect(ran).toBe(false);
      expect(clock.pendingTimers).toBe(0);
    }
  });

  it('rejects bad options naming each one', () => {
    expect(() => rateLimiter({ capacity: 0, refillPerSecond: 1 })).toThrow(/capacity/);
    expect(() => rateLimiter({ capacity: 1, refillPerSecond: 1, mode: 'queue' as never })).toThrow(/mode/);
    expect(() => rateLimiter({ capacity: 1, refillPerSecond: 1, maxWaitMs: -1 })).toThrow(/maxWaitMs/);
  });
});
