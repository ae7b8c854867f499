import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import type { Db } from '../../../src/db/index.ts';
import { createEnvelope, PgStream, type Envelope } from '../../../src/messaging/index.ts';
import { uuidv7At } from '../../../src/time/index.ts';
import type { Shop } from '../app.ts';
import { runAnalytics } from '../cmd/analytics.ts';
import { orderCancelledV1, orderConfirmedV1, orderEventsStream } from '../contracts/order-events.ts';
import { orderPlacedV1 } from '../contracts/orders.ts';
import { createShopStore, openTestShop, type ShopStore } from '../test/test-shop.ts';
import type { OrderAnalytics } from './order-analytics-store.ts';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function newStore(): Promise<ShopStore> {
  const store = await createShopStore();
  cleanups.push(() => store.dispose());
  return store;
}

async function started(store: ShopStore, roles: Parameters<typeof openTestShop>[1]): Promise<Shop> {
  const shop = await openTestShop(store, roles);
  await shop.start();
  // stop() is idempotent: a test that stopped the shop itself is not stopped twice.
  cleanups.push(() => shop.stop({ drainMs: 1000 }));
  return shop;
}

async function summary(shop: Shop, query = ''): Promise<OrderAnalytics> {
  const response = await shop.http.inject({ url: `/v1/analytics/orders${query}` });
  expect(response.statusCode).toBe(200);
  return response.json<OrderAnalytics>();
}

/** The summary once `holds` is true of it, looking again after each batch the projection applies. */
async function summaryWhen(shop: Shop, holds: (s: OrderAnalytics) => boolean): Promise<OrderAnalytics> {
  const runner = shop.analytics;
  if (runner === undefined) throw new Error('the shop runs no analytics: give it the worker role');
  for (;;) {
    // Listening before looking: a batch applied in between still wakes the loop.
    const next = runner.events.once('applied');
    const current = await summary(shop);
    if (holds(current)) {
      next.catch(() => undefined);
      return current;
    }
    await next;
  }
}

async function place(
  shop: Shop,
  customerId: string,
  items: { sku: string; quantity: number }[],
): Promise<string> {
  const response = await shop.http.inject({
    method: 'POST',
    url: '/v1/orders',
    payload: { customerId, items },
    headers: { 'idempotency-key': randomUUID() },
  });
  expect(response.statusCode).toBe(202);
  return response.json<{ id: string }>().id;
}

/** Every row of the read model, in a stable order: what "the same model" means. */
async function modelRows(db: Db): Promise<unknown[]> {
  const orders = await db.query('SELECT * FROM analytics_orders ORDER BY order_id');
  const lines = await db.query('SELECT * FROM analytics_order_lines ORDER BY order_id, line');
  const skipped = await db.query('SELECT * FROM analytics_skipped_events ORDER BY position');
  return [orders.rows, lines.rows, skipped.rows];
}

const at = Date.UTC(2026, 0, 1);
function placed(orderId: string, customerId: string, items: { sku: string; quantity: number }[]): Envelope {
  return orderPlacedV1.create({ orderId, customerId, items }, { key: orderId });
}
const confirmed = (orderId: string, customerId: string, amountCents: number): Envelope =>
  orderConfirmedV1.create({ orderId, customerId, amountCents }, { key: orderId });
const cancelled = (orderId: string, customerId: string, reason: string): Envelope =>
  orderCancelledV1.create({ orderId, customerId, reason }, { key: orderId });

describe('shop analytics: a read model replayed from the order stream', () => {
  it('orders placed through the API reach the stream once each (no second outbox row) and the model', async () => {
    const shop = await started(await newStore(), ['worker', 'relay']);
    const ids = [
      await place(shop, 'c-1', [{ sku: 'book-1', quantity: 2 }]),
      await place(shop, 'c-1', [
        { sku: 'mug-1', quantity: 1 },
        { sku: 'book-1', quantity: 1 },
      ]),
      await place(shop, 'c-2', [{ sku: 'mug-1', quantity: 3 }]),
    ];
    const outboxRows = await shop.db.query<{ destination: string; n: number }>(
      `SELECT destination, count(*)::int AS n
       FROM (SELECT destination, type FROM keel_outbox UNION ALL SELECT destination, type FROM keel_outbox_archive) AS rows
       WHERE type = $1 GROUP BY destination`,
      [orderPlacedV1.type],
    );
    // The orders POST path wrote its one row per order, to shop.orders; none for the stream.
    expect(outboxRows.rows).toEqual([{ destination: 'shop.orders', n: 3 }]);
    const model = await summaryWhen(shop, (s) => s.orders.total === 3);
    expect(model.orders.total).toBe(3);
    expect(model.orders.open + model.orders.confirmed + model.orders.cancelled).toBe(3);
    expect(model.customers.total).toBe(2);
    expect(model.skus).toEqual([
      expect.objectContaining({ sku: 'mug-1', orders: 2, unitsOrdered: 4 }),
      expect.objectContaining({ sku: 'book-1', orders: 2, unitsOrdered: 3 }),
    ]);
    const inStream = (await new PgStream(shop.db).read(orderEventsStream, { limit: 1000 }))
      .filter((e) => orderPlacedV1.is(e.envelope))
      .map((e) => (e.envelope.payload as { orderId: string }).orderId);
    expect(inStream.sort()).toEqual([...ids].sort());
  });

  it('counts confirmations, cancellations and revenue, each event once however often the stream repeats it', async () => {
    const shop = await started(await newStore(), ['worker']);
    const stream = new PgStream(shop.db);
    const [a, b, c, d] = [1, 2, 3, 4].map((i) => uuidv7At(at + i));
    const events = [
      placed(a!, 'c-1', [{ sku: 'book-1', quantity: 2 }]),
      placed(b!, 'c-2', [{ sku: 'mug-1', quantity: 1 }]),
      // An outcome read before its placed event: both still count, once.
      confirmed(c!, 'c-1', 900),
      placed(c!, 'c-1', [{ sku: 'mug-1', quantity: 1 }]),
      placed(d!, 'c-3', [{ sku: 'rare-1', quantity: 1 }]),
      confirmed(a!, 'c-1', 3000),
      cancelled(b!, 'c-2', 'payment declined'),
    ];
    await stream.append(orderEventsStream, events);
    // What an at-least-once relay can leave behind: the same envelopes again, in a later batch.
    await stream.append(orderEventsStream, [events[0]!, events[5]!, events[6]!, events[3]!]);
    // And a later outcome for an order already closed is not a second outcome.
    await stream.append(orderEventsStream, [cancelled(a!, 'c-1', 'late duplicate saga')]);
    const model = await summaryWhen(shop, (s) => s.stream.lag === 0 && s.stream.head === 12);
    expect(model.orders).toEqual({ total: 4, open: 1, confirmed: 2, cancelled: 1, confirmationRate: 2 / 3 });
    expect(model.revenue).toEqual({ confirmedCents: 3900, averageOrderCents: 1950 });
    expect(model.customers).toEqual({
      total: 3,
      top: [
        { customerId: 'c-1', orders: 2, confirmed: 2, revenueCents: 3900 },
        { customerId: 'c-2', orders: 1, confirmed: 0, revenueCents: 0 },
        { customerId: 'c-3', orders: 1, confirmed: 0, revenueCents: 0 },
      ],
    });
    expect(model.skus).toEqual([
      { sku: 'book-1', orders: 1, unitsOrdered: 2, unitsConfirmed: 2, unitsCancelled: 0 },
      { sku: 'mug-1', orders: 2, unitsOrdered: 2, unitsConfirmed: 1, unitsCancelled: 1 },
      { sku: 'rare-1', orders: 1, unitsOrdered: 1, unitsConfirmed: 0, unitsCancelled: 0 },
    ]);
    expect(model.cancellationReasons).toEqual([{ reason: 'payment declined', count: 1 }]);
    expect(model.stream).toEqual({
      name: orderEventsStream,
      position: 12,
      head: 12,
      lag: 0,
      skippedEvents: 0,
    });
    expect((await summary(shop, '?top=1')).customers.top).toHaveLength(1);
    expect((await shop.http.inject({ url: '/v1/analytics/orders?top=0' })).statusCode).toBe(400);
  });

  it('passes over an event its schema refuses, records it, and goes on', async () => {
    const shop = await started(await newStore(), ['worker']);
    const stream = new PgStream(shop.db);
    const orderId = uuidv7At(at);
    await stream.append(orderEventsStream, [
      createEnvelope({ type: orderConfirmedV1.type, payload: { orderId, customerId: 'c-1' } }),
      placed(orderId, 'c-1', [{ sku: 'book-1', quantity: 1 }]),
    ]);
    const model = await summaryWhen(shop, (s) => s.stream.lag === 0 && s.stream.head === 2);
    expect(model.stream.skippedEvents).toBe(1);
    expect(model.orders).toMatchObject({ total: 1, open: 1 });
  });

  it('drop the model and rebuild from the first offset (npm run analytics -- rebuild): the same model', async () => {
    const store = await newStore();
    const shop = await started(store, ['worker', 'relay']);
    await place(shop, 'c-1', [{ sku: 'book-1', quantity: 2 }]);
    await place(shop, 'c-2', [{ sku: 'mug-1', quantity: 1 }]);
    const stream = new PgStream(shop.db);
    const extra = uuidv7At(at);
    const outcome = confirmed(extra, 'c-9', 4200);
    await stream.append(orderEventsStream, [
      placed(extra, 'c-9', [{ sku: 'rare-1', quantity: 1 }]),
      outcome,
      outcome,
    ]);
    await summaryWhen(shop, (s) => s.orders.total === 3 && s.stream.lag === 0);
    // The relay may still be publishing the saga's outcome events: stop everything, then compare.
    await shop.stop({ drainMs: 1000 });
    const db = await store.open();
    const before = await modelRows(db);
    const head = await new PgStream(db).head(orderEventsStream);
    await db.query('DELETE FROM analytics_orders');
    await db.query('DELETE FROM analytics_order_lines');
    await db.close();

    const lines: string[] = [];
    expect(
      await runAnalytics(
        ['rebuild'],
        (line) => lines.push(line),
        () => store.open(),
      ),
    ).toBe(0);
    expect(lines).toEqual([`replayed ${head} event(s) of shop.order-events into shop.analytics.orders.v1`]);
    const status: string[] = [];
    expect(
      await runAnalytics(
        ['status'],
        (line) => status.push(line),
        () => store.open(),
      ),
    ).toBe(0);
    expect(status).toEqual([`shop.analytics.orders.v1  position ${head}  head ${head}  lag 0`]);
    const printed: string[] = [];
    expect(
      await runAnalytics(
        ['summary'],
        (line) => printed.push(line),
        () => store.open(),
      ),
    ).toBe(0);
    const printedSummary = JSON.parse(printed.join('\n')) as OrderAnalytics;
    expect(printedSummary.orders.total).toBe(3);
    expect(printedSummary.stream).toMatchObject({ position: head, head, lag: 0 });

    const after = await store.open();
    expect(await modelRows(after)).toEqual(before);
    await after.close();
    expect(await runAnalytics(['bogus'], () => undefined)).toBe(2);
  });
});
