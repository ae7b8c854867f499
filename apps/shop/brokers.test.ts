// The shop on each real broker: an order placed over HTTP goes through the outbox relay to the
// broker, the worker takes it from there and the saga confirms it; a signup's welcome mail
// crosses the broker to the notifications consumer. On Kafka the order stream is a topic too, and
// the analytics model is replayed from it. Each run names its destinations under a prefix of its
// own, and removes them after.
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import type { MessageBroker } from '../../src/messaging/index.ts';
import { withDestinationPrefix } from '../../src/messaging/index.ts';
import {
  deleteTopics,
  kafkaBrokers,
  requireKafka,
  useKafka,
} from '../../src/messaging/adapters/kafka/test-support.ts';
import {
  deleteStreamsWithPrefix,
  natsUrl,
  requireNats,
} from '../../src/messaging/adapters/nats/test-support.ts';
import {
  deleteQueues,
  rabbitMqUrl,
  requireRabbitMq,
} from '../../src/messaging/adapters/rabbitmq/test-support.ts';
import {
  dropPrefix,
  redisAddress,
  requireRedis,
} from '../../src/messaging/adapters/redis/redis-test-server.ts';
import { systemClock } from '../../src/time/index.ts';
import type { OrderAnalytics } from './analytics/order-analytics-store.ts';
import type { OrderStream } from './analytics/order-stream.ts';
import type { Shop } from './app.ts';
import { runAnalytics } from './cmd/analytics.ts';
import { orderEventsStream } from './contracts/order-events.ts';
import type { Account } from './domain/account.ts';
import type { Order } from './domain/order.ts';
import { MailboxMailer } from './notifications/mailbox-mailer.ts';
import { createShopStore, fulfilmentFinished, openTestShop, type ShopStore } from './test/test-shop.ts';

vi.setConfig({ testTimeout: 60_000 });

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const run = randomBytes(3).toString('hex');
const afterRun: (() => Promise<unknown>)[] = [];
afterAll(async () => {
  for (const cleanup of afterRun) await cleanup();
}, 30_000);

interface Engine {
  name: string;
  require: () => Promise<void>;
  /** The broker under this run's prefix, and what to remove once the file is done. */
  open: (prefix: string) => Promise<MessageBroker>;
  /** Where the order stream lives on this engine, when not in the database (Kafka: a topic). */
  orderStream?: (prefix: string) => Promise<OrderStream>;
}

const engines: Engine[] = [
  {
    name: 'rabbitmq',
    require: requireRabbitMq,
    open: async (prefix) => {
      const { RabbitMqBroker } = await import('../../src/messaging/adapters/rabbitmq/index.ts');
      const broker = new RabbitMqBroker({ url: rabbitMqUrl, name: `shop-test-${run}` });
      afterRun.push(() => deleteQueues(broker.declaredQueues()));
      return withDestinationPrefix(broker, prefix);
    },
  },
  {
    name: 'kafka',
    require: async () => {
      await requireKafka();
      afterRun.push(await useKafka());
    },
    open: async (prefix) => {
      const { KafkaBroker } = await import('../../src/messaging/adapters/kafka/index.ts');
      const broker = new KafkaBroker({ brokers: kafkaBrokers, partitions: 2 });
      afterRun.push(() => deleteTopics(broker.ensuredTopics()));
      return withDestinationPrefix(broker, prefix);
    },
    // As openShop does with KEEL_BROKER=kafka: the topic the prefixed broker publishes the stream to.
    orderStream: async (prefix) => {
      const { kafkaOrderStream } = await import('./analytics/kafka-order-stream.ts');
      return kafkaOrderStream({ brokers: kafkaBrokers, topic: prefix + orderEventsStream });
    },
  },
  {
    name: 'nats',
    require: requireNats,
    open: async (prefix) => {
      const { NatsJetStreamBroker } = await import('../../src/messaging/adapters/nats/index.ts');
      // NATS names its streams after its own prefix: one per run, removed after.
      const natsPrefix = `shop${run}`;
      afterRun.push(() => deleteStreamsWithPrefix(natsPrefix));
      return withDestinationPrefix(new NatsJetStreamBroker({ servers: natsUrl, prefix: natsPrefix }), prefix);
    },
  },
  {
    name: 'redis',
    require: requireRedis,
    open: async (prefix) => {
      const { RedisStreamsBroker } = await import('../../src/messaging/adapters/redis/index.ts');
      const keyPrefix = `keel:shop-test:${run}:`;
      afterRun.push(() => dropKeys(keyPrefix));
      return withDestinationPrefix(new RedisStreamsBroker({ redis: redisAddress, keyPrefix }), prefix);
    },
  },
];

describe.each(engines)('the shop on $name', (engine) => {
  it('confirms an order and mails the welcome, every message through the broker', async () => {
    await engine.require();
    const prefix = `t${run}-${randomBytes(2).toString('hex')}.`;
    const broker = await engine.open(prefix);
    const dir = await mkdtemp(path.join(tmpdir(), 'keel-broker-mailbox-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const store = await createShopStore();
    cleanups.push(() => store.dispose());
    const orderStream = await engine.orderStream?.(prefix);
    const shop: Shop = await openTestShop(store, ['api', 'worker', 'relay'], systemClock, {
      broker,
      mailer: new MailboxMailer({ dir, from: 'shop <shop@shop.test>' }),
      ...(orderStream === undefined ? {} : { orderStream }),
    });
    await shop.start();
    cleanups.push(() => shop.stop({ drainMs: 2000 }));

    const account = (
      await shop.http.inject({
        method: 'POST',
        url: '/v1/signups',
        payload: { email: 'ida@example.com', name: 'Ida' },
      })
    ).json<Account>();
    const placed = await shop.http.inject({
      method: 'POST',
      url: '/v1/orders',
      payload: { customerId: account.id, items: [{ sku: 'book-1', quantity: 1 }] },
      headers: { 'idempotency-key': randomUUID() },
    });
    expect(placed.statusCode).toBe(202);
    const order = placed.json<Order>();

    expect(await fulfilmentFinished(shop, order.id)).toMatchObject({ state: 'COMPLETED' });
    // The welcome and the confirmation, each one file.
    await expect
      .poll(async () => (await readdir(dir)).filter((f) => f.endsWith('.eml')).length, {
        timeout: 30_000,
      })
      .toBe(2);
    if (orderStream !== undefined) await analyticsFromTopic(shop, store, orderStream);
  });
});

/**
 * With the order stream on Kafka: `GET /v1/analytics/orders` counts the confirmed order from the
 * topic (the database's stream holds nothing), a rebuild replays the topic into the model, and
 * so does `npm run analytics -- rebuild`, whose `status` then reports no lag.
 */
async function analyticsFromTopic(shop: Shop, store: ShopStore, stream: OrderStream): Promise<void> {
  const summary = async (): Promise<OrderAnalytics> =>
    (await shop.http.inject({ url: '/v1/analytics/orders' })).json<OrderAnalytics>();
  const confirmedFromTopic = (s: OrderAnalytics): boolean =>
    s.orders.total === 1 && s.orders.confirmed === 1 && s.stream.lag === 0;
  await expect.poll(async () => confirmedFromTopic(await summary()), { timeout: 30_000 }).toBe(true);
  const model = await summary();
  expect(model.stream).toMatchObject({ name: stream.name, skippedEvents: 0 });
  // The placed event and the outcome, both keyed by the order: at least those two offsets.
  expect(model.stream.head).toBeGreaterThanOrEqual(2);
  const inDatabase = await shop.db.query<{ n: number }>('SELECT count(*)::int AS n FROM keel_stream');
  expect(inDatabase.rows[0]?.n).toBe(0);

  // Nothing new reaches the topic now: a batch applied after the rebuild is the replay.
  const replayed = shop.analytics!.events.once('applied');
  await shop.analytics!.rebuild();
  await replayed;
  await expect.poll(async () => confirmedFromTopic(await summary()), { timeout: 30_000 }).toBe(true);

  await shop.stop({ drainMs: 2000 });
  const lines: string[] = [];
  const cli = (command: string): Promise<number> =>
    runAnalytics(
      [command],
      (line) => lines.push(line),
      () => store.open(),
      stream,
    );
  expect(await cli('rebuild')).toBe(0);
  expect(await cli('status')).toBe(0);
  const head = model.stream.head;
  expect(lines).toEqual([
    `replayed ${head} event(s) of ${stream.name} into shop.analytics.orders.v1`,
    `shop.analytics.orders.v1  position ${head}  head ${head}  lag 0`,
  ]);
  expect(await cli('summary')).toBe(0);
  expect(JSON.parse(lines.slice(2).join('\n'))).toMatchObject({ orders: { total: 1, confirmed: 1 } });
}

async function dropKeys(prefix: string): Promise<void> {
  const { Redis } = await import('ioredis');
  const client = new Redis(redisAddress);
  try {
    await dropPrefix(client, prefix);
  } finally {
    client.disconnect();
  }
}
