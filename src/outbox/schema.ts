/** The outbox table, as migrations the application runs with its own. */
export const outboxMigrations = [
  {
    id: 'keel_outbox_0001_create',
    sql: `
CREATE TABLE IF NOT EXISTS keel_outbox (
  seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  id uuid NOT NULL UNIQUE,
  destination text NOT NULL,
  type text NOT NULL,
  key text,
  payload jsonb NOT NULL,
  headers jsonb NOT NULL DEFAULT '{}',
  occurred_at timestamptz NOT NULL,
  hlc text,
  created_at timestamptz NOT NULL DEFAULT now(),
  -- NULL: ready now. Set only when a failed publish is retried later.
  available_at timestamptz,
  attempts integer NOT NULL DEFAULT 0,
  claim_owner text,
  claim_until timestamptz,
  published_at timestamptz,
  parked_at timestamptz,
  last_error text
);
-- The relay scans only rows still to publish, in commit-independent id order.
CREATE INDEX IF NOT EXISTS keel_outbox_unpublished ON keel_outbox (seq) WHERE published_at IS NULL AND parked_at IS NULL;
`,
  },
  {
    id: 'keel_outbox_0002_key_order_and_retention',
    sql: `
-- The relay publishes a row only when no earlier row of its (destination, key) is still
-- unpublished and held back (claimed, waiting to retry, parked): that check reads this index.
CREATE INDEX IF NOT EXISTS keel_outbox_key_pending ON keel_outbox (destination, key, seq)
  WHERE published_at IS NULL AND key IS NOT NULL;
-- Retention deletes published rows oldest first.
CREATE INDEX IF NOT EXISTS keel_outbox_published ON keel_outbox (published_at)
  WHERE published_at IS NOT NULL;
`,
  },
  {
    id: 'keel_outbox_0003_held_rows',
    sql: `
-- The claim looks up the few rows that hold their key back (claimed, waiting to retry, parked)
-- once per claim, instead of every earlier unpublished row of each candidate's key.
DROP INDEX IF EXISTS keel_outbox_key_pending;
CREATE INDEX IF NOT EXISTS keel_outbox_held ON keel_outbox (destination, key, seq)
  WHERE published_at IS NULL AND key IS NOT NULL
    AND (claim_owner IS NOT NULL OR available_at IS NOT NULL OR parked_at IS NOT NULL);
`,
  },
  {
    id: 'keel_outbox_0004_claims',
    sql: `
-- A relay's claim is one row here, listing the batch's rows and their keys, instead of a write
-- to every claimed row: a row is then written once after its insert, when it is published.
-- Few rows live at a time (a couple per relay); keel_outbox.claim_owner and claim_until are
-- still honoured, for rows claimed by relays of earlier versions.
CREATE TABLE IF NOT EXISTS keel_outbox_claims (
  id uuid PRIMARY KEY,
  owner text NOT NULL,
  claim_until timestamptz NOT NULL,
  seqs bigint[] NOT NULL,
  -- (destinations[i], keys[i]): the ordering keys the claim holds; rows without a key are not listed.
  destinations text[] NOT NULL,
  keys text[] NOT NULL
);
`,
  },
  {
    id: 'keel_outbox_0005_published_archive',
    sql: `
-- The relay's mark moves a published row here (a DELETE from keel_outbox and an append here)
-- instead of updating it in place: the UPDATE wrote a new version of the whole row with three
-- index entries, and cost more than both together. keel_outbox then holds only rows still to
-- publish and parked ones. Kept for retentionMs (for incidents), then deleted by the cleaner,
-- oldest first, through the index on published_at, which grows at the right edge.
-- Rows marked in place by relays of earlier versions stay in keel_outbox (published_at set)
-- until the cleaner deletes them.
CREATE TABLE IF NOT EXISTS keel_outbox_archive (
  seq bigint NOT NULL,
  id uuid NOT NULL,
  destination text NOT NULL,
  type text NOT NULL,
  key text,
  payload jsonb NOT NULL,
  headers jsonb NOT NULL,
  occurred_at timestamptz NOT NULL,
  hlc text,
  created_at timestamptz NOT NULL,
  attempts integer NOT NULL,
  last_error text,
  published_at timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS keel_outbox_archive_published_at ON keel_outbox_archive (published_at);
-- The WAL outbox relay parks or holds a message only if it is not here already (published after
-- a retry). Rarely asked, so a BRIN index, which costs an append nothing: ids (UUIDv7) grow
-- with time, as the table does.
CREATE INDEX IF NOT EXISTS keel_outbox_archive_id ON keel_outbox_archive USING brin (id);
`,
  },
  {
    id: 'keel_outbox_0006_claims_uncompressed',
    sql: `
-- A claim's arrays (a batch's seqs and keys: several kB) were compressed on every claim and
-- decompressed by every claim made while it was live. Stored out of line uncompressed instead.
ALTER TABLE keel_outbox_claims
  ALTER COLUMN seqs SET STORAGE EXTERNAL,
  ALTER COLUMN destinations SET STORAGE EXTERNAL,
  ALTER COLUMN keys SET STORAGE EXTERNAL;
`,
  },
] as const;

/** NOTIFY channel the outbox signals on commit, so relays wake at once instead of at the next poll. */
export const outboxChannel = 'keel_outbox';

/** The inbox table: one row per (consumer, message) whose effects committed. */
export const inboxMigrations = [
  {
    id: 'keel_inbox_0001_create',
    sql: `
CREATE TABLE IF NOT EXISTS keel_inbox (
  consumer text NOT NULL,
  message_id uuid NOT NULL,
  received_at timestamptz NOT NULL,
  PRIMARY KEY (consumer, message_id)
);
-- Retention deletes the oldest rows first.
CREATE INDEX IF NOT EXISTS keel_inbox_received ON keel_inbox (received_at);
`,
  },
] as const;
