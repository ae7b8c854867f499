import { describe, expect, it } from 'vitest';
import { createEnvelope } from '../../envelope.ts';
import { decodeMessage, decodeRecord, encodeEnvelope, keelHeaders } from './record-codec.ts';

describe('record codec', () => {
  it('round-trips an envelope: key as key, payload as JSON value, the rest in headers', () => {
    const envelope = createEnvelope({
      type: 'order.placed.v1',
      key: 'order-1',
      payload: { total: 12.5, items: ['a'] },
      headers: { 'correlation-id': 'c1', [keelHeaders.id]: 'spoofed' },
      hlc: '0001700000000000-0000-node',
    });
    const encoded = encodeEnvelope(envelope, { [keelHeaders.availableAt]: '123' });
    expect(encoded.key?.toString()).toBe('order-1');
    expect(JSON.parse(encoded.value.toString())).toEqual(envelope.payload);
    const decoded = decodeRecord(encoded.key, encoded.value, encoded.headers, 0n, 'fallback');
    expect(decoded.envelope).toEqual({ ...envelope, headers: { 'correlation-id': 'c1' } });
    expect(decoded.availableAt).toBe(123);
    expect(decoded.attempt).toBe(1);
  });

  it('gives a record written without keel a stable identity and its timestamp', () => {
    const decoded = decodeRecord(null, Buffer.from('"hi"'), new Map(), 1_700_000_000_000n, 'kafka-t-0-7');
    expect(decoded.envelope).toMatchObject({
      id: 'kafka-t-0-7',
      type: 'kafka.record',
      key: null,
      payload: 'hi',
      occurredAt: new Date(1_700_000_000_000).toISOString(),
    });
  });

  it('refuses a value that is not JSON', () => {
    expect(() => decodeRecord(null, Buffer.from('{nope'), new Map(), 0n, 'x')).toThrow(/not JSON/);
  });

  it('decodes a consumed record, named by its position when keel did not write it', () => {
    const record = { key: null, value: Buffer.from('{"a":1}'), headers: new Map(), timestamp: 0n };
    const decoded = decodeMessage({ ...record, topic: 'orders', partition: 2, offset: 41n });
    expect(decoded.envelope.id).toBe('kafka-orders-2-41');
    expect(decoded.envelope.payload).toEqual({ a: 1 });
  });
});
