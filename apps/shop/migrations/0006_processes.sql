-- Every shop process, whatever its roles, keeps a row about itself here (ProcessHeartbeat): written
-- when it starts, refreshed every few seconds and whenever one of its circuit breakers changes
-- state, and marked stopped when it stops cleanly. The dashboard reads it, so the api's page shows
-- the worker's breakers and which processes are alive. A process that crashed or hangs stops
-- refreshing its row, which then goes stale; whichever process beats next deletes rows not
-- refreshed for an hour. Nothing here is a source of truth: losing the table loses only the view.

-- One row per process start: a restarted process is a new row, its old one shows how it ended.
CREATE TABLE processes (
  id uuid PRIMARY KEY,
  roles text[] NOT NULL,
  host text NOT NULL,
  pid integer NOT NULL,
  -- The writer's clock, not the server's: hosts are expected to keep NTP time, and the
  -- three missed beats a reader allows before it calls a row stale cover their skew.
  started_at timestamptz NOT NULL,
  last_seen_at timestamptz NOT NULL,
  -- How often the process promised to refresh the row: readers judge staleness by it.
  heartbeat_ms integer NOT NULL CHECK (heartbeat_ms > 0),
  stopped_at timestamptz,
  -- Its circuit breakers when last seen: [{ "name", "state", "since", "until"?, "reason"? }],
  -- times in epoch milliseconds of the process's clock.
  breakers jsonb NOT NULL DEFAULT '[]'
);
-- For the pruning of old rows.
CREATE INDEX processes_last_seen ON processes (last_seen_at);
