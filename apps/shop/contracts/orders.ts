import { z } from 'zod';
import { defineMessage } from '../../../src/messaging/index.ts';

/**
 * The public contract of the orders API and its events. Requests are strict: an unknown field
 * is an error, not silently dropped, so a client's typo never becomes a lost instruction.
 */
export const sku = z
  .string()
  .min(1)
  .max(64)
  .regex(/^[A-Za-z0-9._-]+$/, 'letters, digits, ".", "_" or "-"');

export const orderItem = z.strictObject({
  sku,
  quantity: z.number().int().min(1).max(1000),
});

export const placeOrderRequest = z.strictObject({
  customerId: z.string().min(1).max(128),
  items: z.array(orderItem).min(1).max(100),
});
export type PlaceOrderRequest = z.infer<typeof placeOrderRequest>;

export const orderIdParams = z.strictObject({ id: z.uuid() });

export const orderPlacedV1 = defineMessage(
  'order.placed',
  1,
  z.object({
    orderId: z.uuid(),
    customerId: z.string(),
    items: z.array(z.object({ sku: z.string(), quantity: z.number().int().positive() })),
  }),
);

/** The queue the worker takes order events from. */
export const ordersQueue = 'shop.orders';
