// QueueConsumer.health() on the real NATS JetStream through a TCP proxy that cuts the consumer's
// connection, while the shared server (and the publisher, connected straight to it) carries on.
import { randomBytes } from 'node:crypto';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { TcpProxy } from '../../../testing/index.ts';
import { failing, jobs, until } from '../consumer-health-test-support.ts';
import type { QueueConsumer } from '../../queue-consumer.ts';
import { NatsJetStreamBroker } from './nats-broker.ts';
import {
  deleteStreamsWithPrefix,
  natsUrl,
  proxyServers,
  requireNats,
  startNatsProxy,
  testPrefix,
} from './test-support.ts';

const prefix = testPrefix();
const brokers: NatsJetStreamBroker[] = [];
const consumers: QueueConsumer[] = [];
let proxy: TcpProxy;

beforeAll(async () => {
  await requireNats();
  proxy = await startNatsProxy();
});
afterEach(async () => {
  proxy.restore();
  for (const consumer of consumers.splice(0)) await consumer.stop({ drainMs: 500 });
  for (const broker of brokers.splice(0)) await broker.close();
});
afterAll(async () => {
  await proxy.close();
  await deleteStreamsWithPrefix(prefix);
}, 30_000);

/** The group's messages not yet delivered and delivered but not acknowledged, read straight from the server. */
async function outstanding(stream: string, group: string): Promise<{ pending: number; unacked: number }> {
  const nc = await connect({ servers: natsUrl, timeout: 3000, maxReconnectAttempts: 0 });
  try {
    const info = await (await jetstreamManager(nc)).consumers.info(stream, group);
    return { pending: info.num_pending, unacked: info.num_ack_pending };
  } finally {
    await nc.close();
  }
}

describe('QueueConsumer.health() on NATS JetStream, its connection cut and restored', () => {
  it('is failing (connect) while the connection is cut, ok once the client is back; nothing lost or left unacked', async () => {
    const through = new NatsJetStreamBroker({
      servers: proxyServers(proxy),
      prefix,
      pullExpiresMs: 1000,
    });
    const direct = new NatsJetStreamBroker({ servers: natsUrl, prefix });
    brokers.push(through, direct);
    const destination = `health_${randomBytes(5).toString('hex')}`;
    const handled = new Set<string>();
    const consumer = through.consumer(destination, async (message) => void handled.add(message.id), {
      concurrency: 4,
      pollIntervalMs: 100,
    });
    consumers.push(consumer);
    await consumer.start();
    const before = jobs(0, 20);
    await direct.publish(destination, before);
    await until('the first messages handled', () => handled.size === 20);
    // Their acks on the wire before the cut: an ack the cut swallows is a redelivery, not this test.
    await until('the first messages acked', () => consumer.stats.held === 0);
    expect(consumer.health()).toMatchObject({ status: 'ok' });

    const cutAt = Date.now();
    proxy.cut();
    await until('health failing', () => consumer.health().status === 'failing');
    const lost = failing(consumer.health());
    expect(lost).toMatchObject({
      dependency: 'broker',
      during: 'connect',
      lastError: { code: 'KEEL_BROKER_UNAVAILABLE' },
    });
    expect(lost.since).toBeGreaterThanOrEqual(cutAt);
    // The client tries again every 250-500 ms; an attempt is counted failed when the next begins.
    await until('failed reconnects counted', () => failing(consumer.health()).failures >= 2);
    expect(failing(consumer.health()).since).toBe(lost.since);
    expect(consumer.state).toBe('running');

    const during = jobs(20, 20);
    await direct.publish(destination, during);
    proxy.restore();
    await until('health ok again', () => consumer.health().status === 'ok');
    await until('every message handled', () => handled.size === 40);
    for (const message of [...before, ...during]) expect(handled.has(message.id)).toBe(true);

    await consumer.stop({ drainMs: 2000 });
    expect(await outstanding(through.streamName(destination), 'keel')).toEqual({ pending: 0, unacked: 0 });
  });
});
