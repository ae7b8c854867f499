import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { buildShop, type Shop } from '../../apps/shop/app.ts';
import { placeOrder } from '../../apps/shop/application/orders.ts';
import { shopMigrations } from '../../apps/shop/presets/open-shop.ts';
import { createShopStore, sharedDb, testShopConfig, type ShopStore } from '../../apps/shop/test/test-shop.ts';
import { paymentsOf } from '../../apps/shop/storage/payments-store.ts';
import { migrate, type Db } from '../../src/db/index.ts';
import { testDbBackend } from '../../src/testing/index.ts';
import { systemClock } from '../../src/time/index.ts';
import { until } from '../until.ts';

let store: ShopStore | undefined;
const shops: Shop[] = [];
afterEach(async () => {
  for (const shop of shops.splice(0)) await shop.stop({ drainMs: 1000 });
  await store?.dispose();
});

describe('two relays and two workers at once', () => {
  it('every outbox row reaches the queue and every message reaches a handler', async () => {
    store = await createShopStore();
    const first = await store.open();
    await migrate(first, await shopMigrations());
    // PGlite is one process's database: both "processes" share it. On PostgreSQL each has its own pool.
    const dbs: Db[] = testDbBackend() === 'pg' ? [first, await store.open()] : [first, sharedDb(first)];
    const total = 60;
    const handled = new Map<string, number>();
    const acked = new Set<string>();
    const published = new Set<string>();
    let allAcked: () => void = () => undefined;
    const everyAck = new Promise<void>((resolve) => (allAcked = resolve));
    // Each order's fulfilment saga, run by whichever worker's runner claims it.
    const fulfilled = new Set<string>();
    let allFulfilled: () => void = () => undefined;
    const everyFulfilment = new Promise<void>((resolve) => (allFulfilled = resolve));
    for (const db of dbs) {
      const shop = buildShop(testShopConfig(['worker', 'relay']), {
        db,
        clock: systemClock,
        logger: pino({ level: 'silent' }),
      });
      shop.worker?.events.on('handled', ({ message }) =>
        handled.set(message.id, (handled.get(message.id) ?? 0) + 1),
      );
      // `handled` fires before the batched ack is written: the table is settled only once every
      // message has been acked, so that is what the test waits for before it counts rows.
      shop.worker?.events.on('acked', ({ messages }) => {
        for (const m of messages) acked.add(m.id);
        if (acked.size >= total) allAcked();
      });
      // The relays also carry each order's outcome (to the order stream and the notifications
      // queue): the orders' own events are the ones counted here.
      shop.relay?.events.on('published', ({ messages }) =>
        messages.forEach((m) => m.type === 'order.placed.v1' && published.add(m.id)),
      );
      shop.sagas?.events.on('saga-state', ({ instanceId, to }) => {
        if (to === 'COMPLETED') fulfilled.add(instanceId);
        if (fulfilled.size >= total) allFulfilled();
      });
      shops.push(shop);
      await shop.start();
    }

    const orders = await Promise.all(
      Array.from({ length: total }, (_, i) =>
        placeOrder(first, systemClock, { customerId: `c-${i}`, items: [{ sku: 'book-1', quantity: 1 }] }),
      ),
    );
    await everyAck;
    await everyFulfilment;
    // A relay reports a batch once its marks are written, which may ride with its next claim:
    // a consumer can ack a message before the relay that sent it has reported it.
    await until(() => published.size >= total, 10_000, 'every row reported published');
    // The outcomes were written by the sagas' last steps: their rows and messages settle after.
    await until(
      async () => {
        const { rows } = await first.query<{ left: number }>(
          `SELECT (SELECT count(*)::int FROM keel_outbox WHERE published_at IS NULL)
                + (SELECT count(*)::int FROM keel_queue) AS left`,
        );
        return rows[0]!.left === 0;
      },
      20_000,
      'every outcome published and handled',
    );
    expect(published.size).toBe(total);
    expect(handled.size).toBe(total);
    expect(acked.size).toBe(total);
    const { rows } = await first.query<{
      confirmed: number;
      sagas: number;
      unpublished: number;
      queued: number;
    }>(
      `SELECT (SELECT count(*)::int FROM orders WHERE status = 'CONFIRMED') AS confirmed,
              (SELECT count(*)::int FROM keel_saga_instances) AS sagas,
              (SELECT count(*)::int FROM keel_outbox WHERE published_at IS NULL) AS unpublished,
              (SELECT count(*)::int FROM keel_queue) AS queued`,
    );
    expect(rows[0]).toEqual({ confirmed: total, sagas: total, unpublished: 0, queued: 0 });
    const charges = await Promise.all(orders.map((order) => paymentsOf(first, order.id)));
    expect(charges.map((c) => c.length)).toEqual(orders.map(() => 1));
    expect(orders).toHaveLength(total);
  }, 120_000);
});
