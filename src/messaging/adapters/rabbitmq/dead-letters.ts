import type { Message } from 'amqplib';
import { describeError } from '../../describe-error.ts';
import type { Outgoing } from './confirm-channel.ts';

/**
 * A message that is not a keel envelope, to be parked as it is (body and properties) in a
 * dead-letter queue or stream: the same dead-letter headers, `undecodable: …` as the error, one
 * attempt. Its id is its `messageId`, or `raw-<now>` when it has none. A stream's offset header
 * is dropped: the copy gets its own.
 */
export function undecodableCopy(message: Message, source: string, error: unknown, now: string): Outgoing {
  const id = typeof message.properties.messageId === 'string' ? message.properties.messageId : `raw-${now}`;
  const headers: Record<string, unknown> = {
    ...(message.properties.headers ?? {}),
    'x-dead-letter-source': source,
    'x-dead-letter-error': `undecodable: ${describeError(error)}`,
    'x-dead-letter-attempts': '1',
    'x-dead-letter-first-failed-at': now,
    'x-dead-letter-last-failed-at': now,
  };
  delete headers['x-stream-offset'];
  return {
    id,
    content: message.content,
    options: { ...message.properties, headers, persistent: true, mandatory: true, messageId: id },
  };
}
