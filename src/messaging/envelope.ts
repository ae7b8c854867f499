import { formatHlc, type HybridLogicalClock } from '../ordering/index.ts';
import type { Clock } from '../time/index.ts';
import { systemClock, uuidv7At } from '../time/index.ts';

/**
 * Well-known header names. Headers are plain strings so every broker can carry them
 * (AMQP headers, Kafka record headers, NATS headers, Redis stream fields).
 */
export const headerNames = {
  traceparent: 'traceparent',
  tracestate: 'tracestate',
  correlationId: 'correlation-id',
  causationId: 'causation-id',
} as const;

export type Headers = Record<string, string>;

/**
 * The one message shape every broker carries.
 *
 * - `id`: UUIDv7, unique per message; consumers deduplicate on it (the inbox).
 * - `type`: name and version together, `order.placed.v1`: a new version is a new type.
 * - `key`: ordering and partition key; messages with the same key are delivered in order by
 *   adapters that declare per-key ordering. `null` when order does not matter.
 * - `occurredAt`: ISO 8601 wall-clock time, for people. Never order by it: order by `hlc`
 *   or by the broker's sequence.
 * - `hlc`: hybrid logical clock stamp, set at publish and merged at consume.
 */
export interface Envelope<P = unknown> {
  readonly id: string;
  readonly type: string;
  readonly key: string | null;
  readonly payload: P;
  readonly headers: Readonly<Headers>;
  readonly occurredAt: string;
  readonly hlc?: string;
}

export interface EnvelopeInit<P> {
  type: string;
  payload: P;
  key?: string | null;
  headers?: Headers;
  id?: string;
  occurredAt?: string;
  hlc?: string;
}

/**
 * Builds an envelope with a fresh UUIDv7 id and the clock's time, without validating the payload.
 * Given a hybrid logical clock, stamps the envelope with its next tick: the send event.
 */
export function createEnvelope<P>(
  init: EnvelopeInit<P>,
  clock: Clock = systemClock,
  hlc?: HybridLogicalClock,
): Envelope<P> {
  const now = clock.now();
  const stamp = init.hlc ?? (hlc === undefined ? undefined : formatHlc(hlc.now()));
  const envelope: Envelope<P> = {
    id: init.id ?? uuidv7At(now),
    type: init.type,
    key: init.key ?? null,
    payload: init.payload,
    headers: { ...init.headers },
    occurredAt: init.occurredAt ?? new Date(now).toISOString(),
    ...(stamp === undefined ? {} : { hlc: stamp }),
  };
  return envelope;
}
