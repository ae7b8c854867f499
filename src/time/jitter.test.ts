import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decorrelatedJitter, equalJitter, fullJitter } from './jitter.ts';

const delay = fc.double({ min: 0, max: 1e7, noNaN: true });
// A random source pinned to one draw in [0, 1).
const draw = fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true });

describe('jitter bounds', () => {
  it('full jitter stays in [0, delay]', () => {
    fc.assert(
      fc.property(delay, draw, (d, r) => {
        const out = fullJitter(d, () => r);
        return out >= 0 && out <= d;
      }),
    );
  });

  it('equal jitter stays in [delay / 2, delay]', () => {
    fc.assert(
      fc.property(delay, draw, (d, r) => {
        const out = equalJitter(d, () => r);
        return out >= d / 2 && out <= d;
      }),
    );
  });

  it('decorrelated jitter stays in [base, min(cap, max(base, 3 × previous))]', () => {
    fc.assert(
      fc.property(delay, delay, delay, draw, (base, extra, previous, r) => {
        const cap = base + extra;
        const out = decorrelatedJitter(previous, base, cap, () => r);
        return out >= Math.min(base, cap) && out <= Math.min(cap, Math.max(base, previous * 3));
      }),
    );
  });
});

describe('jitter spread', () => {
  // Spread: the extreme draws reach both ends of the range, so the whole interval is used.
  it('full and equal jitter span their whole interval', () => {
    fc.assert(
      fc.property(fc.double({ min: 1, max: 1e7, noNaN: true }), (d) => {
        const almostOne = 1 - Number.EPSILON;
        expect(fullJitter(d, () => 0)).toBe(0);
        expect(fullJitter(d, () => almostOne)).toBeCloseTo(d, 6);
        expect(equalJitter(d, () => 0)).toBe(d / 2);
        expect(equalJitter(d, () => almostOne)).toBeCloseTo(d, 6);
      }),
    );
  });

  it('full jitter over many draws has a mean near delay / 2 and uses every decile', () => {
    // A seeded linear congruential generator: deterministic, yet spread like a real source.
    let seed = 42;
    const random = (): number => (seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31) / 2 ** 31;
    const deciles = new Array<number>(10).fill(0);
    let sum = 0;
    const n = 10_000;
    for (let i = 0; i < n; i++) {
      const out = fullJitter(1000, random);
      sum += out;
      deciles[Math.floor(out / 100)]!++;
    }
    expect(sum / n).toBeGreaterThan(480);
    expect(sum / n).toBeLessThan(520);
    for (const count of deciles) expect(count).toBeGreaterThan(n / 10 - 200);
  });
});
