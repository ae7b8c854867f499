-- Analytics: a read model of orders, built only by replaying the order stream
-- (`shop.order-events`, keel_stream). The analytics projection is the one writer, in the
-- transaction that moves its stream position; `npm run analytics -- rebuild` empties these
-- tables and replays the stream from its first entry. Nothing here is a source of truth.

-- One row per order seen in the stream. Events are applied as state changes keyed by the order
-- (a placed order becomes CONFIRMED or CANCELLED, and stays so), so an event the stream holds
-- twice (the relay is at-least-once) changes nothing the second time.
CREATE TABLE analytics_orders (
  order_id uuid PRIMARY KEY,
  customer_id text NOT NULL,
  status text NOT NULL CHECK (status IN ('PLACED', 'CONFIRMED', 'CANCELLED')),
  -- What the payment took, known from the confirmation.
  amount_cents bigint CHECK (amount_cents >= 0),
  cancel_reason text,
  -- NULL while the order's placed event has not been read (an outcome can come first).
  placed_at timestamptz,
  closed_at timestamptz
);
CREATE INDEX analytics_orders_customer ON analytics_orders (customer_id);

-- The order's lines as placed: units per SKU.
CREATE TABLE analytics_order_lines (
  order_id uuid NOT NULL,
  line integer NOT NULL,
  sku text NOT NULL,
  quantity integer NOT NULL CHECK (quantity > 0),
  PRIMARY KEY (order_id, line)
);
CREATE INDEX analytics_order_lines_sku ON analytics_order_lines (sku);

-- Entries the projection could not read (an unknown type, a payload its schema refuses): kept,
-- not fatal, so one bad event does not stop the model; a rebuild skips the same ones again.
CREATE TABLE analytics_skipped_events (
  position bigint PRIMARY KEY,
  event_id uuid NOT NULL,
  type text NOT NULL,
  error text NOT NULL
);
