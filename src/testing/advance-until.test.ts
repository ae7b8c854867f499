import { afterEach, describe, expect, it } from 'vitest';
import type { Db } from '../db/db.ts';
import { canNotifyAfterCommit, canReadAfterCommit } from '../db/index.ts';
import { canSendWithoutWaiting } from '../db/send-without-waiting.ts';
import { ManualClock, sleep } from '../time/index.ts';
import { advanceUntil } from './advance-until.ts';
import { createTestDb, type TestDb } from './db.ts';
import { trackedDb } from './statements-in-flight.ts';

const dbs: TestDb[] = [];
afterEach(async () => {
  for (const db of dbs.splice(0)) await db.close();
});

/** A test database whose statements wait at a gate before they go to the server: slow I/O, held. */
async function gatedDb(
  options: { trackStatements?: boolean } = {},
): Promise<{ db: TestDb; open: () => void }> {
  const db = await createTestDb(options);
  dbs.push(db);
  const inner = db.inner as { query: Db['query'] };
  const query = inner.query.bind(inner);
  let open!: () => void;
  const gate = new Promise<void>((resolve) => (open = resolve));
  inner.query = async (sql, params) => {
    await gate;
    return query(sql, params);
  };
  return { db, open };
}

const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe('advanceUntil', () => {
  it('does not move the clock while a test database statement is on its way', async () => {
    const { db, open } = await gatedDb();
    const clock = new ManualClock(0);
    let leaseRanOut = false;
    clock.setTimeout(() => (leaseRanOut = true), 30_000);
    const answered = db.query<{ one: number }>('SELECT 1 AS one');
    const advancing = advanceUntil(clock, answered);
    // Without the wait, 300 steps of 100 ms take a few hundred turns of the event loop.
    for (let i = 0; i < 2_000; i++) await turn();
    expect(clock.now()).toBe(100);
    open();
    expect((await advancing).rows).toEqual([{ one: 1 }]);
    expect(leaseRanOut).toBe(false);
  });

  it('moves the clock for a transaction whose callback waits on it, between its statements', async () => {
    const db = await createTestDb();
    dbs.push(db);
    const clock = new ManualClock(0);
    const abilities: boolean[] = [];
    const committed = db.transaction(async (tx) => {
      await tx.query('CREATE TABLE waited (n int)');
      abilities.push(canSendWithoutWaiting(tx), canNotifyAfterCommit(tx), canReadAfterCommit(tx));
      await sleep(5_000, { clock });
      await tx.query('INSERT INTO waited VALUES (1)');
      return 'committed';
    });
    expect(await advanceUntil(clock, committed)).toBe('committed');
    expect(clock.now()).toBeGreaterThanOrEqual(5_000);
    // The tracked handle keeps what keel's own transactions can do.
    expect(abilities).toEqual([true, true, true]);
    expect((await db.query('SELECT n FROM waited')).rows).toEqual([{ n: 1 }]);
  });

  it('waits for the statements of a database opened otherwise once it is seen through trackedDb', async () => {
    const { db, open } = await gatedDb({ trackStatements: false });
    const clock = new ManualClock(0);
    const untracked = advanceUntil(clock, db.query('SELECT 1 AS one'));
    for (let i = 0; i < 50; i++) await turn();
    // Nothing waits for an untracked statement: the clock runs on while it is held.
    expect(clock.now()).toBeGreaterThan(100);
    open();
    await untracked;

    const gated = await gatedDb({ trackStatements: false });
    const tracked = trackedDb(gated.db);
    const from = clock.now();
    const answered = tracked.query<{ two: number }>('SELECT 2 AS two');
    const advancing = advanceUntil(clock, answered);
    for (let i = 0; i < 2_000; i++) await turn();
    expect(clock.now()).toBe(from + 100);
    gated.open();
    expect((await advancing).rows).toEqual([{ two: 2 }]);
    expect(tracked.schema).toBe(gated.db.schema);
    expect(
      await advanceUntil(
        clock,
        tracked.transaction(async () => 'committed'),
      ),
    ).toBe('committed');
  });
});
