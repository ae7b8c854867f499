/**
 * The PostgreSQL queue's table, as migrations the application runs with its own. One table for
 * every queue: a message is a row, claimed under a lease, deleted when acknowledged.
 */
export const pgQueueMigrations = [
  {
    id: 'keel_queue_0001_create',
    sql: `
CREATE TABLE IF NOT EXISTS keel_queue (
  seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  queue text NOT NULL,
  id uuid NOT NULL,
  type text NOT NULL,
  key text,
  payload jsonb NOT NULL,
  headers jsonb NOT NULL DEFAULT '{}',
  occurred_at timestamptz NOT NULL,
  hlc text,
  available_at timestamptz NOT NULL,
  attempts integer NOT NULL DEFAULT 0,
  lease_owner text,
  lease_until timestamptz,
  first_failed_at timestamptz,
  last_failed_at timestamptz,
  last_error text,
  enqueued_at timestamptz NOT NULL DEFAULT now()
);
-- Claims scan only unleased rows, in enqueue order.
CREATE INDEX IF NOT EXISTS keel_queue_ready ON keel_queue (queue, seq) WHERE lease_owner IS NULL;
-- The reaper finds expired leases without scanning the ready rows.
CREATE INDEX IF NOT EXISTS keel_queue_leased ON keel_queue (lease_until) WHERE lease_owner IS NOT NULL;
`,
  },
  {
    id: 'keel_queue_0002_key_order',
    sql: `
-- Per-key ordering: a message is claimable only while no earlier message of its key is left.
CREATE INDEX IF NOT EXISTS keel_queue_key_order ON keel_queue (queue, key, seq) WHERE key IS NOT NULL;
`,
  },
] as const;

/** NOTIFY channel; the payload is the queue name. */
export const pgQueueChannel = 'keel_queue';
