import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { InvalidArgumentError, isKeelError } from '../errors/index.ts';
import { constantBackoff, exponentialBackoff, ManualClock } from '../time/index.ts';
import { propertyRuns } from '../testing/property-runs.ts';
import { BrokenCircuitError, RateLimitedError } from './errors.ts';
import { retry } from './retry.ts';
import { retryBudget } from './retry-budget.ts';

/** A function failing `failures` times, then answering 'ok'; records attempt numbers. */
function flaky(failures: number): { fn: (c: { attempt: number }) => Promise<string>; attempts: number[] } {
  const attempts: number[] = [];
  return {
    attempts,
    fn: async ({ attempt }) => {
      attempts.push(attempt);
      if (attempts.length <= failures) throw new Error(`boom ${attempts.length}`);
      return 'ok';
    },
  };
}

describe('retry', () => {
  it('maxAttempts counts calls, the first included: 3 means at most three calls', async () => {
    const clock = new ManualClock();
    const policy = retry({ maxAttempts: 3, backoff: constantBackoff(0), clock });
    const { fn, attempts } = flaky(10);
    await expect(policy.execute(fn)).rejects.toThrow('boom 3');
    expect(attempts).toEqual([1, 2, 3]);
  });

  it('returns the first success and passes the attempt number', async () => {
    const clock = new ManualClock();
    const policy = retry({ maxAttempts: 5, backoff: constantBackoff(0), clock });
    const { fn, attempts } = flaky(2);
    await expect(policy.execute(fn)).resolves.toBe('ok');
    expect(attempts).toEqual([1, 2, 3]);
  });

  it('for any maxAttempts, failures and jitter draws: min(maxAttempts, failures + 1) calls, each wait in [0, cap]', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 8 }),
        fc.integer({ min: 0, max: 10 }),
        fc.array(fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }), { minLength: 1 }),
        fc.constantFrom('none' as const, 'full' as const, 'equal' as const, 'decorrelated' as const),
        async (maxAttempts, failures, draws, jitter) => {
          const clock = new ManualClock(0);
          let draw = 0;
          const random = (): number => draws[draw++ % draws.length]!;
          const backoff = exponentialBackoff({ initialMs: 10, maxMs: 300, jitter, random });
          const policy = retry({ maxAttempts, backoff, clock });
          const waits: number[] = [];
          policy.on('retry', (e) => waits.push(e.delayMs));
          const { fn, attempts } = flaky(failures);
          const startedAt: number[] = [];
          const outcome = policy
            .execute((context) => {
              startedAt.push(clock.now());
              return fn(context);
            })
            .then(
              (v) => v,
              (e: unknown) => (e as Error).message,
            );
          await clock.advance(8 * 300);
          const calls = Math.min(maxAttempts, failures + 1);
          expect(await outcome).toBe(failures < maxAttempts ? 'ok' : `boom ${maxAttempts}`);
          expect(attempts).toEqual(Array.from({ length: calls }, (_, i) => i + 1));
          expect(waits).toHaveLength(calls - 1);
          for (const [i, wait] of waits.entries()) {
            expect(wait >= 0 && wait <= 300).toBe(true);
            expect(startedAt[i + 1]! - startedAt[i]!).toBeCloseTo(wait, 6);
          }
          expect(clock.pendingTimers).toBe(0);
        },
      ),
      { numRuns: propertyRuns(60) },
    );
  });

  it('waits the backoff between attempts on the injected clock', async () => {
    const clock = new ManualClock(0);
    const policy = retry({ maxAttempts: 3, backoff: constantBackoff(100), clock });
    const { fn, attempts } = flaky(2);
    const result = policy.execute(fn);
    await clock.advance(99);
    expect(attempts).toEqual([1]);
    await clock.advance(1);
    expect(attempts).toEqual([1, 2]);
    await clock.advance(100);
    await expect(result).resolves.toBe('ok');
  });

  it('stops at once when the signal aborts during a backoff wait, leaving no timer', async () => {
    const clock = new ManualClock(0);
    const policy = retry({ maxAttempts: 5, backoff: constantBackoff(60_000), clock });
    const controller = new AbortController();
    const { fn, attempts } = flaky(10);
    const result = policy.execute(fn, controller.signal);
    await clock.advance(10);
    controller.abort(new Error('client went away'));
    const error: unknown = await result.catch((e: unknown) => e);
    expect(isKeelError(error, 'KEEL_ABORTED')).toBe(true);
    expect(attempts).toEqual([1]);
    expect(clock.pendingTimers).toBe(0);
  });

  it('does not retry when the caller aborted during an attempt', async () => {
    const controller = new AbortController();
    let calls = 0;
    const policy = retry({ maxAttempts: 5, backoff: constantBackoff(0), clock: new ManualClock() });
    const result = policy.execute(async ({ signal }) => {
      calls++;
      controller.abort();
      throw signal.reason;
    }, controller.signal);
    await expect(result).rejects.toBeDefined();
    expect(calls).toBe(1);
  });

  it('classifies errors by predicate and never retries argument errors by default', async () => {
    const clock = new ManualClock();
    let calls = 0;
    const policy = retry({ maxAttempts: 5, backoff: constantBackoff(0), clock });
    await expect(
      policy.execute(() => {
        calls++;
        throw new InvalidArgumentError('x', 'y');
      }),
    ).rejects.toThrow(InvalidArgumentError);
    expect(calls).toBe(1);
    const picky = retry({
      maxAttempts: 5,
      backoff: constantBackoff(0),
      clock,
      handle: (e) => (e as Error).message !== 'fatal',
    });
    calls = 0;
    await expect(
      picky.execute(() => {
        calls++;
        throw new Error(calls === 2 ? 'fatal' : 'transient');
      }),
    ).rejects.toThrow('fatal');
    expect(calls).toBe(2);
  });

  it('retries results classified as failures and returns the last one when attempts run out', async () => {
    const clock = new ManualClock();
    let calls = 0;
    const policy = retry({
      maxAttempts: 3,
      backoff: constantBackoff(0),
      clock,
      handleResult: (r) => (r as { status: number }).status === 503,
    });
    await expect(policy.execute(() => ({ status: ++calls < 3 ? 503 : 200 }))).resolves.toEqual({
      status: 200,
    });
    calls = 0;
    await expect(policy.execute(() => ({ status: 503, n: ++calls }))).resolves.toEqual({ status: 503, n: 3 });
  });

  it('honours a delay carried by the error when it is longer than the backoff', async () => {
    const clock = new ManualClock(0);
    const policy = retry({ maxAttempts: 2, backoff: constantBackoff(10), clock });
    const times: number[] = [];
    const result = policy.execute(() => {
      times.push(clock.now());
      if (times.length === 1) throw new RateLimitedError(2500);
      return 'ok';
    });
    await clock.advance(2499);
    expect(times).toEqual([0]);
    await clock.advance(1);
    await expect(result).resolves.toBe('ok');
    expect(times).toEqual([0, 2500]);
  });

  it('gives up at once when the error asks for a wait beyond maxRetryAfterMs', async () => {
    const clock = new ManualClock(0);
    const policy = retry({ maxAttempts: 5, maxRetryAfterMs: 1000, clock });
    const reasons: string[] = [];
    policy.on('giveUp', (e) => reasons.push(e.reason));
    await expect(
      policy.execute(() =>
        Promise.reject(
          new BrokenCircuitError({ status: 'open', since: 0, until: 5000, reason: 'failure-rate' }, 5000),
        ),
      ),
    ).rejects.toThrow(BrokenCircuitError);
    expect(reasons).toEqual(['retry-after-too-long']);
  });

  it('emits a retry event per retry and a giveUp event, through disposable listeners', async () => {
    const clock = new ManualClock();
    const policy = retry({ maxAttempts: 3, backoff: constantBackoff(5), clock });
    const seen: string[] = [];
    const handle = policy.on('retry', (e) => seen.push(`retry after ${e.attempt} in ${e.delayMs}`));
    policy.on('giveUp', (e) => seen.push(`gave up after ${e.attempts}: ${e.reason}`));
    const result = policy.execute(flaky(10).fn).catch(() => undefined);
    await clock.advance(100);
    await result;
    expect(seen).toEqual(['retry after 1 in 5', 'retry after 2 in 5', 'gave up after 3: max-attempts']);
    handle.dispose();
    seen.length = 0;
    const again = policy.execute(flaky(1).fn);
    await clock.advance(100);
    await again;
    expect(seen).toEqual([]);
  });

  it('a retry budget caps retries to a share of calls', async () => {
    const clock = new ManualClock(0);
    const budget = retryBudget({ ratio: 0.5, minRetriesPerSecond: 0, windowMs: 1000, clock });
    const policy = retry({ maxAttempts: 10, backoff: constantBackoff(0), budget, clock });
    const reasons: string[] = [];
    policy.on('giveUp', (e) => reasons.push(e.reason));
    let calls = 0;
    const alwaysFails = async (): Promise<never> => {
      calls++;
      throw new Error('down');
    };
    for (let i = 0; i < 4; i++) await policy.execute(alwaysFails).catch(() => undefined);
    // 4 executions allow 0.5 × 4 = 2 retries in the window, whatever maxAttempts says.
    expect(calls).toBe(4 + 2);
    expect(reasons.filter((r) => r === 'budget')).toHaveLength(4);
    await clock.advance(1000);
    calls = 0;
    await policy.execute(alwaysFails).catch(() => undefined);
    expect(calls).toBe(1);
  });

  it('rejects bad options naming each one', () => {
    expect(() => retry({ maxAttempts: 0 })).toThrow(
      /maxAttempts: expected an integer >= 1 or Infinity, got 0/,
    );
    expect(() => retry({ maxAttempts: 2.5 })).toThrow(/maxAttempts/);
    expect(() => retry({ backoff: {} as never })).toThrow(/backoff/);
    expect(() => retry({ handle: 'yes' as never })).toThrow(/handle: expected a function/);
    expect(() => retry({ maxRetryAfterMs: -1 })).toThrow(/maxRetryAfterMs/);
    expect(() => retryBudget({ ratio: -1 })).toThrow(/ratio/);
  });
});
