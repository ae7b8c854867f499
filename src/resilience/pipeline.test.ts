import { describe, expect, expectTypeOf, it } from 'vitest';
import { constantBackoff, ManualClock, sleep } from '../time/index.ts';
import { circuitBreaker } from './circuit-breaker.ts';
import { BrokenCircuitError } from './errors.ts';
import { fallback } from './fallback.ts';
import { pipeline } from './pipeline.ts';
import { retry } from './retry.ts';
import { timeout } from './timeout.ts';

describe('pipeline', () => {
  it('the first policy is outermost: retry around timeout gives each attempt its own deadline', async () => {
    const clock = new ManualClock(0);
    const policy = pipeline(
      retry({ maxAttempts: 3, backoff: constantBackoff(0), clock }),
      timeout(100, { clock }),
    );
    const attempts: number[] = [];
    const result = policy.execute(async ({ signal, attempt }) => {
      attempts.push(attempt);
      await sleep(attempt < 3 ? 1000 : 10, { clock, signal });
      return attempt;
    });
    await clock.advance(210);
    await expect(result).resolves.toBe(3);
    expect(attempts).toEqual([1, 2, 3]);
  });

  it('fallback outside retry and breaker answers once everything gave up, and types its value', async () => {
    const clock = new ManualClock(0);
    const breaker = circuitBreaker({ threshold: { kind: 'consecutive', failures: 2 }, clock });
    const policy = pipeline(
      fallback({ fallback: () => 'stale' as const }),
      retry({ maxAttempts: 5, backoff: constantBackoff(0), maxRetryAfterMs: 1000, clock }),
      breaker,
    );
    let calls = 0;
    const result = policy.execute((): Promise<number> => {
      calls++;
      return Promise.reject(new Error('down'));
    });
    expectTypeOf(result).toEqualTypeOf<Promise<number | 'stale'>>();
    await expect(result).resolves.toBe('stale');
    // Two failures opened the breaker for 10 s, longer than retry will wait: it gave up at once.
    expect(calls).toBe(2);
    expect(breaker.state.status).toBe('open');
  });

  it('flattens nested pipelines and works inside another chain', async () => {
    const clock = new ManualClock(0);
    const inner = pipeline(timeout(100, { clock }));
    const outer = pipeline(retry({ maxAttempts: 2, backoff: constantBackoff(0), clock }), inner);
    expect(outer.policies).toHaveLength(2);
    await expect(outer.execute(() => 'ok')).resolves.toBe('ok');
    const wrapped = pipeline(retry({ maxAttempts: 1, clock }), circuitBreaker({ clock }));
    await expect(pipeline(wrapped).execute(() => 'ok')).resolves.toBe('ok');
  });

  it('an already-aborted signal rejects before anything runs', async () => {
    let ran = false;
    const policy = pipeline(retry({ clock: new ManualClock() }));
    await expect(policy.execute(() => (ran = true), AbortSignal.abort())).rejects.toMatchObject({
      code: 'KEEL_ABORTED',
    });
    expect(ran).toBe(false);
  });

  it('breaker errors tell a retry outside how long to wait', async () => {
    const clock = new ManualClock(0);
    const breaker = circuitBreaker({ threshold: { kind: 'consecutive', failures: 1 }, openMs: 500, clock });
    const policy = pipeline(retry({ maxAttempts: 3, backoff: constantBackoff(1), clock }), breaker);
    let calls = 0;
    const result = policy.execute(() => {
      calls++;
      if (calls === 1) throw new Error('blip');
      return 'recovered';
    });
    await clock.advance(499);
    expect(calls).toBe(1);
    await clock.advance(1);
    await expect(result).resolves.toBe('recovered');
    expect(breaker.state.status).toBe('closed');
    expect(BrokenCircuitError).toBeDefined();
  });

  it('rejects an empty pipeline naming the argument', () => {
    expect(() => pipeline()).toThrow(/policies: expected at least one policy/);
  });

  it('rejects what is not a policy when built, naming its position, not on the first call', () => {
    const notAPolicy = { execute: () => 'x' } as never;
    expect(() => pipeline(retry(), notAPolicy)).toThrow(/policies\[1\]: expected a policy/);
    expect(() => pipeline(undefined as never)).toThrow(/policies\[0\]/);
  });
});
