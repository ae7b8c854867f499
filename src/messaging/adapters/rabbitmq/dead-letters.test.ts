import type { Message } from 'amqplib';
import { describe, expect, it } from 'vitest';
import { undecodableCopy } from './dead-letters.ts';

const now = '2026-12-05T07:00:00.000Z';

describe('dead letters', () => {
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
