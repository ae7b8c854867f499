import type { Db, Tx } from '../../../src/db/index.ts';
import { pgOrderStream, type OrderStream, type OrderStreamProgress } from './order-stream.ts';

export interface OrderAnalytics {
  orders: {
    total: number;
    /** Placed, with no outcome read yet. */
    open: number;
    confirmed: number;
    cancelled: number;
    /** confirmed / (confirmed + cancelled); null before any outcome. */
    confirmationRate: number | null;
  };
  revenue: {
    /** What confirmed orders were charged, in cents. */
    confirmedCents: number;
    /** Rounded to the cent; null before any confirmation. */
    averageOrderCents: number | null;
  };
  customers: {
    total: number;
    /** By confirmed revenue, then by orders. */
    top: { customerId: string; orders: number; confirmed: number; revenueCents: number }[];
  };
  /** By units ordered. */
  skus: {
    sku: string;
    orders: number;
    unitsOrdered: number;
    unitsConfirmed: number;
    unitsCancelled: number;
  }[];
  cancellationReasons: { reason: string; count: number }[];
  /**
   * How current the model is: the stream position it has applied, and the stream's last (with
   * the stream on Kafka: offsets, summed over the topic's partitions).
   */
  stream: { name: string; position: number; head: number; lag: number; skippedEvents: number };
}

const totals = `SELECT count(*)::text AS total,
    count(*) FILTER (WHERE status = 'PLACED')::text AS open,
    count(*) FILTER (WHERE status = 'CONFIRMED')::text AS confirmed,
    count(*) FILTER (WHERE status = 'CANCELLED')::text AS cancelled,
    coalesce(sum(amount_cents) FILTER (WHERE status = 'CONFIRMED'), 0)::text AS revenue,
    count(DISTINCT customer_id)::text AS customers
  FROM analytics_orders`;

const topCustomers = `SELECT customer_id, count(*)::text AS orders,
    count(*) FILTER (WHERE status = 'CONFIRMED')::text AS confirmed,
    coalesce(sum(amount_cents) FILTER (WHERE status = 'CONFIRMED'), 0)::text AS revenue
  FROM analytics_orders GROUP BY customer_id
  ORDER BY coalesce(sum(amount_cents) FILTER (WHERE status = 'CONFIRMED'), 0) DESC, count(*) DESC, customer_id
  LIMIT $1`;

const skus = `SELECT l.sku, count(DISTINCT l.order_id)::text AS orders, sum(l.quantity)::text AS ordered,
    coalesce(sum(l.quantity) FILTER (WHERE o.status = 'CONFIRMED'), 0)::text AS confirmed,
    coalesce(sum(l.quantity) FILTER (WHERE o.status = 'CANCELLED'), 0)::text AS cancelled
  FROM analytics_order_lines AS l JOIN analytics_orders AS o USING (order_id)
  GROUP BY l.sku ORDER BY sum(l.quantity) DESC, l.sku LIMIT $1`;

const reasons = `SELECT cancel_reason AS reason, count(*)::text AS count FROM analytics_orders
  WHERE status = 'CANCELLED' GROUP BY cancel_reason ORDER BY count(*) DESC, cancel_reason LIMIT $1`;

const skipped = 'SELECT count(*)::text AS skipped FROM analytics_skipped_events';

/**
 * The summary `GET /v1/analytics/orders` answers, read in one repeatable-read transaction so its
 * numbers agree with each other and with the stream position reported. `top` bounds each list;
 * `stream` is where the order stream lives (default: the PostgreSQL stream).
 */
export async function orderAnalytics(
  db: Db,
  top: number,
  stream: OrderStream = pgOrderStream,
): Promise<OrderAnalytics> {
  const progress = await stream.progress(db);
  return db.transaction(async (tx) => read(tx, top, await progress(tx), stream.name), {
    isolation: 'repeatable read',
  });
}

async function read(
  tx: Tx,
  top: number,
  progress: OrderStreamProgress,
  name: string,
): Promise<OrderAnalytics> {
  const t = (await tx.query<Record<string, string>>(totals)).rows[0]!;
  const confirmed = Number(t.confirmed);
  const cancelled = Number(t.cancelled);
  const revenue = Number(t.revenue);
  const customers = await tx.query<Record<string, string>>(topCustomers, [top]);
  const lines = await tx.query<Record<string, string>>(skus, [top]);
  const why = await tx.query<{ reason: string; count: string }>(reasons, [top]);
  const left = (await tx.query<{ skipped: string }>(skipped)).rows[0]!;
  const { position, head } = progress;
  return {
    orders: {
      total: Number(t.total),
      open: Number(t.open),
      confirmed,
      cancelled,
      confirmationRate: confirmed + cancelled === 0 ? null : confirmed / (confirmed + cancelled),
    },
    revenue: {
      confirmedCents: revenue,
      averageOrderCents: confirmed === 0 ? null : Math.round(revenue / confirmed),
    },
    customers: {
      total: Number(t.customers),
      top: customers.rows.map((row) => ({
        customerId: row.customer_id!,
        orders: Number(row.orders),
        confirmed: Number(row.confirmed),
        revenueCents: Number(row.revenue),
      })),
    },
    skus: lines.rows.map((row) => ({
      sku: row.sku!,
      orders: Number(row.orders),
      unitsOrdered: Number(row.ordered),
      unitsConfirmed: Number(row.confirmed),
      unitsCancelled: Number(row.cancelled),
    })),
    cancellationReasons: why.rows.map((row) => ({ reason: row.reason, count: Number(row.count) })),
    stream: {
      name,
      position,
      head,
      lag: Math.max(0, head - position),
      skippedEvents: Number(left.skipped),
    },
  };
}
