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

export const orderStatus = z.enum(['PENDING', 'ACCEPTED', 'CONFIRMED', 'CANCELLED']);

/** An order as `POST /v1/orders` and `GET /v1/orders/:id` answer with it. */
export const orderResource = z.object({
  id: z.uuid(),
  customerId: z.string(),
  items: z.array(orderItem),
  status: orderStatus,
  reason: z.string().optional().describe('Why a CANCELLED order was cancelled'),
  version: z.number().int().min(1).describe('Incremented on every change'),
  createdAt: z.iso.datetime({ offset: true }),
  updatedAt: z.iso.datetime({ offset: true }),
});

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
