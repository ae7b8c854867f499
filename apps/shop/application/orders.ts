import type { Db, Tx } from '../../../src/db/index.ts';
import { injectTraceHeaders, tracedAddToOutbox } from '../../../src/observability/index.ts';
import { addToOutbox, type OutboxWriter } from '../../../src/outbox/index.ts';
import { uuidv7At, type Clock } from '../../../src/time/index.ts';
import { orderPlacedV1, ordersQueue, type PlaceOrderRequest } from '../contracts/orders.ts';
import type { Order } from '../domain/order.ts';
import { insertOrder } from '../storage/orders-store.ts';

/**
 * Writes the order as PENDING and its `order.placed.v1` event in one transaction: the event is
 * published if and only if the order exists. `inTransaction.first` runs first in that
 * transaction and `inTransaction.last` last (the HTTP layer claims the request's idempotency key
 * and stores its response there); `outbox` is where the event is written (the table outbox, or
 * the WAL outbox on a server with wal_level=logical).
 */
export async function placeOrder(
  db: Db,
  clock: Clock,
  request: PlaceOrderRequest,
  headers: Record<string, string> = {},
  inTransaction: {
    first?: (tx: Tx) => Promise<void>;
    last?: (tx: Tx, order: Order) => Promise<void>;
  } = {},
  outbox: OutboxWriter = addToOutbox,
): Promise<Order> {
  const now = new Date(clock.now()).toISOString();
  const order: Order = {
    id: uuidv7At(clock.now()),
    customerId: request.customerId,
    items: request.items,
    status: 'PENDING',
    version: 1,
    createdAt: now,
    updatedAt: now,
  };
  const event = orderPlacedV1.create(
    { orderId: order.id, customerId: order.customerId, items: [...order.items] },
    { key: order.id, headers: injectTraceHeaders(headers), clock },
  );
  await db.transaction(async (tx) => {
    await inTransaction.first?.(tx);
    await insertOrder(tx, order);
    await tracedAddToOutbox(tx, ordersQueue, event, { add: outbox });
    await inTransaction.last?.(tx, order);
  });
  return order;
}
