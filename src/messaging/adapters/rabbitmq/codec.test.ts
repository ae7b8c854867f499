import type { Message } from 'amqplib';
import { describe, expect, it } from 'vitest';
import { createEnvelope } from '../../envelope.ts';
import { decode, deliveryCount, encode } from './codec.ts';
import { delayBucket, delayQueueName } from './topology.ts';

function asReceived(content: Buffer, properties: Record<string, unknown>): Message {
  return {
    content,
    fields: { deliveryTag: 1, redelivered: false, exchange: '', routingKey: 'q' },
    properties: properties as unknown as Message['properties'],
  };
}

describe('rabbitmq codec', () => {
  const envelope = createEnvelope({
    type: 'order.placed.v1',
    key: 'order-1',
    payload: { total: 12.5, items: ['a'] },
    headers: { traceparent: '00-abc-def-01', 'x-keel-attempt': '99' },
    hlc: '0001:0002',
  });

  it('maps the envelope onto AMQP properties: messageId, type, persistent, JSON body, x-keel- headers', () => {
    const { content, options } = encode(envelope, Date.UTC(2026, 0, 1, 0, 0, 1, 500), { attempt: 2 });
    expect(JSON.parse(content.toString())).toEqual(envelope.payload);
    expect(options).toMatchObject({
      messageId: envelope.id,
      type: 'order.placed.v1',
      persistent: true,
      mandatory: true,
      contentType: 'application/json',
      timestamp: Date.UTC(2026, 0, 1, 0, 0, 1) / 1000,
    });
    // A header an application set under keel's prefix never overrides keel's own.
    expect(options.headers).toEqual({
      traceparent: '00-abc-def-01',
      'x-keel-key': 'order-1',
      'x-keel-occurred-at': envelope.occurredAt,
      'x-keel-hlc': '0001:0002',
      'x-keel-attempt': 2,
    });
  });

  it('decodes what it encodes, dropping the headers RabbitMQ adds', () => {
    const { content, options } = encode(envelope, Date.now(), {
      attempt: 3,
      firstFailedAt: '2026-01-01T00:00:00.000Z',
    });
    const received = asReceived(content, {
      ...options,
      headers: {
        ...options.headers,
        'x-death': [{ count: 1 }],
        'x-first-death-queue': 'q.delay.100',
        'x-delivery-count': 2,
      },
    });
    const decoded = decode(received);
    expect(decoded.envelope).toEqual({ ...envelope, headers: { traceparent: '00-abc-def-01' } });
    expect(decoded.carriedAttempts).toBe(3);
    expect(decoded.firstFailedAt).toBe('2026-01-01T00:00:00.000Z');
    expect(deliveryCount(received)).toBe(2);
  });

  it('keeps a null key and a missing hlc as they were', () => {
    const plain = createEnvelope({ type: 't.v1', payload: null });
    const { content, options } = encode(plain, Date.now());
    expect(decode(asReceived(content, options as Record<string, unknown>)).envelope).toEqual(plain);
  });

  it('refuses a message that is not a keel envelope', () => {
    expect(() => decode(asReceived(Buffer.from('{}'), { headers: {} }))).toThrow(/not a keel envelope/);
    expect(() => decode(asReceived(Buffer.from('not json'), { messageId: 'x', type: 't' }))).toThrow();
  });
});

describe('delay buckets', () => {
  it('round delays up to two significant digits, never early and at most 10 % late', () => {
    expect(delayBucket(0)).toBe(0);
    expect(delayBucket(-5)).toBe(0);
    expect(delayBucket(Number.NaN)).toBe(0);
    expect(delayBucket(0.2)).toBe(1);
    expect(delayBucket(50)).toBe(50);
    expect(delayBucket(1000)).toBe(1000);
    expect(delayBucket(1234)).toBe(1300);
    expect(delayBucket(60_000)).toBe(60_000);
    expect(delayBucket(61_001)).toBe(62_000);
    for (let ms = 1; ms < 5_000_000; ms = Math.ceil(ms * 1.37)) {
      const bucket = delayBucket(ms);
      expect(bucket).toBeGreaterThanOrEqual(ms);
      expect(bucket).toBeLessThanOrEqual(Math.max(ms * 1.1, ms + 1));
    }
  });

  it('names a delay queue after its destination and bucket', () => {
    expect(delayQueueName('orders', 1300)).toBe('orders.delay.1300');
  });
});
