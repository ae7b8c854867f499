/** The schedules' table, as migrations the application runs with its own. */
export const scheduleMigrations = [
  {
    id: 'keel_schedule_0001_create',
    sql: `
-- One row a schedule: its next tick, locked by the scheduler that fires it, and moved on in the
-- same transaction as the tick's writes. A tick fires once because that row moves once.
CREATE TABLE IF NOT EXISTS keel_schedules (
  name text PRIMARY KEY,
  -- The timing the row was planned by (cron text and zone, or an interval): a process whose
  -- definition differs does not fire the schedule, and registering a new one re-plans it.
  spec text NOT NULL,
  next_tick timestamptz NOT NULL,
  -- Set after a failed attempt at next_tick: it is not tried again before then.
  retry_at timestamptz,
  attempts integer NOT NULL DEFAULT 0,
  last_error text,
  last_tick timestamptz,
  last_fired_at timestamptz,
  fired bigint NOT NULL DEFAULT 0,
  -- Ticks given up after maxAttempts failed attempts.
  failed bigint NOT NULL DEFAULT 0,
  paused_at timestamptz,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);
`,
  },
  {
    id: 'keel_schedule_0002_trigger',
    sql: `
-- A run asked for by hand (keel schedule trigger): fired once by the next scheduler that looks,
-- beside the schedule's own ticks, and cleared in the transaction that fires it. triggers counts
-- the runs asked for; it numbers each in its tick's key, so two asked for in one millisecond
-- are two runs, and it names the run the transaction that fires it clears.
ALTER TABLE keel_schedules ADD COLUMN IF NOT EXISTS triggered_at timestamptz;
ALTER TABLE keel_schedules ADD COLUMN IF NOT EXISTS triggers bigint NOT NULL DEFAULT 0;
`,
  },
  {
    id: 'keel_schedule_0003_trigger_outcome',
    sql: `
-- The last run by hand a scheduler did, written in the transaction that fires it: its number
-- (a value of triggers), when it was done and, when it failed, its error. Whoever asked for run n
-- (keel schedule trigger --wait) learns its outcome here; a NOTIFY on keel_schedule_runs, sent
-- with it, wakes them.
ALTER TABLE keel_schedules ADD COLUMN IF NOT EXISTS last_trigger bigint;
ALTER TABLE keel_schedules ADD COLUMN IF NOT EXISTS last_trigger_done_at timestamptz;
ALTER TABLE keel_schedules ADD COLUMN IF NOT EXISTS last_trigger_error text;
`,
  },
] as const;
