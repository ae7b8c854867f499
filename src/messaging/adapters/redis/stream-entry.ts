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

/** Decodes an entry written by keel; `undefined` for anything else (a foreign XADD, a damaged entry). */
export function decodeEntry(flat: readonly string[]): StreamEntry | undefined {
  const f = fieldMap(flat);
  const id = f.get('id');
  const type = f.get('type');
  const occurredAt = f.get('occurredAt');
  if (id === undefined || type === undefined || occurredAt === undefined) return undefined;
  let payload: unknown;
  let headers: Headers;
  try {
    payload = JSON.parse(f.get('payload') ?? 'null');
    headers = JSON.parse(f.get('headers') ?? '{}') as Headers;
  } catch {
    return undefined;
  }
  if (typeof headers !== 'object' || headers === null || Array.isArray(headers)) return undefined;
  const hlc = f.get('hlc');
  const envelope: Envelope = {
    id,
    type,
    key: f.get('key') ?? null,
    payload,
    headers,
    occurredAt,
    ...(hlc === undefined ? {} : { hlc }),
  };
  const priorAttempts = Number(f.get('attempt') ?? 0);
  return {
    envelope,
    priorAttempts: Number.isInteger(priorAttempts) && priorAttempts >= 0 ? priorAttempts : 0,
    firstFailedAt: f.get('firstFailedAt'),
  };
}

export const deadLetterHeaders = [
  'x-dead-letter-source',
  'x-dead-letter-error',
  'x-dead-letter-attempts',
  'x-dead-letter-first-failed-at',
  'x-dead-letter-last-failed-at',
] as const;

export function describeError(error: unknown): string {
  const text = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
  return text.length > 2000 ? text.slice(0, 2000) + '…' : text;
}
