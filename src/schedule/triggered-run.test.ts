import { afterEach, describe, expect, it } from 'vitest';
import { dbConfigFromEnv, migrate, openDb, type Db, type Tx } from '../db/index.ts';
import { createTestDb, type TestDb } from '../testing/index.ts';
import { ManualClock, systemClock, type Clock } from '../time/index.ts';
import { defineSchedule, type ScheduleOptions, type ScheduleTick } from './schedule-definition.ts';
import { readSchedules, removeSchedule, triggerScheduleRun } from './schedule-store.ts';
import { Scheduler } from './scheduler.ts';
import { scheduleMigrations } from './schema.ts';
import { triggerScheduleAndWait, waitForTriggeredRun } from './triggered-run.ts';

const hour = 3_600_000;
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** A database with the schedules' table and a `daily` schedule's row, planned for 03:00. */
async function setup(): Promise<{ db: TestDb; clock: ManualClock }> {
  const db = await createTestDb();
  cleanups.push(() => db.close());
  await migrate(db, scheduleMigrations);
  await db.query('CREATE TABLE ticks (key text PRIMARY KEY)');
  await db.query(
    `INSERT INTO keel_schedules (name, spec, next_tick) VALUES ('daily', 'cron 0 3 * * * UTC', '2026-06-01T03:00:00Z')`,
  );
  return { db, clock: new ManualClock(Date.parse('2026-06-01T00:00:00Z')) };
}

async function recordTick(tx: Tx, tick: ScheduleTick): Promise<void> {
  await tx.query('INSERT INTO ticks (key) VALUES ($1)', [tick.key]);
}

/**
 * A running scheduler of `daily` that looks at the rows once an hour: within a test only a
 * notification wakes it.
 */
async function startScheduler(db: Db, clock: Clock, fire: ScheduleOptions['fire'] = recordTick) {
  const daily = defineSchedule({ name: 'daily', cron: '0 3 * * *', fire });
  const scheduler = new Scheduler(db, { schedules: [daily], clock, pollMs: hour });
  const errors: unknown[] = [];
  scheduler.events.on('error', (e) => void errors.push(e.error));
  await scheduler.start();
  cleanups.push(async () => {
    await scheduler.stop({ drainMs: 1000 });
    expect(errors).toEqual([]);
  });
  return scheduler;
}

/**
 * Resolves once `timers` timers are set on the clock: a wait has one while it pauses between two
 * reads. Moving the clock before then would move it while the wait still sets up its LISTEN.
 */
async function timersSet(clock: ManualClock, timers = 1): Promise<void> {
  while (clock.pendingTimers < timers) await new Promise((resolve) => setImmediate(resolve));
}

describe('waiting for a run by hand', () => {
  it('resolves when a scheduler fired it, woken by the scheduler’s notification', async () => {
    const { db, clock } = await setup();
    await startScheduler(db, clock);
    // No clock moves and both sides poll once an hour: only notifications get this far.
    const outcome = await triggerScheduleAndWait(db, 'daily', { clock, pollMs: hour, timeoutMs: 2 * hour });
    expect(outcome).toEqual({
      kind: 'fired',
      run: { schedule: 'daily', run: 1, askedAt: new Date('2026-06-01T00:00:00Z') },
      at: new Date('2026-06-01T00:00:00Z'),
    });
    expect((await db.query('SELECT key FROM ticks')).rows).toEqual([
      { key: 'daily@2026-06-01T00:00:00.000Z/triggered-1' },
    ]);
    expect((await readSchedules(db))[0]).toMatchObject({
      triggeredAt: null,
      triggers: 1,
      lastTrigger: 1,
      lastTriggerDoneAt: clock.now(),
      lastTriggerError: null,
    });
    // The wait leaves no timer behind.
    expect(clock.pendingTimers).toBe(1); // the scheduler's own poll
  });

  it('resolves with the error of a run that failed, and the next run’s outcome is its own', async () => {
    const { db, clock } = await setup();
    let failing = true;
    await startScheduler(db, clock, async (tx, tick) => {
      if (failing) throw new Error('report service down');
      await recordTick(tx, tick);
    });
    const options = { clock, pollMs: hour, timeoutMs: 2 * hour };
    expect(await triggerScheduleAndWait(db, 'daily', options)).toMatchObject({
      kind: 'failed',
      run: { run: 1 },
      at: new Date('2026-06-01T00:00:00Z'),
      error: 'Error: report service down',
    });
    expect((await readSchedules(db))[0]).toMatchObject({
      lastTrigger: 1,
      lastTriggerError: 'Error: report service down',
      failed: 1,
    });
    failing = false;
    await clock.advance(1000);
    expect(await triggerScheduleAndWait(db, 'daily', options)).toMatchObject({
      kind: 'fired',
      run: { run: 2 },
      at: new Date('2026-06-01T00:00:01Z'),
    });
    expect((await readSchedules(db))[0]).toMatchObject({ lastTrigger: 2, lastTriggerError: null });
  });

  it('says pending when no scheduler did it within the timeout; the run stays asked for and fires later', async () => {
    const { db, clock } = await setup();
    // One pause, up to the timeout.
    const waiting = triggerScheduleAndWait(db, 'daily', { clock, timeoutMs: 5000, pollMs: 5000 });
    await timersSet(clock);
    await clock.advance(4999);
    expect(clock.pendingTimers).toBe(1);
    await clock.advance(1);
    const outcome = await waiting;
    expect(outcome).toEqual({
      kind: 'pending',
      run: { schedule: 'daily', run: 1, askedAt: new Date('2026-06-01T00:00:00Z') },
      waitedMs: 5000,
    });
    expect(clock.pendingTimers).toBe(0);
    expect((await readSchedules(db))[0]).toMatchObject({
      triggers: 1,
      triggeredAt: Date.parse('2026-06-01'),
    });
    // A scheduler that starts later fires it; its outcome is there for a new wait on the run.
    await startScheduler(db, clock);
    const again = waitForTriggeredRun(db, outcome.run, { clock, pollMs: hour });
    expect(await again).toMatchObject({ kind: 'fired', run: { run: 1 } });
  });

  it('is one run for every trigger asked while it is pending, and every wait on it sees it', async () => {
    const { db, clock } = await setup();
    const first = await triggerScheduleRun(db, 'daily', clock.now());
    await clock.advance(1000);
    const second = await triggerScheduleRun(db, 'daily', clock.now());
    expect(second).toEqual(first);
    const waits = [first!, second!].map((run) => waitForTriggeredRun(db, run, { clock, pollMs: hour }));
    await startScheduler(db, clock);
    for (const outcome of await Promise.all(waits)) expect(outcome).toMatchObject({ kind: 'fired' });
    expect((await db.query('SELECT key FROM ticks')).rows).toHaveLength(1);
  });

  it('reads the row every pollMs: an outcome whose notification was lost, a removed row', async () => {
    const { db, clock } = await setup();
    const run = (await triggerScheduleRun(db, 'daily', clock.now()))!;
    const waiting = waitForTriggeredRun(db, run, { clock, pollMs: 1000 });
    await timersSet(clock);
    // The outcome written without the notification a scheduler sends with it.
    await db.query(
      `UPDATE keel_schedules SET triggered_at = NULL, last_trigger = 1, last_trigger_done_at = $1, last_trigger_error = 'Error: x'`,
      [new Date(clock.now()).toISOString()],
    );
    // Found by the next read, a poll later: the clock moves no further.
    await clock.advance(1000);
    expect(await waiting).toMatchObject({ kind: 'failed', error: 'Error: x' });

    const next = (await triggerScheduleRun(db, 'daily', clock.now()))!;
    const removed = waitForTriggeredRun(db, next, { clock, pollMs: 1000 });
    await timersSet(clock);
    await removeSchedule(db, 'daily');
    await clock.advance(1000);
    expect(await removed).toEqual({ kind: 'removed', run: next });
  });

  it('says unknown when the row no longer tells the run’s outcome', async () => {
    const { db, clock } = await setup();
    const run = (await triggerScheduleRun(db, 'daily', clock.now()))!;
    const look = () => waitForTriggeredRun(db, run, { clock, timeoutMs: 0 });
    expect(await look()).toMatchObject({ kind: 'pending', waitedMs: 0 });
    // Cleared by a scheduler that writes no outcome (a keel before the outcome's columns).
    await db.query('UPDATE keel_schedules SET triggered_at = NULL');
    expect(await look()).toMatchObject({ kind: 'unknown', reason: 'not-recorded' });
    // Run 2 was asked for and done before the wait looked: the row keeps its outcome only.
    await db.query(`UPDATE keel_schedules SET triggers = 2, last_trigger = 2, last_trigger_done_at = now()`);
    expect(await look()).toMatchObject({ kind: 'unknown', reason: 'overtaken' });
    // Removed and registered again: its count starts afresh, below the run's number.
    await db.query(`UPDATE keel_schedules SET triggers = 0, last_trigger = NULL`);
    expect(await look()).toMatchObject({ kind: 'removed' });
  });

  it('stops waiting with KEEL_ABORTED when its signal aborts; the run stays asked for', async () => {
    const { db, clock } = await setup();
    const stop = new AbortController();
    const waiting = triggerScheduleAndWait(db, 'daily', { clock, signal: stop.signal }).catch(
      (e: unknown) => e,
    );
    await timersSet(clock);
    await clock.advance(3000);
    stop.abort(new Error('operator pressed ^C'));
    expect(await waiting).toMatchObject({
      code: 'KEEL_ABORTED',
      message: 'waiting for run 1 of daily was aborted',
      cause: new Error('operator pressed ^C'),
    });
    expect(clock.pendingTimers).toBe(0);
    expect((await readSchedules(db))[0]!.triggeredAt).not.toBeNull();
  });

  it('refuses an unknown schedule and bad options by name, before asking for a run', async () => {
    const { db, clock } = await setup();
    await expect(triggerScheduleAndWait(db, 'weekly', { clock })).rejects.toMatchObject({
      code: 'KEEL_NOT_FOUND',
      message: 'schedule weekly was not found',
    });
    const bad: [object, RegExp][] = [
      [{ timeoutMs: -1 }, /^timeoutMs: expected a finite number of ms >= 0, got -1$/],
      [{ timeoutMs: Infinity }, /^timeoutMs:/],
      [{ timeoutMs: '60' }, /^timeoutMs:/],
      [{ pollMs: 0 }, /^pollMs: expected an integer number of ms >= 1/],
    ];
    for (const [options, message] of bad)
      await expect(triggerScheduleAndWait(db, 'daily', { clock, ...options })).rejects.toThrow(message);
    expect((await readSchedules(db))[0]).toMatchObject({ triggers: 0, triggeredAt: null });
    const run = { schedule: 'daily', run: 0, askedAt: new Date() };
    await expect(waitForTriggeredRun(db, run, { clock })).rejects.toThrow(
      /^run\.run: expected the run's number/,
    );
  });
});

describe('waiting for a run by hand, on the system clock', () => {
  it('hears of the outcome from a scheduler on another connection at once', async () => {
    const { db } = await setup();
    // On PostgreSQL the scheduler has a pool and a listening connection of its own, as another
    // process would; PGlite is one in-process database, shared.
    const schedulerDb =
      db.backend === 'pg' ? await openDb(dbConfigFromEnv({ ...process.env, KEEL_DB_SCHEMA: db.schema })) : db;
    if (schedulerDb !== db) cleanups.push(() => schedulerDb.close());
    await startScheduler(schedulerDb, systemClock, async (tx, tick) => {
      if (tick.key.endsWith('/triggered-2')) throw new Error('second run refused');
      await recordTick(tx, tick);
    });
    const started = Date.now();
    // Reads once a minute: the notifications alone make it quick.
    const options = { pollMs: 60_000, timeoutMs: 20_000 };
    expect(await triggerScheduleAndWait(db, 'daily', options)).toMatchObject({
      kind: 'fired',
      run: { run: 1 },
    });
    expect(await triggerScheduleAndWait(db, 'daily', options)).toMatchObject({
      kind: 'failed',
      run: { run: 2 },
      error: 'Error: second run refused',
    });
    expect(Date.now() - started).toBeLessThan(10_000);
    expect((await db.query('SELECT key FROM ticks')).rows).toHaveLength(1);
  });
});
