/**
 * The PostgreSQL stream's tables, as migrations the application runs with its own.
 *
 * - `keel_stream`: the log, one row per entry, never updated; (stream, position) is its key.
 *   Only a trim deletes, and only a prefix, so a stream's rows are always `first_position` to
 *   its head with no gaps.
 * - `keel_stream_heads`: one row per stream holding its last position. Appenders update it, and
 *   that row lock is what makes positions gap-free in commit order (see `PgStream`).
 *   `first_position` (0002) is the first entry a trim left: 1 until the stream is trimmed.
 * - `keel_stream_positions`: how far each projection has applied each stream, written in the
 *   transaction that applies the entries.
 */
export const pgStreamMigrations = [
  {
    id: 'keel_stream_0001_create',
    sql: `
CREATE TABLE IF NOT EXISTS keel_stream (
  stream text NOT NULL,
  position bigint NOT NULL,
  id uuid NOT NULL,
  type text NOT NULL,
  key text,
  payload jsonb NOT NULL,
  headers jsonb NOT NULL DEFAULT '{}',
  occurred_at timestamptz NOT NULL,
  hlc text,
  appended_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (stream, position)
);
CREATE TABLE IF NOT EXISTS keel_stream_heads (
  stream text PRIMARY KEY,
  position bigint NOT NULL
);
CREATE TABLE IF NOT EXISTS keel_stream_positions (
  projection text NOT NULL,
  stream text NOT NULL,
  position bigint NOT NULL DEFAULT 0,
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (projection, stream)
);
`,
  },
  {
    // A constant default: PostgreSQL adds the column without rewriting the table.
    id: 'keel_stream_0002_first_position',
    sql: `
ALTER TABLE keel_stream_heads ADD COLUMN IF NOT EXISTS first_position bigint NOT NULL DEFAULT 1;
`,
  },
] as const;

/** NOTIFY channel; the payload is the stream name. */
export const pgStreamChannel = 'keel_stream';
