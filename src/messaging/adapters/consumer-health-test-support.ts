// What the consumer-health tests of the adapters that hold a link of their own share (RabbitMQ,
// NATS, Kafka): the jobs they send, a handler that holds them, waiting on real time, and reading
// a failing health.
import type { ServiceHealth } from '../../service/index.ts';
import { createEnvelope, type Envelope } from '../envelope.ts';

/** `count` `job.run.v1` messages carrying `{ n }` from `from` on. */
export function jobs(from: number, count: number): Envelope[] {
  return Array.from({ length: count }, (_, i) =>
    createEnvelope({ type: 'job.run.v1', payload: { n: from + i } }),
  );
}

/** Polls on real time: the server and the sockets are real. */
export async function until(what: string, condition: () => boolean, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** `health` as failing, or a failure saying what it was instead. */
export function failing(health: ServiceHealth): Extract<ServiceHealth, { status: 'failing' }> {
  if (health.status !== 'failing') throw new Error(`expected failing, got ${JSON.stringify(health)}`);
  return health;
}

/**
 * A handler that holds every message until `release()`, to keep a consumer's slots busy through
 * a cut: `busy()` counts the messages it holds, `handled` how often each id was let through.
 */
export function heldHandler(): {
  handle: (message: Envelope) => Promise<void>;
  busy: () => number;
  release: () => void;
  handled: Map<string, number>;
} {
  const handled = new Map<string, number>();
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  let busy = 0;
  const handle = async (message: Envelope): Promise<void> => {
    busy++;
    try {
      await released;
    } finally {
      busy--;
    }
    handled.set(message.id, (handled.get(message.id) ?? 0) + 1);
  };
  return { handle, busy: () => busy, release, handled };
}
