import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { constantBackoff, exponentialBackoff } from './backoff.ts';

const draw = fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true });
const retry = fc.integer({ min: 1, max: 2000 });
const initial = fc.integer({ min: 0, max: 10_000 });

describe('constantBackoff', () => {
  it('waits the same for every retry', () => {
    const backoff = constantBackoff(250);
    expect([1, 2, 10].map((n) => backoff.delay(n, 0))).toEqual([250, 250, 250]);
  });

  it('rejects a negative delay naming the option', () => {
    expect(() => constantBackoff(-1)).toThrow(/delayMs: expected a finite number >= 0, got -1/);
  });
});

describe('exponentialBackoff', () => {
  it('without jitter doubles from initialMs and stops at maxMs', () => {
    const backoff = exponentialBackoff({ initialMs: 100, maxMs: 1000, jitter: 'none' });
    expect([1, 2, 3, 4, 5, 6].map((n) => backoff.delay(n, 0))).toEqual([100, 200, 400, 800, 1000, 1000]);
  });

  it('without jitter is non-decreasing and within [initialMs, maxMs] for every retry', () => {
    fc.assert(
      fc.property(
        initial,
        fc.integer({ min: 0, max: 100_000 }),
        fc.double({ min: 1, max: 10, noNaN: true }),
        retry,
        (i, extra, factor, n) => {
          const backoff = exponentialBackoff({ initialMs: i, maxMs: i + extra, factor, jitter: 'none' });
          const d = backoff.delay(n, 0);
          return d >= i && d <= i + extra && backoff.delay(n + 1, d) >= d;
        },
      ),
    );
  });

  it('with any jitter never waits longer than maxMs nor less than 0', () => {
    const jitter = fc.constantFrom('full' as const, 'equal' as const, 'decorrelated' as const);
    fc.assert(
      fc.property(
        initial,
        fc.integer({ min: 0, max: 100_000 }),
        jitter,
        draw,
        retry,
        fc.nat(1_000_000),
        (i, extra, j, r, n, prev) => {
          const backoff = exponentialBackoff({ initialMs: i, maxMs: i + extra, jitter: j, random: () => r });
          const d = backoff.delay(n, prev);
          return d >= 0 && d <= i + extra;
        },
      ),
    );
  });

  it('with decorrelated jitter never waits less than initialMs', () => {
    fc.assert(
      fc.property(
        initial,
        fc.integer({ min: 0, max: 100_000 }),
        draw,
        fc.nat(1_000_000),
        (i, extra, r, prev) => {
          const backoff = exponentialBackoff({
            initialMs: i,
            maxMs: i + extra,
            jitter: 'decorrelated',
            random: () => r,
          });
          return backoff.delay(2, prev) >= i;
        },
      ),
    );
  });

  it('rejects bad options naming each one', () => {
    expect(() => exponentialBackoff({ initialMs: -5 })).toThrow(/initialMs/);
    expect(() => exponentialBackoff({ factor: 0.5 })).toThrow(/factor: expected a finite number >= 1/);
    expect(() => exponentialBackoff({ initialMs: 500, maxMs: 100 })).toThrow(
      /maxMs: expected a number >= initialMs/,
    );
    expect(() => exponentialBackoff({ jitter: 'wild' as never })).toThrow(/jitter/);
  });
});
