import { z } from 'zod';

/** `GET /v1/analytics/orders?top=N`: how many customers, SKUs and cancellation reasons each list shows. */
export const analyticsQuery = z.strictObject({
  top: z.coerce.number().int().min(1).max(100).default(10),
});

const count = z.number().int().min(0);

/** The orders read model built from the order stream (`OrderAnalytics`). */
export const orderAnalyticsResource = z.object({
  orders: z.object({
    total: count,
    open: count.describe('Placed, with no outcome read yet'),
    confirmed: count,
    cancelled: count,
    confirmationRate: z.number().min(0).max(1).nullable(),
  }),
  revenue: z.object({
    confirmedCents: count,
    averageOrderCents: count.nullable(),
  }),
  customers: z.object({
    total: count,
    top: z.array(z.object({ customerId: z.string(), orders: count, confirmed: count, revenueCents: count })),
  }),
  skus: z.array(
    z.object({
      sku: z.string(),
      orders: count,
      unitsOrdered: count,
      unitsConfirmed: count,
      unitsCancelled: count,
    }),
  ),
  cancellationReasons: z.array(z.object({ reason: z.string(), count })),
  stream: z
    .object({ name: z.string(), position: count, head: count, lag: count, skippedEvents: count })
    .describe('How current the model is: the stream position it has applied, and the stream’s last'),
});
