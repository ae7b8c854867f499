// Apache Kafka: keel's KafkaBroker beside @platformatic/kafka used directly.
import { randomBytes } from 'node:crypto';
import { Admin, Consumer, Producer, type Message } from '@platformatic/kafka';
import { KafkaBroker } from '../../src/messaging/adapters/kafka/index.ts';
import { deleteTopics } from '../../src/messaging/adapters/kafka/test-support.ts';
import { keelSide } from './keel-side.ts';
import type { Pair, Side } from './pair.ts';

const brokers = (process.env.KEEL_KAFKA_BROKERS ?? '127.0.0.1:9092').split(',');
const concurrency = 64;
const prefetch = 256;

export const kafkaPair: Pair = {
  id: 'kafka',
  title: 'Apache Kafka',
  peer: '@platformatic/kafka',
  settings: [
    `broker ${brokers.join(',')}; topics of 3 partitions; an idempotent producer with acks=all (the broker's log flush settings decide fsync, the same for both)`,
    'publish: one send() per chunk, done when every record is acknowledged',
    `consume: a consumer group from the earliest offset, offsets committed after the handler (keel: the finished prefix per ack batch, awaited; raw: the last offset of each partition every ${concurrency} records, awaited); keel: concurrency ${concurrency}, prefetch ${prefetch}`,
  ],
  async open() {
    const tag = randomBytes(3).toString('hex');
    const broker = new KafkaBroker({ brokers, clientId: 'keel-bench', partitions: 3 });
    const producer = new Producer({
      clientId: 'raw-bench',
      bootstrapBrokers: brokers,
      idempotent: true,
      acks: -1,
      // keel's producer retry policy (short doubling waits, not the client's 1 s): a produce to
      // a topic created a moment ago is refused now and then, and a 1 s wait on one side only
      // would decide the round.
      retries: 8,
      retryDelay: (_client, _operation, attempt) => Math.min(1000, 25 * 2 ** attempt),
    });
    const admin = new Admin({ clientId: 'raw-bench', bootstrapBrokers: brokers });
    const topics: string[] = [];
    const groups = [`keel-${tag}`];
    const rawGroup = (destination: string): string => {
      const group = `raw-${tag}-${destination}`;
      groups.push(group);
      return group;
    };
    const name = (destination: string): string => `keelbench-${tag}-${destination}`;
    const keel = keelSide(broker, {
      name,
      consumer: { concurrency, prefetch, group: `keel-${tag}` },
      what: 'keel kafka consume',
    });
    const raw: Side = {
      publish: async (destination, messages, chunk) => {
        const topic = name(destination);
        topics.push(topic);
        // The same topic layout as keel's: 3 partitions, the broker's replication default.
        await admin.createTopics({ topics: [topic], partitions: 3, replicas: -1 });
        for (let i = 0; i < messages.length; i += chunk) {
          await producer.send({
            messages: messages.slice(i, i + chunk).map((m) => ({
              topic,
              key: Buffer.from(m.key ?? ''),
              value: Buffer.from(JSON.stringify(m.payload)),
              headers: new Map<Buffer, Buffer>([
                ...Object.entries(m.headers).map(
                  ([k, v]) => [Buffer.from(k), Buffer.from(v)] as [Buffer, Buffer],
                ),
                [Buffer.from('x-keel-id'), Buffer.from(m.id)],
                [Buffer.from('x-keel-type'), Buffer.from(m.type)],
                [Buffer.from('x-keel-occurred-at'), Buffer.from(m.occurredAt)],
              ]),
            })),
          });
        }
      },
      consume: async (destination, count, span) => {
        const consumer = new Consumer({
          clientId: 'raw-bench',
          bootstrapBrokers: brokers,
          groupId: rawGroup(destination),
          autocommit: false,
        });
        const stream = await consumer.consume({
          topics: [name(destination)],
          mode: 'earliest',
          autocommit: false,
        });
        let handled = 0;
        let committed = 0;
        const last = new Map<number, Message<Buffer, Buffer, Buffer, Buffer>>();
        for await (const message of stream as AsyncIterable<Message<Buffer, Buffer, Buffer, Buffer>>) {
          span.first();
          JSON.parse(message.value.toString('utf8'));
          last.set(message.partition, message);
          handled++;
          if (handled % concurrency === 0 || handled === count) {
            await Promise.all(
              [...last.values()].map(
                (m) =>
                  new Promise<void>((resolve, reject) => {
                    void m.commit((e) => (e ? reject(e) : resolve()));
                  }),
              ),
            );
            last.clear();
            committed = handled;
          }
          if (committed >= count) break;
        }
        span.done();
        await stream.close();
        await new Promise<void>((resolve) => consumer.close(true, () => resolve()));
      },
    };
    return {
      keel,
      raw,
      close: async () => {
        await broker.close();
        await producer.close();
        // Empty groups would otherwise linger until the broker expires their offsets.
        await admin.deleteGroups({ groups }).catch(() => undefined);
        await admin.close();
        await deleteTopics([...broker.ensuredTopics(), ...topics]);
      },
    };
  },
};
