import { InvalidArgumentError } from '../errors/index.ts';
import type { Envelope } from './envelope.ts';

/**
 * Refuses a `messages` argument that is not an array (a caller without types passing one
 * envelope), before a broker maps over it and fails somewhere less clear.
 */
export function assertEnvelopeList(messages: readonly Envelope[]): void {
  const list: unknown = messages;
  if (!Array.isArray(list)) throw new InvalidArgumentError('messages', 'an array of envelopes', messages);
}

/** `redrive`'s `limit`: default every dead letter (`Infinity`); otherwise an integer >= 0. */
export function redriveLimit(limit: number | undefined): number {
  const resolved = limit ?? Number.POSITIVE_INFINITY;
  if (resolved !== Number.POSITIVE_INFINITY && (!Number.isInteger(resolved) || resolved < 0)) {
    throw new InvalidArgumentError('limit', 'an integer >= 0', resolved);
  }
  return resolved;
}
