import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { canonicalJson, requestFingerprint } from './request-fingerprint.ts';
import { propertyRuns } from '../testing/property-runs.ts';

/** The definition: JSON.stringify with each object's entries sorted by key. */
function reference(value: unknown): string {
  if (value === undefined) return '';
  return JSON.stringify(value, (_key, item: unknown) => {
    if (item === null || typeof item !== 'object' || Array.isArray(item)) return item;
    return Object.fromEntries(Object.entries(item).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  });
}

/** The same value with every object's keys inserted in reverse order. */
function reversed(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(reversed);
  if (value === null || typeof value !== 'object') return value;
  return Object.fromEntries(
    Object.entries(value)
      .reverse()
      .map(([k, v]) => [k, reversed(v)]),
  );
}

describe('canonicalJson', () => {
  it('is JSON.stringify with sorted keys, for any JSON value (property)', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (value) => {
        expect(canonicalJson(value)).toBe(reference(value));
        expect(JSON.parse(canonicalJson(value) || 'null')).toEqual(
          JSON.parse(JSON.stringify(value) ?? 'null'),
        );
      }),
      { numRuns: propertyRuns(500) },
    );
  });

  it('does not depend on the order fields were sent in (property)', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (value) => {
        expect(canonicalJson(reversed(value))).toBe(canonicalJson(value));
      }),
      { numRuns: propertyRuns(300) },
    );
  });

  it('leaves out what JSON leaves out, and uses toJSON', () => {
    const value = { b: undefined, a: [undefined, () => 1], d: new Date(0), c: { z: 1, y: Number.NaN } };
    expect(canonicalJson(value)).toBe(reference(value));
    expect(canonicalJson(value)).toBe(
      '{"a":[null,null],"c":{"y":null,"z":1},"d":"1970-01-01T00:00:00.000Z"}',
    );
    // Integer-like keys come first, as in the sorted copy the first version stringified.
    const indexed = { b: 1, '10': 2, '': null, a: 3, '2': 4 };
    expect(canonicalJson(indexed)).toBe(reference(indexed));
    expect(canonicalJson(indexed)).toBe('{"2":4,"10":2,"":null,"a":3,"b":1}');
    expect(canonicalJson(undefined)).toBe('');
    expect(canonicalJson('x')).toBe('"x"');
  });

  it('fingerprints method, path and body', () => {
    const a = requestFingerprint('post', '/v1/orders', { x: 1, y: [2] });
    expect(requestFingerprint('POST', '/v1/orders', { y: [2], x: 1 })).toBe(a);
    expect(requestFingerprint('POST', '/v1/orders', { y: [2], x: 2 })).not.toBe(a);
    expect(requestFingerprint('PATCH', '/v1/orders', { y: [2], x: 1 })).not.toBe(a);
    expect(requestFingerprint('POST', '/v1/other', { y: [2], x: 1 })).not.toBe(a);
  });

  it('fingerprints the query, its parameters in any order; without one, as keys were first stored', () => {
    const plain = requestFingerprint('POST', '/v1/orders', { x: 1, y: [2] });
    // The hash of a request without a query is the one stored before the query counted.
    expect(plain).toBe('cTIE3uhB_yK4celydcHSU7TKXF-LaeuGIp6k4IkQbvo');
    expect(requestFingerprint('POST', '/v1/orders', { x: 1, y: [2] }, '')).toBe(plain);
    const query = requestFingerprint('POST', '/v1/orders', { x: 1 }, 'b=2&a=1&a=3');
    expect(requestFingerprint('POST', '/v1/orders', { x: 1 }, 'a=1&b=2&a=3')).toBe(query);
    expect(requestFingerprint('POST', '/v1/orders', { x: 1 }, 'a=3&b=2&a=1')).not.toBe(query);
    expect(requestFingerprint('POST', '/v1/orders', { x: 1 }, 'a=1&b=3&a=3')).not.toBe(query);
    expect(requestFingerprint('POST', '/v1/orders', { x: 1 }, 'b=2&a=1&a=3&')).toBe(query);
  });
});
