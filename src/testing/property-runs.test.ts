import { describe, expect, it } from 'vitest';
import { propertyRuns } from './property-runs.ts';

describe('propertyRuns', () => {
  it('is the base alone without KEEL_PROPERTY_SCALE', () => {
    expect(propertyRuns(30, {})).toBe(30);
    expect(propertyRuns(30, { KEEL_PROPERTY_SCALE: ' ' })).toBe(30);
  });

  it('scales the base, rounding, never below one run', () => {
    expect(propertyRuns(30, { KEEL_PROPERTY_SCALE: '20' })).toBe(600);
    expect(propertyRuns(25, { KEEL_PROPERTY_SCALE: '0.5' })).toBe(13);
    expect(propertyRuns(15, { KEEL_PROPERTY_SCALE: '0.01' })).toBe(1);
  });

  it('refuses a scale that is not a positive number, by name', () => {
    for (const bad of ['0', '-2', 'ten', 'Infinity'])
      expect(() => propertyRuns(30, { KEEL_PROPERTY_SCALE: bad })).toThrow(
        /^KEEL_PROPERTY_SCALE: expected a positive number/,
      );
    expect(() => propertyRuns(0, {})).toThrow(/^base: expected a positive integer/);
  });
});
