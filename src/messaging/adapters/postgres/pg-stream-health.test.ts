import { afterEach, describe, expect, it } from 'vitest';
import type { Db, Tx } from '../../../db/index.ts';
import type { ServiceHealth } from '../../../service/index.ts';
import { advanceUntil, testDbBackend, type TestDb } from '../../../testing/index.ts';
import { statementsSettled } from '../../../testing/statements-in-flight.ts';
import type { ManualClock } from '../../../time/index.ts';
import type { PgStream, StreamEntry } from './pg-stream.ts';
import { ProjectionRunner, type Projection } from './pg-stream-projection.ts';
import { PgStreamRetention } from './pg-stream-retention.ts';
import { flakyDb } from '../../../testing/index.ts';
import { backendWaitingOnLock, namedPgDb } from './pg-health-test-support.ts';
import { countedEvents, openTestStream } from './pg-stream-test-support.ts';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function setup(): Promise<{ db: TestDb; stream: PgStream; clock: ManualClock }> {
  return openTestStream(cleanups);
}

function failing(health: ServiceHealth): Extract<ServiceHealth, { status: 'failing' }> {
  if (health.status !== 'failing') throw new Error(`expected failing, got ${JSON.stringify(health)}`);
  return health;
}

/**
 * Moves the clock in steps until `health()` is 'ok' with an answer from the database (not only
 * 'ok' for being within `silentMs` of the start), and resolves with that answer's time.
 */
function answered(clock: ManualClock, service: { health(): ServiceHealth }): Promise<number> {
  const contact = (): number | undefined => {
    const health = service.health();
    return health.status === 'ok' ? health.lastContactAt : undefined;
  };
  return advanceUntil(
    clock,
    (async () => {
      for (let at = contact(); ; at = contact()) {
        if (at !== undefined) return at;
        await new Promise((resolve) => setImmediate(resolve));
      }
    })(),
    { stepMs: 10 },
  );
}

/**
 * Makes every statement from now on wait (`flaky`'s `hang()`), lets those already under way end,
 * and resolves with the time of the last answer: silence is counted from there.
 */
async function hangAfterLastAnswer(
  clock: ManualClock,
  link: { hang: () => void },
  service: { health(): ServiceHealth },
): Promise<number> {
  await answered(clock, service);
  link.hang();
  await statementsSettled();
  const health = service.health();
  if (health.status !== 'ok' || health.lastContactAt === undefined)
    throw new Error(`expected ok after an answer, got ${JSON.stringify(health)}`);
  return health.lastContactAt;
}

/** Counts the entries it is given; throws instead while `failing` is set. */
function countingProjection(): Projection & { applied: number; failing: boolean } {
  const projection = {
    applied: 0,
    failing: false,
    async apply(entries: readonly StreamEntry[], _tx: Tx): Promise<void> {
      if (projection.failing) throw new Error('the projection cannot read this entry');
      projection.applied += entries.length;
    },
    async reset(): Promise<void> {
      projection.applied = 0;
    },
  };
  return projection;
}

function projectionRunner(
  db: Db,
  projection: Projection,
  clock: ManualClock,
  options = {},
): ProjectionRunner {
  const runner = new ProjectionRunner(db, projection, {
    name: 'counts.v1',
    stream: 'things',
    clock,
    pollIntervalMs: 1000,
    retryDelayMs: 1000,
    ...options,
  });
  cleanups.push(() => runner.stop({ drainMs: 1000 }));
  return runner;
}

describe('ProjectionRunner.health()', () => {
  it('is not-running before start and after stop; failing while its looks fail, ok again after one succeeds', async () => {
    const { db, stream, clock } = await setup();
    const link = flakyDb(db);
    const runner = projectionRunner(link.db, countingProjection(), clock);
    expect(runner.health()).toEqual({ status: 'not-running', state: 'idle' });
    await runner.start();
    await answered(clock, runner);

    link.cut();
    await advanceUntil(clock, runner.events.once('error'));
    // Still 'running': only health() says that it applies nothing.
    expect(runner.state).toBe('running');
    const first = failing(runner.health());
    expect(first).toMatchObject({
      dependency: 'database',
      during: 'apply',
      failures: 1,
      lastError: { code: 'KEEL_DB_UNAVAILABLE' },
    });
    expect(first.lastContactAt).toBeLessThanOrEqual(first.since);
    await advanceUntil(clock, runner.events.once('error'));
    expect(failing(runner.health())).toMatchObject({ failures: 2, since: first.since });

    link.restore();
    await stream.append('things', countedEvents(3));
    await advanceUntil(clock, runner.events.once('applied'));
    expect(runner.health()).toMatchObject({ status: 'ok' });
    await runner.stop();
    expect(runner.health()).toEqual({ status: 'not-running', state: 'stopped' });
  });

  it("stays ok when the projection's apply throws, or the stream was trimmed past it: the database answered", async () => {
    const { db, stream, clock } = await setup();
    await stream.append('things', countedEvents(4));
    const projection = countingProjection();
    projection.failing = true;
    const runner = projectionRunner(db, projection, clock, { batchSize: 2 });
    const errors: unknown[] = [];
    runner.events.on('error', ({ error }) => void errors.push(error));
    await runner.start();
    await advanceUntil(clock, runner.events.once('error'));
    await advanceUntil(clock, runner.events.once('error'));
    expect(errors).toMatchObject([
      { message: 'the projection cannot read this entry' },
      { message: 'the projection cannot read this entry' },
    ]);
    expect(runner.health()).toMatchObject({ status: 'ok' });

    await stream.trim('things', { before: 3 });
    await advanceUntil(clock, runner.events.once('error'));
    expect(errors.at(-1)).toMatchObject({ code: 'KEEL_STREAM_TRIMMED' });
    expect(runner.health()).toMatchObject({ status: 'ok' });
    expect(projection.applied).toBe(0);
  });

  it('is failing after a LISTEN that failed, until its first look answers', async () => {
    const { db, clock } = await setup();
    const link = flakyDb(db);
    const deaf: Db = { ...link.db, listen: () => Promise.reject(new Error('no LISTEN here')) };
    const runner = projectionRunner(deaf, countingProjection(), clock);
    // Its first look waits, so that what the LISTEN found is all there is to read.
    link.hang();
    await runner.start();
    expect(failing(runner.health())).toMatchObject({ dependency: 'database', during: 'listen', failures: 1 });
    link.restore();
    await answered(clock, runner);
  });

  it('is failing once no statement has answered for silentMs (one hangs), ok again once it answers', async () => {
    const { db, clock } = await setup();
    const link = flakyDb(db);
    const runner = projectionRunner(link.db, countingProjection(), clock, { silentMs: 5000 });
    await runner.start();
    const lastContactAt = await hangAfterLastAnswer(clock, link, runner);
    await clock.advance(lastContactAt + 5000 - clock.now());
    expect(runner.health()).toMatchObject({ status: 'ok' });
    await clock.advance(1);
    expect(runner.health()).toEqual({
      status: 'failing',
      dependency: 'database',
      during: undefined,
      since: lastContactAt + 5000,
      failures: 0,
      lastError: undefined,
      lastContactAt,
    });
    link.restore();
    await answered(clock, runner);
  });

  it('defaults silentMs to 30 s plus the longer of its intervals; rejects a bad one by field', async () => {
    const { db, clock } = await setup();
    const link = flakyDb(db);
    const runner = projectionRunner(link.db, countingProjection(), clock, { retryDelayMs: 4000 });
    await runner.start();
    const lastContactAt = await hangAfterLastAnswer(clock, link, runner);
    await clock.advance(lastContactAt + 34_000 - clock.now());
    expect(runner.health()).toMatchObject({ status: 'ok' });
    await clock.advance(1);
    expect(runner.health()).toMatchObject({ status: 'failing', failures: 0 });
    link.restore();
    expect(() => projectionRunner(db, countingProjection(), clock, { silentMs: 0 })).toThrow(
      expect.objectContaining({ field: 'silentMs' }),
    );
  });

  it.skipIf(testDbBackend() !== 'pg')(
    'on PostgreSQL: failing while its batch waits on a lock past silentMs, and when the server ends that connection; ok once a batch commits (pg only)',
    async () => {
      const { db, stream, clock } = await setup();
      const applicationName = `keel-projection-health-${process.pid}`;
      const runnerDb = await namedPgDb(db.schema, applicationName);
      cleanups.push(() => runnerDb.close());
      await stream.append('things', countedEvents(3));
      // The position row, held by another session as by another runner's long batch.
      await db.query("INSERT INTO keel_stream_positions (projection, stream) VALUES ('counts.v1', 'things')");
      let release: () => void = () => undefined;
      const released = new Promise<void>((resolve) => (release = resolve));
      let locked: () => void = () => undefined;
      const isLocked = new Promise<void>((resolve) => (locked = resolve));
      const holder = db.transaction(async (tx) => {
        await tx.query("SELECT 1 FROM keel_stream_positions WHERE projection = 'counts.v1' FOR UPDATE");
        locked();
        await released;
      });
      await isLocked;
      const projection = countingProjection();
      const runner = projectionRunner(runnerDb, projection, clock, { silentMs: 5000 });
      await runner.start();
      const pid = await backendWaitingOnLock(db, applicationName);
      // Its look answered; the batch waits on the lock: silent.
      expect(runner.health()).toMatchObject({ status: 'ok' });
      await clock.advance(5001);
      expect(runner.health()).toMatchObject({ status: 'failing', dependency: 'database', failures: 0 });

      const failed = runner.events.once('error');
      await db.query('SELECT pg_terminate_backend($1)', [pid]);
      expect((await failed).during).toBe('apply');
      expect(runner.health()).toMatchObject({ status: 'failing', dependency: 'database', failures: 1 });
      expect(failing(runner.health()).lastError).toBeDefined();

      release();
      await holder;
      await advanceUntil(clock, runner.events.once('applied'));
      expect(runner.health()).toMatchObject({ status: 'ok' });
      expect(projection.applied).toBe(3);
    },
  );
});

describe('PgStreamRetention.health()', () => {
  it('is not-running before start and after stop; failing while trims fail, naming the stream; ok after the next', async () => {
    const { db, stream, clock } = await setup();
    await stream.append('orders', countedEvents(3));
    const link = flakyDb(db);
    const retention = new PgStreamRetention(link.db, {
      streams: [{ stream: 'orders', keepLast: 0 }],
      intervalMs: 1000,
      clock,
    });
    cleanups.push(() => retention.stop({ drainMs: 1000 }));
    expect(retention.health()).toEqual({ status: 'not-running', state: 'idle' });
    const trimmed = retention.events.once('trimmed');
    await retention.start();
    await advanceUntil(clock, trimmed);
    // Its trim answered: ok, with that answer's time.
    expect(await answered(clock, retention)).toBeLessThanOrEqual(clock.now());

    link.cut();
    await advanceUntil(clock, retention.events.once('error'));
    expect(failing(retention.health())).toMatchObject({
      dependency: 'database',
      during: 'trim orders',
      failures: 1,
      lastError: { code: 'KEEL_DB_UNAVAILABLE' },
    });
    // Still 'running': only health() says that it trims nothing.
    expect(retention.state).toBe('running');

    link.restore();
    // A trim with nothing to delete answers too.
    await answered(clock, retention);
    await retention.stop();
    expect(retention.health()).toEqual({ status: 'not-running', state: 'stopped' });
  });

  it('is failing once no trim has answered for two intervals (one hangs)', async () => {
    const { db, clock } = await setup();
    const link = flakyDb(db);
    const retention = new PgStreamRetention(link.db, {
      streams: [{ stream: 'orders', keepLast: 0 }],
      intervalMs: 1000,
      clock,
    });
    cleanups.push(() => retention.stop({ drainMs: 1000 }));
    await retention.start();
    const lastContactAt = await hangAfterLastAnswer(clock, link, retention);
    await clock.advance(lastContactAt + 2000 - clock.now());
    expect(retention.health()).toMatchObject({ status: 'ok' });
    await clock.advance(1);
    expect(retention.health()).toMatchObject({
      status: 'failing',
      dependency: 'database',
      failures: 0,
      since: lastContactAt + 2000,
    });
    link.restore();
    await answered(clock, retention);
  });
});
