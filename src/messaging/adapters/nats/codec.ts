import { headers as natsHeaders, type MsgHdrs } from '@nats-io/transport-node';
import { InvalidArgumentError } from '../../../errors/index.ts';
import type { Envelope, Headers } from '../../envelope.ts';

/** Headers keel sets itself; an envelope's own `x-keel-*` and `Nats-*` headers are dropped. */
export const keelHeaders = {
  id: 'x-keel-id',
  type: 'x-keel-type',
  key: 'x-keel-key',
  occurredAt: 'x-keel-occurred-at',
  hlc: 'x-keel-hlc',
  /** Attempts already made before this copy was published (a hand-back on shutdown). 0 when absent. */
  attempt: 'x-keel-attempt',
  /** When the first attempt failed, carried by copies so a dead letter can report it. */
  firstFailedAt: 'x-keel-first-failed-at',
} as const;

const reserved = /^(x-keel-|nats-)/i;
const lineBreak = /[\r\n]/;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

export interface Carried {
  /** Attempts made before this copy. */
  attempt?: number;
  firstFailedAt?: string;
}

export interface Encoded {
  readonly headers: MsgHdrs;
  readonly data: Uint8Array;
}

/** The NATS headers and body (the payload as JSON) that carry `envelope`. */
export function encode(envelope: Envelope, carried: Carried = {}): Encoded {
  const h = natsHeaders();
  for (const name in envelope.headers) {
    if (reserved.test(name)) continue;
    const value = envelope.headers[name]!;
    // NATS headers are lines: a line break would end the header block early.
    if (lineBreak.test(value) || lineBreak.test(name)) {
      throw new InvalidArgumentError(`headers.${name}`, 'a header name and value without CR or LF', value);
    }
    h.set(name, value);
  }
  h.set(keelHeaders.id, envelope.id);
  h.set(keelHeaders.type, envelope.type);
  if (envelope.key !== null) h.set(keelHeaders.key, envelope.key);
  h.set(keelHeaders.occurredAt, envelope.occurredAt);
  if (envelope.hlc !== undefined) h.set(keelHeaders.hlc, envelope.hlc);
  if (carried.attempt !== undefined && carried.attempt > 0)
    h.set(keelHeaders.attempt, String(carried.attempt));
  if (carried.firstFailedAt !== undefined) h.set(keelHeaders.firstFailedAt, carried.firstFailedAt);
  return { headers: h, data: encoder.encode(JSON.stringify(envelope.payload ?? null)) };
}

export interface Decoded {
  readonly envelope: Envelope;
  /** Attempts made before this copy was published. */
  readonly carriedAttempts: number;
  readonly firstFailedAt: string | undefined;
}

/** Reads an envelope back; throws when the id or type header is missing or the body is not JSON. */
export function decode(message: { headers?: MsgHdrs | undefined; data: Uint8Array }): Decoded {
  const raw = message.headers;
  const id = raw?.get(keelHeaders.id);
  const type = raw?.get(keelHeaders.type);
  if (raw === undefined || !id || !type) {
    throw new Error('message has no x-keel-id or x-keel-type header: not a keel envelope');
  }
  const headers: Headers = {};
  for (const name of raw.keys()) {
    if (!reserved.test(name)) headers[name] = raw.get(name);
  }
  const payload: unknown = JSON.parse(decoder.decode(message.data));
  const key = raw.get(keelHeaders.key);
  const hlc = raw.get(keelHeaders.hlc);
  const attempt = Number(raw.get(keelHeaders.attempt) || 0);
  const first = raw.get(keelHeaders.firstFailedAt);
  return {
    envelope: {
      id,
      type,
      key: raw.has(keelHeaders.key) ? key : null,
      payload,
      headers,
      occurredAt: raw.get(keelHeaders.occurredAt),
      ...(hlc ? { hlc } : {}),
    },
    carriedAttempts: Number.isInteger(attempt) && attempt > 0 ? attempt : 0,
    firstFailedAt: first || undefined,
  };
}
