// Scheduler.health(): the outcome of its own statements (each pass's read of the rows, each
// tick's transaction), on a manual clock, against PGlite or PostgreSQL (KEEL_DB=pg), through a
// view of the database that can lose its connection or hang.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { migrate, type Db } from '../db/index.ts';
import type { ServiceHealth } from '../service/index.ts';
import { advanceUntil, createTestDb, flakyDb, type TestDb } from '../testing/index.ts';
import { constantBackoff, ManualClock } from '../time/index.ts';
import { defineSchedule } from './schedule-definition.ts';
import { Scheduler } from './scheduler.ts';
import { scheduleMigrations } from './schema.ts';

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function setup(): Promise<{ db: TestDb; clock: ManualClock }> {
  const db = await createTestDb();
  cleanups.push(() => db.close());
  await migrate(db, scheduleMigrations);
  return { db, clock: new ManualClock(Date.parse('2026-06-01T00:00:00Z')) };
}

function scheduler(db: Db, clock: ManualClock, fire = async (): Promise<void> => undefined): Scheduler {
  const every = defineSchedule({
    name: 'minutely',
    everyMs: 60_000,
    maxAttempts: 100,
    backoff: constantBackoff(1000),
    fire,
  });
  const service = new Scheduler(db, { schedules: [every], clock, pollMs: 10_000 });
  cleanups.push(() => service.stop({ drainMs: 1000 }));
  return service;
}

function failing(health: ServiceHealth): Extract<ServiceHealth, { status: 'failing' }> {
  if (health.status !== 'failing') throw new Error(`expected failing, got ${JSON.stringify(health)}`);
  return health;
}

/** Resolves once `service.health()` has `status`, moving nothing: the caller advances the clock. */
async function until(service: Scheduler, status: ServiceHealth['status']): Promise<void> {
  while (service.health().status !== status) await new Promise((resolve) => setImmediate(resolve));
}

describe('Scheduler.health()', () => {
  it('is failing while its passes fail, since the first, and ok again after the next statement that answers', async () => {
    const { db, clock } = await setup();
    const { db: view, cut, restore } = flakyDb(db);
    const service = scheduler(view, clock);
    expect(service.health()).toEqual({ status: 'not-running', state: 'idle' });
    await service.start();
    expect(service.health()).toMatchObject({ status: 'ok' });

    cut();
    await advanceUntil(clock, service.events.once('error'), { stepMs: 1000 });
    // Still running: only health() (and the error events) say that no tick fires.
    expect(service.state).toBe('running');
    const first = failing(service.health());
    expect(first).toMatchObject({
      dependency: 'database',
      during: 'fire due schedules',
      failures: 1,
      lastError: { code: 'KEEL_DB_UNAVAILABLE' },
    });
    expect(first.lastContactAt).toBeLessThanOrEqual(first.since);
    await advanceUntil(clock, service.events.once('error'), { stepMs: 1000 });
    expect(service.health()).toMatchObject({ status: 'failing', since: first.since, failures: 2 });

    restore();
    await advanceUntil(clock, until(service, 'ok'), { stepMs: 1000 });
    expect(service.health()).toEqual({ status: 'ok', lastContactAt: expect.any(Number) as unknown });

    await service.stop({ drainMs: 1000 });
    expect(service.health()).toEqual({ status: 'not-running', state: 'stopped' });
  });

  it('stays ok while a tick’s fire throws: that is the tick’s failure, and its attempts are recorded', async () => {
    const { db, clock } = await setup();
    const service = scheduler(db, clock, async () => {
      throw new Error('report service down');
    });
    await service.start();
    const failures = (async () => {
      for (let n = 0; n < 3; n++) await service.events.once('failed');
    })();
    await advanceUntil(clock, failures, { stepMs: 1000 });
    expect(service.health()).toEqual({ status: 'ok', lastContactAt: expect.any(Number) as unknown });
  });

  it('is failing when no statement has answered for two poll intervals (one hangs), and ok once it answers', async () => {
    const { db, clock } = await setup();
    const { db: view, hang, restore } = flakyDb(db);
    const service = scheduler(view, clock);
    await service.start();
    // Its first pass read the rows and waits on the clock for the next.
    await vi.waitFor(() => expect(clock.pendingTimers).toBe(1), { timeout: 10_000, interval: 5 });
    const answered = service.health();
    if (answered.status !== 'ok' || answered.lastContactAt === undefined) throw new Error('expected ok');

    hang();
    // pollMs 10 s: silent for 20 s at most while ok.
    await clock.advance(answered.lastContactAt + 20_000 - clock.now());
    expect(service.health()).toMatchObject({ status: 'ok' });
    await clock.advance(1);
    expect(service.health()).toEqual({
      status: 'failing',
      dependency: 'database',
      during: undefined,
      since: answered.lastContactAt + 20_000,
      failures: 0,
      lastError: undefined,
      lastContactAt: answered.lastContactAt,
    });

    restore();
    await advanceUntil(clock, until(service, 'ok'), { stepMs: 1000 });
  });
});
