import { setMaxListeners } from 'node:events';
import { afterEach, describe, expect, it } from 'vitest';
import type { Db, Queryable } from '../db/index.ts';
import { migrate } from '../db/index.ts';
import { isKeelError } from '../errors/index.ts';
import { createTestDb, type TestDb } from '../testing/index.ts';
import { statementsSettled } from '../testing/statements-in-flight.ts';
import { ManualClock } from '../time/index.ts';
import { defineSaga } from './definition.ts';
import { SagaRunner } from './saga-runner.ts';
import { startSaga } from './saga-store.ts';
import { sagaEndedChannel, sagaMigrations } from './schema.ts';
import { waitForSaga } from './wait-for-saga.ts';

// The waits on one handle share a watcher: these tests count what reaches the database.

const dbs: TestDb[] = [];
afterEach(async () => {
  for (const db of dbs.splice(0)) await db.close();
});

async function setup(): Promise<{ db: TestDb; clock: ManualClock }> {
  const db = await createTestDb();
  dbs.push(db);
  await migrate(db, sagaMigrations);
  return { db, clock: new ManualClock() };
}

const oneStep = defineSaga({
  name: 'watched',
  version: 1,
  steps: [{ name: 'only', action: async () => 'done' }],
});

interface Counted {
  db: Pick<Db, 'query' | 'listen'>;
  /** The ids of each read of the instances, in the order they were sent. */
  reads: string[][];
  /** Each read of the instances as sent. */
  statements: { sql: string; params: readonly unknown[] }[];
  /** LISTENs asked for. */
  listens: number;
  /** LISTENs in place: on pg the listener's connection is not a statement `quiet` waits for. */
  listening: number;
  unlistens: number;
}

/** `db` with the waits' reads, LISTENs and UNLISTENs counted. */
function counted(db: Queryable & Pick<Db, 'listen'>): Counted {
  const counts: Counted = {
    reads: [],
    statements: [],
    listens: 0,
    listening: 0,
    unlistens: 0,
    db: {
      query: (sql, params) => {
        if (sql.includes('keel_saga_instances')) {
          counts.reads.push([...(params?.[0] as string[])]);
          counts.statements.push({ sql, params: params ?? [] });
        }
        return db.query(sql, params);
      },
      listen: async (channel, onNotify) => {
        counts.listens += 1;
        const unlisten = await db.listen(channel, onNotify);
        counts.listening += 1;
        return async () => {
          counts.unlistens += 1;
          await unlisten();
        };
      },
    },
  };
  return counts;
}

/** Once the `count`th LISTEN is in place, lets the read that follows it finish. */
async function listening(counts: Counted, count = 1): Promise<void> {
  await expect.poll(() => counts.listening).toBe(count);
  await quiet();
}

/** Lets the statements under way, and what their answers lead to, finish; the clock stays. */
async function quiet(): Promise<void> {
  for (let round = 0; round < 5; round++) {
    for (let turn = 0; turn < 5; turn++) await new Promise((resolve) => setImmediate(resolve));
    await statementsSettled();
  }
}

async function started(
  db: TestDb,
  count: number,
  clock: ManualClock,
  saga: typeof oneStep = oneStep,
): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < count; i++) ids.push((await startSaga(db, saga, {}, { clock, id: `w-${i}` })).id);
  return ids;
}

interface PlanNode {
  'Relation Name'?: string;
  'Actual Loops': number;
  Plans?: PlanNode[];
}

/** How many times `statement`, run again under EXPLAIN ANALYZE, scans the history table. */
async function historyScans(
  db: TestDb,
  statement: { sql: string; params: readonly unknown[] },
): Promise<number> {
  const { rows } = await db.query<{ 'QUERY PLAN': [{ Plan: PlanNode }] }>(
    `EXPLAIN (ANALYZE, FORMAT JSON) ${statement.sql}`,
    statement.params,
  );
  const [root] = rows[0]!['QUERY PLAN'];
  let loops = 0;
  const visit = (node: PlanNode): void => {
    if (node['Relation Name'] === 'keel_saga_history') loops += node['Actual Loops'];
    for (const child of node.Plans ?? []) visit(child);
  };
  visit(root.Plan);
  return loops;
}

describe('waitForSaga on one handle', () => {
  it('many waits share one LISTEN and one read per poll tick, and the watcher goes with the last of them', async () => {
    const { db, clock } = await setup();
    const ids = await started(db, 50, clock);
    const counts = counted(db);
    const waits = ids.map((id) => waitForSaga(counts.db, id, { clock }));
    await listening(counts);
    // The first read, then the LISTEN, then one more read for an end committed in between.
    expect(counts.listens).toBe(1);
    expect(counts.reads.map((read) => read.length)).toEqual([50, 50]);
    expect(new Set(counts.reads[0])).toEqual(new Set(ids));

    counts.reads.length = 0;
    for (let tick = 0; tick < 3; tick++) {
      await clock.advance(1000);
      await quiet();
    }
    expect(counts.reads.map((read) => read.length)).toEqual([50, 50, 50]);

    const runner = new SagaRunner({ db, sagas: [oneStep], clock });
    await runner.runDue();
    const ended = await Promise.all(waits);
    await runner.stop();
    expect(ended.map((instance) => instance.state)).toEqual(ids.map(() => 'COMPLETED'));
    expect(counts).toMatchObject({ listens: 1, unlistens: 1 });
    expect(clock.pendingTimers).toBe(0);

    // Torn down: the clock moving reads nothing, and the next wait makes a watcher of its own.
    counts.reads.length = 0;
    await clock.advance(5000);
    await quiet();
    expect(counts.reads).toEqual([]);
    const again = waitForSaga(counts.db, 'not-yet', { clock, timeoutMs: 1000 }).catch((e: unknown) => e);
    await listening(counts, 2);
    await clock.advance(1000);
    expect(await again).toMatchObject({ code: 'KEEL_TIMEOUT' });
    expect(counts).toMatchObject({ listens: 2, unlistens: 2 });
  });

  it('reads only the id a notification names, and nothing for an id nobody waits for', async () => {
    const { db, clock } = await setup();
    const [a, b, c] = await started(db, 3, clock);
    const counts = counted(db);
    const controller = new AbortController();
    const waits = [a!, b!, c!].map((id) =>
      waitForSaga(counts.db, id, { clock, signal: controller.signal }).catch((e: unknown) => e),
    );
    await listening(counts);
    expect(counts.listens).toBe(1);
    counts.reads.length = 0;
    await db.query('SELECT pg_notify($1, $2)', [sagaEndedChannel, 'nobody']);
    await db.query('SELECT pg_notify($1, $2)', [sagaEndedChannel, b]);
    // Notifications arrive in the order they were sent: by the time b's read is sent, "nobody" came.
    await expect.poll(() => counts.reads.length).toBe(1);
    await quiet();
    expect(counts.reads).toEqual([[b]]);

    controller.abort(new Error('enough'));
    for (const outcome of await Promise.all(waits)) expect(isKeelError(outcome, 'KEEL_ABORTED')).toBe(true);
    expect(counts).toMatchObject({ listens: 1, unlistens: 1 });
    expect(clock.pendingTimers).toBe(0);
  });

  it('ticks once per pollMs for the waits that share it, not at the shortest pollMs for all', async () => {
    const { db, clock } = await setup();
    const [fast, slow] = await started(db, 2, clock);
    const counts = counted(db);
    const controller = new AbortController();
    const waits = [
      waitForSaga(counts.db, fast!, { clock, pollMs: 100, signal: controller.signal }),
      waitForSaga(counts.db, slow!, { clock, pollMs: 1000, signal: controller.signal }),
    ].map((wait) => wait.catch((e: unknown) => e));
    await listening(counts);
    counts.reads.length = 0;
    for (let step = 0; step < 10; step++) {
      await clock.advance(100);
      await quiet();
    }
    const readsOf = (id: string): number => counts.reads.filter((read) => read.includes(id)).length;
    expect(readsOf(fast!)).toBe(10);
    expect(readsOf(slow!)).toBe(1);
    // At 1 000 ms both tick: one statement, or two when the first was sent between the timers.
    expect(counts.reads.length).toBeGreaterThanOrEqual(10);
    expect(counts.reads.length).toBeLessThanOrEqual(11);
    controller.abort();
    await Promise.all(waits);
    expect(clock.pendingTimers).toBe(0);
  });

  it('reads at most 1 000 ids per statement, the rest at once after', async () => {
    const { db, clock } = await setup();
    const counts = counted(db);
    const controller = new AbortController();
    // Each wait listens on the one signal: 1 001 listeners are meant.
    setMaxListeners(2000, controller.signal);
    const ids = Array.from({ length: 1001 }, (_, i) => `never-${i}`);
    const waits = ids.map((id) =>
      waitForSaga(counts.db, id, { clock, signal: controller.signal }).catch((e: unknown) => e),
    );
    await listening(counts);
    // The first reads, the LISTEN, the reads after it.
    expect(counts.reads.map((read) => read.length)).toEqual([1000, 1, 1000, 1]);
    counts.reads.length = 0;
    await clock.advance(1000);
    await quiet();
    expect(counts.reads.map((read) => read.length)).toEqual([1000, 1]);
    controller.abort();
    expect((await Promise.all(waits)).every((e) => isKeelError(e, 'KEEL_ABORTED'))).toBe(true);
    expect(counts).toMatchObject({ listens: 1, unlistens: 1 });
  });

  it('without LISTEN, the waits on one handle still read together, once per tick', async () => {
    const { db, clock } = await setup();
    const ids = await started(db, 5, clock);
    const reads: unknown[] = [];
    const poolClient: Queryable = {
      query: (sql, params) => {
        reads.push(params?.[0]);
        return db.query(sql, params);
      },
    };
    const waits = ids.map((id) => waitForSaga(poolClient, id, { clock }));
    await quiet();
    expect(reads).toEqual([ids]);
    const runner = new SagaRunner({ db, sagas: [oneStep], clock });
    await runner.runDue();
    await clock.advance(1000);
    await quiet();
    expect(reads).toHaveLength(2);
    expect((await Promise.all(waits)).map((instance) => instance.state)).toEqual(ids.map(() => 'COMPLETED'));
    await runner.stop();
    expect(clock.pendingTimers).toBe(0);
  });

  it('follows a runner with one listener however many waits pass it', async () => {
    const { db, clock } = await setup();
    const ids = await started(db, 20, clock);
    const runner = new SagaRunner({ db, sagas: [oneStep], clock });
    let listeners = 0;
    const counting = {
      events: {
        on: (...args: Parameters<SagaRunner['events']['on']>) => {
          listeners += 1;
          const handle = runner.events.on(...args);
          const dispose = (): void => {
            listeners -= 1;
            handle.dispose();
          };
          return { dispose, [Symbol.dispose]: dispose };
        },
      },
    } as unknown as SagaRunner;
    const waits = ids.map((id) => waitForSaga(db, id, { clock, runner: counting }));
    expect(listeners).toBe(1);
    await runner.runDue();
    expect((await Promise.all(waits)).map((instance) => instance.state)).toEqual(ids.map(() => 'COMPLETED'));
    expect(listeners).toBe(0);
    await runner.stop();
  });
  it('reads only the state of a running instance: a tick builds the history of the ended ones alone', async () => {
    const { db, clock } = await setup();
    const notRun = defineSaga({ ...oneStep, name: 'not-run' });
    const running = await started(db, 3, clock, notRun);
    const ends = (await startSaga(db, oneStep, {}, { clock, id: 'ends' })).id;
    const counts = counted(db);
    const controller = new AbortController();
    const waits = [...running, ends].map((id) =>
      waitForSaga(counts.db, id, { clock, signal: controller.signal }).catch((e: unknown) => e),
    );
    await listening(counts);
    counts.statements.length = 0;
    await clock.advance(1000);
    await quiet();
    // Four instances, all running: the statement of the tick reads no history at all.
    expect(counts.statements).toHaveLength(1);
    expect(await historyScans(db, counts.statements[0]!)).toBe(0);

    const runner = new SagaRunner({ db, sagas: [oneStep], clock });
    await runner.runDue();
    await expect(waits[3]).resolves.toMatchObject({
      id: ends,
      state: 'COMPLETED',
      results: { only: 'done' },
    });
    // The same statement once one of them has ended: the history of that one, once.
    expect(await historyScans(db, counts.statements[0]!)).toBe(1);
    controller.abort();
    expect((await Promise.all(waits.slice(0, 3))).every((e) => isKeelError(e, 'KEEL_ABORTED'))).toBe(true);
    await runner.stop();
    expect(clock.pendingTimers).toBe(0);
  });
});
