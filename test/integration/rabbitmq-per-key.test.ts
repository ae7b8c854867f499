// Per-key ordering on RabbitMQ (`ordering: 'per-key'`), against a real server at 127.0.0.1:5672
// (or KEEL_RABBITMQ_URL): partition routing, single-active-consumer failover between consumer
// instances, and retries that hold their key across a crash. The shared scenarios run in
// test/conformance/rabbitmq.test.ts.
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { isKeelError } from '../../src/errors/index.ts';
import { createEnvelope, type Envelope } from '../../src/messaging/envelope.ts';
import { partitionOf } from '../../src/messaging/adapters/rabbitmq/partitions.ts';
import {
  RabbitMqBroker,
  type RabbitMqBrokerOptions,
} from '../../src/messaging/adapters/rabbitmq/rabbitmq-broker.ts';
import {
  closeConnectionsNamed,
  rabbitMqUrl,
  rabbitmqctlWorks,
} from '../../src/messaging/adapters/rabbitmq/test-support.ts';
import { rabbitMqTestResources } from './rabbitmq-test-resources.ts';
import { until } from '../until.ts';

const { brokers, consumers, side: raw } = rabbitMqTestResources<RabbitMqBroker>();

const canUseRabbitmqctl = await rabbitmqctlWorks();

function setup(options: RabbitMqBrokerOptions = {}): {
  open: () => RabbitMqBroker;
  destination: string;
  tag: string;
} {
  const tag = `keel-per-key-${randomBytes(4).toString('hex')}`;
  const open = (): RabbitMqBroker => {
    const broker = new RabbitMqBroker({
      url: rabbitMqUrl,
      name: tag,
      ordering: 'per-key',
      partitions: 3,
      ...options,
    });
    brokers.push(broker);
    return broker;
  };
  return { open, destination: `rmqk_${randomBytes(5).toString('hex')}`, tag };
}

function keyed(count: number, keys: readonly string[]): Envelope[] {
  return Array.from({ length: count }, (_, n) =>
    createEnvelope({ type: 'job.run.v1', key: keys[n % keys.length]!, payload: { n } }),
  );
}

const n = (m: Envelope): number => (m.payload as { n: number }).n;

function pause(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function ready(queue: string): Promise<number> {
  const channel = await raw().createChannel();
  try {
    return (await channel.checkQueue(queue)).messageCount;
  } finally {
    await channel.close();
  }
}

/** Per key, the payload numbers in the order they were first handled successfully. */
function orderByKey(handled: readonly Envelope[]): Map<string, number[]> {
  const seen = new Set<string>();
  const byKey = new Map<string, number[]>();
  for (const m of handled) {
    if (seen.has(m.id)) continue;
    seen.add(m.id);
    byKey.set(m.key!, [...(byKey.get(m.key!) ?? []), n(m)]);
  }
  return byKey;
}

describe('RabbitMqBroker: per-key ordering', () => {
  it('declares per-key ordering and routes each key to one partition queue, FNV-1a(key) mod partitions', async () => {
    const { open, destination } = setup();
    const broker = open();
    expect(broker.capabilities.ordering).toBe('per-key');
    expect(broker.queuesOf(destination)).toEqual([0, 1, 2].map((i) => `${destination}.p${i}`));
    // A source declares every partition; publishing declares those it writes to.
    const source = broker.source(destination);
    await source.open(() => {});
    await source.close();
    const sent = keyed(12, ['a', 'b', 'c', 'd', 'e', 'f']);
    await broker.publish(destination, sent);
    for (let i = 0; i < 3; i++) {
      const expected = sent.filter((m) => partitionOf(m, 3) === i).length;
      expect(await ready(`${destination}.p${i}`)).toBe(expected);
    }
    // The partition queues have a single active consumer: basic.get is refused on them.
    const channel = await raw().createChannel();
    channel.on('error', () => {});
    await expect(channel.get(`${destination}.p0`)).rejects.toThrow(/single active consumer/);
  });

  it('refuses partitions without per-key ordering, and a bad count, naming the field', () => {
    const bad = (options: RabbitMqBrokerOptions): unknown => {
      try {
        new RabbitMqBroker(options);
      } catch (error) {
        return isKeelError(error) ? error.details : error;
      }
      return undefined;
    };
    expect(bad({ partitions: 4 })).toMatchObject({ field: 'partitions' });
    expect(bad({ ordering: 'per-key', partitions: 0 })).toMatchObject({ field: 'partitions' });
    expect(bad({ ordering: 'per-key', partitions: 1.5 })).toMatchObject({ field: 'partitions' });
    expect(bad({ ordering: 'total' as 'none' })).toMatchObject({ field: 'ordering' });
  });

  it('two consumer instances: one is active per partition, the other takes over in order when it stops', async () => {
    const { open, destination } = setup();
    const publisher = open();
    const sent = keyed(60, ['a', 'b', 'c', 'd', 'e']);
    const handled: { by: string; message: Envelope }[] = [];
    const running = new Set<string>();
    let overlap = false;
    const handler =
      (by: string) =>
      async (message: Envelope): Promise<void> => {
        if (running.has(message.key!)) overlap = true;
        running.add(message.key!);
        await pause(5);
        running.delete(message.key!);
        handled.push({ by, message });
      };
    const first = open().consumer(destination, handler('first'), { concurrency: 4 });
    const second = open().consumer(destination, handler('second'), { concurrency: 4 });
    consumers.push(second);
    await first.start();
    await second.start();
    await publisher.publish(destination, sent);
    await until(() => handled.length >= 20);
    await first.stop({ drainMs: 2000 });
    await until(() => new Set(handled.map((h) => h.message.id)).size === 60);
    expect(overlap).toBe(false);
    // The first one subscribed first, so it was active on every partition until it stopped.
    const firstDone = handled.findIndex((h) => h.by === 'second');
    expect(handled.slice(0, firstDone).every((h) => h.by === 'first')).toBe(true);
    expect(handled.slice(firstDone).every((h) => h.by === 'second')).toBe(true);
    for (const [key, order] of orderByKey(handled.map((h) => h.message))) {
      expect(order, `key ${key}`).toEqual(sent.filter((m) => m.key === key).map(n));
    }
  });

  it('a retry waits in the consumer holding its key; a crash during the backoff returns it ahead of its successors', async () => {
    const { open, destination } = setup({ partitions: 1 });
    const broker = open();
    const sent = keyed(3, ['k']);
    await broker.publish(destination, sent);
    const crashed = broker.source(destination);
    await crashed.open(() => {});
    let claimed: Awaited<ReturnType<typeof crashed.claim>> = [];
    await until(async () => (claimed = await crashed.claim(10)).length > 0);
    // One message of the key at a time.
    expect(claimed.map((d) => n(d.envelope))).toEqual([0]);
    await crashed.retry(claimed[0]!, 60_000, new Error('transient'));
    // Its successors wait behind it, though they are here.
    await pause(200);
    expect(await crashed.claim(10)).toEqual([]);
    await crashed.close(); // a crash in the backoff: nothing acked
    const order: number[] = [];
    const attempts: number[] = [];
    const consumer = open().consumer(
      destination,
      async (m, ctx) => {
        order.push(n(m));
        attempts.push(ctx.attempt);
      },
      { concurrency: 4 },
    );
    consumers.push(consumer);
    await consumer.start();
    await until(() => order.length === 3);
    expect(order).toEqual([0, 1, 2]);
    // Redelivered after the crash: counted as one more attempt (the in-memory retry is lost).
    expect(attempts[0]).toBe(2);
  });

  it('a retried message comes back after its backoff with the next attempt, before its successors', async () => {
    const { open, destination } = setup({ partitions: 2 });
    const broker = open();
    const sent = keyed(6, ['x', 'y']);
    const handled: { n: number; attempt: number }[] = [];
    const consumer = broker.consumer(
      destination,
      async (m, ctx) => {
        if (n(m) === 0 && ctx.attempt === 1) throw new Error('once');
        handled.push({ n: n(m), attempt: ctx.attempt });
      },
      { concurrency: 4, retryDelay: () => 300 },
    );
    consumers.push(consumer);
    await consumer.start();
    await broker.publish(destination, sent);
    await until(() => handled.length === 6);
    const x = handled.filter((h) => h.n % 2 === 0);
    expect(x).toEqual([
      { n: 0, attempt: 2 },
      { n: 2, attempt: 1 },
      { n: 4, attempt: 1 },
    ]);
    // Key y went on during x's backoff.
    expect(handled.findIndex((h) => h.n === 1)).toBeLessThan(handled.findIndex((h) => h.n === 0));
  });

  it.skipIf(!canUseRabbitmqctl)(
    'after the server closed its connection the consumer consumes every partition again, in order',
    async () => {
      const { open, destination, tag } = setup({ partitions: 2 });
      const broker = open();
      const handled: Envelope[] = [];
      let release: () => void = () => {};
      const held = new Promise<void>((resolve) => (release = resolve));
      const consumer = broker.consumer(
        destination,
        async (message) => {
          if (handled.length === 0) await held;
          handled.push(message);
        },
        { concurrency: 4, pollIntervalMs: 50 },
      );
      consumers.push(consumer);
      await consumer.start();
      const sent = keyed(20, ['a', 'b', 'c']);
      await broker.publish(destination, sent);
      await pause(200);
      expect(await closeConnectionsNamed(tag)).toBeGreaterThan(0);
      release();
      await until(() => new Set(handled.map((m) => m.id)).size === 20);
      for (const [key, order] of orderByKey(handled)) {
        expect(order, `key ${key}`).toEqual(sent.filter((m) => m.key === key).map(n));
      }
    },
  );
});
