import type { Db } from '../../../../src/db/index.ts';
import type { Handler } from '../../../../src/messaging/index.ts';
import { inboxOnce } from '../../../../src/outbox/index.ts';
import type { SagaDefinition } from '../../../../src/saga/index.ts';
import type { Clock } from '../../../../src/time/index.ts';
import { startFulfilment, type FulfilmentInput } from '../../application/fulfilment.ts';
import { orderPlacedV1 } from '../../contracts/orders.ts';

/**
 * The worker's handler for `order.placed.v1`: starts the order's fulfilment saga in its own
 * transaction, which commits before the handler resolves, so the consumer acks only after the
 * start is durable. The inbox records the message in that same transaction, and the instance id
 * is the order's: a redelivery starts nothing. The worker's `SagaRunner` runs the steps.
 */
export function orderPlacedHandler(db: Db, clock: Clock, saga: SagaDefinition<FulfilmentInput>): Handler {
  return async (message) => {
    const { payload } = orderPlacedV1.parse(message);
    await db.transaction((tx) =>
      // The consumer name predates the saga; kept so messages already recorded stay deduplicated.
      inboxOnce(
        tx,
        'shop.accept-order',
        message,
        (inboxTx) => startFulfilment(inboxTx, saga, payload, clock),
        {
          clock,
        },
      ),
    );
  };
}
