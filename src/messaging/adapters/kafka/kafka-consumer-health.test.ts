// QueueConsumer.health() on the real Kafka through a TCP proxy that cuts the consumer's links
// (to its group coordinator and its fetch stream's), while the broker (and the publisher,
// connected straight to it) carries on. Kafka tells a client its brokers' own addresses in
// metadata, so the consumer's client has them rewritten to the proxy's as metadata arrives.
// A leader moving (not a lost link): kafka-source-link.test.ts.
import { randomBytes } from 'node:crypto';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { instancesChannel, type Base, type ClusterMetadata, type CreationEvent } from '@platformatic/kafka';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { startTcpProxy, type TcpProxy } from '../../../testing/index.ts';
import { failing, heldHandler, jobs, until } from '../consumer-health-test-support.ts';
import type { QueueConsumer } from '../../queue-consumer.ts';
import { KafkaBroker } from './kafka-broker.ts';
import { kafkaTestSuite } from './kafka-test-suite.ts';
import { kafkaBrokers } from './test-support.ts';

vi.setConfig({ testTimeout: 120_000 });

const suite = kafkaTestSuite();
let proxy: TcpProxy;

beforeAll(async () => {
  const [host, port] = kafkaBrokers[0]!.split(':') as [string, string];
  proxy = await startTcpProxy({ host, port: Number(port) });
});
afterAll(async () => {
  await proxy.close();
});

/**
 * Has the clients of `clientId` reach every broker through the proxy: the brokers' addresses in
 * each metadata answer are replaced as it arrives (the client keeps that very map).
 */
function throughProxy(clientId: string): void {
  const rewrite = (cluster: ClusterMetadata): void => {
    for (const [id, broker] of cluster.brokers)
      cluster.brokers.set(id, { ...broker, host: proxy.host, port: proxy.port });
  };
  const onCreated = (message: unknown): void => {
    const { instance } = message as CreationEvent<Base>;
    if (instance.clientId === clientId) instance.on('client:metadata', rewrite);
  };
  subscribe(instancesChannel.name, onCreated);
  suite.cleanups.push(async () => unsubscribe(instancesChannel.name, onCreated));
}

/**
 * A broker whose consumers reach Kafka through the proxy (holding at most `maxBuffered` records
 * each), one that publishes straight to Kafka, a fresh topic, and the through-broker's Fetch
 * requests counted.
 */
function setup(maxBuffered: number): {
  through: KafkaBroker;
  direct: KafkaBroker;
  destination: string;
  fetches: () => number;
  consumers: QueueConsumer[];
} {
  const tag = `keel-health-${randomBytes(4).toString('hex')}`;
  throughProxy(tag);
  const fetches = suite.requestsSent(tag);
  const through = new KafkaBroker({
    brokers: [`${proxy.host}:${proxy.port}`],
    clientId: tag,
    maxBuffered,
    maxWaitMs: 100,
  });
  const direct = new KafkaBroker({ brokers: kafkaBrokers });
  const destination = `kh_${randomBytes(5).toString('hex')}`;
  suite.topics.push(destination, `${destination}.dead-letter`);
  const consumers: QueueConsumer[] = [];
  suite.cleanups.push(async () => {
    for (const consumer of consumers) await consumer.stop({ drainMs: 500 });
    await through.close();
    await direct.close();
  });
  // Last pushed, run first: the link is back before anything is stopped.
  suite.cleanups.push(async () => proxy.restore());
  return { through, direct, destination, fetches: () => fetches.count('Fetch'), consumers };
}

/** Waits until no Fetch request has gone out for `quietMs`: the stream is paused. */
async function fetchPaused(fetches: () => number, quietMs = 1500): Promise<void> {
  let last = fetches();
  let since = Date.now();
  await until('the fetch paused', () => {
    if (fetches() !== last) {
      last = fetches();
      since = Date.now();
    }
    return Date.now() - since >= quietMs;
  });
}

describe('QueueConsumer.health() on Kafka, its links cut and restored', () => {
  it('is failing (connect) while cut with its fetch paused (every buffered slot full), ok once back; each message handled once', async () => {
    const { through, direct, destination, fetches, consumers } = setup(4);
    const { handle, busy, release, handled } = heldHandler();
    const consumer = through.consumer(destination, handle, { concurrency: 2 });
    consumers.push(consumer);
    await consumer.start();
    const sent = jobs(0, 12);
    await direct.publish(destination, sent);
    await until('every slot busy', () => busy() === 2);
    // Four records held (two handled, two waiting): the source has paused its fetch.
    await fetchPaused(fetches);
    const fetchedBefore = fetches();
    expect(consumer.health()).toMatchObject({ status: 'ok' });

    const cutAt = Date.now();
    proxy.cut();
    // Bounded by the client's retries of the heartbeat or the fetch: three, 1 s apart.
    await until('health failing', () => consumer.health().status === 'failing', 10_000);
    const lost = failing(consumer.health());
    expect(lost).toMatchObject({ dependency: 'broker', during: 'connect' });
    expect(lost.since).toBeGreaterThanOrEqual(cutAt);
    // No fetch told it: the stream stayed paused all along.
    expect(fetches()).toBe(fetchedBefore);
    expect(consumer.stats.inFlight).toBe(2);
    await until('a failed attempt to rejoin counted', () => failing(consumer.health()).failures >= 1, 30_000);
    expect(failing(consumer.health()).since).toBe(lost.since);

    proxy.restore();
    await until(
      'health ok again while the slots are still busy',
      () => consumer.health().status === 'ok',
      30_000,
    );
    expect(consumer.stats.inFlight).toBe(2);

    release();
    await until('every message handled', () => sent.every((message) => handled.has(message.id)), 30_000);
    await consumer.stop({ drainMs: 2000 });
    for (const message of sent) expect(handled.get(message.id)).toBe(1);
  });

  it('is failing (connect) while cut with its fetch running (its stream ends), ok once back; each message handled once', async () => {
    const { through, direct, destination, consumers } = setup(1000);
    const handled = new Map<string, number>();
    const consumer = through.consumer(
      destination,
      async (message) => void handled.set(message.id, (handled.get(message.id) ?? 0) + 1),
      { concurrency: 4 },
    );
    consumers.push(consumer);
    await consumer.start();
    const before = jobs(0, 10);
    await direct.publish(destination, before);
    await until('the first messages handled', () => handled.size === 10);
    await until('the first messages acked', () => consumer.stats.held === 0);
    expect(consumer.health()).toMatchObject({ status: 'ok' });

    const cutAt = Date.now();
    proxy.cut();
    // Bounded by the client's retries of the heartbeat or the fetch: three, 1 s apart.
    await until('health failing', () => consumer.health().status === 'failing', 10_000);
    const lost = failing(consumer.health());
    expect(lost).toMatchObject({ dependency: 'broker', during: 'connect' });
    expect(lost.since).toBeGreaterThanOrEqual(cutAt);

    const during = jobs(10, 10);
    await direct.publish(destination, during);
    proxy.restore();
    await until('health ok again', () => consumer.health().status === 'ok', 30_000);
    await until('every message handled', () => handled.size === 20, 30_000);
    await consumer.stop({ drainMs: 2000 });
    for (const message of [...before, ...during]) expect(handled.get(message.id)).toBe(1);
  });
});
