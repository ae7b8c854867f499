import { describe, expect, it } from 'vitest';
import type { Envelope } from './envelope.ts';
import { assertEnvelopeList, redriveLimit } from './broker-arguments.ts';

describe('broker arguments', () => {
  it('takes an array of envelopes, empty too, and refuses anything else by name', () => {
    expect(() => assertEnvelopeList([])).not.toThrow();
    const one = {} as unknown as readonly Envelope[];
    expect(() => assertEnvelopeList(one)).toThrow(/messages: expected an array of envelopes/);
  });

  it('redrive limit: every dead letter by default, else an integer >= 0', () => {
    expect(redriveLimit(undefined)).toBe(Number.POSITIVE_INFINITY);
    expect(redriveLimit(Number.POSITIVE_INFINITY)).toBe(Number.POSITIVE_INFINITY);
    expect(redriveLimit(0)).toBe(0);
    expect(redriveLimit(5)).toBe(5);
    for (const bad of [-1, 1.5, Number.NaN]) {
      expect(() => redriveLimit(bad)).toThrow(/limit: expected an integer >= 0/);
    }
  });
});
