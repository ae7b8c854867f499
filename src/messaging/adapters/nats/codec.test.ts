import { describe, expect, it } from 'vitest';
import { KeelError } from '../../../errors/index.ts';
import { ManualClock } from '../../../time/index.ts';
import { createEnvelope } from '../../envelope.ts';
import { decode, encode, keelHeaders } from './codec.ts';
import { FirstFailures } from './jetstream-context.ts';
import { Names, assertDestination } from './names.ts';
import { resolveOptions } from './nats-options.ts';

const clock = new ManualClock();

describe('nats codec', () => {
  it('carries every field of the envelope, and only the envelope, in headers and body', () => {
    const envelope = createEnvelope(
      {
        type: 'order.placed.v1',
        key: 'o-1',
        payload: { orderId: 'o-1', lines: [1, 2] },
        headers: { traceparent: 'tp', 'correlation-id': 'c', 'x-keel-attempt': '9', 'Nats-Msg-Id': 'x' },
        hlc: '0001',
      },
      clock,
    );
    const { headers, data } = encode(envelope);
    expect(headers.get(keelHeaders.id)).toBe(envelope.id);
    const { envelope: back, carriedAttempts, firstFailedAt } = decode({ headers, data });
    // keel's own and NATS's reserved headers never pass through as the envelope's.
    expect(back).toEqual({ ...envelope, headers: { traceparent: 'tp', 'correlation-id': 'c' } });
    expect(carriedAttempts).toBe(0);
    expect(firstFailedAt).toBeUndefined();
  });

  it('keeps a null key null and an empty key empty', () => {
    const none = createEnvelope({ type: 't.v1', payload: null }, clock);
    const empty = createEnvelope({ type: 't.v1', payload: 1, key: '' }, clock);
    expect(decode(encode(none)).envelope.key).toBeNull();
    expect(decode(encode(empty)).envelope.key).toBe('');
  });

  it('carries the attempts made and the first failure time of a handed-back copy', () => {
    const envelope = createEnvelope({ type: 't.v1', payload: {} }, clock);
    const decoded = decode(encode(envelope, { attempt: 2, firstFailedAt: '2026-01-01T00:00:00.000Z' }));
    expect(decoded.carriedAttempts).toBe(2);
    expect(decoded.firstFailedAt).toBe('2026-01-01T00:00:00.000Z');
  });

  it('refuses a header value with a line break, naming the header', () => {
    const envelope = createEnvelope({ type: 't.v1', payload: {}, headers: { note: 'a\r\nb' } }, clock);
    expect(() => encode(envelope)).toThrow(KeelError);
    expect(() => encode(envelope)).toThrow(/headers\.note/);
  });

  it('refuses a message that is not a keel envelope', () => {
    expect(() => decode({ data: new TextEncoder().encode('{}') })).toThrow(/x-keel-id/);
  });
});

describe('nats names', () => {
  it('maps each destination to a stream of its own and a subject', () => {
    const names = new Names('keel');
    expect(names.stream('orders')).toBe('keel_orders');
    expect(names.stream('orders.dead-letter')).toBe('keel_orders~dead-letter');
    expect(names.stream('orders_dead-letter')).not.toBe(names.stream('orders.dead-letter'));
    expect(names.subject('orders.dead-letter')).toBe('keel.orders.dead-letter');
    expect(names.owns('keel_orders')).toBe(true);
    expect(names.owns('keelx_orders')).toBe(false);
  });

  it.each([['orders.*'], ['orders.>'], ['a..b'], [''], ['with space'], ['x'.repeat(201)], [42]])(
    'refuses destination %j, naming the field',
    (value) => {
      expect(() => assertDestination(value)).toThrow(/destination: expected/);
    },
  );

  it('refuses a prefix with _ (it ends the prefix in a stream name)', () => {
    expect(() => new Names('my_app')).toThrow(/prefix/);
  });
});

describe('nats options', () => {
  it('applies the defaults', () => {
    const o = resolveOptions({ servers: '127.0.0.1:4222' });
    expect(o).toMatchObject({
      prefix: 'keel',
      group: 'keel',
      leaseMs: 30_000,
      storage: 'file',
      replicas: 1,
      maxMessages: -1,
      maxBytes: -1,
      maxAgeMs: 0,
      duplicateWindowMs: 120_000,
      publishTimeoutMs: 5000,
      pullExpiresMs: 5000,
    });
  });

  it.each([
    [{ servers: [] }, 'servers'],
    [{ group: 'a.b' }, 'group'],
    [{ leaseMs: 0 }, 'leaseMs'],
    [{ groupStart: 'first' }, 'groupStart'],
    [{ storage: 'disk' }, 'storage'],
    [{ replicas: 0 }, 'replicas'],
    [{ retention: { maxAgeMs: -1 } }, 'retention.maxAgeMs'],
    [{ pullExpiresMs: 500 }, 'pullExpiresMs'],
  ])('refuses %j, naming %s', (options, field) => {
    try {
      resolveOptions(options as never);
      expect.unreachable();
    } catch (error) {
      expect(error).toBeInstanceOf(KeelError);
      expect((error as KeelError).code).toBe('KEEL_INVALID_ARGUMENT');
      expect((error as Error).message.startsWith(`${field}:`)).toBe(true);
    }
  });
});

describe('first failures', () => {
  it('remembers the first time only, and forgets the oldest past its bound', () => {
    const memo = new FirstFailures(2);
    expect(memo.note('a', 't1')).toBe('t1');
    expect(memo.note('a', 't2')).toBe('t1');
    memo.note('b', 't3');
    memo.note('c', 't4');
    expect(memo.get('a')).toBeUndefined();
    expect(memo.get('c')).toBe('t4');
    memo.delete('c');
    expect(memo.get('c')).toBeUndefined();
  });
});
