import { describe, expect, it } from 'vitest';
import { parseDuration } from './duration.ts';

describe('parseDuration', () => {
  it('reads ms, s, m, h and d', () => {
    expect(parseDuration('250ms')).toBe(250);
    expect(parseDuration(' 90s ')).toBe(90_000);
    expect(parseDuration('30m')).toBe(1_800_000);
    expect(parseDuration('12h')).toBe(43_200_000);
    expect(parseDuration('7d')).toBe(604_800_000);
    expect(parseDuration('0s')).toBe(0);
  });

  it('refuses anything else, naming the field', () => {
    for (const text of ['', '7', '7 d', '1.5h', '-1s', '7w', 'd', `${'9'.repeat(20)}d`]) {
      expect(() => parseDuration(text, 'KEEL_STREAM_RETENTION')).toThrow(
        expect.objectContaining({ code: 'KEEL_INVALID_ARGUMENT', field: 'KEEL_STREAM_RETENTION' }) as unknown,
      );
    }
  });
});
