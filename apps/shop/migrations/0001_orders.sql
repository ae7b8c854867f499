-- Orders: owned by the orders context. `version` counts changes, for conditional writes.
CREATE TABLE orders (
  id uuid PRIMARY KEY,
  customer_id text NOT NULL,
  status text NOT NULL CHECK (status IN ('PENDING', 'ACCEPTED', 'CANCELLED')),
  items jsonb NOT NULL,
  version integer NOT NULL DEFAULT 1,
  created_at timestamptz NOT NULL,
  updated_at timestamptz NOT NULL
);
CREATE INDEX orders_customer ON orders (customer_id, created_at);
