// Against a real RabbitMQ: acks written in runs (`multiple`) never settle a message still being
// handled. See src/messaging/adapters/rabbitmq/channel-acks.test.ts for the same property against a model of the server.
import { randomBytes } from 'node:crypto';
import { connect, type ChannelModel } from 'amqplib';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createEnvelope, type Envelope } from '../../src/messaging/envelope.ts';
import { PermanentError } from '../../src/messaging/handler.ts';
import { QueueConsumer } from '../../src/messaging/queue-consumer.ts';
import { RabbitMqBroker } from '../../src/messaging/adapters/rabbitmq/rabbitmq-broker.ts';
import type { RabbitMqDelivery } from '../../src/messaging/adapters/rabbitmq/rabbitmq-source.ts';
import {
  deleteQueues,
  rabbitMqUrl,
  requireRabbitMq,
} from '../../src/messaging/adapters/rabbitmq/test-support.ts';
import { until } from '../until.ts';

const queues = new Set<string>();
let raw: ChannelModel;

beforeAll(async () => {
  await requireRabbitMq();
  raw = await connect(rabbitMqUrl);
});
afterAll(async () => {
  await raw?.close().catch(() => undefined);
  await deleteQueues(queues);
});

const pause = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Takes every message out of `queue` through a side channel, as its payloads' `n`. */
async function drain(queue: string): Promise<number[]> {
  const channel = await raw.createChannel();
  const found: number[] = [];
  try {
    for (;;) {
      const got = await channel.get(queue, { noAck: true });
      if (got === false) break;
      found.push((JSON.parse(got.content.toString('utf8')) as { n: number }).n);
    }
  } finally {
    await channel.close();
  }
  return found.sort((a, b) => a - b);
}

describe('RabbitMQ acks in runs', () => {
  it('slow handlers among fast ones, a nack, a retry and a dead letter: a crash returns exactly the unfinished', async () => {
    const tag = `keel-test-${randomBytes(4).toString('hex')}`;
    const destination = `rmq_${randomBytes(5).toString('hex')}`;
    const broker = new RabbitMqBroker({ url: rabbitMqUrl, name: tag });
    const count = 2000;
    /** Slow (ms), done while the others flow: the gaps they leave close again. */
    const slow = new Map([
      [7, 30],
      [57, 15],
      [131, 40],
      [200, 25],
    ]);
    /** Still running when the connection goes. */
    const unfinished = new Set([1900, 1999]);
    const nacked = 100; // its retry copy cannot be published: the original is nacked (requeued)
    const retried = 180;
    const deadLettered = 150;
    const sent: Envelope[] = Array.from({ length: count }, (_, n) =>
      createEnvelope({ type: 'job.run.v1', payload: { n } }),
    );
    await broker.publish(destination, sent);

    // Watch the consuming channel's ack frames; note the delivery tags of the slow messages.
    const source = broker.source(destination);
    const frames: { tag: number; multiple: boolean }[] = [];
    const slowTags: number[] = [];
    const unfinishedTags: number[] = [];
    let failedOnce = false;
    const watched = new WeakSet<object>();
    const claim = source.claim.bind(source);
    source.claim = async (max: number): Promise<RabbitMqDelivery[]> => {
      const claimed = await claim(max);
      for (const delivery of claimed) {
        const { confirmer } = delivery;
        const channel = confirmer.channel;
        if (!watched.has(channel)) {
          watched.add(channel);
          const ack = channel.ack.bind(channel);
          vi.spyOn(channel, 'ack').mockImplementation((message, multiple) => {
            frames.push({ tag: message.fields.deliveryTag, multiple: multiple === true });
            ack(message, multiple);
          });
          const publish = confirmer.publish.bind(confirmer);
          vi.spyOn(confirmer, 'publish').mockImplementation(async (queue, outgoing) => {
            if (!failedOnce && outgoing[0]?.id === sent[nacked]!.id) {
              failedOnce = true;
              return [{ id: outgoing[0].id, error: new Error('test: the retry copy was not confirmed') }];
            }
            return publish(queue, outgoing);
          });
        }
        const { n } = delivery.envelope.payload as { n: number };
        if (slow.has(n)) slowTags.push(delivery.message.fields.deliveryTag);
        if (unfinished.has(n)) unfinishedTags.push(delivery.message.fields.deliveryTag);
      }
      return claimed;
    };

    let release: () => void = () => {};
    const held = new Promise<void>((resolve) => (release = resolve));
    const handled: number[] = [];
    const attempts = new Map<number, number>();
    const consumer = new QueueConsumer(
      source,
      async (message, { attempt }) => {
        const { n } = message.payload as { n: number };
        attempts.set(n, attempt);
        if (unfinished.has(n)) return held;
        if ((n === retried || n === nacked) && attempt === 1) throw new Error('once');
        if (n === deadLettered) throw new PermanentError('never');
        // Fast ones finish out of order too.
        await pause(slow.get(n) ?? n % 3);
        handled.push(n);
      },
      { concurrency: 32, retryDelay: () => 0 },
    );
    let acked = 0;
    let deadLetters = 0;
    consumer.events.on('acked', ({ messages }) => (acked += messages.length));
    consumer.events.on('dead-lettered', () => deadLetters++);
    try {
      await consumer.start();
      const finished = count - unfinished.size - 1; // the dead letter is not acked as handled
      await until(() => acked === finished && deadLetters === 1, 20_000, 'finished messages acked');
      // The last acks are written at the end of their tick.
      await pause(300);
      // A crash as RabbitMQ sees it: the connection goes while two handlers still run, so it
      // requeues exactly what was not settled. A message acked by a run that covered it would be
      // missing; a message whose ack was never written would be back too.
      await broker.close();
    } finally {
      release();
      await consumer.stop({ drainMs: 200 });
      for (const name of broker.declaredQueues()) queues.add(name);
    }
    expect(await drain(destination)).toEqual([...unfinished].sort((a, b) => a - b));
    expect(await drain(`${destination}.dead-letter`)).toEqual([deadLettered]);
    const done = sent.map((_, n) => n).filter((n) => !unfinished.has(n) && n !== deadLettered);
    expect(handled.sort((a, b) => a - b)).toEqual(done); // each once
    expect(failedOnce).toBe(true);
    expect(attempts.get(nacked)).toBe(2); // requeued by the nack, delivered again
    expect(attempts.get(retried)).toBe(2);

    // Runs were written, including after the gaps of the slow ones closed, and never past an
    // unfinished message; acks behind an unsettled message went alone.
    const runs = frames.filter((f) => f.multiple);
    expect(runs.length).toBeGreaterThan(0);
    expect(runs.some((f) => f.tag > Math.max(...slowTags))).toBe(true);
    expect(Math.max(...runs.map((f) => f.tag))).toBeLessThan(Math.min(...unfinishedTags));
    expect(frames.some((f) => !f.multiple && f.tag > Math.min(...unfinishedTags))).toBe(true);
    expect(frames.length).toBeLessThan(done.length);
  });
});
