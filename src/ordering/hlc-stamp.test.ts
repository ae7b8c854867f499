import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isKeelError } from '../errors/index.ts';
import {
  compareHlc,
  formatHlc,
  hlcMaxLogical,
  hlcMaxPhysical,
  parseHlc,
  type HlcStamp,
} from './hlc-stamp.ts';

// Small ranges as well as the full ones, so ties on physical and logical (and node ids that are
// prefixes of each other) come up often.
const nodeId = fc.oneof(
  fc.constantFrom('a', 'a-1', 'a.1', 'ab', 'b', 'B', 'node-1', 'node-10', 'node-2', '0', 'Z'),
  fc.stringMatching(/^[A-Za-z0-9._:@-]{1,64}$/),
);
const hlcStamp: fc.Arbitrary<HlcStamp> = fc.record({
  physical: fc.oneof(fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: hlcMaxPhysical })),
  logical: fc.oneof(fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: hlcMaxLogical })),
  node: nodeId,
});

describe('HLC stamp encoding', () => {
  it('is fixed-width hex, then the node id', () => {
    const stamp = { physical: Date.UTC(2026, 0, 1), logical: 3, node: 'orders-1' };
    expect(formatHlc(stamp)).toBe('019b76daa800.000003.orders-1');
    expect(parseHlc('019b76daa800.000003.orders-1')).toEqual(stamp);
    expect(formatHlc({ physical: 0, logical: 0, node: 'a' })).toBe('000000000000.000000.a');
    expect(formatHlc({ physical: hlcMaxPhysical, logical: hlcMaxLogical, node: 'a' })).toBe(
      'ffffffffffff.ffffff.a',
    );
  });

  it('law: parse(format(s)) is s', () => {
    fc.assert(
      fc.property(hlcStamp, (stamp) => {
        expect(parseHlc(formatHlc(stamp))).toEqual(stamp);
      }),
    );
  });

  it('law: string order of the encoding is compareHlc order', () => {
    fc.assert(
      fc.property(hlcStamp, hlcStamp, (a, b) => {
        const x = formatHlc(a);
        const y = formatHlc(b);
        const stringOrder = x < y ? -1 : x > y ? 1 : 0;
        expect(stringOrder).toBe(compareHlc(a, b));
      }),
    );
  });

  it('law: compareHlc is a total order (antisymmetric, transitive, equal only for equal stamps)', () => {
    fc.assert(
      fc.property(hlcStamp, hlcStamp, hlcStamp, (a, b, c) => {
        expect(compareHlc(a, b)).toBe(-compareHlc(b, a) || 0);
        if (compareHlc(a, b) === 0) expect(a).toEqual(b);
        if (compareHlc(a, b) <= 0 && compareHlc(b, c) <= 0) expect(compareHlc(a, c)).toBeLessThanOrEqual(0);
      }),
    );
  });

  it('sorts with Array.prototype.sort the same way as the encoded strings sort', () => {
    fc.assert(
      fc.property(fc.array(hlcStamp, { maxLength: 30 }), (stamps) => {
        const byCompare = [...stamps].sort(compareHlc).map(formatHlc);
        const byString = stamps.map(formatHlc).sort();
        expect(byCompare).toEqual(byString);
      }),
    );
  });

  it('rejects malformed text and stamps, naming the field', () => {
    for (const bad of [
      '',
      '019b76daa800.000003.',
      '019B76DAA800.000003.n',
      '19b76daa800.000003.n',
      '019b76daa800-000003-n',
      '019b76daa800.000003.n n',
      '019b76daa800.000003.' + 'x'.repeat(65),
    ]) {
      expect(() => parseHlc(bad, 'headers.hlc'), bad).toThrow(/headers\.hlc: expected an HLC stamp/);
    }
    expect(() => parseHlc(42 as unknown as string)).toThrow(/hlc: expected an HLC stamp/);
    expect(() => formatHlc({ physical: -1, logical: 0, node: 'a' })).toThrow(/stamp\.physical/);
    expect(() => formatHlc({ physical: hlcMaxPhysical + 1, logical: 0, node: 'a' })).toThrow(
      /stamp\.physical/,
    );
    expect(() => formatHlc({ physical: 1, logical: hlcMaxLogical + 1, node: 'a' })).toThrow(/stamp\.logical/);
    expect(() => formatHlc({ physical: 1, logical: 0.5, node: 'a' })).toThrow(/stamp\.logical/);
    expect(() => formatHlc({ physical: 1, logical: 0, node: 'has space' })).toThrow(/stamp\.node/);
    try {
      parseHlc('nope');
    } catch (error) {
      expect(isKeelError(error, 'KEEL_INVALID_ARGUMENT')).toBe(true);
    }
  });
});
