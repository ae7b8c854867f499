import { z } from 'zod';
import { defineMessage } from '../../../src/messaging/index.ts';

/**
 * The order stream: every event of an order's life, in the order they happened, kept for
 * replay. `order.placed.v1` (contracts/orders.ts) goes to the worker's queue and into this
 * stream; the outcome events below go into the stream only, written by the fulfilment saga in
 * the transaction that moves the order.
 */
export const orderEventsStream = 'shop.order-events';

export const orderConfirmedV1 = defineMessage(
  'order.confirmed',
  1,
  z.object({
    orderId: z.uuid(),
    customerId: z.string(),
    amountCents: z.number().int().nonnegative(),
  }),
);

export const orderCancelledV1 = defineMessage(
  'order.cancelled',
  1,
  z.object({
    orderId: z.uuid(),
    customerId: z.string(),
    reason: z.string(),
  }),
);
