// A failed read of the waits on one handle: a row's failure (a row that cannot be decoded, a data
// exception the server raises on one value) rejects the waits for that row alone, found by
// reading the ids in halves; a statement's failure (a missing table, a timeout, a lost connection)
// answers every wait in the statement at once. On the suite's database (PGlite, or PostgreSQL
// with KEEL_DB=pg), on a manual clock; the statements sent are counted.
import { afterEach, describe, expect, it } from 'vitest';
import type { Queryable } from '../db/index.ts';
import { migrate } from '../db/index.ts';
import { isKeelError, KeelError } from '../errors/index.ts';
import { createTestDb, type TestDb } from '../testing/index.ts';
import { statementsSettled } from '../testing/statements-in-flight.ts';
import { ManualClock } from '../time/index.ts';
import { defineSaga } from './definition.ts';
import { SagaRunner } from './saga-runner.ts';
import { startSaga } from './saga-store.ts';
import { sagaMigrations } from './schema.ts';
import { waitForSaga } from './wait-for-saga.ts';

const dbs: TestDb[] = [];
afterEach(async () => {
  for (const db of dbs.splice(0)) await db.close();
});

async function setup(migrated = true): Promise<{ db: TestDb; clock: ManualClock }> {
  const db = await createTestDb();
  dbs.push(db);
  if (migrated) await migrate(db, sagaMigrations);
  return { db, clock: new ManualClock() };
}

const oneStep = defineSaga({
  name: 'watched',
  version: 1,
  steps: [{ name: 'only', action: async () => 'done' }],
});

/** `count` instances, ended (COMPLETED) unless `running`. */
async function started(db: TestDb, count: number, clock: ManualClock, running = false): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < count; i++) ids.push((await startSaga(db, oneStep, {}, { clock, id: `w-${i}` })).id);
  if (!running) {
    const runner = new SagaRunner({ db, sagas: [oneStep], clock });
    await runner.runDue();
    await runner.stop();
  }
  return ids;
}

/** Lets the statements under way, and what their answers lead to, finish; the clock stays. */
async function quiet(): Promise<void> {
  for (let round = 0; round < 5; round++) {
    for (let turn = 0; turn < 5; turn++) await new Promise((resolve) => setImmediate(resolve));
    await statementsSettled();
  }
}

/** A hand-written UPDATE left results that are no object: reading the row back throws. */
async function corrupt(db: TestDb, ids: readonly string[]): Promise<void> {
  await db.query(`UPDATE keel_saga_instances SET results = 'null'::jsonb WHERE id = ANY($1::text[])`, [ids]);
}

/** The error the server itself raises for a value it cannot convert: SQLSTATE 22P02. */
async function dataException(db: TestDb): Promise<Error> {
  const error = await db.query(`SELECT 'not a number'::int`).catch((e: unknown) => e);
  expect(error).toMatchObject({ code: '22P02' });
  return error as Error;
}

interface Reads {
  q: Queryable;
  /** The ids of each read, in the order they were sent. */
  reads: string[][];
  /** Resolves once the read `holdRead` was sent; it waits until `release()`. */
  held: Promise<void>;
  release(): void;
}

/**
 * `db`'s reads counted; a read of any id in `bad` rejects with `badRow` (the server's data
 * exception on that row), or every read with `fail()`'s answer while it returns one. The read
 * numbered `holdRead` (from 0) waits for `release()` before it is answered.
 */
function reading(
  db: TestDb,
  options: { bad?: Set<string>; badRow?: Error; fail?: () => Error | undefined; holdRead?: number },
): Reads {
  let arrive: () => void = () => undefined;
  let open: () => void = () => undefined;
  const gate = new Promise<void>((resolve) => (open = resolve));
  const counted: Reads = {
    reads: [],
    held: new Promise((resolve) => (arrive = resolve)),
    release: () => open(),
    q: {
      query: async (sql, params) => {
        const ids = [...(params?.[0] as string[])];
        counted.reads.push(ids);
        if (counted.reads.length - 1 === options.holdRead) {
          arrive();
          await gate;
        }
        const failure = options.fail?.();
        if (failure !== undefined) throw failure;
        if (options.badRow !== undefined && ids.some((id) => options.bad?.has(id) === true))
          throw options.badRow;
        return db.query(sql, params);
      },
    },
  };
  return counted;
}

function states(outcomes: unknown[]): unknown[] {
  return outcomes.map((outcome) =>
    outcome instanceof Error
      ? ((outcome as { code?: unknown }).code ?? outcome.name)
      : (outcome as { state: string }).state,
  );
}

describe('waitForSaga on one handle: a failed read', () => {
  it('rejects only the waits for rows that cannot be decoded, two in different halves, after the one statement', async () => {
    const { db, clock } = await setup();
    const ids = await started(db, 8, clock);
    await corrupt(db, [ids[1]!, ids[6]!]);
    const counted = reading(db, {});
    const outcomes = await Promise.all(
      ids.map((id) => waitForSaga(counted.q, id, { clock }).catch((e: unknown) => e)),
    );
    expect(states(outcomes)).toEqual([
      'COMPLETED',
      'TypeError',
      ...Array<string>(4).fill('COMPLETED'),
      'TypeError',
      'COMPLETED',
    ]);
    // The statement answered: the rows are told apart as they are decoded, with no read again.
    expect(counted.reads).toEqual([ids]);
    expect(clock.pendingTimers).toBe(0);
  });

  it('halves a statement that fails on a row (SQLSTATE class 22) down to the ids whose own read fails; the others resolve', async () => {
    const { db, clock } = await setup();
    const ids = await started(db, 8, clock);
    const badRow = await dataException(db);
    const counted = reading(db, { bad: new Set([ids[1]!, ids[6]!]), badRow });
    const outcomes = await Promise.all(
      ids.map((id) => waitForSaga(counted.q, id, { clock }).catch((e: unknown) => e)),
    );
    expect(states(outcomes)).toEqual([
      'COMPLETED',
      '22P02',
      ...Array<string>(4).fill('COMPLETED'),
      '22P02',
      'COMPLETED',
    ]);
    expect(outcomes[1]).toBe(badRow);
    // Each part with a bad row halved, level by level; a part without one answered at its first read.
    const [a, b, c, d, e, f, g, h] = ids;
    expect(counted.reads).toEqual([
      ids,
      [a, b, c, d],
      [e, f, g, h],
      [a, b],
      [c, d],
      [e, f],
      [g, h],
      [a],
      [b],
      [g],
      [h],
    ]);
    expect(clock.pendingTimers).toBe(0);
  });

  it('rejects every wait in a statement that fails as a statement, after that one statement: a missing table, a timeout, a lost connection (waited out)', async () => {
    const { db, clock } = await setup(false);
    const ids = ['w-0', 'w-1', 'w-2', 'w-3'];
    const missing = reading(db, {});
    const outcomes = await Promise.all(
      ids.map((id) => waitForSaga(missing.q, id, { clock }).catch((e: unknown) => e)),
    );
    expect(states(outcomes)).toEqual(ids.map(() => '42P01'));
    expect(missing.reads).toEqual([ids]);

    const overloaded = reading(db, {
      fail: () => new KeelError('KEEL_TIMEOUT', 'cancelled a statement that ran past queryTimeoutMs'),
    });
    const timedOut = await Promise.all(
      ids.map((id) => waitForSaga(overloaded.q, id, { clock }).catch((e: unknown) => e)),
    );
    expect(timedOut.every((outcome) => isKeelError(outcome, 'KEEL_TIMEOUT'))).toBe(true);
    expect(overloaded.reads).toEqual([ids]);

    // A lost connection is every wait's too, waited out: the next poll reads them all again.
    const unreachable = reading(db, { fail: () => new KeelError('KEEL_DB_UNAVAILABLE', 'connection lost') });
    const givenUp = ids.map((id) =>
      waitForSaga(unreachable.q, id, { clock, timeoutMs: 1500 }).catch((e: unknown) => e),
    );
    await quiet();
    expect(unreachable.reads).toEqual([ids]);
    await clock.advance(1500);
    for (const outcome of await Promise.all(givenUp))
      expect(outcome).toMatchObject({ code: 'KEEL_TIMEOUT', cause: { code: 'KEEL_DB_UNAVAILABLE' } });
    expect(unreachable.reads).toEqual([ids, ids]);
    expect(clock.pendingTimers).toBe(0);
  });

  it('stops halving at a statement failure: a lost connection mid-search is waited out by every wait, read whole at the next poll', async () => {
    const { db, clock } = await setup();
    const ids = await started(db, 4, clock);
    const badRow = await dataException(db);
    let lost = false;
    const counted = reading(db, {
      bad: new Set([ids[0]!]),
      badRow,
      fail: () => (lost ? new KeelError('KEEL_DB_UNAVAILABLE', 'connection lost') : undefined),
      holdRead: 1,
    });
    const waits = ids.map((id) => waitForSaga(counted.q, id, { clock }).catch((e: unknown) => e));
    // The first read fails on the bad row; its first half waits, and the connection goes meanwhile.
    await counted.held;
    lost = true;
    counted.release();
    await quiet();
    const [a, b, c, d] = ids;
    expect(counted.reads).toEqual([ids, [a, b]]);

    lost = false;
    counted.reads.length = 0;
    await clock.advance(1000);
    expect(states(await Promise.all(waits))).toEqual(['22P02', 'COMPLETED', 'COMPLETED', 'COMPLETED']);
    expect(counted.reads).toEqual([ids, [a, b], [c, d], [a], [b]]);
    expect(clock.pendingTimers).toBe(0);
  });

  it('drops the waits that settle mid-search, and reads again the rest of a failed part they leave', async () => {
    const { db, clock } = await setup();
    const ids = await started(db, 4, clock);
    const [a, b, c] = ids as [string, string, string];
    const badRow = await dataException(db);
    const counted = reading(db, { bad: new Set([b]), badRow, holdRead: 1 });
    const controllers = ids.map(() => new AbortController());
    const waits = ids.map((id, i) =>
      waitForSaga(counted.q, id, { clock, signal: controllers[i]!.signal }).catch((e: unknown) => e),
    );
    await counted.held;
    expect(counted.reads).toEqual([ids, [a, b]]);
    // While [a, b] is read: the bad row's wait gives up, and so does one of the half not read yet.
    controllers[1]!.abort(new Error('enough'));
    controllers[3]!.abort(new Error('enough'));
    counted.release();
    const outcomes = await Promise.all(waits);
    expect(states(outcomes)).toEqual(['COMPLETED', 'KEEL_ABORTED', 'COMPLETED', 'KEEL_ABORTED']);
    // [a, b] failed on b's row: a alone is read again, not rejected for b; d is read no more.
    expect(counted.reads).toEqual([ids, [a, b], [c], [a]]);
    expect(clock.pendingTimers).toBe(0);
  });
});
