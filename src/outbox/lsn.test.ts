import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { formatLsn, parseLsn } from './lsn.ts';

describe('WAL positions', () => {
  it('reads both halves, padded or not, and prints them back', () => {
    expect(parseLsn('16/B374D848')).toBe((0x16n << 32n) | 0xb374d848n);
    expect(parseLsn('00000016/0000D848')).toBe((0x16n << 32n) | 0xd848n);
    expect(formatLsn(parseLsn('0/0'))).toBe('0/0');
  });

  it('orders as the server does, and round-trips any position', () => {
    fc.assert(
      fc.property(
        fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
        fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
        (a, b) => {
          expect(parseLsn(formatLsn(a))).toBe(a);
          expect(parseLsn(formatLsn(a)) < parseLsn(formatLsn(b))).toBe(a < b);
        },
      ),
    );
  });

  it('refuses what is not a position, naming the field', () => {
    for (const bad of ['', '16', '16/', 'x/1', '1/2/3', '123456789/0']) {
      expect(() => parseLsn(bad)).toThrow(/lsn: expected a WAL position/);
    }
  });
});
