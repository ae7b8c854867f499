import { afterEach, describe, expect, it } from 'vitest';
import { migrate } from '../db/index.ts';
import { outboxMigrations } from '../outbox/index.ts';
import { createTestDb, type TestDb } from '../testing/index.ts';
import { ManualClock } from '../time/index.ts';
import { defineSaga } from './definition.ts';
import { getSaga } from './saga-admin.ts';
import { SagaRunner } from './saga-runner.ts';
import { deliverSagaReply, readInstance, startSaga, type SagaReply } from './saga-store.ts';
import { sagaMigrations } from './schema.ts';

const dbs: TestDb[] = [];
afterEach(async () => {
  for (const db of dbs.splice(0)) await db.close();
});

const asking = defineSaga({
  name: 'reply-input',
  version: 1,
  steps: [
    {
      name: 'reserve',
      request: {
        destination: 'inventory',
        message: () => ({ type: 'inventory.reserve.v1', payload: {} }),
        replyDeadlineMs: 5000,
      },
    },
  ],
});

async function waitingInstance(): Promise<{
  db: TestDb;
  clock: ManualClock;
  runner: SagaRunner;
  id: string;
}> {
  const db = await createTestDb();
  dbs.push(db);
  await migrate(db, [...outboxMigrations, ...sagaMigrations]);
  const clock = new ManualClock();
  const runner = new SagaRunner({ db, sagas: [asking], clock });
  const { id } = await startSaga(db, asking, {}, { clock, id: 'order-1' });
  await runner.runDue();
  expect((await readInstance(db, id))?.waitingFor).toBe('reserve');
  return { db, clock, runner, id };
}

describe('deliverSagaReply', () => {
  it('refuses a reply the instance cannot keep with KEEL_INVALID_ARGUMENT naming the field, and writes nothing', async () => {
    const { db, clock, runner, id } = await waitingInstance();
    const cycle: Record<string, unknown> = {};
    cycle.self = cycle;
    const to = { instanceId: id, step: 'reserve' };
    const refused: [unknown, string][] = [
      [{ ...to, ok: false }, 'reply.error'],
      [{ ...to, ok: false, error: 42 }, 'reply.error'],
      [{ ...to, ok: false, error: { message: 'out of stock' } }, 'reply.error'],
      [{ ...to, ok: false, error: 'out of\u0000stock' }, 'reply.error'],
      [{ ...to, ok: false, error: 'half an emoji \ud83d' }, 'reply.error'],
      [{ ...to, ok: true, result: 10n }, 'reply.result'],
      [{ ...to, ok: true, result: cycle }, 'reply.result'],
      [{ ...to, ok: true, result: () => 1 }, 'reply.result'],
      [{ ...to, ok: true, result: '\udc00 alone' }, 'reply.result'],
      [{ ...to, ok: true, result: { lines: ['ok', 'cut\u0000here'] } }, 'reply.result.lines.1'],
      [{ ...to, ok: true, result: { ['key\u0000']: 1 } }, 'reply.result.key\u0000'],
      [{ ...to, instanceId: `${id}\u0000`, ok: true }, 'reply.instanceId'],
      [{ ...to, step: 'reserve\ud83d', ok: true }, 'reply.step'],
      [{ ...to, ok: 'yes' }, 'reply.ok'],
    ];
    for (const [reply, field] of refused) {
      await expect(deliverSagaReply(db, reply as SagaReply, { clock })).rejects.toMatchObject({
        code: 'KEEL_INVALID_ARGUMENT',
        details: { field },
      });
    }
    const { instance, history } = await getSaga(db, id);
    expect(instance).toMatchObject({ state: 'RUNNING', waitingFor: 'reserve', reply: null });
    expect(history.some((h) => h.event === 'reply-received')).toBe(false);

    // Text that only looks like an escape, and a whole emoji, are kept as they are.
    const result = { note: 'a literal \\u0000 and \\ud83d', emoji: '\ud83d\ude00' };
    expect(await deliverSagaReply(db, { ...to, ok: true, result }, { clock })).toBe(true);
    await runner.runDue();
    expect(await readInstance(db, id)).toMatchObject({ state: 'COMPLETED', results: { reserve: result } });
    await runner.stop();
  });

  it('keeps only the reply itself: other fields on the object are not stored', async () => {
    const { db, clock, runner, id } = await waitingInstance();
    const reply = {
      instanceId: id,
      step: 'reserve',
      ok: false as const,
      error: 'out of stock',
      headers: { trace: 'cut\u0000here', size: 10n },
    };
    expect(await deliverSagaReply(db, reply, { clock })).toBe(true);
    expect((await readInstance(db, id))?.reply).toEqual({
      instanceId: id,
      step: 'reserve',
      ok: false,
      error: 'out of stock',
    });
    await runner.runDue();
    expect(await readInstance(db, id)).toMatchObject({
      state: 'COMPENSATED',
      failure: { message: 'out of stock', step: 'reserve' },
    });
    await runner.stop();
  });
});
