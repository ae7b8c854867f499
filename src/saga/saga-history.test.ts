import { afterEach, describe, expect, expectTypeOf, it } from 'vitest';
import { migrate } from '../db/index.ts';
import { outboxMigrations } from '../outbox/index.ts';
import { advanceUntil, createTestDb, type TestDb } from '../testing/index.ts';
import { constantBackoff, ManualClock } from '../time/index.ts';
import { defineSaga } from './definition.ts';
import { getSaga, listSagas, retrySaga } from './saga-admin.ts';
import type { SagaHistoryEntry, SagaHistoryEvent, SagaHistoryKinds } from './saga-history.ts';
import { SagaRunner } from './saga-runner.ts';
import { deliverSagaReply, startSaga, type SagaState, type StoredError } from './saga-store.ts';
import { sagaMigrations } from './schema.ts';

const dbs: TestDb[] = [];
afterEach(async () => {
  for (const db of dbs.splice(0)) await db.close();
});

async function setup(): Promise<{ db: TestDb; clock: ManualClock }> {
  const db = await createTestDb();
  dbs.push(db);
  await migrate(db, [...outboxMigrations, ...sagaMigrations]);
  return { db, clock: new ManualClock() };
}

describe('SagaHistoryEntry types', () => {
  it('narrows on event: a failure’s detail is a StoredError and its step a string, without a cast', () => {
    expectTypeOf<
      Extract<SagaHistoryEntry, { event: 'step-failed' }>['detail']
    >().toEqualTypeOf<StoredError>();
    expectTypeOf<
      Extract<SagaHistoryEntry, { event: 'compensation-failed' }>['detail']
    >().toEqualTypeOf<StoredError>();
    expectTypeOf<Extract<SagaHistoryEntry, { event: 'step-failed' }>['step']>().toEqualTypeOf<string>();
    expectTypeOf<Extract<SagaHistoryEntry, { event: 'state' }>['detail']>().toEqualTypeOf<{
      from: SagaState;
      to: SagaState;
    }>();
    expectTypeOf<Extract<SagaHistoryEntry, { event: 'step-completed' }>['detail']>().toEqualTypeOf<null>();
    expectTypeOf<SagaHistoryEntry['event']>().toEqualTypeOf<SagaHistoryEvent>();

    const message = (entry: SagaHistoryEntry): string | undefined => {
      // @ts-expect-error -- not narrowed: detail may be null or another kind's
      void entry.detail.message;
      if (entry.event !== 'step-failed') return undefined;
      expectTypeOf(entry.detail).toEqualTypeOf<StoredError>();
      return `${entry.step}: ${entry.detail.message}`;
    };
    expect(message).toBeTypeOf('function');
  });

  it('keeps the fields every entry had, so code written against the old shape still reads them', () => {
    expectTypeOf<SagaHistoryEntry['seq']>().toEqualTypeOf<number>();
    expectTypeOf<SagaHistoryEntry['at']>().toEqualTypeOf<Date>();
    expectTypeOf<SagaHistoryEntry['step']>().toEqualTypeOf<string | null>();
    expectTypeOf<SagaHistoryEntry['attempt']>().toEqualTypeOf<number | null>();
    expectTypeOf<SagaHistoryEntry['owner']>().toEqualTypeOf<string | null>();
  });
});

/** What each kind's columns hold at runtime: the same table as `SagaHistoryKinds`, checked on real rows. */
const shapes: { [K in SagaHistoryEvent]: Record<keyof SagaHistoryKinds[K], (value: unknown) => boolean> } = {
  created: {
    step: isNull,
    attempt: isNull,
    owner: isNull,
    detail: has({ saga: 'string', version: 'number' }),
  },
  'lease-taken-over': {
    step: isNull,
    attempt: isNull,
    owner: isString,
    detail: has({ from: 'string', epoch: 'number' }),
  },
  'step-completed': { step: isString, attempt: isNumber, owner: isString, detail: isNull },
  'step-failed': { step: isString, attempt: isNumber, owner: isString, detail: has({ message: 'string' }) },
  'command-sent': {
    step: isString,
    attempt: isNumber,
    owner: isString,
    detail: (d) =>
      has({ messageId: 'string', deadlineAt: 'string' })(d) &&
      !Number.isNaN(Date.parse((d as { deadlineAt: string }).deadlineAt)),
  },
  'reply-received': { step: isString, attempt: isNull, owner: isNull, detail: has({ ok: 'boolean' }) },
  'compensation-completed': { step: isString, attempt: isNumber, owner: isString, detail: isNull },
  'compensation-failed': {
    step: isString,
    attempt: isNumber,
    owner: isString,
    detail: has({ message: 'string' }),
  },
  completed: { step: isNull, attempt: isNull, owner: isString, detail: isNull },
  compensated: { step: isNull, attempt: isNull, owner: isString, detail: isNull },
  state: { step: isNull, attempt: isNull, owner: isString, detail: has({ from: 'string', to: 'string' }) },
  'retried-by-operator': { step: isNull, attempt: isNull, owner: isString, detail: isNull },
};

function isNull(value: unknown): boolean {
  return value === null;
}
function isString(value: unknown): boolean {
  return typeof value === 'string';
}
function isNumber(value: unknown): boolean {
  return typeof value === 'number';
}
function has(fields: Record<string, string>): (value: unknown) => boolean {
  return (value) =>
    value !== null &&
    typeof value === 'object' &&
    Object.entries(fields).every(
      ([field, type]) => typeof (value as Record<string, unknown>)[field] === type,
    );
}

/** The columns of `entry` that do not hold what its kind says, as `event.column`. */
function mismatches(entry: SagaHistoryEntry): string[] {
  const shape = shapes[entry.event] as Record<string, (value: unknown) => boolean>;
  return Object.entries(shape)
    .filter(([column, check]) => !check((entry as unknown as Record<string, unknown>)[column]))
    .map(([column]) => `${entry.event}.${column}`);
}

describe('getSaga', () => {
  it('returns every kind of history entry the writers produce, each holding what its type says', async () => {
    const { db, clock } = await setup();
    let refundWorks = false;
    let stalls = 0;
    let release: (() => void) | undefined;
    const saga = defineSaga({
      name: 'kinds',
      version: 1,
      steps: [
        {
          name: 'ask',
          request: {
            destination: 'svc',
            message: () => ({ type: 'svc.do.v1', payload: {} }),
            replyDeadlineMs: 1000,
          },
        },
        {
          name: 'charge',
          timeoutMs: 60_000,
          action: async () => {
            // The first run stalls until its lease is taken over; the second one completes.
            if (stalls++ === 0) await new Promise<void>((resolve) => (release = resolve));
            return 'charged';
          },
          compensation: async () => {
            if (!refundWorks) throw new Error('refund refused');
          },
          compensationRetry: { maxAttempts: 1 },
        },
        { name: 'ship', action: () => Promise.reject(new Error('no carrier')), retry: { maxAttempts: 1 } },
      ],
    });
    const done = defineSaga({ name: 'done', version: 1, steps: [{ name: 'only', action: async () => 1 }] });
    const a = new SagaRunner({ db, sagas: [saga, done], clock, owner: 'a', leaseMs: 1000 });
    const b = new SagaRunner({ db, sagas: [saga, done], clock, owner: 'b', leaseMs: 1000 });
    const { id } = await startSaga(db, saga, {}, { clock });
    await a.runDue();
    expect(await deliverSagaReply(db, { instanceId: id, step: 'ask', ok: true }, { clock })).toBe(true);
    const aRun = a.runDue();
    await expect.poll(() => stalls).toBe(1);
    await clock.advance(1001);
    await advanceUntil(clock, b.runDue());
    release!();
    await aRun;
    refundWorks = true;
    await retrySaga(db, id, { clock, by: 'operator' });
    await advanceUntil(clock, b.runDue());
    const other = await startSaga(db, done, {}, { clock });
    await b.runDue();

    const history = [...(await getSaga(db, id)).history, ...(await getSaga(db, other.id)).history];
    expect(new Set(history.map((h) => h.event))).toEqual(new Set(Object.keys(shapes)));
    expect(history.flatMap(mismatches)).toEqual([]);
    await a.stop();
    await b.stop();
  });

  it('returns results in the order the steps completed, the definition’s, not jsonb’s key order', async () => {
    const { db, clock } = await setup();
    const seenByLast: string[][] = [];
    // jsonb orders keys by length, then bytes: ship, charge, reserve-stock.
    const saga = defineSaga({
      name: 'ordered',
      version: 1,
      steps: [
        { name: 'reserve-stock', action: async () => 1 },
        { name: 'charge', action: async () => 2 },
        {
          name: 'ship',
          request: {
            destination: 'carrier',
            message: () => ({ type: 'carrier.ship.v1', payload: {} }),
            replyDeadlineMs: 5000,
          },
        },
        {
          name: 'notify',
          retry: { maxAttempts: 1, backoff: constantBackoff(0) },
          action: async (context) => {
            seenByLast.push(Object.keys(context.results));
          },
        },
      ],
    });
    const runner = new SagaRunner({ db, sagas: [saga], clock });
    const { id } = await startSaga(db, saga, {}, { clock });
    await runner.runDue();
    await deliverSagaReply(db, { instanceId: id, step: 'ship', ok: true, result: 3 }, { clock });
    // The runner picks the instance up again from the database, results as stored.
    await runner.runDue();

    const stored = await db.query<{ keys: string[] }>(
      'SELECT array(SELECT jsonb_object_keys(results)) AS keys FROM keel_saga_instances WHERE id = $1',
      [id],
    );
    expect(stored.rows[0]!.keys).toEqual(['ship', 'charge', 'notify', 'reserve-stock']);
    const inOrder = ['reserve-stock', 'charge', 'ship', 'notify'];
    expect(Object.keys((await getSaga(db, id)).instance.results)).toEqual(inOrder);
    expect(Object.keys((await listSagas(db))[0]!.results)).toEqual(inOrder);
    expect(seenByLast).toEqual([['reserve-stock', 'charge', 'ship']]);
    await runner.stop();
  });
});
