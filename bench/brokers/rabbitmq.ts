// RabbitMQ: keel's RabbitMqBroker (plain and per-key) and RabbitMqStreamBroker beside amqplib used
// directly, doing the same on the same kind of queues.
import { randomBytes } from 'node:crypto';
import { connect, type Channel, type ChannelModel, type ConfirmChannel } from 'amqplib';
import type { Envelope } from '../../src/messaging/envelope.ts';
import {
  partitionOf,
  partitionQueueName,
  RabbitMqBroker,
  RabbitMqStreamBroker,
} from '../../src/messaging/adapters/rabbitmq/index.ts';
import { deleteQueues } from '../../src/messaging/adapters/rabbitmq/test-support.ts';
import { keelSide } from './keel-side.ts';
import { until, type Pair, type Side, type Span } from './pair.ts';

const url = process.env.KEEL_RABBITMQ_URL ?? 'amqp://guest:guest@127.0.0.1:5672';
const concurrency = 64;
const prefetch = 256;
/** Per-key mode: partition queues per destination, and the unacknowledged messages per partition. */
const partitions = 4;
const partitionPrefetch = 64;

/** How each side's publish reaches the socket: the one place they differ, said in every pair's settings. */
const writes =
  'raw writes a chunk as amqplib does (a socket write per message, all once the last is encoded); keel writes it 128 messages at a time, each slice in one socket write';

/** Publishes `messages` as keel encodes them, a chunk at a time, each chunk confirmed before the next. */
async function rawPublish(
  channel: ConfirmChannel,
  messages: readonly Envelope[],
  chunk: number,
  queueOf: (m: Envelope) => string,
): Promise<void> {
  for (let i = 0; i < messages.length; i += chunk) {
    const confirms = messages.slice(i, i + chunk).map(
      (m) =>
        new Promise<void>((resolve, reject) => {
          channel.publish(
            '',
            queueOf(m),
            Buffer.from(JSON.stringify(m.payload)),
            {
              persistent: true,
              mandatory: true,
              contentType: 'application/json',
              messageId: m.id,
              type: m.type,
              timestamp: Math.floor(Date.now() / 1000),
              headers: { ...m.headers, 'x-keel-key': m.key, 'x-keel-occurred-at': m.occurredAt },
            },
            (error: unknown) => (error ? reject(new Error('nacked', { cause: error })) : resolve()),
          );
        }),
    );
    await Promise.all(confirms);
  }
}

/**
 * Consumes `count` messages from `queues` on a channel of its own: parses each body and acks it
 * alone, as a hand-written consumer does.
 */
async function rawConsume(
  connection: ChannelModel,
  queues: readonly string[],
  options: { prefetch: number; arguments?: Record<string, unknown> },
  count: number,
  span: Span,
  what: string,
): Promise<void> {
  const channel: Channel = await connection.createChannel();
  await channel.prefetch(options.prefetch);
  let acked = 0;
  const tags: string[] = [];
  for (const queue of queues) {
    const { consumerTag } = await channel.consume(
      queue,
      (message) => {
        if (message === null) return;
        span.first();
        JSON.parse(message.content.toString('utf8'));
        channel.ack(message);
        acked++;
      },
      options.arguments === undefined ? {} : { arguments: options.arguments },
    );
    tags.push(consumerTag);
  }
  await until(() => acked, count, 120_000, what);
  span.done();
  for (const tag of tags) await channel.cancel(tag);
  await channel.close();
}

/** amqplib's side of a pair, open: its connection and confirm channel, and this run's queues. */
interface RawAmqp {
  readonly connection: ChannelModel;
  readonly channel: ConfirmChannel;
  /** This run's queue (or stream) for a round's destination, the same on both sides. */
  readonly name: (destination: string) => string;
  /** What the raw side declared: deleted on close, with the broker's own. */
  readonly queues: string[];
}

/**
 * Opens a RabbitMQ pair: amqplib's connection beside `broker`, keel's side over the broker and
 * the raw side `rawSide` builds; the close closes both and deletes every queue either declared.
 */
async function openPair(
  broker: RabbitMqBroker | RabbitMqStreamBroker,
  what: string,
  rawSide: (amqp: RawAmqp) => Side,
): Promise<Awaited<ReturnType<Pair['open']>>> {
  const tag = randomBytes(3).toString('hex');
  const connection = await connect(url);
  const channel = await connection.createConfirmChannel();
  const amqp: RawAmqp = {
    connection,
    channel,
    name: (destination) => `keelbench-${tag}-${destination}`,
    queues: [],
  };
  return {
    keel: keelSide(broker, { name: amqp.name, consumer: { concurrency, prefetch }, what: `keel ${what}` }),
    raw: rawSide(amqp),
    close: async () => {
      await broker.close();
      await channel.close();
      await connection.close();
      await deleteQueues([...broker.declaredQueues(), ...amqp.queues]);
    },
  };
}

export const rabbitPair: Pair = {
  id: 'rabbitmq',
  title: 'RabbitMQ (quorum queues)',
  peer: 'amqplib',
  settings: [
    `server ${new URL(url).host}; durable quorum queues (fsynced before confirming), persistent messages, mandatory`,
    `publish: a confirm channel; every message of a chunk published, the chunk done when the broker confirmed each; ${writes}`,
    `consume: prefetch ${concurrency + prefetch}; raw: an ack per message; keel: concurrency ${concurrency}, prefetch ${prefetch}, the acks of a tick in one multiple-ack where they are contiguous (AMQP acks are not confirmed)`,
  ],
  open: () => {
    const broker = new RabbitMqBroker({ url, name: 'keel-bench' });
    return openPair(broker, 'rabbitmq consume', ({ connection, channel, name, queues }) => ({
      publish: async (destination, messages, chunk) => {
        const queue = name(destination);
        queues.push(queue);
        await channel.assertQueue(queue, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
        await rawPublish(channel, messages, chunk, () => queue);
      },
      consume: (destination, count, span) =>
        rawConsume(
          connection,
          [name(destination)],
          { prefetch: concurrency + prefetch },
          count,
          span,
          'raw rabbitmq consume',
        ),
    }));
  },
};

export const rabbitPerKeyPair: Pair = {
  id: 'rabbitmq-per-key',
  title: `RabbitMQ per-key (${partitions} partition quorum queues, single active consumer)`,
  peer: 'amqplib',
  settings: [
    `server ${new URL(url).host}; each destination is ${partitions} durable quorum queues with x-single-active-consumer, a key to partition FNV-1a(key) mod ${partitions}; persistent messages, mandatory`,
    `publish: a confirm channel; every message of a chunk published to its partition, the chunk done when the broker confirmed each; ${writes}`,
    `consume: one channel consuming every partition, prefetch ${partitionPrefetch} per partition; raw: an ack per message in arrival order (a synchronous handler keeps each key's order by itself); keel: concurrency ${concurrency}, prefetch ${prefetch}, one message per key at a time (every message has a key of its own here)`,
  ],
  open: () => {
    const broker = new RabbitMqBroker({
      url,
      name: 'keel-bench-per-key',
      ordering: 'per-key',
      partitions,
      prefetch: partitionPrefetch,
    });
    return openPair(broker, 'rabbitmq per-key consume', ({ connection, channel, name, queues }) => ({
      publish: async (destination, messages, chunk) => {
        for (const queue of broker.queuesOf(name(destination))) {
          queues.push(queue);
          await channel.assertQueue(queue, {
            durable: true,
            arguments: { 'x-queue-type': 'quorum', 'x-single-active-consumer': true },
          });
        }
        await rawPublish(channel, messages, chunk, (m) =>
          partitionQueueName(name(destination), partitionOf(m, partitions)),
        );
      },
      consume: (destination, count, span) =>
        rawConsume(
          connection,
          broker.queuesOf(name(destination)),
          { prefetch: partitionPrefetch },
          count,
          span,
          'raw rabbitmq per-key consume',
        ),
    }));
  },
};

export const rabbitStreamPair: Pair = {
  id: 'rabbitmq-stream',
  title: 'RabbitMQ streams',
  peer: 'amqplib',
  settings: [
    `server ${new URL(url).host}; durable streams (x-queue-type stream), persistent messages, mandatory`,
    `publish: a confirm channel; every message of a chunk published, the chunk done when the broker confirmed each; ${writes}`,
    `consume: from the first offset (x-stream-offset), prefetch ${concurrency + prefetch}, an ack per message for credit; keel: a consumer group (an exclusive lock queue, its offset committed to a quorum queue behind the acks), concurrency ${concurrency}, prefetch ${prefetch}; raw: no offset kept`,
  ],
  open: () => {
    const broker = new RabbitMqStreamBroker({
      url,
      name: 'keel-bench-stream',
      prefetch: concurrency + prefetch,
    });
    return openPair(broker, 'rabbitmq stream consume', ({ connection, channel, name, queues }) => ({
      publish: async (destination, messages, chunk) => {
        const stream = name(destination);
        queues.push(stream);
        await channel.assertQueue(stream, { durable: true, arguments: { 'x-queue-type': 'stream' } });
        await rawPublish(channel, messages, chunk, () => stream);
      },
      consume: (destination, count, span) =>
        rawConsume(
          connection,
          [name(destination)],
          { prefetch: concurrency + prefetch, arguments: { 'x-stream-offset': 'first' } },
          count,
          span,
          'raw rabbitmq stream consume',
        ),
    }));
  },
};
