// What a started ProjectionRunner's health() reads: its loop's statements, not those of the
// one-shot calls (catchUp(), applyNext()) made beside it, whose outcomes their callers get, as the
// Kafka runner does. On the suite's database (PGlite, or PostgreSQL with KEEL_DB=pg), on a manual
// clock. The loop's own outcomes are pg-stream-health.test.ts's.
import { afterEach, describe, expect, it } from 'vitest';
import type { Db, Tx } from '../../../db/index.ts';
import type { ServiceHealth } from '../../../service/index.ts';
import { advanceUntil, flakyDb } from '../../../testing/index.ts';
import type { ManualClock } from '../../../time/index.ts';
import type { StreamEntry } from './pg-stream.ts';
import { ProjectionRunner, type Projection } from './pg-stream-projection.ts';
import { countedEvents, openTestStream } from './pg-stream-test-support.ts';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function failing(health: ServiceHealth): Extract<ServiceHealth, { status: 'failing' }> {
  if (health.status !== 'failing') throw new Error(`expected failing, got ${JSON.stringify(health)}`);
  return health;
}

function counting(): Projection & { applied: number } {
  const projection = {
    applied: 0,
    async apply(entries: readonly StreamEntry[], _tx: Tx): Promise<void> {
      projection.applied += entries.length;
    },
    async reset(): Promise<void> {
      projection.applied = 0;
    },
  };
  return projection;
}

/** `db` broken on demand (`flakyDb`), without LISTEN: a started runner then looks only on its clock. */
function deafFlaky(db: Db): ReturnType<typeof flakyDb> {
  const link = flakyDb(db);
  return { ...link, db: { ...link.db, listen: () => Promise.reject(new Error('no LISTEN here')) } };
}

/** A few turns of the event loop: what is not settled after them waits on something. */
async function turns(): Promise<void> {
  for (let turn = 0; turn < 10; turn++) await new Promise((resolve) => setImmediate(resolve));
}

function runner(
  db: Db,
  projection: Projection,
  clock: ManualClock,
  pollIntervalMs: number,
): ProjectionRunner {
  const run = new ProjectionRunner(db, projection, {
    name: 'counts.v1',
    stream: 'things',
    clock,
    pollIntervalMs,
    retryDelayMs: 1000,
  });
  cleanups.push(() => advanceUntil(clock, run.stop({ drainMs: 1000 })));
  return run;
}

describe('ProjectionRunner.health(): the loop only', () => {
  it.each(['catchUp', 'applyNext'] as const)(
    '%s() failing on the database while the loop waits for its next look leaves it ok: the caller has the error',
    async (call) => {
      const { db, stream, clock } = await openTestStream(cleanups);
      const link = deafFlaky(db);
      const run = runner(link.db, counting(), clock, 3_600_000);
      await run.start();
      // The loop has looked once, found nothing, and waits an hour for its next look.
      while (clock.pendingTimers === 0) await turns();
      const before = run.health();
      expect(before).toMatchObject({ status: 'ok' });
      await stream.append('things', countedEvents(2));

      link.cut();
      await expect(run[call]()).rejects.toMatchObject({ code: 'KEEL_DB_UNAVAILABLE' });
      expect(run.health()).toEqual(before);
      link.restore();
    },
  );

  it('a catchUp() that succeeds does not clear the failure of the loop, whose next look does', async () => {
    const { db, stream, clock } = await openTestStream(cleanups);
    const link = deafFlaky(db);
    const projection = counting();
    const run = runner(link.db, projection, clock, 3_600_000);
    link.cut();
    const failed = run.events.once('error');
    await run.start();
    await failed;
    const loopFailure = failing(run.health());
    // Its LISTEN failed too: two failures in a row.
    expect(loopFailure).toMatchObject({ dependency: 'database', during: 'apply', failures: 2 });

    link.restore();
    await stream.append('things', countedEvents(3));
    // The loop waits out retryDelayMs; the command line's catch-up goes through meanwhile.
    expect(await run.catchUp()).toBe(3);
    expect(run.health()).toEqual(loopFailure);

    await advanceUntil(
      clock,
      (async () => {
        while (run.health().status !== 'ok') await turns();
      })(),
      { stepMs: 100 },
    );
    expect(projection.applied).toBe(3);
  });
});
