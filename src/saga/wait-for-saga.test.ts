import { afterEach, describe, expect, it } from 'vitest';
import type { Db, Queryable } from '../db/index.ts';
import { migrate } from '../db/index.ts';
import { InvalidArgumentError, isKeelError, KeelError } from '../errors/index.ts';
import { advanceUntil, createTestDb, type TestDb } from '../testing/index.ts';
import { statementsSettled } from '../testing/statements-in-flight.ts';
import { ManualClock } from '../time/index.ts';
import { defineSaga } from './definition.ts';
import { retrySaga } from './saga-admin.ts';
import { SagaRunner } from './saga-runner.ts';
import { startSaga, type SagaInstance } from './saga-store.ts';
import { sagaEndedChannel, sagaMigrations } from './schema.ts';
import { waitForSaga } from './wait-for-saga.ts';

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

const twoSteps = defineSaga<{ fail?: boolean }>({
  name: 'wait',
  version: 1,
  steps: [
    { name: 'first', action: async () => 'one' },
    {
      name: 'second',
      retry: { maxAttempts: 1 },
      action: async (context) => {
        if (context.input.fail === true) throw new Error('refused');
        return 'two';
      },
    },
  ],
});

/** `db` as another process's pool client would be: queries only, no LISTEN. */
function queriesOnly(db: Queryable): Queryable {
  return { query: (sql, params) => db.query(sql, params) };
}

/** Whether `promise` settles once the database statements under way and what they lead to are done; the clock stays. */
async function settled<T>(promise: Promise<T>): Promise<{ done: boolean }> {
  let done = false;
  void promise.then(
    () => (done = true),
    () => (done = true),
  );
  for (let round = 0; round < 5 && !done; round++) {
    for (let turn = 0; turn < 5; turn++) await new Promise((resolve) => setImmediate(resolve));
    await statementsSettled();
  }
  return { done };
}

describe('waitForSaga', () => {
  it('resolves at once with an instance that had ended before the call, results in step order', async () => {
    const { db, clock } = await setup();
    const runner = new SagaRunner({ db, sagas: [twoSteps], clock });
    const { id } = await startSaga(db, twoSteps, {}, { clock });
    await runner.runDue();
    const instance = await waitForSaga(db, id, { clock });
    expect(instance).toMatchObject({ id, state: 'COMPLETED' });
    expect(Object.entries(instance.results)).toEqual([
      ['first', 'one'],
      ['second', 'two'],
    ]);
    await runner.stop();
    expect(clock.pendingTimers).toBe(0);
  });

  it('is woken by the NOTIFY of the write that ends the instance, with no runner of its own and no poll', async () => {
    const { db, clock } = await setup();
    const notified: string[] = [];
    const unlisten = await db.listen(sagaEndedChannel, (payload) => notified.push(payload));
    const { id } = await startSaga(db, twoSteps, { fail: true }, { clock });
    let listening!: () => void;
    const listened = new Promise<void>((resolve) => (listening = resolve));
    const listensOnce: Pick<Db, 'query' | 'listen'> = {
      query: (sql, params) => db.query(sql, params),
      listen: async (channel, onNotify) => {
        const unlisten = await db.listen(channel, onNotify);
        listening();
        return unlisten;
      },
    };
    const waiting = waitForSaga(listensOnce, id, { clock });
    await listened;
    // The read that follows the LISTEN finds it running: from here only a notification can wake it.
    expect(await settled(waiting)).toEqual({ done: false });
    // Another runner (another process, as far as the wait knows) ends it; the clock never moves.
    const runner = new SagaRunner({ db, sagas: [twoSteps], clock });
    await runner.runDue();
    await expect(waiting).resolves.toMatchObject({ id, state: 'COMPENSATED' });
    await expect.poll(() => notified).toContain(id);
    // Only the ending write notifies; the start and the steps do not.
    expect(notified.filter((payload) => payload === id)).toHaveLength(1);
    await unlisten();
    await runner.stop();
    expect(clock.pendingTimers).toBe(0);
  });

  it('without LISTEN, finds the end at its next poll', async () => {
    const { db, clock } = await setup();
    const { id } = await startSaga(db, twoSteps, {}, { clock });
    const waiting = waitForSaga(queriesOnly(db), id, { clock, pollMs: 500 });
    expect(await settled(waiting)).toEqual({ done: false });
    const runner = new SagaRunner({ db, sagas: [twoSteps], clock });
    await runner.runDue();
    expect(await settled(waiting)).toEqual({ done: false });
    await expect(advanceUntil(clock, waiting, { stepMs: 500 })).resolves.toMatchObject({
      state: 'COMPLETED',
    });
    await runner.stop();
    expect(clock.pendingTimers).toBe(0);
  });

  it('given a runner of this process, is woken by its events', async () => {
    const { db, clock } = await setup();
    const runner = new SagaRunner({ db, sagas: [twoSteps], clock });
    const { id } = await startSaga(db, twoSteps, {}, { clock });
    const waiting = waitForSaga(queriesOnly(db), id, { clock, runner });
    expect(await settled(waiting)).toEqual({ done: false });
    await runner.runDue();
    await expect(waiting).resolves.toMatchObject({ id, state: 'COMPLETED' });
    await runner.stop();
  });

  it('waits for an instance that is started after the call', async () => {
    const { db, clock } = await setup();
    const waiting = waitForSaga(db, 'later', { clock, pollMs: 100 });
    await clock.advance(300);
    expect(await settled(waiting)).toEqual({ done: false });
    const runner = new SagaRunner({ db, sagas: [twoSteps], clock });
    await startSaga(db, twoSteps, {}, { clock, id: 'later' });
    await runner.runDue();
    await expect(waiting).resolves.toMatchObject({ id: 'later', state: 'COMPLETED' });
    await runner.stop();
  });

  it('resolves with a parked instance (NEEDS_ATTENTION): an end until an operator retries it', async () => {
    const { db, clock } = await setup();
    const parks = defineSaga({
      name: 'parks',
      version: 1,
      steps: [
        {
          name: 'a',
          action: async () => 1,
          compensation: () => Promise.reject(new Error('no refund')),
          compensationRetry: { maxAttempts: 1 },
        },
        { name: 'b', action: () => Promise.reject(new Error('no')), retry: { maxAttempts: 1 } },
      ],
    });
    const runner = new SagaRunner({ db, sagas: [parks], clock });
    const { id } = await startSaga(db, parks, {}, { clock });
    const waiting = waitForSaga(db, id, { clock });
    await runner.runDue();
    expect(await waiting).toMatchObject({ state: 'NEEDS_ATTENTION', lastError: { message: 'no refund' } });
    await retrySaga(db, id, { clock });
    // Back to COMPENSATING: a new wait waits again.
    const again = waitForSaga(db, id, { clock, timeoutMs: 1000 });
    const error = await advanceUntil(
      clock,
      again.catch((e: unknown) => e),
    );
    expect(error).toMatchObject({
      code: 'KEEL_TIMEOUT',
      details: { instanceId: id, timeoutMs: 1000, state: 'COMPENSATING' },
    });
    await runner.stop();
  });

  it('gives up on timeoutMs with KEEL_TIMEOUT and on its signal with KEEL_ABORTED, leaving nothing behind', async () => {
    const { db, clock } = await setup();
    const { id } = await startSaga(db, twoSteps, {}, { clock });
    const start = clock.now();
    const timedOut = waitForSaga(db, id, { clock, timeoutMs: 2500 }).catch((e: unknown) => e);
    const error = await advanceUntil(clock, timedOut);
    expect(isKeelError(error, 'KEEL_TIMEOUT')).toBe(true);
    expect((error as Error).message).toBe(
      `saga instance ${id} did not end within 2500 ms (last seen RUNNING)`,
    );
    expect(clock.now() - start).toBeGreaterThanOrEqual(2500);

    const never = await advanceUntil(
      clock,
      waitForSaga(db, 'never', { clock, timeoutMs: 300 }).catch((e: unknown) => e),
    );
    expect(never).toMatchObject({ code: 'KEEL_TIMEOUT', details: { state: null } });

    const controller = new AbortController();
    const aborted = waitForSaga(db, id, { clock, signal: controller.signal }).catch((e: unknown) => e);
    expect(await settled(aborted)).toEqual({ done: false });
    controller.abort(new Error('client went away'));
    expect(await aborted).toMatchObject({ code: 'KEEL_ABORTED', cause: { message: 'client went away' } });
    await expect(waitForSaga(db, id, { signal: controller.signal })).rejects.toSatisfy((e) =>
      isKeelError(e, 'KEEL_ABORTED'),
    );
    expect(clock.pendingTimers).toBe(0);
  });

  it('waits out a lost connection (KEEL_DB_UNAVAILABLE) until the next poll, and rejects on any other failed read', async () => {
    const { db, clock } = await setup();
    const runner = new SagaRunner({ db, sagas: [twoSteps], clock });
    const { id } = await startSaga(db, twoSteps, {}, { clock });
    await runner.runDue();
    let down = true;
    const flaky: Queryable = {
      query: (sql, params) =>
        down
          ? Promise.reject(new KeelError('KEEL_DB_UNAVAILABLE', 'connection lost'))
          : db.query(sql, params),
    };
    const waiting = waitForSaga(flaky, id, { clock, pollMs: 1000 });
    expect(await settled(waiting)).toEqual({ done: false });
    down = false;
    await expect(advanceUntil(clock, waiting)).resolves.toMatchObject({ state: 'COMPLETED' });

    const unavailableThenTimeout = waitForSaga(
      { query: () => Promise.reject(new KeelError('KEEL_DB_UNAVAILABLE', 'connection lost')) },
      id,
      { clock, timeoutMs: 2000 },
    ).catch((e: unknown) => e);
    expect(await advanceUntil(clock, unavailableThenTimeout)).toMatchObject({
      code: 'KEEL_TIMEOUT',
      cause: { code: 'KEEL_DB_UNAVAILABLE' },
    });

    const broken: Queryable = { query: () => Promise.reject(new Error('relation does not exist')) };
    await expect(waitForSaga(broken, id, { clock })).rejects.toThrow('relation does not exist');
    await runner.stop();
    expect(clock.pendingTimers).toBe(0);
  });

  it('refuses bad arguments with KEEL_INVALID_ARGUMENT naming the field', async () => {
    const { db } = await setup();
    const field = async (run: () => Promise<SagaInstance>): Promise<unknown> =>
      run().then(
        () => 'resolved',
        (e: unknown) => (e instanceof InvalidArgumentError ? e.field : e),
      );
    expect(await field(() => waitForSaga(null as never, 'x'))).toBe('db');
    expect(await field(() => waitForSaga(db, ''))).toBe('id');
    expect(await field(() => waitForSaga(db, 7 as never))).toBe('id');
    expect(await field(() => waitForSaga(db, 'x', null as never))).toBe('options');
    expect(await field(() => waitForSaga(db, 'x', { timeoutMs: 0 }))).toBe('timeoutMs');
    expect(await field(() => waitForSaga(db, 'x', { timeoutMs: Number.NaN }))).toBe('timeoutMs');
    expect(await field(() => waitForSaga(db, 'x', { pollMs: -1 }))).toBe('pollMs');
    // Node would fire a longer timer at once.
    expect(await field(() => waitForSaga(db, 'x', { timeoutMs: 30 * 24 * 3600 * 1000 }))).toBe('timeoutMs');
    expect(await field(() => waitForSaga(db, 'x', { signal: 'stop' as never }))).toBe('signal');
    expect(await field(() => waitForSaga(db, 'x', { clock: {} as never }))).toBe('clock');
    expect(await field(() => waitForSaga(db, 'x', { runner: {} as never }))).toBe('runner');
    await expect(waitForSaga(db, 'x', { timeoutMs: -5 })).rejects.toThrow(
      /^timeoutMs: expected a number of ms > 0 and <= 2147483647, got -5$/,
    );
  });
});
