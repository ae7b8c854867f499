-- Each day's orders and takings, closed once the day is over by the worker's daily-sales
-- schedule (keel/schedule), in the transaction that records the tick. Recomputed, not added
-- to, so a day closed again (a backfill, an operator's rerun) gives the same row.
CREATE TABLE daily_sales (
  day date PRIMARY KEY,
  time_zone text NOT NULL,
  orders integer NOT NULL,
  confirmed integer NOT NULL,
  cancelled integer NOT NULL,
  -- Payments charged for the day's orders and not refunded.
  revenue_cents bigint NOT NULL,
  closed_at timestamptz NOT NULL
);
