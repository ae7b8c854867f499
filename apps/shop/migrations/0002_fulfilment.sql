-- Fulfilment, run by the order-fulfilment saga. An order ends CONFIRMED, or CANCELLED with the
-- reason; ACCEPTED means a worker took it and fulfilment is under way.
ALTER TABLE orders DROP CONSTRAINT orders_status_check;
ALTER TABLE orders ADD CONSTRAINT orders_status_check
  CHECK (status IN ('PENDING', 'ACCEPTED', 'CONFIRMED', 'CANCELLED'));
ALTER TABLE orders ADD COLUMN reason text;

-- Stock per SKU: owned by the inventory context. The CHECK makes overselling impossible.
CREATE TABLE inventory (
  sku text PRIMARY KEY,
  available integer NOT NULL CHECK (available >= 0),
  price_cents integer NOT NULL CHECK (price_cents >= 0)
);
INSERT INTO inventory (sku, available, price_cents) VALUES
  ('book-1', 1000000, 1500),
  ('mug-1', 1000, 900),
  ('rare-1', 1, 25000);

-- One row per reservation, keyed by the saga step's idempotency key: a repeated step finds it
-- and takes nothing twice; `released_at` makes giving the stock back happen once.
CREATE TABLE stock_reservations (
  id text PRIMARY KEY,
  order_id uuid NOT NULL,
  items jsonb NOT NULL,
  amount_cents integer NOT NULL,
  reserved_at timestamptz NOT NULL,
  released_at timestamptz
);

-- The payment provider's ledger: one row per idempotency key, whatever the number of calls.
CREATE TABLE payments (
  id uuid PRIMARY KEY,
  idempotency_key text NOT NULL UNIQUE,
  order_id uuid NOT NULL,
  customer_id text NOT NULL,
  amount_cents integer NOT NULL,
  status text NOT NULL CHECK (status IN ('CHARGED', 'DECLINED', 'REFUNDED')),
  decline_reason text,
  created_at timestamptz NOT NULL,
  refunded_at timestamptz
);
CREATE INDEX payments_order ON payments (order_id);
