import type { Message } from 'amqplib';
import { describe, expect, it } from 'vitest';
import { createEnvelope } from '../../envelope.ts';
import { deadLetterEnvelope, undecodableCopy } from './dead-letters.ts';

const now = '2026-12-05T07:00:00.000Z';

describe('dead letters', () => {
  it('a dead-letter envelope keeps the message and says where it came from, why, and when', () => {
    const envelope = createEnvelope({
      type: 'job.run.v1',
      payload: { n: 1 },
      headers: { 'correlation-id': 'c' },
    });
    const copy = deadLetterEnvelope(
      { envelope, attempt: 5, firstFailedAt: '2026-12-05T06:00:00.000Z' },
      'jobs',
      new TypeError('boom'),
      now,
    );
    expect(copy).toEqual({
      ...envelope,
      headers: {
        'correlation-id': 'c',
        'x-dead-letter-source': 'jobs',
        'x-dead-letter-error': 'TypeError: boom',
        'x-dead-letter-attempts': '5',
        'x-dead-letter-first-failed-at': '2026-12-05T06:00:00.000Z',
        'x-dead-letter-last-failed-at': now,
      },
    });
    // A first attempt that fails for good failed first now.
    const first = deadLetterEnvelope({ envelope, attempt: 1, firstFailedAt: undefined }, 'jobs', 'no', now);
    expect(first.headers['x-dead-letter-first-failed-at']).toBe(now);
    expect(first.headers['x-dead-letter-error']).toBe('no');
  });

  it('an undecodable message is parked as it is, with the headers, and without a stream offset', () => {
    const message = {
      content: Buffer.from('not json'),
      fields: {},
      properties: { messageId: 'm1', contentType: 'text/plain', headers: { a: 'b', 'x-stream-offset': 7 } },
    } as unknown as Message;
    const copy = undecodableCopy(message, 'orders', new SyntaxError('Unexpected token'), now);
    expect(copy.id).toBe('m1');
    expect(copy.content).toBe(message.content);
    expect(copy.options).toMatchObject({
      messageId: 'm1',
      contentType: 'text/plain',
      persistent: true,
      mandatory: true,
      headers: {
        a: 'b',
        'x-dead-letter-source': 'orders',
        'x-dead-letter-error': 'undecodable: SyntaxError: Unexpected token',
        'x-dead-letter-attempts': '1',
        'x-dead-letter-first-failed-at': now,
        'x-dead-letter-last-failed-at': now,
      },
    });
    expect(copy.options.headers).not.toHaveProperty('x-stream-offset');
    const anonymous = undecodableCopy(
      { ...message, properties: { headers: {} } } as unknown as Message,
      'o',
      'e',
      now,
    );
    expect(anonymous.id).toBe(`raw-${now}`);
  });
});
