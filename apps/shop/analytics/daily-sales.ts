import type { Db, Tx } from '../../../src/db/index.ts';
import { defineSchedule, type Schedule, type ScheduleTick } from '../../../src/schedule/index.ts';

/** When the worker closes a day, and in which time zone days begin. */
export interface DailySalesConfig {
  /** A cron expression; default five past midnight. The day closed is the one before the tick's. */
  cron: string;
  /** IANA time zone the cron and the days are read in; default UTC. */
  timeZone: string;
}

export interface DailySales {
  day: string;
  timeZone: string;
  orders: number;
  confirmed: number;
  cancelled: number;
  revenueCents: number;
  closedAt: string;
}

export const dailySalesScheduleName = 'shop.daily-sales';

/**
 * The worker's schedule that closes each day. A tick missed while no worker ran is caught up,
 * each day in turn, for a week (`catchUp: 'each'`): a weekend outage still closes Saturday.
 */
export function dailySalesSchedule(config: DailySalesConfig): Schedule {
  return defineSchedule({
    name: dailySalesScheduleName,
    cron: config.cron,
    timezone: config.timeZone,
    catchUp: 'each',
    catchUpWindowMs: 7 * 24 * 60 * 60 * 1000,
    fire: (tx, tick) => closeDay(tx, dayBefore(tick, config.timeZone), config.timeZone, tick.firedAt),
  });
}

/** The calendar day, in `timeZone`, that ended before the tick. */
function dayBefore(tick: ScheduleTick, timeZone: string): string {
  // en-CA writes dates as YYYY-MM-DD.
  const date = new Intl.DateTimeFormat('en-CA', { timeZone }).format(tick.at);
  const day = new Date(`${date}T00:00:00Z`);
  day.setUTCDate(day.getUTCDate() - 1);
  return day.toISOString().slice(0, 10);
}

/** Writes the day's totals from the orders and payments placed on it, replacing an earlier close. */
async function closeDay(tx: Tx, day: string, timeZone: string, closedAt: Date): Promise<void> {
  await tx.query(
    `WITH day_orders AS (
       SELECT id, status FROM orders
        WHERE created_at >= ($1::date)::timestamp AT TIME ZONE $2
          AND created_at < ($1::date + 1)::timestamp AT TIME ZONE $2)
     INSERT INTO daily_sales (day, time_zone, orders, confirmed, cancelled, revenue_cents, closed_at)
     SELECT $1::date, $2, count(*), count(*) FILTER (WHERE status = 'CONFIRMED'),
            count(*) FILTER (WHERE status = 'CANCELLED'),
            coalesce((SELECT sum(p.amount_cents) FROM payments AS p
                       WHERE p.status = 'CHARGED' AND p.order_id IN (SELECT id FROM day_orders)), 0),
            $3::timestamptz
       FROM day_orders
     ON CONFLICT (day) DO UPDATE
       SET time_zone = EXCLUDED.time_zone, orders = EXCLUDED.orders, confirmed = EXCLUDED.confirmed,
           cancelled = EXCLUDED.cancelled, revenue_cents = EXCLUDED.revenue_cents, closed_at = EXCLUDED.closed_at`,
    [day, timeZone, closedAt.toISOString()],
  );
}

/** The last `limit` closed days, newest first. */
export async function readDailySales(db: Db, limit = 14): Promise<DailySales[]> {
  const { rows } = await db.query<{
    day: string;
    time_zone: string;
    orders: number;
    confirmed: number;
    cancelled: number;
    revenue_cents: string;
    closed_at: string;
  }>(
    `SELECT day::text AS day, time_zone, orders, confirmed, cancelled, revenue_cents::text AS revenue_cents,
            to_char(closed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS closed_at
       FROM daily_sales ORDER BY day DESC LIMIT $1`,
    [limit],
  );
  return rows.map((row) => ({
    day: row.day,
    timeZone: row.time_zone,
    orders: row.orders,
    confirmed: row.confirmed,
    cancelled: row.cancelled,
    revenueCents: Number(row.revenue_cents),
    closedAt: row.closed_at,
  }));
}
