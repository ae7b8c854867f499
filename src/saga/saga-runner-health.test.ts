import { afterEach, describe, expect, it } from 'vitest';
import { migrate } from '../db/index.ts';
import { advanceUntil, createTestDb, flakyDb, type TestDb } from '../testing/index.ts';
import { ManualClock } from '../time/index.ts';
import { defineSaga } from './definition.ts';
import { SagaRunner } from './saga-runner.ts';
import { sagaMigrations } from './schema.ts';

const dbs: TestDb[] = [];
afterEach(async () => {
  for (const db of dbs.splice(0)) await db.close();
});

const saga = defineSaga({ name: 'health', version: 1, steps: [{ name: 'a', action: async () => 1 }] });

describe('SagaRunner.health()', () => {
  it('says failing while its polls fail, since when and why, and ok again once one succeeds', async () => {
    const db = await createTestDb();
    dbs.push(db);
    await migrate(db, sagaMigrations);
    const clock = new ManualClock();
    const link = flakyDb(db);
    const runner = new SagaRunner({ db: link.db, sagas: [saga], clock, pollMs: 1000 });
    expect(runner.health()).toEqual({ status: 'not-running', state: 'idle' });
    await runner.start();
    expect(runner.health()).toEqual({ status: 'ok', lastContactAt: clock.now() });

    link.cut();
    const failed = runner.events.once('error', { filter: (e) => e.during === 'saga poll' });
    await advanceUntil(clock, failed);
    // The runner is still 'running': only health() tells that it works on nothing.
    expect(runner.state).toBe('running');
    const health = runner.health();
    if (health.status !== 'failing') throw new Error(`expected failing, got ${health.status}`);
    expect(health).toMatchObject({
      dependency: 'database',
      during: 'saga poll',
      failures: 1,
      lastError: { code: 'KEEL_DB_UNAVAILABLE' },
    });
    // Its last contact was before the cut: the start, or the poll then under way.
    expect(health.lastContactAt).toBeLessThanOrEqual(health.since);
    const since = health.since;
    await advanceUntil(clock, runner.events.once('error', { filter: (e) => e.during === 'saga poll' }), {
      stepMs: 500,
    });
    expect(runner.health()).toMatchObject({ status: 'failing', failures: 2, since });

    link.restore();
    const recovered = (async () => {
      while (runner.health().status !== 'ok') await new Promise((resolve) => setImmediate(resolve));
    })();
    await advanceUntil(clock, recovered);
    expect(runner.health()).toMatchObject({ status: 'ok' });

    const stopped = runner.stop({ drainMs: 100 });
    await clock.advance(100);
    await stopped;
    expect(runner.health()).toEqual({ status: 'not-running', state: 'stopped' });
  });
});
