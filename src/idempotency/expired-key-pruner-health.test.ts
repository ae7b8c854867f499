// ExpiredKeyPruner.health(): the outcome of its own prune passes, on a manual clock. With a store
// of the test's own, and with the table store on the suite's database (PGlite, or PostgreSQL with
// KEEL_DB=pg) before and after its table exists.
import { afterEach, describe, expect, it } from 'vitest';
import { migrate } from '../db/index.ts';
import type { ServiceHealth } from '../service/index.ts';
import { createTestDb, type TestDb } from '../testing/index.ts';
import { ManualClock } from '../time/index.ts';
import { ExpiredKeyPruner } from './expired-key-pruner.ts';
import { idempotencyMigrations, PostgresIdempotencyStore } from './postgres-idempotency-store.ts';

const dbs: TestDb[] = [];
afterEach(async () => {
  for (const db of dbs.splice(0)) await db.close();
});

/** A store whose prune fails while `down`, and hangs while `hung` (until released). */
function switchableStore() {
  const state = { down: false, hung: false, calls: 0 };
  let release: (() => void) | undefined;
  return {
    state,
    release: () => release?.(),
    store: {
      prune: async (): Promise<number> => {
        state.calls++;
        if (state.hung) await new Promise<void>((resolve) => (release = resolve));
        if (state.down) throw new Error('connection to the database lost');
        return 1;
      },
    },
  };
}

function failing(health: ServiceHealth): Extract<ServiceHealth, { status: 'failing' }> {
  if (health.status !== 'failing') throw new Error(`expected failing, got ${JSON.stringify(health)}`);
  return health;
}

describe('ExpiredKeyPruner.health()', () => {
  it('is failing after a pass that failed, counts the passes, and is ok again after the next that succeeds', async () => {
    const clock = new ManualClock();
    const { store, state } = switchableStore();
    const pruner = new ExpiredKeyPruner(store, { intervalMs: 1000, clock });
    expect(pruner.health()).toEqual({ status: 'not-running', state: 'idle' });
    await pruner.start();
    // No pass yet (the first is an interval after the start): nothing has failed.
    expect(pruner.health()).toEqual({ status: 'ok', lastContactAt: undefined });
    await clock.advance(1000);
    expect(pruner.health()).toEqual({ status: 'ok', lastContactAt: clock.now() });
    const okAt = clock.now();

    state.down = true;
    await clock.advance(1000);
    const first = failing(pruner.health());
    expect(first).toMatchObject({
      dependency: 'database',
      during: 'prune',
      since: clock.now(),
      failures: 1,
      lastContactAt: okAt,
    });
    expect((first.lastError as Error).message).toMatch(/connection to the database lost/);
    // Still running: only health() (and the error events) say that nothing is pruned.
    expect(pruner.state).toBe('running');
    await clock.advance(1000);
    expect(pruner.health()).toMatchObject({ status: 'failing', since: first.since, failures: 2 });

    state.down = false;
    await clock.advance(1000);
    expect(pruner.health()).toEqual({ status: 'ok', lastContactAt: clock.now() });

    await pruner.stop();
    expect(pruner.health()).toEqual({ status: 'not-running', state: 'stopped' });
  });

  it('is failing when no pass has answered for two intervals (one hangs), and ok once it answers', async () => {
    const clock = new ManualClock();
    const { store, state, release } = switchableStore();
    const pruner = new ExpiredKeyPruner(store, { intervalMs: 1000, clock });
    await pruner.start();
    await clock.advance(1000);
    const answeredAt = clock.now();
    state.hung = true;
    await clock.advance(1000);
    expect(state.calls).toBe(2);
    // The pass under way for one interval: no answer for two, not more.
    expect(pruner.health()).toMatchObject({ status: 'ok' });
    await clock.advance(1000);
    expect(pruner.health()).toMatchObject({ status: 'ok' });
    await clock.advance(1);
    expect(pruner.health()).toEqual({
      status: 'failing',
      dependency: 'database',
      during: undefined,
      since: answeredAt + 2000,
      failures: 0,
      lastError: undefined,
      lastContactAt: answeredAt,
    });
    state.hung = false;
    release();
    await clock.advance(0);
    expect(pruner.health()).toEqual({ status: 'ok', lastContactAt: clock.now() });
    await pruner.stop();
  });

  it('counts a pruneOnce() of its own, and starts afresh: a new start forgets an earlier failure', async () => {
    const clock = new ManualClock();
    const { store, state } = switchableStore();
    const pruner = new ExpiredKeyPruner(store, { intervalMs: 60_000, clock });
    await pruner.start();
    state.down = true;
    await expect(pruner.pruneOnce()).rejects.toThrow(/lost/);
    expect(pruner.health()).toMatchObject({ status: 'failing', dependency: 'database', failures: 1 });
    state.down = false;
    expect(await pruner.pruneOnce()).toBe(1);
    expect(pruner.health()).toEqual({ status: 'ok', lastContactAt: clock.now() });
    await pruner.stop();
  });

  it('with the table store: failing while its table is missing (the database refuses the prune), ok once it exists', async () => {
    const db = await createTestDb();
    dbs.push(db);
    const clock = new ManualClock();
    const pruner = new ExpiredKeyPruner(new PostgresIdempotencyStore(db, { clock }), {
      intervalMs: 1000,
      clock,
    });
    await pruner.start();
    const refused = pruner.events.once('error');
    await clock.advance(1000);
    await refused;
    expect(pruner.health()).toMatchObject({ status: 'failing', dependency: 'database', during: 'prune' });

    await migrate(db, idempotencyMigrations);
    const pruned = pruner.events.once('pruned');
    await clock.advance(1000);
    await pruned;
    expect(pruner.health()).toEqual({ status: 'ok', lastContactAt: clock.now() });
    await pruner.stop();
  });
});
