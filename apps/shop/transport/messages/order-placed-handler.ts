import type { Db } from '../../../../src/db/index.ts';
import type { Handler } from '../../../../src/messaging/index.ts';
import { inboxOnce } from '../../../../src/outbox/index.ts';
import type { Clock } from '../../../../src/time/index.ts';
import { acceptOrder } from '../../application/orders.ts';
import { orderPlacedV1 } from '../../contracts/orders.ts';

/**
 * The worker's handler for `order.placed.v1`: accepts the order in its own transaction, which
 * commits before the handler resolves, so the consumer acks only after the effect is durable.
 * The inbox records the message in that same transaction: a redelivery changes nothing.
 */
export function orderPlacedHandler(db: Db, clock: Clock): Handler {
  return async (message) => {
    const { payload } = orderPlacedV1.parse(message);
    await db.transaction((tx) =>
      inboxOnce(tx, 'shop.accept-order', message, (inboxTx) => acceptOrder(inboxTx, clock, payload.orderId), {
        clock,
      }),
    );
  };
}
