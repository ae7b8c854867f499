import { afterEach, describe, expect, it } from 'vitest';
import { migrate } from '../db/index.ts';
import { outboxMigrations } from '../outbox/index.ts';
import { createTestDb, type TestDb } from '../testing/index.ts';
import { ManualClock } from '../time/index.ts';
import { defineSaga } from './definition.ts';
import { getSaga } from './saga-admin.ts';
import { SagaRunner } from './saga-runner.ts';
import { deliverSagaReply, startSaga } from './saga-store.ts';
import { sagaMigrations } from './schema.ts';

const dbs: TestDb[] = [];
afterEach(async () => {
  for (const db of dbs.splice(0)) await db.close();
});

function asking(compensateOnFailure: boolean) {
  return defineSaga({
    name: `ask-${compensateOnFailure}`,
    version: 1,
    steps: [
      {
        name: 'reserve',
        compensateOnFailure,
        request: {
          destination: 'inventory',
          message: () => ({ type: 'inventory.reserve.v1', payload: {} }),
          replyDeadlineMs: 5000,
        },
        compensation: {
          command: {
            destination: 'inventory',
            message: () => ({ type: 'inventory.release.v1', payload: {} }),
          },
        },
      },
    ],
  });
}

describe('request steps', () => {
  it('an error reply compensates the step itself when it says compensateOnFailure, and only then', async () => {
    const db = await createTestDb();
    dbs.push(db);
    await migrate(db, [...outboxMigrations, ...sagaMigrations]);
    const clock = new ManualClock();
    for (const compensateOnFailure of [true, false]) {
      const saga = asking(compensateOnFailure);
      const runner = new SagaRunner({ db, sagas: [saga], clock });
      const { id } = await startSaga(db, saga, {}, { clock, id: `order-${compensateOnFailure}` });
      await runner.runDue();
      // The service applied part of the reservation, then refused.
      expect(
        await deliverSagaReply(
          db,
          { instanceId: id, step: 'reserve', ok: false, error: 'partly out of stock' },
          { clock },
        ),
      ).toBe(true);
      await runner.runDue();
      const { instance, history } = await getSaga(db, id);
      expect(instance).toMatchObject({
        state: 'COMPENSATED',
        failure: { message: 'partly out of stock', step: 'reserve' },
      });
      const { rows } = await db.query<{ type: string }>(
        `SELECT type FROM keel_outbox WHERE headers->>'keel-saga-instance' = $1 ORDER BY seq`,
        [id],
      );
      expect(rows.map((r) => r.type)).toEqual(
        compensateOnFailure ? ['inventory.reserve.v1', 'inventory.release.v1'] : ['inventory.reserve.v1'],
      );
      expect(history.some((h) => h.event === 'compensation-completed')).toBe(compensateOnFailure);
      await runner.stop();
    }
  });
});
