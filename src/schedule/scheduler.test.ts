import { afterEach, describe, expect, it } from 'vitest';
import { migrate, type Db, type Tx } from '../db/index.ts';
import { writeWithoutWaiting } from '../db/send-without-waiting.ts';
import { advanceUntil, createTestDb, type TestDb } from '../testing/index.ts';
import { constantBackoff, ManualClock } from '../time/index.ts';
import { defineSchedule, type ScheduleOptions, type ScheduleTick } from './schedule-definition.ts';
import {
  pauseSchedule,
  readSchedules,
  removeSchedule,
  resumeSchedule,
  triggerSchedule,
} from './schedule-store.ts';
import { Scheduler, type SchedulerEvents, type SchedulerOptions } from './scheduler.ts';
import { scheduleMigrations } from './schema.ts';

const minute = 60_000;
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** A database with the schedules' table and a table the ticks write to, keyed by the tick's key. */
async function setup(): Promise<{ db: TestDb; clock: ManualClock }> {
  const db = await createTestDb();
  cleanups.push(() => db.close());
  await migrate(db, scheduleMigrations);
  await db.query(
    'CREATE TABLE ticks (key text PRIMARY KEY, schedule text NOT NULL, at timestamptz NOT NULL)',
  );
  // On a minute boundary, so an everyMs of a minute ticks a whole minute from the start.
  return { db, clock: new ManualClock(Date.parse('2026-06-01T00:00:00Z')) };
}

/** The tick's write: a duplicate would fail on the primary key, so a tick fired twice shows. */
async function recordTick(tx: Tx, tick: ScheduleTick): Promise<void> {
  await tx.query('INSERT INTO ticks (key, schedule, at) VALUES ($1, $2, $3)', [
    tick.key,
    tick.schedule,
    tick.at.toISOString(),
  ]);
}

function minutely(options: Partial<ScheduleOptions> = {}) {
  return defineSchedule({ name: 'minutely', everyMs: minute, fire: recordTick, ...options });
}

function scheduler(db: Db, options: SchedulerOptions): Scheduler {
  const service = new Scheduler(db, options);
  cleanups.push(() => service.stop({ drainMs: 1000 }));
  return service;
}

/** Every event of each kind a scheduler emits, and a way to wait for the n-th of one kind. */
function recorder(service: Scheduler) {
  const seen = { fired: [] as SchedulerEvents['fired'][], skipped: [] as SchedulerEvents['skipped'][] };
  const failed: SchedulerEvents['failed'][] = [];
  const conflicts: SchedulerEvents['conflict'][] = [];
  const errors: unknown[] = [];
  service.events.on('fired', (e) => void seen.fired.push(e));
  service.events.on('skipped', (e) => void seen.skipped.push(e));
  service.events.on('failed', (e) => void failed.push(e));
  service.events.on('conflict', (e) => void conflicts.push(e));
  service.events.on('error', (e) => void errors.push(e.error));
  const until = async (kind: 'fired' | 'skipped' | 'failed', n: number): Promise<void> => {
    const list = kind === 'failed' ? failed : seen[kind];
    while (list.length < n) await service.events.once(kind);
  };
  return { ...seen, failed, conflicts, errors, until };
}

async function ticksWritten(db: Db): Promise<string[]> {
  const { rows } = await db.query<{ key: string }>('SELECT key FROM ticks ORDER BY at, key');
  return rows.map((row) => row.key);
}

describe('Scheduler', () => {
  it('fires each tick once, on time on its clock, with its writes in the tick’s transaction', async () => {
    const { db, clock } = await setup();
    const service = scheduler(db, { schedules: [minutely()], clock });
    const events = recorder(service);
    await service.start();
    await advanceUntil(clock, events.until('fired', 3), { stepMs: 1000 });
    expect(events.fired.map((e) => e.tick.key)).toEqual([
      'minutely@2026-06-01T00:01:00.000Z',
      'minutely@2026-06-01T00:02:00.000Z',
      'minutely@2026-06-01T00:03:00.000Z',
    ]);
    expect(events.fired.map((e) => e.tick.attempt)).toEqual([1, 1, 1]);
    // Fired within a step of its tick: the scheduler slept until it was due, not a poll later.
    expect(clock.now()).toBeLessThanOrEqual(Date.parse('2026-06-01T00:03:01Z'));
    expect(await ticksWritten(db)).toEqual(events.fired.map((e) => e.tick.key));
    const [row] = await readSchedules(db);
    expect(row).toMatchObject({
      name: 'minutely',
      spec: 'every 60000',
      nextTick: Date.parse('2026-06-01T00:04:00Z'),
      lastTick: Date.parse('2026-06-01T00:03:00Z'),
      fired: 3,
      failed: 0,
      attempts: 0,
    });
    expect(events.errors).toEqual([]);
  });

  it('fires each tick once across three schedulers sharing the database', async () => {
    const { db, clock } = await setup();
    const services = [1, 2, 3].map((n) =>
      scheduler(db, { schedules: [minutely()], clock, name: `scheduler-${n}` }),
    );
    const recorders = services.map(recorder);
    for (const service of services) await service.start();
    const firedInAll = async (n: number): Promise<void> => {
      while (recorders.reduce((sum, r) => sum + r.fired.length, 0) < n)
        await Promise.race(services.map((s) => s.events.once('fired')));
    };
    await advanceUntil(clock, firedInAll(5), { stepMs: 5000 });
    await clock.advance(1000);
    const keys = recorders.flatMap((r) => r.fired.map((e) => e.tick.key)).sort();
    expect(keys).toHaveLength(5);
    expect(new Set(keys).size).toBe(5);
    expect(await ticksWritten(db)).toEqual(keys);
    expect(recorders.flatMap((r) => [...r.failed, ...r.errors])).toEqual([]);
  });

  it('rolls back a failed attempt, retries it after the backoff, and gives the tick up after maxAttempts', async () => {
    const { db, clock } = await setup();
    let calls = 0;
    const flaky = minutely({
      maxAttempts: 3,
      backoff: constantBackoff(10_000),
      fire: async (tx, tick) => {
        calls += 1;
        await recordTick(tx, tick);
        // The first tick always fails after its write; the second fails once, then succeeds.
        if (tick.at.getTime() === Date.parse('2026-06-01T00:01:00Z') || calls === 4)
          throw new Error(`payment report unavailable (call ${calls})`);
      },
    });
    const service = scheduler(db, { schedules: [flaky], clock });
    const events = recorder(service);
    await service.start();
    await advanceUntil(clock, events.until('fired', 1), { stepMs: 1000 });
    expect(events.failed.map((e) => [e.tick.key, e.tick.attempt, e.retryAt?.toISOString()])).toEqual([
      ['minutely@2026-06-01T00:01:00.000Z', 1, '2026-06-01T00:01:10.000Z'],
      ['minutely@2026-06-01T00:01:00.000Z', 2, '2026-06-01T00:01:20.000Z'],
      // The last attempt: given up, no retry.
      ['minutely@2026-06-01T00:01:00.000Z', 3, undefined],
      ['minutely@2026-06-01T00:02:00.000Z', 1, '2026-06-01T00:02:10.000Z'],
    ]);
    expect(events.fired.map((e) => [e.tick.key, e.tick.attempt])).toEqual([
      ['minutely@2026-06-01T00:02:00.000Z', 2],
    ]);
    // The failed attempts' writes were rolled back with them.
    expect(await ticksWritten(db)).toEqual(['minutely@2026-06-01T00:02:00.000Z']);
    const [row] = await readSchedules(db);
    expect(row).toMatchObject({ fired: 1, failed: 1, attempts: 0, retryAt: null, lastError: null });
    expect(events.errors).toEqual([]);
  });

  it('keeps the error of a failed attempt on the row until the tick fires', async () => {
    const { db, clock } = await setup();
    const failing = minutely({
      backoff: constantBackoff(30 * minute),
      fire: async () => {
        throw new TypeError('no report template');
      },
    });
    const service = scheduler(db, { schedules: [failing], clock });
    const events = recorder(service);
    await service.start();
    await advanceUntil(clock, events.until('failed', 1), { stepMs: 1000 });
    const [row] = await readSchedules(db);
    expect(row).toMatchObject({
      attempts: 1,
      lastError: 'TypeError: no report template',
      nextTick: Date.parse('2026-06-01T00:01:00Z'),
      retryAt: Date.parse('2026-06-01T00:31:00Z'),
    });
  });

  it('counts a write sent without waiting that fails as a failed attempt', async () => {
    const { db, clock } = await setup();
    await db.query(`INSERT INTO ticks VALUES ('taken', 'x', now())`);
    const sendsADuplicate = minutely({
      maxAttempts: 1,
      fire: async (tx) => {
        await writeWithoutWaiting(tx, `INSERT INTO ticks VALUES ('taken', 'x', now())`, []);
      },
    });
    const service = scheduler(db, { schedules: [sendsADuplicate], clock });
    const events = recorder(service);
    await service.start();
    await advanceUntil(clock, events.until('failed', 1), { stepMs: 1000 });
    expect(events.failed[0]!.retryAt).toBeUndefined();
    const [row] = await readSchedules(db);
    expect(row).toMatchObject({ failed: 1, nextTick: Date.parse('2026-06-01T00:02:00Z') });
    // The statement's own error, not the "transaction is aborted" the next statement met.
    expect(row!.lastError).toMatch(/duplicate key value violates unique constraint "ticks_pkey"/);
    expect(events.errors).toEqual([]);
  });

  it('after a restart, skips ticks older than the catch-up window and fires on from the next one', async () => {
    const { db, clock } = await setup();
    const first = scheduler(db, { schedules: [minutely()], clock });
    const before = recorder(first);
    await first.start();
    await advanceUntil(clock, before.until('fired', 1), { stepMs: 1000 });
    await first.stop();
    // Down for ten minutes: the ticks of 00:02 … 00:11 are due; only 00:11 is within a minute.
    await clock.advance(10 * minute + 30_000);
    const second = scheduler(db, { schedules: [minutely()], clock });
    const after = recorder(second);
    await second.start();
    await advanceUntil(clock, after.until('fired', 2), { stepMs: 1000 });
    expect(after.fired.map((e) => [e.tick.key, e.tick.skippedFrom?.toISOString()])).toEqual([
      ['minutely@2026-06-01T00:11:00.000Z', '2026-06-01T00:02:00.000Z'],
      ['minutely@2026-06-01T00:12:00.000Z', undefined],
    ]);
  });

  it('skips without firing when every due tick is older than the window', async () => {
    const { db, clock } = await setup();
    const hourly = defineSchedule({ name: 'hourly', everyMs: 60 * minute, fire: recordTick });
    const first = scheduler(db, { schedules: [hourly], clock });
    await first.start();
    await first.stop();
    await clock.advance(3 * 60 * minute + 5 * minute); // 03:05: 01:00, 02:00, 03:00 all too old
    const second = scheduler(db, { schedules: [hourly], clock });
    const events = recorder(second);
    await second.start();
    await advanceUntil(clock, events.until('skipped', 1), { stepMs: 1000 });
    expect(events.skipped).toEqual([
      { schedule: 'hourly', from: new Date('2026-06-01T01:00:00Z'), until: new Date('2026-06-01T04:00:00Z') },
    ]);
    expect(events.fired).toEqual([]);
    expect((await readSchedules(db))[0]!.nextTick).toBe(Date.parse('2026-06-01T04:00:00Z'));
  });

  it("with catchUp 'each' and an infinite window, fires every missed tick, oldest first, once", async () => {
    const { db, clock } = await setup();
    const backfill = minutely({ catchUp: 'each', catchUpWindowMs: Infinity });
    const first = scheduler(db, { schedules: [backfill], clock });
    await first.start();
    await first.stop();
    await clock.advance(5 * minute + 1000);
    const second = scheduler(db, { schedules: [backfill], clock });
    const events = recorder(second);
    await second.start();
    await advanceUntil(clock, events.until('fired', 5), { stepMs: 100 });
    expect(events.fired.map((e) => e.tick.key)).toEqual(
      [1, 2, 3, 4, 5].map((m) => `minutely@2026-06-01T00:0${m}:00.000Z`),
    );
    // Caught up within a step or two of the clock: tick after tick, without waiting for a poll.
    expect(clock.now()).toBeLessThan(Date.parse('2026-06-01T00:05:03Z'));
  });

  it('re-plans a schedule whose definition changed, and a process with the old one stops firing it', async () => {
    const { db, clock } = await setup();
    const old = scheduler(db, { schedules: [minutely()], clock, name: 'old', pollMs: 5000 });
    const oldEvents = recorder(old);
    await old.start();
    await advanceUntil(clock, oldEvents.until('fired', 1), { stepMs: 1000 });
    const every5 = minutely({ everyMs: 5 * minute });
    const next = scheduler(db, { schedules: [every5], clock, name: 'new' });
    const newEvents = recorder(next);
    await next.start();
    expect((await readSchedules(db))[0]).toMatchObject({
      spec: 'every 300000',
      nextTick: Date.parse('2026-06-01T00:05:00Z'),
    });
    await advanceUntil(clock, newEvents.until('fired', 1), { stepMs: 1000 });
    expect(newEvents.fired[0]!.tick.key).toBe('minutely@2026-06-01T00:05:00.000Z');
    expect(oldEvents.fired).toHaveLength(1);
    expect(oldEvents.conflicts).toEqual([
      { schedule: 'minutely', ours: 'every 60000', stored: 'every 300000' },
    ]);
    // A restart with an unchanged definition keeps the plan: no tick skipped or repeated.
    await next.stop();
    const again = scheduler(db, { schedules: [every5], clock });
    await again.start();
    expect((await readSchedules(db))[0]!.nextTick).toBe(Date.parse('2026-06-01T00:10:00Z'));
  });

  it('fires nothing while paused; on resume, catches up by the window', async () => {
    const { db, clock } = await setup();
    const service = scheduler(db, {
      schedules: [minutely({ catchUpWindowMs: 2 * minute })],
      clock,
      pollMs: 1000,
    });
    const events = recorder(service);
    await service.start();
    expect(await pauseSchedule(db, 'minutely', clock.now())).toBe(true);
    await clock.advance(5 * minute);
    for (let i = 0; i < 20; i++) await clock.advance(1000);
    expect(events.fired).toEqual([]);
    expect(await resumeSchedule(db, 'minutely', clock.now())).toBe(true);
    await advanceUntil(clock, events.until('fired', 1), { stepMs: 1000 });
    expect(events.fired[0]!.tick).toMatchObject({
      key: 'minutely@2026-06-01T00:05:00.000Z',
      skippedFrom: new Date('2026-06-01T00:01:00Z'),
    });
    expect(await pauseSchedule(db, 'nothing-here', clock.now())).toBe(false);
  });

  it('registers a schedule again, planned from now, when its row is removed while it runs', async () => {
    const { db, clock } = await setup();
    const service = scheduler(db, { schedules: [minutely()], clock, pollMs: 1000 });
    const events = recorder(service);
    await service.start();
    await advanceUntil(clock, events.until('fired', 1), { stepMs: 1000 });
    expect(await removeSchedule(db, 'minutely')).toBe(true);
    await advanceUntil(clock, events.until('fired', 2), { stepMs: 1000 });
    expect((await readSchedules(db)).map((row) => row.fired)).toEqual([1]);
  });

  it('aborts a running tick’s signal at the drain deadline of stop(), and its writes roll back', async () => {
    const { db, clock } = await setup();
    let running!: () => void;
    const started = new Promise<void>((resolve) => (running = resolve));
    const slow = minutely({
      fire: async (tx, tick) => {
        await recordTick(tx, tick);
        running();
        // Slow work that honours the signal: it gives up when the scheduler's stop runs out of time.
        await new Promise<void>((_, reject) =>
          tick.signal.addEventListener('abort', () => reject(tick.signal.reason as Error), { once: true }),
        );
      },
    });
    const service = scheduler(db, { schedules: [slow], clock });
    const events = recorder(service);
    await service.start();
    await advanceUntil(clock, started, { stepMs: 1000 });
    const stopped = service.stop({ drainMs: 5000 });
    await advanceUntil(clock, stopped, { stepMs: 1000 });
    // stop() gives aborted work one turn of the event loop and resolves; the failure's record,
    // a transaction of its own, may land after it.
    await events.until('failed', 1);
    expect(await ticksWritten(db)).toEqual([]);
    expect((await readSchedules(db))[0]).toMatchObject({
      attempts: 1,
      lastError: expect.stringMatching(/drain deadline of 5000 ms passed/) as unknown,
      fired: 0,
    });
  });

  it('fires a run asked for by hand once across schedulers, woken by its notification, paused or not', async () => {
    const { db, clock } = await setup();
    const daily = () => defineSchedule({ name: 'daily', cron: '0 3 * * *', fire: recordTick });
    // Polling once an hour: only the trigger's notification can wake them within the test.
    const services = [1, 2].map((n) =>
      scheduler(db, { schedules: [daily()], clock, pollMs: 3_600_000, name: `scheduler-${n}` }),
    );
    const recorders = services.map(recorder);
    for (const service of services) await service.start();
    const fired = () => recorders.flatMap((r) => r.fired);
    const firedInAll = async (n: number): Promise<void> => {
      while (fired().length < n) await Promise.race(services.map((s) => s.events.once('fired')));
    };
    const asked = clock.now();
    expect(await triggerSchedule(db, 'daily', asked)).toBe(true);
    await firedInAll(1);
    const [run] = fired();
    expect(run?.tick).toMatchObject({
      at: new Date(asked),
      key: 'daily@2026-06-01T00:00:00.000Z/triggered-1',
      attempt: 1,
      triggered: true,
    });
    // The schedule's own next tick is where it was.
    expect((await readSchedules(db))[0]).toMatchObject({
      nextTick: Date.parse('2026-06-01T03:00:00Z'),
      lastTick: null,
      triggeredAt: null,
      fired: 1,
      // The run's outcome, for whoever waits for it (keel schedule trigger --wait).
      lastTrigger: 1,
      lastTriggerDoneAt: asked,
      lastTriggerError: null,
    });
    // Paused, it still runs when asked; its ticks do not.
    await pauseSchedule(db, 'daily', clock.now());
    await clock.advance(minute);
    await triggerSchedule(db, 'daily', clock.now());
    await firedInAll(2);
    expect(await ticksWritten(db)).toEqual([
      'daily@2026-06-01T00:00:00.000Z/triggered-1',
      'daily@2026-06-01T00:01:00.000Z/triggered-2',
    ]);
    expect(fired()).toHaveLength(2);
    expect(recorders.flatMap((r) => [...r.failed, ...r.errors])).toEqual([]);
    expect(await triggerSchedule(db, 'weekly', clock.now())).toBe(false);
  });

  it('records a failing run asked for by hand once, without retrying it, and finds a trigger whose notification was lost', async () => {
    const { db, clock } = await setup();
    const service = scheduler(db, {
      schedules: [
        minutely({
          fire: async (tx, tick) => {
            if (tick.triggered === true) throw new Error('report service down');
            await recordTick(tx, tick);
          },
        }),
      ],
      clock,
      pollMs: 5000,
    });
    const events = recorder(service);
    await service.start();
    await triggerSchedule(db, 'minutely', clock.now());
    await events.until('failed', 1);
    expect(events.failed[0]).toMatchObject({ tick: { triggered: true, attempt: 1 } });
    expect(events.failed[0]?.retryAt).toBeUndefined();
    // The schedule's ticks go on, and the failed run is not tried again.
    await advanceUntil(clock, events.until('fired', 2), { stepMs: 1000 });
    expect(events.failed).toHaveLength(1);
    expect((await readSchedules(db))[0]).toMatchObject({
      triggeredAt: null,
      failed: 1,
      fired: 2,
      lastError: null,
      lastTrigger: 1,
      lastTriggerError: 'Error: report service down',
    });
    // A trigger written without its notification is found by the next poll.
    // Written by hand with microseconds, which the run's tick does not carry.
    await db.query(`UPDATE keel_schedules SET triggered_at = $1::timestamptz + interval '0.000123 s'`, [
      new Date(clock.now()).toISOString(),
    ]);
    await advanceUntil(clock, events.until('failed', 2), { stepMs: 1000 });
    expect(events.failed[1]?.tick.triggered).toBe(true);
    expect((await readSchedules(db))[0]).toMatchObject({ triggeredAt: null, failed: 2 });
    expect(events.errors).toEqual([]);
  });

  it('refuses to start without its table, naming the migrations to run', async () => {
    const db = await createTestDb();
    cleanups.push(() => db.close());
    const service = scheduler(db, { schedules: [minutely()], clock: new ManualClock() });
    const error = await service.start().catch((e: unknown) => e);
    // The service base reports a failed start; the cause says why.
    expect(error).toMatchObject({ code: 'KEEL_SERVICE_STATE', cause: { code: 'KEEL_SCHEMA_MISSING' } });
    expect((error as Error).message).toMatch(/keel_schedules.*run scheduleMigrations first/);
  });

  it('refuses bad options with KEEL_INVALID_ARGUMENT naming the field', async () => {
    const { db } = await setup();
    const bad: [unknown, RegExp][] = [
      [{ schedules: [] }, /^schedules: expected a non-empty list/],
      [{ schedules: [{ name: 'x' }] }, /^schedules\.0: expected a defineSchedule/],
      [
        { schedules: [minutely(), minutely()] },
        /^schedules\.1\.name: expected a name no earlier schedule has/,
      ],
      [{ schedules: [minutely()], pollMs: 0 }, /^pollMs:/],
    ];
    for (const [options, message] of bad) {
      expect(() => new Scheduler(db, options as SchedulerOptions)).toThrow(message);
    }
  });
});
