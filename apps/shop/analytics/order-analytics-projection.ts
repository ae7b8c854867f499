import type { Tx } from '../../../src/db/index.ts';
import { isKeelError } from '../../../src/errors/index.ts';
import {
  ProjectionRunner,
  type Projection,
  type ProjectionRunnerOptions,
  type StreamEntry,
} from '../../../src/messaging/index.ts';
import type { Db } from '../../../src/db/index.ts';
import { orderCancelledV1, orderConfirmedV1, orderEventsStream } from '../contracts/order-events.ts';
import { orderPlacedV1 } from '../contracts/orders.ts';

/**
 * The read model's name and version, its key in `keel_stream_positions`. Change what the model
 * means (a new column, a new rule) by bumping the version here with a migration that empties the
 * `analytics_*` tables: the new name has no stored position, so the worker replays the stream
 * from its first entry into the new model.
 */
export const orderAnalyticsProjectionName = 'shop.analytics.orders.v1';

const placeOrder = `INSERT INTO analytics_orders (order_id, customer_id, status, placed_at)
  VALUES ($1, $2, 'PLACED', $3)
  ON CONFLICT (order_id) DO UPDATE SET placed_at = coalesce(analytics_orders.placed_at, excluded.placed_at)`;

const placeLines = `INSERT INTO analytics_order_lines (order_id, line, sku, quantity)
  SELECT $1, e.ord, e.doc->>'sku', (e.doc->>'quantity')::integer
  FROM jsonb_array_elements($2::jsonb) WITH ORDINALITY AS e(doc, ord)
  ON CONFLICT (order_id, line) DO NOTHING`;

// An outcome only moves a PLACED order: the first outcome read stays, whatever repeats later.
const confirmOrder = `INSERT INTO analytics_orders (order_id, customer_id, status, amount_cents, closed_at)
  VALUES ($1, $2, 'CONFIRMED', $3, $4)
  ON CONFLICT (order_id) DO UPDATE SET status = 'CONFIRMED', amount_cents = excluded.amount_cents,
    closed_at = excluded.closed_at
  WHERE analytics_orders.status = 'PLACED'`;

const cancelOrder = `INSERT INTO analytics_orders (order_id, customer_id, status, cancel_reason, closed_at)
  VALUES ($1, $2, 'CANCELLED', $3, $4)
  ON CONFLICT (order_id) DO UPDATE SET status = 'CANCELLED', cancel_reason = excluded.cancel_reason,
    closed_at = excluded.closed_at
  WHERE analytics_orders.status = 'PLACED'`;

const skipEvent = `INSERT INTO analytics_skipped_events (position, event_id, type, error) VALUES ($1, $2, $3, $4)
  ON CONFLICT (position) DO NOTHING`;

/**
 * Orders by status, confirmed revenue, units per SKU and orders per customer, from
 * `order.placed.v1`, `order.confirmed.v1` and `order.cancelled.v1`.
 *
 * Exactly once by construction, not by remembering ids: each event sets an order's row to a state
 * (placed, then confirmed or cancelled, final), so applying an event again, at once or after
 * other events, leaves the model as it was. That covers the duplicates an at-least-once relay
 * leaves in the stream, and an outcome read before its placed event.
 *
 * An event whose payload its schema refuses is recorded in `analytics_skipped_events` and passed
 * over, so one bad event cannot stop the model; other types in the stream are ignored.
 */
export function orderAnalyticsProjection(
  onSkipped: (entry: StreamEntry, error: unknown) => void = () => undefined,
): Projection {
  return {
    async apply(entries, tx) {
      for (const entry of entries) {
        try {
          await applyEntry(entry, tx);
        } catch (error) {
          if (!isKeelError(error, 'KEEL_MESSAGE_INVALID')) throw error;
          await tx.query(skipEvent, [entry.position, entry.envelope.id, entry.envelope.type, error.message]);
          onSkipped(entry, error);
        }
      }
    },
    async reset(tx) {
      await tx.query('DELETE FROM analytics_order_lines');
      await tx.query('DELETE FROM analytics_orders');
      await tx.query('DELETE FROM analytics_skipped_events');
    },
  };
}

async function applyEntry({ envelope }: StreamEntry, tx: Tx): Promise<void> {
  if (orderPlacedV1.is(envelope)) {
    const { payload } = orderPlacedV1.parse(envelope);
    await tx.query(placeOrder, [payload.orderId, payload.customerId, envelope.occurredAt]);
    await tx.query(placeLines, [payload.orderId, JSON.stringify(payload.items)]);
  } else if (orderConfirmedV1.is(envelope)) {
    const { payload } = orderConfirmedV1.parse(envelope);
    await tx.query(confirmOrder, [
      payload.orderId,
      payload.customerId,
      payload.amountCents,
      envelope.occurredAt,
    ]);
  } else if (orderCancelledV1.is(envelope)) {
    const { payload } = orderCancelledV1.parse(envelope);
    await tx.query(cancelOrder, [payload.orderId, payload.customerId, payload.reason, envelope.occurredAt]);
  }
}

export type OrderAnalyticsRunnerOptions = Omit<ProjectionRunnerOptions, 'name' | 'stream'> & {
  onSkipped?: (entry: StreamEntry, error: unknown) => void;
};

/** The runner the worker role starts, and the command line uses to rebuild. */
export function orderAnalyticsRunner(db: Db, options: OrderAnalyticsRunnerOptions = {}): ProjectionRunner {
  const { onSkipped, ...runner } = options;
  return new ProjectionRunner(db, orderAnalyticsProjection(onSkipped), {
    ...runner,
    name: orderAnalyticsProjectionName,
    stream: orderEventsStream,
  });
}
