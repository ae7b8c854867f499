/** The saga tables, as migrations the application runs with its own (`migrate(db, sagaMigrations)`). */
export const sagaMigrations = [
  {
    id: 'keel_saga_0001_create',
    sql: `
CREATE TABLE IF NOT EXISTS keel_saga_instances (
  id text PRIMARY KEY,
  saga_name text NOT NULL,
  saga_version integer NOT NULL,
  -- RUNNING | COMPENSATING | COMPLETED | COMPENSATED | NEEDS_ATTENTION
  state text NOT NULL,
  -- RUNNING: the step to run next; COMPENSATING and NEEDS_ATTENTION: the step to compensate next.
  step integer NOT NULL DEFAULT 0,
  input jsonb NOT NULL,
  results jsonb NOT NULL DEFAULT '{}',
  -- Attempts made on the current step (or compensation), across runners.
  attempts integer NOT NULL DEFAULT 0,
  -- A request step: sends so far, the stored reply deadline, and the reply once it came.
  sends integer NOT NULL DEFAULT 0,
  deadline_at timestamptz,
  waiting_for text,
  reply jsonb,
  -- When a runner may pick the instance up: now, or a reply deadline.
  wake_at timestamptz NOT NULL,
  -- The lease: who runs it, until when, and the epoch every progress write checks (fencing).
  lease_owner text,
  lease_until timestamptz,
  lease_epoch bigint NOT NULL DEFAULT 0,
  -- The step failure that started the compensation, and a parked compensation's error.
  failure jsonb,
  last_error jsonb,
  created_at timestamptz NOT NULL,
  updated_at timestamptz NOT NULL,
  finished_at timestamptz
);
-- Runners scan only instances that still have work, by when they are due.
CREATE INDEX IF NOT EXISTS keel_saga_instances_due ON keel_saga_instances (wake_at)
  WHERE state IN ('RUNNING', 'COMPENSATING');
CREATE INDEX IF NOT EXISTS keel_saga_instances_state ON keel_saga_instances (state, created_at);

CREATE TABLE IF NOT EXISTS keel_saga_history (
  seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  instance_id text NOT NULL REFERENCES keel_saga_instances (id) ON DELETE CASCADE,
  at timestamptz NOT NULL,
  event text NOT NULL,
  step text,
  attempt integer,
  owner text,
  detail jsonb
);
CREATE INDEX IF NOT EXISTS keel_saga_history_instance ON keel_saga_history (instance_id, seq);
`,
  },
] as const;

/** NOTIFY channel a start, a reply or a retry signals on commit, so runners wake before their next poll. */
export const sagaChannel = 'keel_saga';

/**
 * NOTIFY channel the write that ends an instance (COMPLETED, COMPENSATED, NEEDS_ATTENTION)
 * signals on commit, with the instance id as the payload: `waitForSaga` in any process LISTENs
 * on it. Runners do not, so an ending instance wakes no runner.
 */
export const sagaEndedChannel = 'keel_saga_ended';
