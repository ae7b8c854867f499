import { afterEach, describe, expect, it } from 'vitest';
import { migrate } from '../db/index.ts';
import { createTestDb, type TestDb } from '../testing/index.ts';
import { ManualClock } from '../time/index.ts';
import { defineSaga } from './definition.ts';
import { SagaRunner } from './saga-runner.ts';
import { readInstance, readWaitedInstances, startSaga } from './saga-store.ts';
import { sagaMigrations } from './schema.ts';

const dbs: TestDb[] = [];
afterEach(async () => {
  for (const db of dbs.splice(0)) await db.close();
});

// Step names jsonb would sort otherwise (shorter keys first): the read puts them back in step order.
const steps = defineSaga({
  name: 'read',
  version: 1,
  steps: [
    { name: 'longer', action: async () => 1 },
    { name: 'b', action: async () => 2 },
  ],
});

describe('readWaitedInstances', () => {
  it('reads the state of many ids in one statement, and an ended instance whole, as readInstance reads it; absent ids are absent', async () => {
    const db = await createTestDb();
    dbs.push(db);
    await migrate(db, sagaMigrations);
    const clock = new ManualClock();
    await startSaga(db, steps, { n: 1 }, { clock, id: 'done' });
    const runner = new SagaRunner({ db, sagas: [steps], clock });
    await runner.runDue();
    await runner.stop();
    await startSaga(db, steps, { n: 2 }, { clock, id: 'running' });

    const found = await readWaitedInstances(db, ['done', 'running', 'missing']);
    expect([...found.keys()].sort()).toEqual(['done', 'running']);
    expect(found.get('done')).toEqual({ state: 'COMPLETED', ended: await readInstance(db, 'done') });
    expect(Object.keys(found.get('done')!.ended!.results)).toEqual(['longer', 'b']);
    expect(found.get('running')).toEqual({ state: 'RUNNING', ended: undefined });
    expect(await readWaitedInstances(db, [])).toEqual(new Map());
  });
});
