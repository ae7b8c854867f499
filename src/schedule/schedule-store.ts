import type { Queryable } from '../db/db.ts';

/** A schedule's row as the scheduler and the command line read it; instants in ms since the epoch. */
export interface ScheduleRow {
  name: string;
  spec: string;
  nextTick: number;
  retryAt: number | null;
  attempts: number;
  lastError: string | null;
  lastTick: number | null;
  lastFiredAt: number | null;
  fired: number;
  failed: number;
  pausedAt: number | null;
  /** When a run by hand was asked for that no scheduler has fired yet (`triggerSchedule`). */
  triggeredAt: number | null;
  /** Runs by hand asked for so far; the pending one, if any, is this one. */
  triggers: number;
  /** The number of the last run by hand a scheduler did, fired or failed; null before the first. */
  lastTrigger: number | null;
  /** When that run was done. */
  lastTriggerDoneAt: number | null;
  /** That run's error; null when it fired. */
  lastTriggerError: string | null;
}

/** A run by hand as it was asked for: the schedule, the run's number, and when it was asked for. */
export interface TriggeredRun {
  schedule: string;
  /** The schedule's n-th run by hand (`ScheduleRow.triggers`): its tick's key ends in `/triggered-<run>`. */
  run: number;
  /** When it was asked for; for a run that was already pending, when that one was. */
  askedAt: Date;
}

/** The channel a trigger notifies, its payload the schedule's name: a hint that wakes schedulers. */
export const scheduleChannel = 'keel_schedules';

/**
 * The channel a scheduler notifies when it has done a run by hand, its payload the schedule's
 * name: a hint that wakes whoever waits for the run's outcome. Apart from `scheduleChannel`, so
 * the outcome does not wake every scheduler of the schedule for nothing.
 */
export const scheduleRunsChannel = 'keel_schedule_runs';

interface RawRow {
  name: string;
  spec: string;
  next_tick: number;
  retry_at: number | null;
  attempts: number;
  last_error: string | null;
  last_tick: number | null;
  last_fired_at: number | null;
  fired: string | number;
  failed: string | number;
  paused_at: number | null;
  triggered_at: number | null;
  triggers: string | number;
  last_trigger: string | number | null;
  last_trigger_done_at: number | null;
  last_trigger_error: string | null;
}

// Instants leave the database as float8 milliseconds: the same number on pg and PGlite,
// whatever the session's time zone, with no Date parsed per row.
const ms = (column: string): string => `(extract(epoch FROM ${column}) * 1000)::float8 AS ${column}`;
// To the millisecond, as the run's tick and `recordTriggered` name it: a trigger written by hand
// with now() carries microseconds.
const triggeredAt = `(extract(epoch FROM date_trunc('milliseconds', triggered_at)) * 1000)::float8 AS triggered_at`;
const columns = [
  'name',
  'spec',
  ms('next_tick'),
  ms('retry_at'),
  'attempts',
  'last_error',
  ms('last_tick'),
  ms('last_fired_at'),
  'fired',
  'failed',
  ms('paused_at'),
  triggeredAt,
  'triggers',
  'last_trigger',
  ms('last_trigger_done_at'),
  'last_trigger_error',
].join(', ');

const iso = (instant: number): string => new Date(instant).toISOString();

function toRow(raw: RawRow): ScheduleRow {
  return {
    name: raw.name,
    spec: raw.spec,
    nextTick: raw.next_tick,
    retryAt: raw.retry_at,
    attempts: raw.attempts,
    lastError: raw.last_error,
    lastTick: raw.last_tick,
    lastFiredAt: raw.last_fired_at,
    fired: Number(raw.fired),
    failed: Number(raw.failed),
    pausedAt: raw.paused_at,
    triggeredAt: raw.triggered_at,
    triggers: Number(raw.triggers),
    lastTrigger: raw.last_trigger === null ? null : Number(raw.last_trigger),
    lastTriggerDoneAt: raw.last_trigger_done_at,
    lastTriggerError: raw.last_trigger_error,
  };
}

/**
 * Adds a schedule's row planned from `firstTick`, or re-plans it from there when its stored
 * timing differs (a new definition wins); a row with the same timing is left as it is, so a
 * restart neither skips nor repeats a tick.
 */
export async function registerSchedule(
  db: Queryable,
  schedule: { name: string; spec: string },
  firstTick: number,
  now: number,
): Promise<void> {
  await db.query(
    `INSERT INTO keel_schedules AS s (name, spec, next_tick, updated_at)
     VALUES ($1, $2, $3::timestamptz, $4::timestamptz)
     ON CONFLICT (name) DO UPDATE
       SET spec = EXCLUDED.spec, next_tick = EXCLUDED.next_tick, retry_at = NULL, attempts = 0,
           last_error = NULL, updated_at = EXCLUDED.updated_at
       WHERE s.spec <> EXCLUDED.spec`,
    [schedule.name, schedule.spec, iso(firstTick), iso(now)],
  );
}

/** The named schedules' rows (every row when `names` is undefined), by name. */
export async function readSchedules(db: Queryable, names?: readonly string[]): Promise<ScheduleRow[]> {
  const { rows } =
    names === undefined
      ? await db.query<RawRow>(`SELECT ${columns} FROM keel_schedules ORDER BY name`)
      : await db.query<RawRow>(`SELECT ${columns} FROM keel_schedules WHERE name = ANY($1) ORDER BY name`, [
          names,
        ]);
  return rows.map(toRow);
}

/**
 * Locks a schedule's row for the rest of `tx`, or returns undefined when the row is gone or,
 * unless `wait`, another scheduler holds it (it is firing that schedule now). The row read is
 * the latest committed version, so a tick another scheduler just fired is seen as fired.
 */
export async function lockSchedule(
  tx: Queryable,
  name: string,
  options: { wait?: boolean } = {},
): Promise<ScheduleRow | undefined> {
  const { rows } = await tx.query<RawRow>(
    `SELECT ${columns} FROM keel_schedules WHERE name = $1 FOR UPDATE${options.wait === true ? '' : ' SKIP LOCKED'}`,
    [name],
  );
  return rows[0] === undefined ? undefined : toRow(rows[0]);
}

/**
 * Locks, for the rest of `tx`, the row of the schedule due longest at `now` among those named
 * with their timings (a row planned by another timing is another definition's), skipping rows
 * other schedulers hold: schedulers sharing a database each take a different due schedule
 * instead of queueing behind one another. A row with a run asked for by hand is due, paused or
 * not, from when it was asked for. Undefined when none is left.
 */
export async function lockNextDue(
  tx: Queryable,
  schedules: { names: readonly string[]; specs: readonly string[] },
  now: number,
): Promise<ScheduleRow | undefined> {
  const { rows } = await tx.query<RawRow>(
    `SELECT ${columns} FROM keel_schedules
      WHERE (name, spec) IN (SELECT * FROM unnest($1::text[], $2::text[]))
        AND (triggered_at IS NOT NULL
             OR (paused_at IS NULL AND next_tick <= $3::timestamptz
                 AND (retry_at IS NULL OR retry_at <= $3::timestamptz)))
      ORDER BY least(triggered_at, greatest(next_tick, retry_at)), name
      LIMIT 1
      FOR UPDATE SKIP LOCKED`,
    [schedules.names, schedules.specs, iso(now)],
  );
  return rows[0] === undefined ? undefined : toRow(rows[0]);
}

/** Records that `tick` fired and plans `nextTick`. */
export async function recordFired(
  tx: Queryable,
  name: string,
  fired: { tick: number; nextTick: number; now: number },
): Promise<void> {
  await tx.query(
    `UPDATE keel_schedules
        SET next_tick = $2::timestamptz, last_tick = $3::timestamptz, last_fired_at = $4::timestamptz,
            fired = fired + 1, attempts = 0, retry_at = NULL, last_error = NULL, updated_at = $4::timestamptz
      WHERE name = $1`,
    [name, iso(fired.nextTick), iso(fired.tick), iso(fired.now)],
  );
}

/** Moves the schedule past ticks it skipped without firing one. */
export async function recordSkipped(
  tx: Queryable,
  name: string,
  nextTick: number,
  now: number,
): Promise<void> {
  await tx.query(
    `UPDATE keel_schedules SET next_tick = $2::timestamptz, attempts = 0, retry_at = NULL, updated_at = $3::timestamptz
      WHERE name = $1`,
    [name, iso(nextTick), iso(now)],
  );
}

/**
 * Records a failed attempt: with `retryAt` the tick is tried again then; without it the tick is
 * given up, counted as failed, and the schedule moves on to `nextTick`.
 */
export async function recordFailure(
  tx: Queryable,
  name: string,
  failure: { tick: number; attempts: number; error: string; now: number } & (
    { retryAt: number } | { nextTick: number }
  ),
): Promise<void> {
  if ('retryAt' in failure) {
    await tx.query(
      `UPDATE keel_schedules
          SET next_tick = $2::timestamptz, attempts = $3, retry_at = $4::timestamptz, last_error = $5,
              updated_at = $6::timestamptz
        WHERE name = $1`,
      [name, iso(failure.tick), failure.attempts, iso(failure.retryAt), failure.error, iso(failure.now)],
    );
    return;
  }
  await tx.query(
    `UPDATE keel_schedules
        SET next_tick = $2::timestamptz, attempts = 0, retry_at = NULL, last_error = $3, failed = failed + 1,
            updated_at = $4::timestamptz
      WHERE name = $1`,
    [name, iso(failure.nextTick), failure.error, iso(failure.now)],
  );
}

/**
 * Asks for one run of a schedule now, beside its ticks: the next scheduler that defines it fires
 * it (a notification wakes running ones), paused or not. A run asked for while one is pending is
 * the same run. Returns whether the row exists.
 */
export async function triggerSchedule(db: Queryable, name: string, now: number): Promise<boolean> {
  return (await triggerScheduleRun(db, name, now)) !== undefined;
}

/**
 * `triggerSchedule`, returning the run asked for (the pending one, when there was one), whose
 * outcome `waitForTriggeredRun` waits for; undefined when there is no such schedule.
 */
export async function triggerScheduleRun(
  db: Queryable,
  name: string,
  now: number,
): Promise<TriggeredRun | undefined> {
  const { rows } = await db.query<{ triggers: string | number; triggered_at: number }>(
    `WITH asked AS (
       UPDATE keel_schedules
          SET triggers = triggers + CASE WHEN triggered_at IS NULL THEN 1 ELSE 0 END,
              triggered_at = COALESCE(triggered_at, $2::timestamptz), updated_at = $2::timestamptz
        WHERE name = $1 RETURNING name, triggers, triggered_at)
     SELECT triggers, ${triggeredAt}, pg_notify($3, name) FROM asked`,
    [name, iso(now), scheduleChannel],
  );
  const [row] = rows;
  return row === undefined
    ? undefined
    : { schedule: name, run: Number(row.triggers), askedAt: new Date(row.triggered_at) };
}

/**
 * Records the run by hand numbered `trigger` (`ScheduleRow.triggers` when it was fired) as done:
 * fired, or failed with `error` (a run by hand is not retried; it counts as given up), as the
 * row's last run by hand, and notifies `scheduleRunsChannel` at the commit. The schedule's own
 * ticks, and a failing tick's error, are left as they are.
 */
export async function recordTriggered(
  tx: Queryable,
  name: string,
  run: { trigger: number; now: number; error?: string },
): Promise<void> {
  const done =
    run.error === undefined
      ? 'last_fired_at = $3::timestamptz, fired = fired + 1'
      : 'failed = failed + 1, last_error = CASE WHEN attempts = 0 THEN $4 ELSE last_error END';
  await tx.query(
    `WITH done AS (
       UPDATE keel_schedules
          SET triggered_at = NULL, ${done}, updated_at = $3::timestamptz,
              last_trigger = $2, last_trigger_done_at = $3::timestamptz, last_trigger_error = $4
        WHERE name = $1 AND triggered_at IS NOT NULL AND triggers = $2 RETURNING name)
     SELECT pg_notify($5, name) FROM done`,
    [name, run.trigger, iso(run.now), run.error ?? null, scheduleRunsChannel],
  );
}

/** Pauses a schedule: no scheduler fires it until it is resumed. Returns whether the row exists. */
export async function pauseSchedule(db: Queryable, name: string, now: number): Promise<boolean> {
  const { rowCount } = await db.query(
    `UPDATE keel_schedules SET paused_at = COALESCE(paused_at, $2::timestamptz), updated_at = $2::timestamptz
      WHERE name = $1`,
    [name, iso(now)],
  );
  return rowCount > 0;
}

/**
 * Resumes a paused schedule. Ticks that came due while it was paused are caught up by the
 * schedule's own rules: those within its catch-up window fire, older ones are skipped.
 */
export async function resumeSchedule(db: Queryable, name: string, now: number): Promise<boolean> {
  const { rowCount } = await db.query(
    `UPDATE keel_schedules SET paused_at = NULL, updated_at = $2::timestamptz WHERE name = $1`,
    [name, iso(now)],
  );
  return rowCount > 0;
}

/** Deletes a schedule's row (a schedule no process defines any more). Returns whether it existed. */
export async function removeSchedule(db: Queryable, name: string): Promise<boolean> {
  const { rowCount } = await db.query('DELETE FROM keel_schedules WHERE name = $1', [name]);
  return rowCount > 0;
}
