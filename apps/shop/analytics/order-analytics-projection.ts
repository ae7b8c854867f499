import type { Db, Tx } from '../../../src/db/index.ts';
import { isKeelError } from '../../../src/errors/index.ts';
import { ProjectionRunner, type Envelope, type StreamEntry } from '../../../src/messaging/index.ts';
import type { Projection } from '../../../src/messaging/projection.ts';
import type { Clock } from '../../../src/time/index.ts';
import { orderCancelledV1, orderConfirmedV1, orderEventsStream } from '../contracts/order-events.ts';
import { orderPlacedV1 } from '../contracts/orders.ts';

/**
 * The read model's name and version, its key in `keel_stream_positions` (or, with the stream on
 * Kafka, `keel_kafka_projection_offsets`). Change what the model
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

const skipEvent = `INSERT INTO analytics_skipped_events (stream_partition, position, event_id, type, error)
  VALUES ($1, $2, $3, $4, $5)
  ON CONFLICT (stream_partition, position) DO NOTHING`;

/** Where an event sits in the order stream: what `analytics_skipped_events` keys a skipped one by. */
export interface StreamPlace {
  /** Its Kafka partition; the PostgreSQL stream is one partition, 0. */
  partition: number;
  /** Its PostgreSQL stream position, or its Kafka offset. */
  position: bigint;
  /** For people: `position 12`, `partition 1 offset 34`. */
  text: string;
}

/** An event the projection passed over (its schema refused the payload), and where it sits. */
export interface SkippedEvent {
  place: StreamPlace;
  envelope: Envelope;
}

/** Where a PostgreSQL stream's entry sits. */
export const pgStreamPlace = (entry: StreamEntry): StreamPlace => ({
  partition: 0,
  position: BigInt(entry.position),
  text: `position ${entry.position}`,
});

/**
 * Orders by status, confirmed revenue, units per SKU and orders per customer, from
 * `order.placed.v1`, `order.confirmed.v1` and `order.cancelled.v1`.
 *
 * Exactly once by construction, not by remembering ids: each event sets an order's row to a state
 * (placed, then confirmed or cancelled, final), so applying an event again, at once or after
 * other events, leaves the model as it was. That covers the duplicates an at-least-once relay
 * leaves in the stream, and an outcome read before its placed event.
 *
 * An event whose payload its schema refuses is recorded in `analytics_skipped_events` (keyed by
 * `placeOf`: where it sits in the stream) and passed over, so one bad event cannot stop the model;
 * other types in the stream are ignored. The same projection runs over the PostgreSQL stream and
 * over the Kafka topic (`OrderStream`).
 */
export function orderAnalyticsProjection<Entry extends { readonly envelope: Envelope }>(
  placeOf: (entry: Entry) => StreamPlace,
  onSkipped: (skipped: SkippedEvent, error: unknown) => void = () => undefined,
): Projection<Entry> {
  return {
    async apply(entries, tx) {
      for (const entry of entries) {
        try {
          await applyEvent(entry.envelope, tx);
        } catch (error) {
          if (!isKeelError(error, 'KEEL_MESSAGE_INVALID')) throw error;
          const place = placeOf(entry);
          const { id, type } = entry.envelope;
          await tx.query(skipEvent, [place.partition, String(place.position), id, type, error.message]);
          onSkipped({ place, envelope: entry.envelope }, error);
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

async function applyEvent(envelope: Envelope, tx: Tx): Promise<void> {
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

/** What the worker and the command line set on the analytics runner, wherever the stream lives. */
export interface OrderAnalyticsRunnerOptions {
  clock?: Clock;
  /** How often to look for new events (PostgreSQL stream) or for the topic (Kafka). Default 1 000 ms. */
  pollIntervalMs?: number;
  onSkipped?: (skipped: SkippedEvent, error: unknown) => void;
}

/** The runner over the PostgreSQL stream: the worker role starts it, the command line rebuilds with it. */
export function orderAnalyticsRunner(db: Db, options: OrderAnalyticsRunnerOptions = {}): ProjectionRunner {
  const { onSkipped, ...runner } = options;
  return new ProjectionRunner(db, orderAnalyticsProjection(pgStreamPlace, onSkipped), {
    ...runner,
    name: orderAnalyticsProjectionName,
    stream: orderEventsStream,
  });
}
