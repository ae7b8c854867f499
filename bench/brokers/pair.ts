// What bench/brokers needs from each engine: keel's adapter and the raw client, doing the same
// work with the same durability settings, on destinations of their own.
import { createEnvelope, type Envelope } from '../../src/messaging/envelope.ts';

/** One side (keel or the raw client) of one engine. */
export interface Side {
  /** Publishes `messages` to a fresh destination in chunks of `chunk`, each chunk confirmed before the next. */
  publish(destination: string, messages: readonly Envelope[], chunk: number): Promise<void>;
  /**
   * Consumes `count` messages already in `destination` with a no-op handler, acknowledging each
   * as this side's settings say; marks `span` at the first message handled and when every one is
   * handled and acknowledged (before stopping and closing).
   */
  consume(destination: string, count: number, span: Span): Promise<void>;
}

export interface Pair {
  /** `rabbitmq`, `redis`, `kafka`, `nats`: the argument that selects it. */
  readonly id: string;
  /** Printed: `RabbitMQ (quorum queues)`. */
  readonly title: string;
  /** The raw client's name in the bench line: `amqplib`. */
  readonly peer: string;
  /** Durability and settings both sides share, for the printed method. */
  readonly settings: string[];
  /** Connects; fails naming the server when it is not there. */
  open(): Promise<{ keel: Side; raw: Side; close: () => Promise<void> }>;
}

/** The messages every round publishes: small JSON payloads, a key, two headers. */
export function messages(count: number): Envelope[] {
  return Array.from({ length: count }, (_, n) =>
    createEnvelope({
      type: 'bench.published.v1',
      key: `order-${n}`,
      payload: { n, sku: 'SKU-12345', quantity: 3, note: 'benchmark payload of about a hundred bytes' },
      headers: {
        'correlation-id': `c${n}`,
        traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
      },
    }),
  );
}

/** Resolves when `count()` reaches `target`, checking every few ms; rejects past `ms`. */
export async function until(count: () => number, target: number, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (count() < target) {
    if (Date.now() > deadline) throw new Error(`${what}: ${count()} of ${target} after ${ms} ms`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

/** When a consume round saw its first message, and when every message was acknowledged. */
export class Span {
  firstAt = 0;
  doneAt = 0;

  first(): void {
    if (this.firstAt === 0) this.firstAt = performance.now();
  }

  done(): void {
    this.doneAt = performance.now();
  }
}
