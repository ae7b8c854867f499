// RabbitMQ: keel's RabbitMqBroker beside amqplib used directly, both on quorum queues.
import { randomBytes } from 'node:crypto';
import { connect } from 'amqplib';
import { RabbitMqBroker } from '../../src/messaging/adapters/rabbitmq/index.ts';
import { deleteQueues } from '../../src/messaging/adapters/rabbitmq/test-support.ts';
import { until, type Pair, type Side } from './pair.ts';

const url = process.env.KEEL_RABBITMQ_URL ?? 'amqp://guest:guest@127.0.0.1:5672';
const concurrency = 64;
const prefetch = 256;

export const rabbitPair: Pair = {
  id: 'rabbitmq',
  title: 'RabbitMQ (quorum queues)',
  peer: 'amqplib',
  settings: [
    `server ${new URL(url).host}; durable quorum queues (fsynced before confirming), persistent messages, mandatory`,
    'publish: a confirm channel; every message of a chunk published at once, the chunk done when the broker confirmed each',
    `consume: prefetch ${concurrency + prefetch}, an ack per message (AMQP acks are not confirmed); keel: concurrency ${concurrency}, prefetch ${prefetch}`,
  ],
  async open() {
    const tag = randomBytes(3).toString('hex');
    const broker = new RabbitMqBroker({ url, name: 'keel-bench' });
    const connection = await connect(url);
    const channel = await connection.createConfirmChannel();
    const rawQueues: string[] = [];
    const name = (destination: string): string => `keelbench-${tag}-${destination}`;
    const keel: Side = {
      publish: async (destination, messages, chunk) => {
        for (let i = 0; i < messages.length; i += chunk) {
          await broker.publish(name(destination), messages.slice(i, i + chunk));
        }
      },
      consume: async (destination, count, span) => {
        let acked = 0;
        const consumer = broker.consumer(name(destination), async () => span.first(), {
          concurrency,
          prefetch,
        });
        consumer.events.on('acked', ({ messages }) => (acked += messages.length));
        await consumer.start();
        await until(() => acked, count, 120_000, 'keel rabbitmq consume');
        span.done();
        await consumer.stop({ drainMs: 1000 });
      },
    };
    const raw: Side = {
      publish: async (destination, messages, chunk) => {
        const queue = name(destination);
        rawQueues.push(queue);
        await channel.assertQueue(queue, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
        for (let i = 0; i < messages.length; i += chunk) {
          const confirms = messages.slice(i, i + chunk).map(
            (m) =>
              new Promise<void>((resolve, reject) => {
                channel.publish(
                  '',
                  queue,
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
      },
      consume: async (destination, count, span) => {
        const consuming = await connection.createChannel();
        await consuming.prefetch(concurrency + prefetch);
        let acked = 0;
        const { consumerTag } = await consuming.consume(name(destination), (message) => {
          if (message === null) return;
          span.first();
          JSON.parse(message.content.toString('utf8'));
          consuming.ack(message);
          acked++;
        });
        await until(() => acked, count, 120_000, 'raw rabbitmq consume');
        span.done();
        await consuming.cancel(consumerTag);
        await consuming.close();
      },
    };
    return {
      keel,
      raw,
      close: async () => {
        await broker.close();
        await channel.close();
        await connection.close();
        await deleteQueues([...broker.declaredQueues(), ...rawQueues]);
      },
    };
  },
};
