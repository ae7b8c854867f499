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

describe('startSaga', () => {
  it('refuses an input the instance cannot keep with KEEL_INVALID_ARGUMENT naming where, and writes nothing', async () => {
    const db = await createTestDb();
    dbs.push(db);
    await migrate(db, sagaMigrations);
    const cycle: Record<string, unknown> = {};
    cycle.self = cycle;
    const refused: [unknown, string][] = [
      [10n, 'input'],
      [cycle, 'input'],
      [() => 1, 'input'],
      [{ lines: ['ok', 'cut\u0000here'] }, 'input.lines.1'],
      [{ title: 'half an emoji \ud83d' }, 'input.title'],
    ];
    for (const [input, field] of refused) {
      await expect(startSaga(db, steps, input, { id: 'bad' })).rejects.toMatchObject({
        code: 'KEEL_INVALID_ARGUMENT',
        details: { field },
      });
    }
    expect(await readInstance(db, 'bad')).toBeUndefined();
    // Text that only looks like an escape, and a whole emoji, are kept as they are.
    const fine = { note: 'a literal \\u0000 and \\ud83d', emoji: '\ud83d\ude00' };
    await startSaga(db, steps, fine, { id: 'fine' });
    expect((await readInstance(db, 'fine'))?.input).toEqual(fine);
  });
});
