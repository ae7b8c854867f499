// The order stream on a real Kafka (KEEL_BROKER=kafka), on the suite's database (PGlite, or
// PostgreSQL with KEEL_DB=pg): reads of the model's progress ask Kafka for the partitions' ends
// over one connection, kept across the 1 s the answer is cached for. The whole shop on Kafka:
// apps/shop/brokers.test.ts.
import { randomBytes } from 'node:crypto';
import { describe, expect, it, vi } from 'vitest';
import { migrate, type Db } from '../../../src/db/index.ts';
import { kafkaProjectionMigrations } from '../../../src/messaging/adapters/kafka/index.ts';
import { kafkaTestSuite } from '../../../src/messaging/adapters/kafka/kafka-test-suite.ts';
import { kafkaBrokers } from '../../../src/messaging/adapters/kafka/test-support.ts';
import { createTestDb } from '../../../src/testing/index.ts';
import { ManualClock, type Clock } from '../../../src/time/index.ts';
import { kafkaOrderStream, type KafkaOrderStream } from './kafka-order-stream.ts';
import { orderStreamProgress } from './order-stream.ts';

vi.setConfig({ testTimeout: 60_000 });

const kafka = kafkaTestSuite({ clientId: 'shop-test' });
const { topics, cleanups } = kafka;

async function database(): Promise<Db> {
  const db = await createTestDb();
  cleanups.push(() => db.close());
  await migrate(db, kafkaProjectionMigrations);
  return db;
}

async function produce(topic: string, count: number): Promise<void> {
  await kafka.producer.send({
    messages: Array.from({ length: count }, (_, n) => ({
      topic,
      partition: n % 2,
      value: Buffer.from('{}'),
    })),
  });
}

/** A wall clock the test sets, back as well as forward; its timers are a manual clock's. */
function wallClock(): Clock & { move(ms: number): void } {
  const timers = new ManualClock();
  let now = timers.now();
  return {
    now: () => now,
    setTimeout: (fn, ms) => timers.setTimeout(fn, ms),
    clearTimeout: (handle) => timers.clearTimeout(handle),
    move: (ms) => void (now += ms),
  };
}

function stream(
  topic: string,
  brokers: string[],
  clock: Clock,
): { stream: KafkaOrderStream; clientId: string } {
  const clientId = `shop-test-${randomBytes(3).toString('hex')}`;
  const built = kafkaOrderStream({ brokers, topic, clientId, clock });
  cleanups.push(() => built.close());
  return { stream: built, clientId };
}

describe('kafkaOrderStream progress', () => {
  it('asks Kafka for the ends over one kept connection, at most once a second', async () => {
    const topic = `shop_os_${randomBytes(4).toString('hex')}`;
    topics.push(topic);
    await kafka.admin.createTopics({ topics: [topic], partitions: 2, replicas: 1 });
    await produce(topic, 3);
    const db = await database();
    const clock = wallClock();
    const { stream: orders, clientId } = stream(topic, kafkaBrokers, clock);
    const created = kafka.clientsCreated(clientId);
    const head = async (): Promise<number> => (await orderStreamProgress(db, orders)).head;

    expect(await orderStreamProgress(db, orders)).toEqual({ position: 0, head: 3 });
    await produce(topic, 2);
    // Within the second: the same answer, Kafka is not asked.
    clock.move(1000);
    expect(await head()).toBe(3);
    // Past it: Kafka is asked again, on the same connection, read after read.
    for (let read = 0; read < 3; read++) {
      clock.move(1001);
      expect(await head()).toBe(5);
    }
    // A wall clock set back does not keep the answer for as long as it went back.
    await produce(topic, 1);
    clock.move(-60_000);
    expect(await head()).toBe(6);
    expect(created.count()).toBe(1);

    // Closed (the stream's stop path), the next read opens a connection again.
    await orders.close();
    clock.move(1001);
    expect(await head()).toBe(6);
    expect(created.count()).toBe(2);
  });

  it('keeps no failure: Kafka unreachable, every read asks again on a new connection', async () => {
    const db = await database();
    // Nothing listens on port 1: each connection is refused at once.
    const { stream: orders, clientId } = stream('shop.order-events', ['127.0.0.1:1'], new ManualClock());
    const created = kafka.clientsCreated(clientId);
    await expect(orderStreamProgress(db, orders)).rejects.toMatchObject({ code: 'KEEL_BROKER_UNAVAILABLE' });
    await expect(orderStreamProgress(db, orders)).rejects.toMatchObject({ code: 'KEEL_BROKER_UNAVAILABLE' });
    expect(created.count()).toBe(2);
  });
});
