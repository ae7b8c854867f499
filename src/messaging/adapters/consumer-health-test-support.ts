// What the consumer-health tests of the adapters that hold a link of their own share (RabbitMQ,
// NATS): the jobs they send, waiting on real time, and reading a failing health.
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
