import { InvalidArgumentError } from '../../../errors/index.ts';
import type { Envelope, Headers } from '../../envelope.ts';

/**
 * How an envelope is laid out as the fields of one stream entry:
 *
 * | field           | value                                                                   |
 * | --------------- | ----------------------------------------------------------------------- |
 * | `id`            | the envelope id                                                         |
 * | `type`          | the envelope type, `order.placed.v1`                                     |
 * | `key`           | the ordering key; absent when the key is `null`                         |
 * | `payload`       | the payload as JSON                                                     |
 * | `headers`       | the headers as a JSON object of strings                                 |
 * | `occurredAt`    | ISO 8601                                                                |
 * | `hlc`           | the hybrid logical clock stamp; absent when the envelope has none        |
 * | `attempt`       | deliveries already spent before this entry was written (0 when published) |
 * | `firstFailedAt` | ISO 8601, the first failure; only on retried copies                     |
 * | `retryOf`       | the entry a retried copy was made from; keeps copies distinct           |
 *
 * Plain fields rather than one JSON blob, so `redis-cli XRANGE` shows what is in a stream.
 */
export interface StreamEntry {
  readonly envelope: Envelope;
  /** Deliveries spent before this entry was written. */
  readonly priorAttempts: number;
  readonly firstFailedAt: string | undefined;
}

export type Fields = string[];

export function encodeEntry(
  envelope: Envelope,
  extra: { priorAttempts?: number; firstFailedAt?: string; retryOf?: string } = {},
): Fields {
  const payload = JSON.stringify(envelope.payload);
  const fields: Fields = ['id', envelope.id, 'type', envelope.type];
  if (envelope.key !== null) fields.push('key', envelope.key);
  // JSON.stringify(undefined) is undefined: carry it as null, as a JSON column would.
  fields.push('payload', payload ?? 'null', 'headers', JSON.stringify(envelope.headers));
  fields.push('occurredAt', envelope.occurredAt);
  if (envelope.hlc !== undefined) fields.push('hlc', envelope.hlc);
  fields.push('attempt', String(extra.priorAttempts ?? 0));
  if (extra.firstFailedAt !== undefined) fields.push('firstFailedAt', extra.firstFailedAt);
  if (extra.retryOf !== undefined) fields.push('retryOf', extra.retryOf);
  return fields;
}

/** Encodes every message before anything is sent, so one bad payload fails the call at the boundary. */
export function encodeAll(messages: readonly Envelope[]): Fields[] {
  return messages.map((message, i) => {
    try {
      return encodeEntry(message);
    } catch (error) {
      throw new InvalidArgumentError(
        `messages[${i}]`,
        `an envelope whose payload is JSON-serializable (${(error as Error).message})`,
      );
    }
  });
}

/** The entry's fields as a map; Redis returns them as a flat list. */
export function fieldMap(flat: readonly string[]): Map<string, string> {
  const map = new Map<string, string>();
  for (let i = 0; i + 1 < flat.length; i += 2) map.set(flat[i]!, flat[i + 1]!);
  return map;
}

/**
 * Decodes an entry written by keel; `undefined` for anything else (a foreign XADD, a damaged entry).
 * On every claimed message: one pass over the flat list, no map, one envelope shape (a field
 * named twice counts once, the last).
 */
export function decodeEntry(flat: readonly string[]): StreamEntry | undefined {
  let id: string | undefined;
  let type: string | undefined;
  let key: string | null = null;
  let payloadJson = 'null';
  let headersJson = '{}';
  let occurredAt: string | undefined;
  let hlc: string | undefined;
  let attempt: string | undefined;
  let firstFailedAt: string | undefined;
  for (let i = 0; i + 1 < flat.length; i += 2) {
    const value = flat[i + 1]!;
    switch (flat[i]) {
      case 'id':
        id = value;
        break;
      case 'type':
        type = value;
        break;
      case 'key':
        key = value;
        break;
      case 'payload':
        payloadJson = value;
        break;
      case 'headers':
        headersJson = value;
        break;
      case 'occurredAt':
        occurredAt = value;
        break;
      case 'hlc':
        hlc = value;
        break;
      case 'attempt':
        attempt = value;
        break;
      case 'firstFailedAt':
        firstFailedAt = value;
        break;
    }
  }
  if (id === undefined || type === undefined || occurredAt === undefined) return undefined;
  let payload: unknown;
  let headers: unknown;
  try {
    payload = JSON.parse(payloadJson);
    headers = JSON.parse(headersJson);
  } catch {
    return undefined;
  }
  if (typeof headers !== 'object' || headers === null || Array.isArray(headers)) return undefined;
  // Two literals rather than a spread: `hlc` is absent, not undefined, when the entry has none.
  const envelope: Envelope =
    hlc === undefined
      ? { id, type, key, payload, headers: headers as Headers, occurredAt }
      : { id, type, key, payload, headers: headers as Headers, occurredAt, hlc };
  const priorAttempts = attempt === undefined || attempt === '0' ? 0 : Number(attempt);
  return new DecodedEntry(
    envelope,
    Number.isInteger(priorAttempts) && priorAttempts >= 0 ? priorAttempts : 0,
    firstFailedAt,
  );
}

/** A class rather than a literal: see `HeldMessage` (V8 pretenures busy literal sites). */
class DecodedEntry implements StreamEntry {
  readonly envelope: Envelope;
  readonly priorAttempts: number;
  readonly firstFailedAt: string | undefined;

  constructor(envelope: Envelope, priorAttempts: number, firstFailedAt: string | undefined) {
    this.envelope = envelope;
    this.priorAttempts = priorAttempts;
    this.firstFailedAt = firstFailedAt;
  }
}

export const deadLetterHeaders = [
  'x-dead-letter-source',
  'x-dead-letter-error',
  'x-dead-letter-attempts',
  'x-dead-letter-first-failed-at',
  'x-dead-letter-last-failed-at',
] as const;
