import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { KeelError } from '../../src/errors/index.ts';
import { getSaga, listSagas } from '../../src/saga/index.ts';
import { systemClock } from '../../src/time/index.ts';
import type { Shop } from './app.ts';
import {
  fulfilmentId,
  fulfilmentVersion,
  orderFulfilment,
  startFulfilment,
} from './application/fulfilment.ts';
import { PaymentProvider } from './application/payment-provider.ts';
import { orderEventsStream } from './contracts/order-events.ts';
import { orderPlacedV1, ordersQueue } from './contracts/orders.ts';
import type { Order } from './domain/order.ts';
import { stockOf } from './storage/inventory-store.ts';
import { findOrder, insertOrder } from './storage/orders-store.ts';
import { paymentsOf } from './storage/payments-store.ts';
import { createShopStore, fulfilmentFinished, openTestShop, type ShopStore } from './test/test-shop.ts';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function started(
  roles: Parameters<typeof openTestShop>[1] = ['worker', 'relay'],
  options: Parameters<typeof openTestShop>[3] = {},
): Promise<Shop> {
  const store: ShopStore = await createShopStore();
  cleanups.push(() => store.dispose());
  const shop = await openTestShop(store, roles, systemClock, options);
  await shop.start();
  cleanups.push(() => shop.stop({ drainMs: 1000 }));
  return shop;
}

async function place(shop: Shop, body: { customerId: string; items: { sku: string; quantity: number }[] }) {
  const response = await shop.http.inject({
    method: 'POST',
    url: '/v1/orders',
    payload: body,
    headers: { 'idempotency-key': randomUUID() },
  });
  expect(response.statusCode).toBe(202);
  return response.json<Order>();
}

async function getOrder(shop: Shop, id: string): Promise<Order> {
  const response = await shop.http.inject({ url: `/v1/orders/${id}` });
  expect(response.statusCode).toBe(200);
  return response.json<Order>();
}

describe('order fulfilment: the order-fulfilment saga run by the worker', () => {
  it('a placed order ends CONFIRMED: stock taken once, payment charged once', async () => {
    const shop = await started();
    const before = await stockOf(shop.db, 'book-1');
    const placed = await place(shop, { customerId: 'c-1', items: [{ sku: 'book-1', quantity: 2 }] });

    const saga = await fulfilmentFinished(shop, placed.id);
    expect(saga).toMatchObject({ state: 'COMPLETED', saga: 'order-fulfilment', version: fulfilmentVersion });
    const order = await getOrder(shop, placed.id);
    // PENDING (1) → ACCEPTED (2) → CONFIRMED (3).
    expect(order).toMatchObject({ status: 'CONFIRMED', version: 3 });
    expect(order).not.toHaveProperty('reason');
    expect(await stockOf(shop.db, 'book-1')).toBe(before! - 2);
    const payments = await paymentsOf(shop.db, placed.id);
    expect(payments).toEqual([expect.objectContaining({ status: 'CHARGED', amountCents: 2 * 1500 })]);
  });

  it('an out-of-stock SKU ends CANCELLED with the reason: nothing charged, stock unchanged', async () => {
    const shop = await started();
    const placed = await place(shop, { customerId: 'c-2', items: [{ sku: 'rare-1', quantity: 2 }] });

    const saga = await fulfilmentFinished(shop, placed.id);
    expect(saga).toMatchObject({ state: 'COMPENSATED', failure: { step: 'reserve-stock' } });
    const order = await getOrder(shop, placed.id);
    expect(order).toMatchObject({
      status: 'CANCELLED',
      reason: 'out of stock: rare-1 (1 available, 2 ordered)',
    });
    expect(await stockOf(shop.db, 'rare-1')).toBe(1);
    expect(await paymentsOf(shop.db, placed.id)).toEqual([]);
  });

  it('a declined payment ends CANCELLED, and the compensation gives the stock back', async () => {
    const shop = await started();
    const before = await stockOf(shop.db, 'book-1');
    const placed = await place(shop, { customerId: 'declined-7', items: [{ sku: 'book-1', quantity: 3 }] });

    const saga = await fulfilmentFinished(shop, placed.id);
    expect(saga).toMatchObject({ state: 'COMPENSATED', failure: { step: 'take-payment' } });
    expect(await getOrder(shop, placed.id)).toMatchObject({
      status: 'CANCELLED',
      reason: 'payment declined: card declined',
    });
    expect(await stockOf(shop.db, 'book-1')).toBe(before);
    expect(await paymentsOf(shop.db, placed.id)).toEqual([expect.objectContaining({ status: 'DECLINED' })]);
    const { history } = await getSaga(shop.db, fulfilmentId(placed.id));
    // The declined step is compensated too (a refund of nothing), then the earlier ones in reverse.
    expect(history.filter((h) => h.event === 'compensation-completed').map((h) => h.step)).toEqual([
      'take-payment',
      'reserve-stock',
      'accept-order',
    ]);
  });

  it('an instance started on version 1 before the upgrade finishes on it, its failed step undone as version 1 did', async () => {
    const shop = await started(['worker']);
    const before = await stockOf(shop.db, 'book-1');
    const order = await pendingOrder(shop, {
      customerId: 'declined-8',
      items: [{ sku: 'book-1', quantity: 2 }],
    });
    const v1 = orderFulfilment(
      { db: shop.db, clock: systemClock, payments: new PaymentProvider(shop.db) },
      1,
    );
    await shop.db.transaction((tx) =>
      startFulfilment(
        tx,
        v1,
        { orderId: order.id, customerId: order.customerId, items: [...order.items] },
        systemClock,
      ),
    );

    expect(await fulfilmentFinished(shop, order.id)).toMatchObject({
      state: 'COMPENSATED',
      version: 1,
      failure: { step: 'take-payment' },
    });
    const { history } = await getSaga(shop.db, fulfilmentId(order.id));
    expect(history.filter((h) => h.event === 'compensation-completed').map((h) => h.step)).toEqual([
      'reserve-stock',
      'accept-order',
    ]);
    expect(await findOrder(shop.db, order.id)).toMatchObject({ status: 'CANCELLED' });
    expect(await stockOf(shop.db, 'book-1')).toBe(before);
  });

  it('a charge whose answer is lost fails the step for good, and the cancellation refunds it', async () => {
    // The provider charges, then the answer never arrives: the step fails with the charge applied.
    class LosingProvider extends PaymentProvider {
      override async charge(
        ...args: Parameters<PaymentProvider['charge']>
      ): ReturnType<PaymentProvider['charge']> {
        await super.charge(...args);
        throw new KeelError('KEEL_PERMANENT_FAILURE', 'the provider answered nothing');
      }
    }
    const shop = await started(['worker', 'relay'], { payments: (db) => new LosingProvider(db) });
    const before = await stockOf(shop.db, 'book-1');
    const placed = await place(shop, { customerId: 'c-5', items: [{ sku: 'book-1', quantity: 1 }] });

    expect(await fulfilmentFinished(shop, placed.id)).toMatchObject({
      state: 'COMPENSATED',
      failure: { step: 'take-payment' },
    });
    expect(await getOrder(shop, placed.id)).toMatchObject({
      status: 'CANCELLED',
      reason: 'the provider answered nothing',
    });
    expect(await paymentsOf(shop.db, placed.id)).toEqual([expect.objectContaining({ status: 'REFUNDED' })]);
    expect(await stockOf(shop.db, 'book-1')).toBe(before);
  });

  it('a redelivered order.placed.v1 starts one saga and charges once', async () => {
    const shop = await started(['worker']);
    const before = await stockOf(shop.db, 'book-1');
    const order = await pendingOrder(shop, { customerId: 'c-3', items: [{ sku: 'book-1', quantity: 1 }] });
    const event = placedEvent(order);
    let handled = 0;
    const bothHandled = new Promise<void>((resolve) =>
      shop.worker!.events.on('handled', ({ message }) => {
        if (message.id === event.id && ++handled === 2) resolve();
      }),
    );
    await shop.queue.publish(ordersQueue, [event]);
    await shop.queue.publish(ordersQueue, [event]);
    await bothHandled;

    expect(await fulfilmentFinished(shop, order.id)).toMatchObject({ state: 'COMPLETED' });
    expect(await listSagas(shop.db, { saga: 'order-fulfilment' })).toHaveLength(1);
    expect(await findOrder(shop.db, order.id)).toMatchObject({ status: 'CONFIRMED' });
    expect(await paymentsOf(shop.db, order.id)).toEqual([expect.objectContaining({ status: 'CHARGED' })]);
    expect(await stockOf(shop.db, 'book-1')).toBe(before! - 1);
    // The outcome went into the order stream once, with the amount charged.
    expect(await outcomeEvents(shop, order.id)).toEqual([
      {
        type: 'order.confirmed.v1',
        payload: { orderId: order.id, customerId: 'c-3', amountCents: 1500 },
      },
    ]);
  });

  it("a cancelled order's outcome goes into the order stream with the reason, once", async () => {
    const shop = await started(['worker']);
    const order = await pendingOrder(shop, { customerId: 'c-6', items: [{ sku: 'rare-1', quantity: 5 }] });
    await shop.queue.publish(ordersQueue, [placedEvent(order)]);

    expect(await fulfilmentFinished(shop, order.id)).toMatchObject({ state: 'COMPENSATED' });
    expect(await outcomeEvents(shop, order.id)).toEqual([
      {
        type: 'order.cancelled.v1',
        payload: {
          orderId: order.id,
          customerId: 'c-6',
          reason: 'out of stock: rare-1 (1 available, 5 ordered)',
        },
      },
    ]);
  });
});

/** The worker-only shop has no relay: the outbox still holds every event written for the order. */
async function outcomeEvents(shop: Shop, orderId: string): Promise<{ type: string; payload: unknown }[]> {
  const { rows } = await shop.db.query<{ type: string; payload: unknown }>(
    `SELECT type, payload FROM keel_outbox WHERE destination = $1 AND key = $2 ORDER BY seq`,
    [orderEventsStream, orderId],
  );
  return rows;
}

async function pendingOrder(shop: Shop, request: Pick<Order, 'customerId' | 'items'>): Promise<Order> {
  const now = new Date(systemClock.now()).toISOString();
  const order: Order = {
    id: randomUUID(),
    ...request,
    status: 'PENDING',
    version: 1,
    createdAt: now,
    updatedAt: now,
  };
  await insertOrder(shop.db, order);
  return order;
}

function placedEvent(order: Order) {
  return orderPlacedV1.create(
    { orderId: order.id, customerId: order.customerId, items: [...order.items] },
    { key: order.id },
  );
}

describe('the payment provider', () => {
  it('charges once per idempotency key; a repeat gets the first outcome', async () => {
    const shop = await started([]);
    const provider = new PaymentProvider(shop.db);
    const orderId = randomUUID();
    const charge = { orderId, customerId: 'c-4', amountCents: 1234 };
    const first = await provider.charge(charge, { idempotencyKey: 'pay-1' });
    const again = await provider.charge(charge, { idempotencyKey: 'pay-1' });
    expect(again).toEqual(first);
    expect(await paymentsOf(shop.db, orderId)).toEqual([expect.objectContaining({ status: 'CHARGED' })]);
    await expect(
      provider.charge({ ...charge, amountCents: 1 }, { idempotencyKey: 'pay-1' }),
    ).rejects.toMatchObject({
      code: 'KEEL_IDEMPOTENCY_KEY_REUSED',
    });
    expect(await provider.refund('pay-1')).toBe(true);
    expect(await provider.refund('pay-1')).toBe(false);
    expect(await paymentsOf(shop.db, orderId)).toEqual([expect.objectContaining({ status: 'REFUNDED' })]);
  });
});
