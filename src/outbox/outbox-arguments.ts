import { InvalidArgumentError } from '../errors/index.ts';
import type { Envelope } from '../messaging/envelope.ts';
import type { OutboxExecutor } from './outbox.ts';

/**
 * The checks both outboxes' `add` make before writing: a transaction, a destination, and
 * envelopes (one or a list); returns the list. Bad input fails with `KEEL_INVALID_ARGUMENT`
 * naming it, before anything is sent.
 */
export function outboxArguments(
  tx: OutboxExecutor,
  destination: string,
  messages: Envelope | readonly Envelope[],
): readonly Envelope[] {
  if (typeof destination !== 'string' || destination.length === 0) {
    throw new InvalidArgumentError('destination', 'a non-empty string', destination);
  }
  if (tx === null || typeof tx !== 'object' || typeof tx.query !== 'function') {
    throw new InvalidArgumentError('tx', 'a transaction with query(sql, params)', tx);
  }
  const list: readonly Envelope[] = Array.isArray(messages) ? messages : [messages as Envelope];
  for (const [index, message] of list.entries()) {
    if (typeof message?.id !== 'string' || typeof message.type !== 'string') {
      throw new InvalidArgumentError(`messages[${index}]`, 'an Envelope (createEnvelope)', message);
    }
  }
  return list;
}
