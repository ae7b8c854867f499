import { randomBytes } from 'node:crypto';
import { Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { isKeelError } from '../../src/errors/index.ts';
import { createEnvelope, type Envelope } from '../../src/messaging/envelope.ts';
import { PublishError } from '../../src/messaging/publisher.ts';
import {
  RabbitMqBroker,
  type RabbitMqBrokerOptions,
} from '../../src/messaging/adapters/rabbitmq/rabbitmq-broker.ts';
import {
  closeConnectionsNamed,
  rabbitMqUrl,
  rabbitmqctlWorks,
  rabbitMqApp,
} from '../../src/messaging/adapters/rabbitmq/test-support.ts';
import { rabbitMqTestResources } from './rabbitmq-test-resources.ts';
import { until } from '../until.ts';

const { brokers, consumers, side: raw } = rabbitMqTestResources<RabbitMqBroker>();

const canUseRabbitmqctl = await rabbitmqctlWorks();

function setup(options: RabbitMqBrokerOptions = {}): {
  broker: RabbitMqBroker;
  destination: string;
  tag: string;
} {
  const tag = `keel-test-${randomBytes(4).toString('hex')}`;
  const broker = new RabbitMqBroker({ url: rabbitMqUrl, name: tag, ...options });
  brokers.push(broker);
  return { broker, destination: `rmq_${randomBytes(5).toString('hex')}`, tag };
}

function messages(count: number): Envelope[] {
  return Array.from({ length: count }, (_, n) => createEnvelope({ type: 'job.run.v1', payload: { n } }));
}

function pause(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Ready (not yet delivered) messages in a queue, read through a side channel; 0 while it does not exist. */
async function ready(queue: string): Promise<number> {
  const channel = await raw().createChannel();
  // A queue not declared yet (404) closes the side channel: that is a count of 0 for now.
  channel.on('error', () => {});
  try {
    return (await channel.checkQueue(queue)).messageCount;
  } catch (error) {
    if ((error as { code?: unknown }).code === 404) return 0;
    throw error;
  } finally {
    await channel.close().catch(() => undefined);
  }
}

describe('RabbitMqBroker', () => {
  it('publishes persistent, confirmed AMQP messages into a durable quorum queue', async () => {
    const { broker, destination } = setup();
    const [message] = messages(1);
    await broker.publish(destination, [message!]);
    const channel = await raw().createChannel();
    try {
      const declared = await channel.checkQueue(destination);
      expect(declared.messageCount).toBe(1);
      const got = await channel.get(destination, { noAck: true });
      expect(got && got.properties).toMatchObject({
        messageId: message!.id,
        type: 'job.run.v1',
        deliveryMode: 2,
        contentType: 'application/json',
      });
      expect(got && JSON.parse(got.content.toString())).toEqual({ n: 0 });
    } finally {
      await channel.close();
    }
    // Redeclaring as classic is refused: the queue is a quorum queue.
    const classic = setup({ queueType: 'classic' }).broker;
    const refused = await classic.publish(destination, messages(1)).catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(PublishError);
    expect(String((refused as PublishError).cause)).toMatch(/PRECONDITION_FAILED|inequivalent/);
  });

  it('sends a batch in a few socket writes, not one per message, all of it confirmed', async () => {
    const { broker, destination } = setup();
    await broker.publish(destination, messages(1));
    // Counts the writes of every socket in this process while the batch goes out: the publish
    // connection's, and at most a heartbeat or two of the others.
    const socket = Socket.prototype as unknown as Record<
      '_write' | '_writev',
      (...args: unknown[]) => unknown
    >;
    const write = socket._write;
    const writev = socket._writev;
    let writes = 0;
    socket._write = function (this: unknown, ...args: unknown[]) {
      writes++;
      return write.apply(this, args);
    };
    socket._writev = function (this: unknown, ...args: unknown[]) {
      writes++;
      return writev.apply(this, args);
    };
    try {
      await broker.publish(destination, messages(1000));
    } finally {
      socket._write = write;
      socket._writev = writev;
    }
    // A slice of 128 per write: 8, and amqplib alone made 1 000.
    expect(writes).toBeLessThan(40);
    expect(await ready(destination)).toBe(1001);
  });

  it('rejects with PublishError naming every id when RabbitMQ cannot be reached', async () => {
    const { broker, destination } = setup({ url: 'amqp://guest:guest@127.0.0.1:1', connectTimeoutMs: 1000 });
    const sent = messages(3);
    const error = await broker.publish(destination, sent).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(PublishError);
    expect((error as PublishError).failedIds).toEqual(sent.map((m) => m.id));
  });

  it('names a message RabbitMQ could not route (its queue deleted behind keel) and redeclares the queue next time', async () => {
    const { broker, destination } = setup();
    await broker.publish(destination, messages(1));
    const side = await raw().createChannel();
    await side.deleteQueue(destination);
    await side.close();
    const [lost] = messages(1);
    const error = await broker.publish(destination, [lost!]).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(PublishError);
    expect((error as PublishError).failedIds).toEqual([lost!.id]);
    expect(String((error as PublishError).cause)).toMatch(/unroutable/);
    await broker.publish(destination, [lost!]);
    expect(await ready(destination)).toBe(1);
  });

  it('fails consumer.start() when RabbitMQ cannot be reached', async () => {
    const { broker, destination } = setup({ url: 'amqp://guest:guest@127.0.0.1:1', connectTimeoutMs: 1000 });
    const consumer = broker.consumer(destination, async () => {});
    await expect(consumer.start()).rejects.toThrow(/ECONNREFUSED/);
  });

  it('a source whose broker was closed under it does not try to reconnect', async () => {
    const errors: unknown[] = [];
    const { broker, destination } = setup({ onError: (error) => void errors.push(error) });
    const source = broker.source(destination);
    await source.open(() => {});
    await broker.close();
    await pause(600); // several reconnect backoffs
    await source.close();
    expect(errors).toEqual([]);
  });

  it('refuses bad arguments at the boundary, naming the field', () => {
    expect(() => new RabbitMqBroker({ prefetch: 0 })).toThrow(/prefetch/);
    expect(() => new RabbitMqBroker({ queueType: 'stream' as 'quorum' })).toThrow(/queueType/);
    expect(() => new RabbitMqBroker({ url: 'http://x' })).toThrow(/url/);
    const { broker } = setup();
    expect(() => broker.source('bad name!')).toThrow(/destination/);
    expect(() => broker.source('ok', { group: 'g' })).toThrow(/group/);
    return expect(broker.publish('', messages(1))).rejects.toThrow(/destination/);
  });

  it('holds at most concurrency + prefetch unacknowledged messages: the rest wait in the queue', async () => {
    const { broker, destination } = setup();
    await broker.publish(destination, messages(50));
    let release: () => void = () => {};
    const blocked = new Promise<void>((resolve) => (release = resolve));
    let started = 0;
    const consumer = broker.consumer(
      destination,
      async () => {
        started++;
        await blocked;
      },
      { concurrency: 3, prefetch: 2 },
    );
    consumers.push(consumer);
    await consumer.start();
    await until(() => started === 3);
    await pause(200);
    expect(started).toBe(3);
    expect(await ready(destination)).toBe(45);
    release();
    await until(() => started === 50);
  });

  it('a consumer with no options has a window of 65 (concurrency 1 + prefetch 64), not of one message', async () => {
    const { broker, destination } = setup();
    await broker.publish(destination, messages(100));
    let release: () => void = () => {};
    const blocked = new Promise<void>((resolve) => (release = resolve));
    let started = 0;
    const consumer = broker.consumer(destination, async () => {
      started++;
      await blocked;
    });
    consumers.push(consumer);
    await consumer.start();
    await until(async () => (await ready(destination)) === 35);
    await pause(200);
    expect(await ready(destination)).toBe(35);
    expect(started).toBe(1);
    release();
    await until(() => started === 100);
  });

  it("a bare source takes its window from the broker's prefetch, else from its first claim", async () => {
    const { broker, destination } = setup();
    await broker.publish(destination, messages(20));
    const bare = broker.source(destination);
    await bare.open(() => {});
    try {
      await bare.claim(7); // subscribes with a window of 7
      await until(async () => (await ready(destination)) === 13);
      await pause(200);
      expect(await ready(destination)).toBe(13);
    } finally {
      await bare.close();
    }
    const fixed = setup({ prefetch: 4 }).broker.source(destination);
    await fixed.open(() => {});
    try {
      await until(async () => (await ready(destination)) === 16);
      await pause(200);
      expect(await ready(destination)).toBe(16);
    } finally {
      await fixed.close();
    }
  });

  it('counts attempts exactly across crashes (quorum x-delivery-count) and a release does not count', async () => {
    const { broker, destination } = setup();
    await broker.publish(destination, messages(1));
    const attempts: number[] = [];
    for (let crash = 0; crash < 2; crash++) {
      const source = broker.source(destination);
      await source.open(() => {});
      let claimed: Awaited<ReturnType<typeof source.claim>> = [];
      await until(async () => (claimed = await source.claim(1)).length > 0);
      attempts.push(claimed[0]!.attempt);
      await source.close(); // without ack
    }
    const releasing = broker.source(destination);
    await releasing.open(() => {});
    let held: Awaited<ReturnType<typeof releasing.claim>> = [];
    await until(async () => (held = await releasing.claim(1)).length > 0);
    attempts.push(held[0]!.attempt);
    await releasing.release(held[0]!);
    await releasing.close();
    const last = broker.source(destination);
    await last.open(() => {});
    let final: Awaited<ReturnType<typeof last.claim>> = [];
    await until(async () => (final = await last.claim(1)).length > 0);
    attempts.push(final[0]!.attempt);
    await last.ack(final);
    await last.close();
    expect(attempts).toEqual([1, 2, 3, 3]);
  });

  it('a stopped consumer hands back what it held and prefetched without counting an attempt', async () => {
    const { broker, destination } = setup();
    const sent = messages(10);
    await broker.publish(destination, sent);
    let started = 0;
    const first = broker.consumer(
      destination,
      (_m, { signal }) => {
        started++;
        return new Promise<void>((_, reject) =>
          signal.addEventListener('abort', () => reject(new Error('aborted'))),
        );
      },
      { concurrency: 2, prefetch: 3 },
    );
    await first.start();
    await until(() => started === 2);
    await first.stop({ drainMs: 100 });
    const seen = new Map<string, number>();
    const second = broker.consumer(destination, async (m, { attempt }) => void seen.set(m.id, attempt), {
      concurrency: 4,
    });
    consumers.push(second);
    await second.start();
    await until(() => seen.size === 10);
    expect([...seen.values()]).toEqual(Array.from({ length: 10 }, () => 1));
  });

  it('on classic queues, a crash-requeued message counts as one more attempt (redelivered flag)', async () => {
    const { broker, destination } = setup({ queueType: 'classic' });
    await broker.publish(destination, messages(1));
    const attempts: number[] = [];
    for (let round = 0; round < 3; round++) {
      const source = broker.source(destination);
      await source.open(() => {});
      let claimed: Awaited<ReturnType<typeof source.claim>> = [];
      await until(async () => (claimed = await source.claim(1)).length > 0);
      attempts.push(claimed[0]!.attempt);
      if (round === 2) await source.ack(claimed);
      await source.close();
    }
    // The approximation: the third delivery also says 2.
    expect(attempts).toEqual([1, 2, 2]);
  });

  it('retries through per-delay queues: a short delay is not stuck behind a long one', async () => {
    const { broker, destination } = setup();
    const [slow, fast] = messages(2);
    await broker.publish(destination, [slow!, fast!]);
    const source = broker.source(destination);
    await source.open(() => {});
    let claimed: Awaited<ReturnType<typeof source.claim>> = [];
    await until(async () => (claimed = [...claimed, ...(await source.claim(2))]).length === 2);
    const retriedAt = Date.now();
    const byId = new Map(claimed.map((d) => [d.envelope.id, d]));
    await source.retry(byId.get(slow!.id)!, 3000, new Error('slow'));
    await source.retry(byId.get(fast!.id)!, 300, new Error('fast'));
    await source.close();
    expect(broker.declaredQueues()).toEqual(
      expect.arrayContaining([`${destination}.delay.3000`, `${destination}.delay.300`]),
    );
    const handled: { id: string; attempt: number; after: number }[] = [];
    const consumer = broker.consumer(
      destination,
      async (message, { attempt }) =>
        void handled.push({ id: message.id, attempt, after: Date.now() - retriedAt }),
      { pollIntervalMs: 50 },
    );
    consumers.push(consumer);
    await consumer.start();
    await until(() => handled.length === 2);
    expect(handled.map((h) => [h.id, h.attempt])).toEqual([
      [fast!.id, 2],
      [slow!.id, 2],
    ]);
    expect(handled[0]!.after).toBeGreaterThanOrEqual(290);
    expect(handled[0]!.after).toBeLessThan(2500);
    expect(handled[1]!.after).toBeGreaterThanOrEqual(2990);
  });

  it('parks a message that is not a keel envelope in the dead-letter queue, with the reason', async () => {
    const { broker, destination } = setup();
    await broker.publish(destination, messages(1)); // declares the queue
    const channel = await raw().createConfirmChannel();
    channel.sendToQueue(destination, Buffer.from('not json'), { messageId: 'foreign-1', type: 'x' });
    await channel.waitForConfirms();
    await channel.close();
    const handled: string[] = [];
    const consumer = broker.consumer(destination, async (m) => void handled.push(m.id));
    consumers.push(consumer);
    await consumer.start();
    await until(async () => handled.length === 1 && (await ready(`${destination}.dead-letter`)) === 1);
    const side = await raw().createChannel();
    const parked = await side.get(`${destination}.dead-letter`, { noAck: true });
    await side.close();
    expect(parked && parked.content.toString()).toBe('not json');
    expect(parked && parked.properties.headers).toMatchObject({
      'x-dead-letter-source': destination,
      'x-dead-letter-error': expect.stringMatching(/^undecodable: SyntaxError/) as unknown,
    });
  });

  it.skipIf(!canUseRabbitmqctl)(
    'a consumer whose connection the server closed reconnects and consumes again; a lost ack says so',
    async () => {
      const { broker, destination, tag } = setup();
      const errors: unknown[] = [];
      const seen: { id: string; attempt: number }[] = [];
      let holdFirst = true;
      let release: () => void = () => {};
      const held = new Promise<void>((resolve) => (release = resolve));
      const consumer = broker.consumer(
        destination,
        async (message, { attempt }) => {
          seen.push({ id: message.id, attempt });
          if (holdFirst) {
            holdFirst = false;
            await held;
          }
        },
        { pollIntervalMs: 50 },
      );
      consumer.events.on('error', ({ error }) => void errors.push(error));
      consumers.push(consumer);
      await consumer.start();
      const [first, second] = messages(2);
      await broker.publish(destination, [first!]);
      await until(() => seen.length === 1);
      expect(await closeConnectionsNamed(tag)).toBeGreaterThan(0);
      release(); // the handler finishes after its channel died: the ack cannot be sent
      await until(() => errors.length > 0);
      expect(isKeelError(errors[0], 'KEEL_BROKER_UNAVAILABLE')).toBe(true);
      // Publishing reconnects on demand; the consumer reconnects with backoff.
      await until(async () => {
        try {
          await broker.publish(destination, [second!]);
          return true;
        } catch {
          return false;
        }
      });
      await until(
        () => seen.some((s) => s.id === second!.id) && seen.filter((s) => s.id === first!.id).length === 2,
      );
      expect(seen.filter((s) => s.id === first!.id).map((s) => s.attempt)).toEqual([1, 2]);
    },
  );

  it.skipIf(!canUseRabbitmqctl || process.env['KEEL_RABBITMQ_RESTART'] !== '1')(
    'survives stop_app/start_app: publishes during the outage reject, persisted messages are consumed after (KEEL_RABBITMQ_RESTART=1: disturbs every client of the server)',
    async () => {
      const { broker, destination } = setup({ connectTimeoutMs: 1000 });
      const before = messages(20);
      await broker.publish(destination, before);
      // A consumer of another destination runs through the outage and must come back by itself.
      const liveDestination = `${destination}_live`;
      const liveSeen = new Set<string>();
      const live = broker.consumer(liveDestination, async (m) => void liveSeen.add(m.id), {
        pollIntervalMs: 50,
      });
      consumers.push(live);
      await live.start();
      const seen = new Set<string>();
      const consumer = broker.consumer(destination, async (m) => void seen.add(m.id), { pollIntervalMs: 50 });
      try {
        await rabbitMqApp('stop_app');
        const during = await broker.publish(destination, messages(1)).catch((e: unknown) => e);
        expect(during).toBeInstanceOf(PublishError);
      } finally {
        await rabbitMqApp('start_app');
      }
      // Nothing was handled before the restart: these 20 must have survived it.
      consumers.push(consumer);
      await until(async () => {
        try {
          await consumer.start();
          return true;
        } catch {
          return false;
        }
      }, 30_000);
      await until(() => seen.size === 20, 30_000);
      expect(seen).toEqual(new Set(before.map((m) => m.id)));
      const after = messages(5);
      await broker.publish(liveDestination, after);
      await until(() => liveSeen.size === 5, 30_000);
      expect(liveSeen).toEqual(new Set(after.map((m) => m.id)));
    },
    90_000,
  );
});
