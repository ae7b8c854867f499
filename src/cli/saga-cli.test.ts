import { afterEach, describe, expect, it } from 'vitest';
import { migrate } from '../db/index.ts';
import { defineSaga, SagaRunner, sagaMigrations, startSaga } from '../saga/index.ts';
import { createTestDb, type TestDb } from '../testing/index.ts';
import { runCommand } from './cli-test-support.ts';
import { ManualClock } from '../time/index.ts';
import { runSagaCli } from './saga-cli.ts';

const dbs: TestDb[] = [];
afterEach(async () => {
  for (const db of dbs.splice(0)) await db.close();
});

const cli = (db: TestDb, ...argv: string[]): ReturnType<typeof runCommand> =>
  runCommand(runSagaCli, db, argv);

describe('keel saga', () => {
  it('lists by state, shows the history, and retries a parked compensation', async () => {
    const db = await createTestDb();
    dbs.push(db);
    await migrate(db, sagaMigrations);
    // The CLI stamps its retry with the system clock: start the manual one at the same instant
    // (and move it past the retry's stamp before running).
    const clock = new ManualClock(Date.now());
    let refundWorks = false;
    const saga = defineSaga({
      name: 'pay',
      version: 1,
      steps: [
        {
          name: 'charge',
          action: async () => 'ch_1',
          compensation: async () => {
            if (!refundWorks) throw new Error('refund refused');
          },
          compensationRetry: { maxAttempts: 1 },
        },
        {
          name: 'confirm',
          action: () => Promise.reject(new Error('out of stock')),
          retry: { maxAttempts: 1 },
        },
      ],
    });
    await startSaga(db, saga, { amount: 5 }, { clock, id: 'pay-1' });
    // Of a saga no runner here runs: it stays RUNNING.
    const other = defineSaga({ name: 'other', version: 1, steps: [{ name: 'x', action: async () => 1 }] });
    await startSaga(db, other, {}, { clock, id: 'other-1' });
    await new SagaRunner({ db, sagas: [saga], clock }).runDue();

    const parked = await cli(db, 'saga', 'list', '--state', 'needs_attention');
    expect(parked.code).toBe(0);
    expect(parked.out).toHaveLength(1);
    expect(parked.out[0]).toMatch(/^pay-1 +pay@1 +NEEDS_ATTENTION +step 0 /);
    expect((await cli(db, 'saga', 'list')).out).toHaveLength(2);

    const shown = await cli(db, 'saga', 'show', 'pay-1');
    expect(shown.code).toBe(0);
    expect(shown.out).toContain('state      NEEDS_ATTENTION');
    expect(shown.out).toContain('results    {"charge":"ch_1"}');
    expect(shown.out.find((l) => l.startsWith('parked on'))).toMatch(/refund refused/);
    const events = shown.out.slice(shown.out.indexOf('history') + 1).map((l) => l.trim().split(/\s+/)[1]);
    expect(events).toEqual([
      'created',
      'step-completed',
      'step-failed',
      'state',
      'compensation-failed',
      'state',
    ]);

    refundWorks = true;
    expect((await cli(db, 'saga', 'retry', 'pay-1')).out).toEqual(['pay-1 will resume compensating']);
    await clock.advance(60_000);
    await new SagaRunner({ db, sagas: [saga], clock }).runDue();
    expect((await cli(db, 'saga', 'list', '--state', 'COMPENSATED')).out[0]).toMatch(/^pay-1 /);
  });

  it('names bad input and exits non-zero', async () => {
    const db = await createTestDb();
    dbs.push(db);
    await migrate(db, sagaMigrations);
    const bad = await cli(db, 'saga', 'list', '--state', 'DONE');
    expect(bad.code).toBe(1);
    expect(bad.err[0]).toMatch(/^KEEL_INVALID_ARGUMENT: --state: expected RUNNING, COMPENSATING/);
    expect((await cli(db, 'saga', 'show', 'nope')).err[0]).toMatch(/^KEEL_NOT_FOUND: saga instance nope/);
    expect((await cli(db, 'saga', 'retry')).err[0]).toMatch(/^KEEL_INVALID_ARGUMENT: id:/);
    expect((await cli(db, 'saga', 'frobnicate')).code).toBe(2);
  });
});
