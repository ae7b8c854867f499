import { describeError } from '../../describe-error.ts';
import type { Envelope, Headers } from '../../envelope.ts';

/**
 * How an envelope rides in a Kafka record:
 *
 * - key: the envelope's key (UTF-8), absent when it is `null`;
 * - value: the payload as JSON, so any Kafka consumer reads the payload without keel;
 * - headers: the envelope's own headers as they are, plus keel's, all prefixed `x-keel-`.
 *
 * Envelope headers starting with `x-keel-` are keel's and never pass through as user headers.
 */
export const keelHeaders = {
  id: 'x-keel-id',
  type: 'x-keel-type',
  occurredAt: 'x-keel-occurred-at',
  hlc: 'x-keel-hlc',
  /** Attempt the record starts at (redrive writes none: 1). */
  attempt: 'x-keel-attempt',
  /** Not delivered before this instant, ms since the epoch (delayed publish). */
  availableAt: 'x-keel-available-at',
} as const;

const keelPrefix = 'x-keel-';
// Header names are the same for every record: encode them once.
const names = {
  id: Buffer.from(keelHeaders.id),
  type: Buffer.from(keelHeaders.type),
  occurredAt: Buffer.from(keelHeaders.occurredAt),
  hlc: Buffer.from(keelHeaders.hlc),
};

export interface EncodedRecord {
  key: Buffer | undefined;
  value: Buffer;
  headers: Map<Buffer, Buffer>;
}

export function encodeEnvelope(envelope: Envelope, extra: Headers = {}): EncodedRecord {
  const headers = new Map<Buffer, Buffer>();
  for (const [name, value] of Object.entries(envelope.headers)) {
    if (!name.startsWith(keelPrefix)) headers.set(Buffer.from(name), Buffer.from(value));
  }
  headers.set(names.id, Buffer.from(envelope.id));
  headers.set(names.type, Buffer.from(envelope.type));
  headers.set(names.occurredAt, Buffer.from(envelope.occurredAt));
  if (envelope.hlc !== undefined) headers.set(names.hlc, Buffer.from(envelope.hlc));
  for (const [name, value] of Object.entries(extra)) headers.set(Buffer.from(name), Buffer.from(value));
  return {
    key: envelope.key === null ? undefined : Buffer.from(envelope.key),
    // `undefined` has no JSON form; it travels as null, as it would through any JSON boundary.
    value: Buffer.from(JSON.stringify(envelope.payload) ?? 'null'),
    headers,
  };
}

export interface DecodedRecord {
  envelope: Envelope;
  /** The attempt this record starts at (`x-keel-attempt`, default 1). */
  attempt: number;
  /** `x-keel-available-at`, when the record was published for later. */
  availableAt: number | undefined;
}

export class RecordDecodeError extends Error {
  override readonly name = 'RecordDecodeError';
}

export function decodeRecord(
  key: Buffer | undefined | null,
  value: Buffer | undefined | null,
  rawHeaders: Map<Buffer, Buffer>,
  timestamp: bigint,
  /** The id of a record written without keel's headers: its position, stable across reads. */
  fallbackId: string,
): DecodedRecord {
  const headers: Record<string, string> = {};
  const keel: Record<string, string> = {};
  for (const [name, content] of rawHeaders) {
    const text = name.toString();
    if (text.startsWith(keelPrefix)) keel[text] = content?.toString() ?? '';
    else headers[text] = content?.toString() ?? '';
  }
  let payload: unknown = null;
  if (value != null && value.length > 0) {
    try {
      payload = JSON.parse(value.toString());
    } catch (error) {
      throw new RecordDecodeError(`the record's value is not JSON: ${String(error)}`, { cause: error });
    }
  }
  const id = keel[keelHeaders.id];
  const envelope: Envelope = {
    id: id ?? fallbackId,
    type: keel[keelHeaders.type] ?? 'kafka.record',
    key: key == null ? null : key.toString(),
    payload,
    headers,
    occurredAt: keel[keelHeaders.occurredAt] ?? new Date(Number(timestamp)).toISOString(),
    ...(keel[keelHeaders.hlc] === undefined ? {} : { hlc: keel[keelHeaders.hlc] }),
  };
  const attempt = Number(keel[keelHeaders.attempt] ?? '1');
  const availableAt = keel[keelHeaders.availableAt];
  return {
    envelope,
    attempt: Number.isInteger(attempt) && attempt >= 1 ? attempt : 1,
    availableAt: availableAt === undefined ? undefined : Number(availableAt),
  };
}

/** What `decodeMessage` reads of a consumed record: its parts and its position. */
export interface ConsumedRecord {
  readonly key: Buffer | undefined | null;
  readonly value: Buffer | undefined | null;
  readonly headers: Map<Buffer, Buffer>;
  readonly timestamp: bigint;
  readonly topic: string;
  readonly partition: number;
  readonly offset: bigint;
}

/** `decodeRecord` for a consumed record: without keel's id header, its id is its position, `kafka-<topic>-<partition>-<offset>`. */
export function decodeMessage(message: ConsumedRecord): DecodedRecord {
  return decodeRecord(
    message.key,
    message.value,
    message.headers,
    message.timestamp,
    `kafka-${message.topic}-${message.partition}-${message.offset}`,
  );
}

/**
 * A consumed record that `decodeMessage` refused, as an envelope of type `kafka.undecodable`: its
 * value in base64 and the reason in `x-keel-decode-error`, so a handler or projection decides
 * (dead-letter it, record it and pass over) instead of the consumer stalling on it.
 */
export function undecodableEnvelope(message: ConsumedRecord, error: unknown): Envelope {
  return {
    id: `kafka-${message.topic}-${message.partition}-${message.offset}`,
    type: 'kafka.undecodable',
    key: message.key?.toString() ?? null,
    payload: message.value?.toString('base64') ?? null,
    headers: { 'x-keel-decode-error': describeError(error) },
    occurredAt: new Date(Number(message.timestamp)).toISOString(),
  };
}
