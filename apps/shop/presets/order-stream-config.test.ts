import { describe, expect, it } from 'vitest';
import type { Db } from '../../../src/db/index.ts';
import type { Publisher } from '../../../src/messaging/index.ts';
import { pgOrderStream } from '../analytics/order-stream.ts';
import { openOrderStream } from './order-stream-config.ts';

// Building connects nothing: the Kafka runner opens its client when it starts or is asked.
const db = { transaction: () => Promise.reject(new Error('not used')) } as unknown as Db;
const broker: Publisher = { publish: async () => undefined };

describe('openOrderStream', () => {
  it.each([
    ['postgres', ''],
    ['rabbitmq', 'amqp://guest:guest@127.0.0.1:5672'],
    ['nats', '127.0.0.1:4222'],
    ['redis', 'redis://127.0.0.1:6379'],
  ] as const)('keeps the order stream in the database on %s', async (kind, url) => {
    expect(await openOrderStream({ kind, url })).toBe(pgOrderStream);
  });

  it('on Kafka, is the topic the prefixed broker publishes the stream to, appended through that broker', async () => {
    const stream = await openOrderStream({
      kind: 'kafka',
      url: '127.0.0.1:9092,127.0.0.2:9092',
      prefix: 'stg.',
    });
    expect(stream.name).toBe('stg.shop.order-events');
    expect(stream.appender(db, broker)).toBe(broker);
    const runner = stream.analyticsRunner(db);
    expect(runner).toMatchObject({ projection: 'shop.analytics.orders.v1', topic: 'stg.shop.order-events' });
    expect((await openOrderStream({ kind: 'kafka', url: '127.0.0.1:9092' })).name).toBe('shop.order-events');
  });
});
