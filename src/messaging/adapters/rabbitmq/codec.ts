import type { Message, Options } from 'amqplib';
import type { Envelope, Headers } from '../../envelope.ts';

/** Headers keel sets itself; every other `x-keel-` header an envelope carries is dropped. */
export const keelHeaders = {
  key: 'x-keel-key',
  occurredAt: 'x-keel-occurred-at',
  hlc: 'x-keel-hlc',
  /** Attempts that already failed before this copy was published (0 when absent). */
  attempt: 'x-keel-attempt',
  /** When the first attempt failed, carried by retry copies so a dead letter can report it. */
  firstFailedAt: 'x-keel-first-failed-at',
} as const;

/** Headers RabbitMQ adds (dead-lettering, quorum delivery count, stream offset): not part of the envelope. */
const brokerHeader = /^x-(death|first-death-|last-death-|delivery-count|stream-|keel-)/;

export interface Carried {
  /** Failed attempts before this copy. */
  attempt?: number;
  firstFailedAt?: string;
}

/** The AMQP body and properties that carry `envelope`: body is the JSON payload. */
export function encode(
  envelope: Envelope,
  nowMs: number,
  carried: Carried = {},
): { content: Buffer; options: Options.Publish } {
  const headers: Record<string, string | number> = {};
  for (const [name, value] of Object.entries(envelope.headers)) {
    if (!brokerHeader.test(name)) headers[name] = value;
  }
  if (envelope.key !== null) headers[keelHeaders.key] = envelope.key;
  headers[keelHeaders.occurredAt] = envelope.occurredAt;
  if (envelope.hlc !== undefined) headers[keelHeaders.hlc] = envelope.hlc;
  if (carried.attempt !== undefined && carried.attempt > 0) headers[keelHeaders.attempt] = carried.attempt;
  if (carried.firstFailedAt !== undefined) headers[keelHeaders.firstFailedAt] = carried.firstFailedAt;
  return {
    content: Buffer.from(JSON.stringify(envelope.payload ?? null)),
    options: {
      persistent: true,
      mandatory: true,
      contentType: 'application/json',
      messageId: envelope.id,
      type: envelope.type,
      // AMQP timestamps are whole seconds.
      timestamp: Math.floor(nowMs / 1000),
      headers,
    },
  };
}

export interface Decoded {
  envelope: Envelope;
  /** Failed attempts before this copy was published. */
  carriedAttempts: number;
  firstFailedAt: string | undefined;
}

/** Reads an envelope back; throws when the body is not JSON or the id or type is missing. */
export function decode(message: Message): Decoded {
  const { properties } = message;
  const raw = (properties.headers ?? {}) as Record<string, unknown>;
  if (typeof properties.messageId !== 'string' || typeof properties.type !== 'string') {
    throw new Error('message has no messageId or type property: not a keel envelope');
  }
  const headers: Headers = {};
  for (const name in raw) {
    // Only an `x-` name can be the broker's or keel's own: the test is skipped for the others.
    if (name.charCodeAt(0) === 120 && name.charCodeAt(1) === 45 && brokerHeader.test(name)) continue;
    const value = raw[name];
    if (typeof value === 'string') headers[name] = value;
    else if (Buffer.isBuffer(value)) headers[name] = value.toString('utf8');
    else if (typeof value === 'number' || typeof value === 'boolean') headers[name] = String(value);
  }
  const payload: unknown = JSON.parse(message.content.toString('utf8'));
  const key = raw[keelHeaders.key];
  const hlc = raw[keelHeaders.hlc];
  const occurredAt = raw[keelHeaders.occurredAt];
  const attempt = Number(raw[keelHeaders.attempt] ?? 0);
  const first = raw[keelHeaders.firstFailedAt];
  return {
    envelope: {
      id: properties.messageId,
      type: properties.type,
      key: typeof key === 'string' ? key : null,
      payload,
      headers,
      occurredAt:
        typeof occurredAt === 'string'
          ? occurredAt
          : new Date(Number(properties.timestamp ?? 0) * 1000).toISOString(),
      ...(typeof hlc === 'string' ? { hlc } : {}),
    },
    carriedAttempts: Number.isInteger(attempt) && attempt > 0 ? attempt : 0,
    firstFailedAt: typeof first === 'string' ? first : undefined,
  };
}

/** The quorum queue's count of earlier deliveries of this copy (0 on a classic queue). */
export function deliveryCount(message: Message): number {
  const count = Number((message.properties.headers ?? {})['x-delivery-count'] ?? 0);
  return Number.isInteger(count) && count > 0 ? count : 0;
}
