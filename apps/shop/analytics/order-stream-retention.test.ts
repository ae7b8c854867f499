import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { until } from '../../../test/until.ts';
import { PgStream } from '../../../src/messaging/index.ts';
import { ManualClock } from '../../../src/time/index.ts';
import { shopConfigFromEnv } from '../config.ts';
import { orderEventsStream } from '../contracts/order-events.ts';
import { orderPlacedV1 } from '../contracts/orders.ts';
import { createShopStore, openTestShop } from '../test/test-shop.ts';
import type { OrderAnalytics } from './order-analytics-store.ts';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const placed = () =>
  orderPlacedV1.create({ orderId: randomUUID(), customerId: 'c-1', items: [{ sku: 'book-1', quantity: 1 }] });

describe('the order stream’s retention (KEEL_STREAM_RETENTION)', () => {
  it('deletes events older than the retention that analytics applied, never one it has still to apply', async () => {
    const store = await createShopStore();
    cleanups.push(() => store.dispose());
    const clock = new ManualClock();
    const shop = await openTestShop(store, ['worker'], clock, { config: { streamRetentionMs: 3_600_000 } });
    await shop.start();
    cleanups.push(() => shop.stop({ drainMs: 1000 }));
    const stream = new PgStream(shop.db);
    const summary = async (): Promise<OrderAnalytics> =>
      (await shop.http.inject({ url: '/v1/analytics/orders' })).json<OrderAnalytics>();

    await stream.append(orderEventsStream, [placed(), placed(), placed()]);
    await until(async () => (await summary()).orders.total === 3, 15_000, 'analytics applied three orders');
    // The worker stops applying; a fourth event arrives; all four are two hours old.
    await shop.analytics!.stop();
    await stream.append(orderEventsStream, [placed()]);
    await shop.db.query(`UPDATE keel_stream SET appended_at = now() - interval '2 hours' WHERE stream = $1`, [
      orderEventsStream,
    ]);

    await clock.advance(60_000); // the retention's interval
    await until(async () => (await stream.bounds(orderEventsStream)).first > 1, 15_000, 'the stream trimmed');
    expect(await stream.bounds(orderEventsStream)).toEqual({ first: 4, last: 4 });
    const [kept] = await stream.read(orderEventsStream, { after: 3 });
    expect(kept?.position).toBe(4);
    expect((await summary()).orders.total).toBe(3);
  });

  it('is off unless KEEL_STREAM_RETENTION names a duration', () => {
    expect(shopConfigFromEnv({}).streamRetentionMs).toBeUndefined();
    expect(shopConfigFromEnv({ KEEL_STREAM_RETENTION: 'off' }).streamRetentionMs).toBeUndefined();
    expect(shopConfigFromEnv({ KEEL_STREAM_RETENTION: '30d' }).streamRetentionMs).toBe(30 * 86_400_000);
    expect(() => shopConfigFromEnv({ KEEL_STREAM_RETENTION: 'a month' })).toThrow(/KEEL_STREAM_RETENTION/);
  });
});
