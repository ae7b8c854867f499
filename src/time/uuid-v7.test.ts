import fc from 'fast-check';
import { validate, version } from 'uuid';
import { describe, expect, it } from 'vitest';
import { uuidv7At } from './uuid-v7.ts';

/** The 48-bit timestamp a UUIDv7 carries in its first 12 hex digits. */
const timestampOf = (id: string): number => parseInt(id.replace(/-/g, '').slice(0, 12), 16);

describe('uuidv7At', () => {
  it('is a valid version-7 UUID carrying the given time', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 2 ** 48 - 1 }), (msecs) => {
        const id = uuidv7At(msecs);
        expect(validate(id)).toBe(true);
        expect(version(id)).toBe(7);
        expect(timestampOf(id)).toBe(msecs);
      }),
    );
  });

  it('sorts by time across milliseconds, and never repeats across refills of its pool', () => {
    const ids = Array.from({ length: 5000 }, (_, i) => uuidv7At(1_700_000_000_000 + Math.floor(i / 10)));
    expect(new Set(ids).size).toBe(ids.length);
    for (let i = 10; i < ids.length; i += 10) expect(ids[i]! > ids[i - 1]!).toBe(true);
  });
});
