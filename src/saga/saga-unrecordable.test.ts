// What the runner cannot record must end the step (or park the compensation), never leave the
// instance leased and failing on every runner that takes it over after the lease runs out.
import { afterEach, describe, expect, it } from 'vitest';
import { migrate } from '../db/index.ts';
import { outboxMigrations } from '../outbox/index.ts';
import { advanceUntil, createTestDb, type TestDb } from '../testing/index.ts';
import { constantBackoff, ManualClock } from '../time/index.ts';
import { defineSaga, type SagaStep } from './definition.ts';
import { getSaga } from './saga-admin.ts';
import { SagaRunner } from './saga-runner.ts';
import { startSaga } from './saga-store.ts';
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

const fast = { maxAttempts: 2, backoff: constantBackoff(1) };
/** A first step that records its compensations. */
const undone: string[] = [];
const first: SagaStep = {
  name: 'first',
  action: async () => 'ok',
  compensation: async (context) => void undone.push(context.idempotencyKey),
};

async function run(
  db: TestDb,
  clock: ManualClock,
  saga: ReturnType<typeof defineSaga>,
): Promise<{ id: string; errors: unknown[] }> {
  const { id } = await startSaga(db, saga, {}, { clock });
  const runner = new SagaRunner({ db, sagas: [saga], clock, leaseMs: 1000 });
  const errors: unknown[] = [];
  runner.events.on('error', ({ error }) => errors.push(error));
  await advanceUntil(clock, runner.runDue());
  // A lease length later, an instance left leased would be taken over (and fail again).
  await clock.advance(1001);
  await advanceUntil(clock, runner.runDue());
  await runner.stop();
  return { id, errors };
}

describe('values the runner cannot record', () => {
  it('a request whose message function throws, or gives no payload, fails its step for good: the completed steps are compensated', async () => {
    const { db, clock } = await setup();
    const messages = {
      throws: (): never => {
        throw new Error('no sku in the input');
      },
      'no-payload': () => ({ type: 'svc.do.v1', payload: undefined }),
    };
    for (const [name, message] of Object.entries(messages)) {
      undone.length = 0;
      const saga = defineSaga({
        name: `bad-request-${name}`,
        version: 1,
        steps: [first, { name: 'ask', request: { destination: 'svc', message, replyDeadlineMs: 1000 } }],
      });
      const { id, errors } = await run(db, clock, saga);
      expect(errors).toEqual([]);
      const { instance, history } = await getSaga(db, id);
      expect(instance).toMatchObject({ state: 'COMPENSATED', leaseOwner: null, failure: { step: 'ask' } });
      expect(instance.failure!.message).toMatch(
        name === 'throws'
          ? /^no sku in the input$/
          : /^the command of saga step ask \(action\)\.payload: expected a JSON value/,
      );
      expect(undone).toEqual([`${id}:first:compensation`]);
      expect(history.filter((h) => h.event === 'step-failed')).toHaveLength(1);
    }
    const { rows } = await db.query('SELECT 1 FROM keel_outbox');
    expect(rows).toEqual([]);
  });

  it('a compensation command whose message function throws parks the instance with the error', async () => {
    const { db, clock } = await setup();
    const saga = defineSaga({
      name: 'bad-undo',
      version: 1,
      steps: [
        {
          name: 'reserve',
          action: async () => 'reserved',
          compensation: {
            command: {
              destination: 'inventory',
              message: () => {
                throw new Error('cannot build the release');
              },
            },
          },
        },
        { name: 'fail', action: () => Promise.reject(new Error('no')), retry: { maxAttempts: 1 } },
      ],
    });
    const { id, errors } = await run(db, clock, saga);
    expect(errors).toEqual([]);
    expect((await getSaga(db, id)).instance).toMatchObject({
      state: 'NEEDS_ATTENTION',
      step: 0,
      leaseOwner: null,
      lastError: { step: 'reserve', message: 'cannot build the release' },
    });
    const { rows } = await db.query('SELECT 1 FROM keel_outbox');
    expect(rows).toEqual([]);
  });

  it('a result jsonb cannot store (a string cut inside an emoji) fails the step once, naming it, and undoes it with the others, instead of looping', async () => {
    const { db, clock } = await setup();
    undone.length = 0;
    let calls = 0;
    const saga = defineSaga({
      name: 'bad-result',
      version: 1,
      steps: [
        first,
        {
          name: 'describe',
          retry: fast,
          action: async () => {
            calls += 1;
            return { title: 'party 🎉'.slice(0, 7) };
          },
          // It took effect: only its result cannot be kept, so it is undone with the others.
          compensation: async (context) => void undone.push(context.idempotencyKey),
        },
      ],
    });
    const { id, errors } = await run(db, clock, saga);
    expect(errors).toEqual([]);
    expect(calls).toBe(1);
    const { instance } = await getSaga(db, id);
    expect(instance).toMatchObject({
      state: 'COMPENSATED',
      failure: { step: 'describe', code: 'KEEL_INVALID_ARGUMENT' },
    });
    expect(instance.failure!.message).toMatch(/result of step describe\.title/);
    expect(undone).toEqual([`${id}:describe:compensation`, `${id}:first:compensation`]);
  });

  it('an error whose message jsonb cannot store is recorded with U+FFFD in place of what it cannot hold', async () => {
    const { db, clock } = await setup();
    const saga = defineSaga({
      name: 'bad-errors',
      version: 1,
      steps: [
        {
          name: 'reserve',
          action: async () => 'ok',
          compensationRetry: { maxAttempts: 1 },
          compensation: () => Promise.reject(new Error('refund: \u0000 from the driver')),
        },
        {
          name: 'charge',
          retry: { maxAttempts: 1 },
          action: () => Promise.reject(new Error('declined 💳'.slice(0, 10))),
        },
      ],
    });
    const { id, errors } = await run(db, clock, saga);
    expect(errors).toEqual([]);
    const { instance, history } = await getSaga(db, id);
    expect(instance).toMatchObject({
      state: 'NEEDS_ATTENTION',
      failure: { step: 'charge', message: 'declined \ufffd' },
      lastError: { step: 'reserve', message: 'refund: \ufffd from the driver' },
    });
    expect(history.find((h) => h.event === 'step-failed')?.detail).toMatchObject({
      message: 'declined \ufffd',
    });
  });
});
