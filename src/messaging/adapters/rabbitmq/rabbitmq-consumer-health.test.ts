// QueueConsumer.health() on the real RabbitMQ through a TCP proxy that cuts the consumer's link,
// while the shared server (and the publisher, connected straight to it) carries on.
import { randomBytes } from 'node:crypto';
import { connect } from 'amqplib';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startTcpProxy, type TcpProxy } from '../../../testing/index.ts';
import { exponentialBackoff } from '../../../time/index.ts';
import { failing, heldHandler, jobs, until } from '../consumer-health-test-support.ts';
import type { QueueConsumer } from '../../queue-consumer.ts';
import { RabbitMqBroker } from './rabbitmq-broker.ts';
import { RabbitMqStreamBroker } from './rabbitmq-stream-broker.ts';
import { deleteQueues, rabbitMqUrl, requireRabbitMq } from './test-support.ts';

const brokers: (RabbitMqBroker | RabbitMqStreamBroker)[] = [];
const consumers: QueueConsumer[] = [];
const queues = new Set<string>();
let proxy: TcpProxy;

beforeAll(async () => {
  await requireRabbitMq();
  proxy = await startTcpProxy({ port: Number(new URL(rabbitMqUrl).port || 5672) });
});
afterEach(async () => {
  proxy.restore();
  for (const consumer of consumers.splice(0)) await consumer.stop({ drainMs: 200 });
  for (const broker of brokers.splice(0)) {
    for (const name of broker.declaredQueues()) queues.add(name);
    await broker.close();
  }
});
afterAll(async () => {
  await proxy.close();
  await deleteQueues(queues);
});

/** The server's address, through the proxy. */
function proxiedUrl(): string {
  const url = new URL(rabbitMqUrl);
  url.hostname = proxy.host;
  url.port = String(proxy.port);
  return url.toString();
}

/** Reconnects a few times a second, so that failed attempts show within the test. */
const reconnectBackoff = exponentialBackoff({ initialMs: 50, maxMs: 200 });

/** A broker that consumes through the proxy, one that publishes straight to the server, a fresh queue. */
function setup(): { through: RabbitMqBroker; direct: RabbitMqBroker; destination: string } {
  const tag = `keel-test-${randomBytes(4).toString('hex')}`;
  const through = new RabbitMqBroker({ url: proxiedUrl(), name: `${tag} through proxy`, reconnectBackoff });
  const direct = new RabbitMqBroker({ url: rabbitMqUrl, name: tag });
  brokers.push(through, direct);
  return { through, direct, destination: `rmq_health_${randomBytes(5).toString('hex')}` };
}

/** Messages in the queue, ready or (while a consumer holds them) not: read once every consumer is gone. */
async function leftIn(queue: string): Promise<number> {
  const connection = await connect(rabbitMqUrl);
  try {
    const channel = await connection.createChannel();
    return (await channel.checkQueue(queue)).messageCount;
  } finally {
    await connection.close();
  }
}

describe('QueueConsumer.health() on RabbitMQ, its connection cut and restored', () => {
  it('is failing (connect) while the link is cut, with failed reconnects counted, and ok once it is back; nothing lost', async () => {
    const { through, direct, destination } = setup();
    const handled = new Set<string>();
    const consumer = through.consumer(destination, async (message) => void handled.add(message.id), {
      concurrency: 4,
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
    expect(lost).toMatchObject({ dependency: 'broker', during: 'connect' });
    expect(lost.since).toBeGreaterThanOrEqual(cutAt);
    // Before a reconnect has failed, the loss itself; after, the last attempt's error.
    if (lost.failures === 0) expect(lost.lastError).toMatchObject({ code: 'KEEL_BROKER_UNAVAILABLE' });
    // Idle all along: its claims went on and answered (from memory), and changed nothing of this.
    await until('failed reconnects counted', () => failing(consumer.health()).failures >= lost.failures + 2);
    const later = failing(consumer.health());
    expect(later.since).toBe(lost.since);
    expect(later.lastError).toBeInstanceOf(Error);
    expect(later.lastError).not.toBe(lost.lastError);
    expect(later.lastContactAt ?? 0).toBeLessThanOrEqual(lost.since);
    expect(consumer.state).toBe('running');

    // Published meanwhile: it waits in the queue.
    const during = jobs(20, 20);
    await direct.publish(destination, during);
    proxy.restore();
    await until('health ok again', () => consumer.health().status === 'ok');
    await until('every message handled', () => handled.size === 40);
    for (const message of [...before, ...during]) expect(handled.has(message.id)).toBe(true);

    await consumer.stop({ drainMs: 2000 });
    expect(await leftIn(destination)).toBe(0);
  });

  it('is failing while cut with every slot busy (no claim is made), ok once back; the held messages come again', async () => {
    const { through, direct, destination } = setup();
    const { handle, busy, release, handled } = heldHandler();
    const consumer = through.consumer(destination, handle, { concurrency: 2, prefetch: 0 });
    consumers.push(consumer);
    await consumer.start();
    const sent = jobs(0, 6);
    await direct.publish(destination, sent);
    await until('every slot busy', () => busy() === 2);
    expect(consumer.health()).toMatchObject({ status: 'ok' });

    proxy.cut();
    await until('health failing', () => consumer.health().status === 'failing');
    expect(consumer.stats.inFlight).toBe(2);
    expect(failing(consumer.health())).toMatchObject({ dependency: 'broker', during: 'connect' });
    await until('a failed reconnect counted', () => failing(consumer.health()).failures >= 1);

    proxy.restore();
    await until('health ok again while the slots are still busy', () => consumer.health().status === 'ok');
    expect(consumer.stats.inFlight).toBe(2);

    // The two held through the cut cannot be acked on the channel that died: RabbitMQ has
    // delivered them again, and they are handled again.
    release();
    await until('every message handled', () => sent.every((message) => handled.has(message.id)));
    await consumer.stop({ drainMs: 2000 });
    expect(await leftIn(destination)).toBe(0);
  });

  it('on a stream, is failing (connect) while the group reader is cut off, and ok once it reads again; nothing missed', async () => {
    const tag = `keel-stream-${randomBytes(4).toString('hex')}`;
    const through = new RabbitMqStreamBroker({
      url: proxiedUrl(),
      name: `${tag} through proxy`,
      reconnectBackoff,
    });
    const direct = new RabbitMqStreamBroker({ url: rabbitMqUrl, name: tag });
    brokers.push(through, direct);
    const stream = `rmqs_health_${randomBytes(5).toString('hex')}`;
    const handled = new Set<string>();
    const consumer = through.consumer(stream, async (message) => void handled.add(message.id), {
      group: 'health',
      pollIntervalMs: 100,
    });
    consumers.push(consumer);
    await consumer.start();
    const before = jobs(0, 10);
    await direct.publish(stream, before);
    await until('the first messages handled', () => handled.size === 10);
    await until('the first messages acked', () => consumer.stats.held === 0);
    expect(consumer.health()).toMatchObject({ status: 'ok' });

    proxy.cut();
    await until('health failing', () => consumer.health().status === 'failing');
    expect(failing(consumer.health())).toMatchObject({ dependency: 'broker', during: 'connect' });
    await until('a failed reconnect counted', () => failing(consumer.health()).failures >= 1);

    const during = jobs(10, 10);
    await direct.publish(stream, during);
    proxy.restore();
    await until('health ok again', () => consumer.health().status === 'ok');
    await until('every message handled', () => handled.size === 20);
    for (const message of [...before, ...during]) expect(handled.has(message.id)).toBe(true);
  });
});
