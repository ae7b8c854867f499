import { afterEach, describe, expect, it } from 'vitest';
import { migrate } from '../db/index.ts';
import { advanceUntil, createTestDb, flakyDb, type TestDb } from '../testing/index.ts';
import { ManualClock } from '../time/index.ts';
import { defineSaga } from './definition.ts';
import { getSaga } from './saga-admin.ts';
import { SagaRunner } from './saga-runner.ts';
import { startSaga } from './saga-store.ts';
import { sagaMigrations } from './schema.ts';

const dbs: TestDb[] = [];
afterEach(async () => {
  for (const db of dbs.splice(0)) await db.close();
});

/** Resolves once `check` holds, moving the manual clock in small steps meanwhile. */
function until(clock: ManualClock, check: () => boolean | Promise<boolean>): Promise<void> {
  return advanceUntil(
    clock,
    (async () => {
      while (!(await check())) await new Promise((resolve) => setImmediate(resolve));
    })(),
    { stepMs: 50 },
  );
}

describe('SagaRunner re-claiming its own instance', () => {
  it('after its lease ran out while its heartbeats failed, the new run is the one it keeps, heartbeats and waits for', async () => {
    const db = await createTestDb();
    dbs.push(db);
    await migrate(db, sagaMigrations);
    const clock = new ManualClock();
    const link = flakyDb(db);
    let open = (): void => undefined;
    const gate = new Promise<void>((resolve) => (open = resolve));
    const runs: AbortSignal[] = [];
    const saga = defineSaga({
      name: 'reclaim',
      version: 1,
      steps: [
        {
          name: 'slow',
          timeoutMs: 600_000,
          retry: { maxAttempts: 1 },
          action: async (context) => {
            runs.push(context.signal);
            // The first run ignores its signal (an HTTP call without one); the others honour it.
            if (runs.length === 1) return gate;
            await new Promise((_, reject) =>
              context.signal.addEventListener('abort', () => reject(new Error('aborted'))),
            );
          },
        },
      ],
    });
    const runner = new SagaRunner({
      db: link.db,
      sagas: [saga],
      clock,
      owner: 'a',
      leaseMs: 1000,
      heartbeatMs: 300,
      pollMs: 100,
      listen: false,
    });
    const lost: string[] = [];
    runner.events.on('lease-lost', (e) => lost.push(e.instanceId));
    runner.events.on('error', () => undefined);
    await runner.start();
    const { id } = await startSaga(db, saga, {}, { clock });
    await until(clock, () => runs.length === 1);

    // The database is away for longer than a lease: the heartbeats fail and the lease runs out.
    link.cut();
    const cutAt = clock.now();
    await until(clock, () => clock.now() >= cutAt + 1100);
    link.restore();
    // The next poll finds the instance due and leases it again, with a new epoch: a second run.
    await until(clock, () => runs.length === 2);
    // The first run is fenced off: its signal says so at once, rather than at its next write.
    expect(runs[0]!.aborted).toBe(true);
    expect(runs[1]!.aborted).toBe(false);

    open();
    await until(clock, () => lost.length === 1);
    expect(lost).toEqual([id]);
    // The first run's end does not drop the second from the runner's hands ...
    expect(runner.running).toBe(1);
    // ... so its heartbeats keep the lease: two lease lengths later, no one (itself neither) has
    // taken it over for a third run.
    await until(clock, () => clock.now() >= cutAt + 3500);
    expect(runs).toHaveLength(2);
    const other = new SagaRunner({ db, sagas: [saga], clock, owner: 'b' });
    expect(await other.runDue()).toBe(0);
    expect((await getSaga(db, id)).instance.leaseOwner).toBe('a');

    const stopped = runner.stop({ drainMs: 100 });
    await clock.advance(100);
    await stopped;
    expect(runs[1]!.aborted).toBe(true);
    await expect.poll(async () => (await getSaga(db, id)).instance.leaseOwner).toBeNull();
    expect(runner.running).toBe(0);
  });
});
