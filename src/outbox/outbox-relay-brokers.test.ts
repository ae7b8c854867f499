// The relay against real engines: the PostgreSQL queue and RabbitMQ (127.0.0.1:5672, or
// KEEL_RABBITMQ_URL). A relay killed between publishing and marking leaves duplicates at the
// broker; the inbox absorbs them and every effect is counted exactly once.
import { randomBytes } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { migrate } from '../db/index.ts';
import type { MessageBroker } from '../messaging/broker.ts';
import { createEnvelope, type Envelope } from '../messaging/envelope.ts';
import { PgQueue, pgQueueMigrations } from '../messaging/index.ts';
import { RabbitMqBroker } from '../messaging/adapters/rabbitmq/index.ts';
import { deleteQueues, rabbitMqUrl, requireRabbitMq } from '../messaging/adapters/rabbitmq/test-support.ts';
import type { Publisher } from '../messaging/publisher.ts';
import { createTestDb, type TestDb } from '../testing/index.ts';
import { ManualClock } from '../time/index.ts';
import { inboxOnce } from './inbox.ts';
import { addToOutbox } from './outbox.ts';
import { OutboxRelay } from './outbox-relay.ts';
import { outboxStatus } from './outbox-status.ts';
import { inboxMigrations, outboxMigrations } from './schema.ts';

const dbs: TestDb[] = [];
const brokers: RabbitMqBroker[] = [];
const queues = new Set<string>();
beforeAll(requireRabbitMq);
afterEach(async () => {
  for (const broker of brokers.splice(0)) {
    for (const name of broker.declaredQueues()) queues.add(name);
    await broker.close();
  }
  for (const db of dbs.splice(0)) await db.close();
});
afterAll(() => deleteQueues(queues));

interface Target {
  name: string;
  open: (db: TestDb) => MessageBroker;
}

const targets: Target[] = [
  { name: 'the PostgreSQL queue', open: (db) => new PgQueue(db) },
  {
    name: 'RabbitMQ',
    open: () => {
      const broker = new RabbitMqBroker({
        url: rabbitMqUrl,
        name: `keel-outbox-${randomBytes(3).toString('hex')}`,
      });
      brokers.push(broker);
      return broker;
    },
  },
];

describe.each(targets)('outbox relay to $name', (target) => {
  it('a relay killed after publishing and before marking: duplicates at the broker, each effect once, per-key order kept', async () => {
    const db = await createTestDb();
    dbs.push(db);
    await migrate(db, [
      ...pgQueueMigrations,
      ...outboxMigrations,
      ...inboxMigrations,
      { id: 'effects', sql: 'CREATE TABLE effects (n int, key text, at bigserial)' },
    ]);
    const broker = target.open(db);
    const destination = `outbox_${randomBytes(5).toString('hex')}`;
    const total = 60;
    for (let i = 0; i < total; i += 6) {
      await db.transaction((tx) =>
        addToOutbox(
          tx,
          destination,
          Array.from({ length: 6 }, (_, j) =>
            createEnvelope({ type: 'thing.happened.v1', payload: { n: i + j }, key: `k${(i + j) % 4}` }),
          ),
        ),
      );
    }

    const clock = new ManualClock();
    // The first relay's publish reaches the broker, then its process "dies": it never marks, and
    // its clock stands still, so it never renews its claim.
    let reached: (() => void) | undefined;
    const reachedBroker = new Promise<void>((resolve) => (reached = resolve));
    const dying: Publisher = {
      publish: async (d: string, messages: readonly Envelope[]) => {
        await broker.publish(d, messages);
        reached?.();
        await new Promise<never>(() => {});
      },
    };
    void new OutboxRelay(db, dying, {
      clock: new ManualClock(clock.now()),
      batchSize: 25,
      claimMs: 5000,
    }).relayOnce();
    await reachedBroker;
    const live = new OutboxRelay(db, broker, { clock, batchSize: 25, claimMs: 5000 });
    expect(await live.relayOnce()).toBe(0); // the dead relay's claim still holds the first 25
    await clock.advance(5000);
    let published = 0;
    for (let moved = -1; moved !== 0; published += moved) moved = await live.relayOnce();
    expect(published).toBe(total);
    expect(await outboxStatus(db)).toMatchObject({ backlog: 0, parked: 0, published: total });

    let deliveries = 0;
    let duplicates = 0;
    const worker = broker.consumer(destination, async (message) => {
      const { n } = message.payload as { n: number };
      const outcome = await db.transaction((tx) =>
        inboxOnce(tx, 'effects', message, (t) =>
          t.query('INSERT INTO effects (n, key) VALUES ($1, $2)', [n, message.key]),
        ),
      );
      deliveries++;
      if (outcome.duplicate) duplicates++;
    });
    await worker.start();
    while (deliveries < total + 25) await worker.events.once('acked');
    await worker.stop();

    expect(duplicates).toBe(25);
    const { rows } = await db.query<{ n: number; key: string }>('SELECT n, key FROM effects ORDER BY at');
    expect(rows.map((r) => r.n).sort((a, b) => a - b)).toEqual(Array.from({ length: total }, (_, i) => i));
    for (const key of ['k0', 'k1', 'k2', 'k3']) {
      const ns = rows.filter((r) => r.key === key).map((r) => r.n);
      expect(ns).toEqual([...ns].sort((a, b) => a - b));
    }
  });
});
