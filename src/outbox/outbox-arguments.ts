import { InvalidArgumentError } from '../errors/index.ts';
import type { Envelope } from '../messaging/envelope.ts';
import type { OutboxExecutor } from './outbox.ts';

/** `keel_outbox.id` is a `uuid`; the WAL outbox's messages end up there when they are parked. */
const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * The checks both outboxes' `add` make before writing: a transaction, a destination, and
 * envelopes (one or a list); returns the list. Bad input fails with `KEEL_INVALID_ARGUMENT`
 * naming it, before anything is sent: in a keel `Tx` the insert is sent without waiting, so a
 * value the table refuses would otherwise surface only at the commit, as a bare SQLSTATE.
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
  for (const [index, message] of list.entries()) checkEnvelope(message, index);
  if (list.length > 1) refuseRepeatedIds(list);
  return list;
}

function checkEnvelope(message: Envelope, index: number): void {
  const at = `messages[${index}]`;
  if (message === null || typeof message !== 'object') {
    throw new InvalidArgumentError(at, 'an Envelope (createEnvelope)', message);
  }
  if (typeof message.id !== 'string' || !uuid.test(message.id)) {
    throw new InvalidArgumentError(`${at}.id`, 'a UUID (createEnvelope makes one)', message.id);
  }
  if (typeof message.type !== 'string' || message.type.length === 0) {
    throw new InvalidArgumentError(`${at}.type`, 'a non-empty string', message.type);
  }
  if (message.key != null && typeof message.key !== 'string') {
    throw new InvalidArgumentError(`${at}.key`, 'a string or null', message.key);
  }
  // JSON has no undefined: the row's payload would be SQL NULL (a NOT NULL column).
  const payload: unknown = message.payload;
  if (payload === undefined || typeof payload === 'function' || typeof payload === 'symbol') {
    throw new InvalidArgumentError(`${at}.payload`, 'a JSON value (null included)', payload);
  }
  const headers: unknown = message.headers;
  if (headers === null || typeof headers !== 'object' || Array.isArray(headers)) {
    throw new InvalidArgumentError(`${at}.headers`, 'an object of string values', headers);
  }
  for (const name in headers) {
    const value = (headers as Record<string, unknown>)[name];
    if (typeof value !== 'string') {
      throw new InvalidArgumentError(
        `${at}.headers`,
        `string values (${JSON.stringify(name)} is not)`,
        value,
      );
    }
  }
  if (typeof message.occurredAt !== 'string' || Number.isNaN(Date.parse(message.occurredAt))) {
    throw new InvalidArgumentError(`${at}.occurredAt`, 'an ISO 8601 time', message.occurredAt);
  }
  if (message.hlc != null && typeof message.hlc !== 'string') {
    throw new InvalidArgumentError(`${at}.hlc`, 'a string or undefined', message.hlc);
  }
}

/** Two rows of one id fail the table's unique id at the commit, not at `add`. */
function refuseRepeatedIds(list: readonly Envelope[]): void {
  const seen = new Map<string, number>();
  for (const [index, message] of list.entries()) {
    const id = message.id.toLowerCase();
    const first = seen.get(id);
    if (first !== undefined) {
      throw new InvalidArgumentError(
        `messages[${index}].id`,
        `an id not already in this call (messages[${first}] has it)`,
        message.id,
      );
    }
    seen.set(id, index);
  }
}
