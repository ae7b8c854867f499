import { afterEach, describe, expect, it } from 'vitest';
import { migrate } from '../db/index.ts';
import { readSchedules, scheduleMigrations } from '../schedule/index.ts';
import { createTestDb, type TestDb } from '../testing/index.ts';
import { runCommand } from './cli-test-support.ts';
import { runScheduleCli } from './schedule-cli.ts';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** Two schedules: `nightly-report` waiting far ahead, `hourly-sync` failing its tick with a retry planned. */
async function setup(): Promise<TestDb> {
  const db = await createTestDb();
  cleanups.push(() => db.close());
  await migrate(db, scheduleMigrations);
  await db.query(
    `INSERT INTO keel_schedules (name, spec, next_tick, last_tick, fired)
     VALUES ('nightly-report', 'cron 0 3 * * * UTC', '2999-01-01T03:00:00Z', '2998-12-31T03:00:00Z', 12)`,
  );
  await db.query(
    `INSERT INTO keel_schedules (name, spec, next_tick, attempts, retry_at, last_error, failed)
     VALUES ('hourly-sync', 'every 3600000', '2026-01-01T10:00:00Z', 2, '2999-01-01T00:00:00Z', 'Error: upstream down', 1)`,
  );
  return db;
}

const schedule = (db: TestDb, ...argv: string[]): ReturnType<typeof runCommand> =>
  runCommand(runScheduleCli, db, ['schedule', ...argv]);

describe('keel schedule', () => {
  it('list: each schedule’s timing, state, next and last tick, counts and a failing tick’s error', async () => {
    const db = await setup();
    const { code, out } = await schedule(db, 'list');
    expect(code).toBe(0);
    expect(out[0]).toMatch(/^hourly-sync {2}every 3600000 {2}due for \d+\.\d s$/);
    expect(out[1]).toBe('  next 2026-01-01T10:00:00.000Z  last -  fired 0  given up 1');
    expect(out[2]).toBe('  attempt 2 failed, retried at 2999-01-01T00:00:00.000Z: Error: upstream down');
    expect(out.slice(3)).toEqual([
      'nightly-report  cron 0 3 * * * UTC  waiting',
      '  next 2999-01-01T03:00:00.000Z  last 2998-12-31T03:00:00.000Z  fired 12  given up 0',
    ]);
    // A run by hand that failed leaves its error without an attempt of a tick.
    await db.query(`UPDATE keel_schedules SET attempts = 0, retry_at = NULL WHERE name = 'hourly-sync'`);
    expect((await schedule(db, 'list')).out[2]).toBe('  last failure: Error: upstream down');
  });

  it('pause, resume and remove change the named schedule and say so', async () => {
    const db = await setup();
    expect(await schedule(db, 'pause', 'nightly-report')).toMatchObject({
      code: 0,
      out: ['nightly-report: paused'],
    });
    expect((await schedule(db, 'list')).out[3]).toMatch(
      /^nightly-report {2}cron 0 3 \* \* \* UTC {2}paused since \d{4}-/,
    );
    expect((await readSchedules(db, ['nightly-report']))[0]!.pausedAt).not.toBeNull();
    expect(await schedule(db, 'resume', 'nightly-report')).toMatchObject({
      code: 0,
      out: ['nightly-report: resumed'],
    });
    expect((await readSchedules(db, ['nightly-report']))[0]!.pausedAt).toBeNull();
    expect(await schedule(db, 'trigger', 'nightly-report')).toMatchObject({
      code: 0,
      out: ['nightly-report: run asked for: the next scheduler that defines it fires it once'],
    });
    expect((await readSchedules(db, ['nightly-report']))[0]!.triggeredAt).not.toBeNull();
    expect((await schedule(db, 'list')).out[3]).toMatch(
      /^nightly-report {2}cron 0 3 \* \* \* UTC {2}waiting, run by hand asked at \d{4}-/,
    );
    expect(await schedule(db, 'remove', 'hourly-sync')).toMatchObject({
      code: 0,
      out: ['hourly-sync: removed'],
    });
    expect((await readSchedules(db)).map((row) => row.name)).toEqual(['nightly-report']);
  });

  it('names what is wrong: an unknown schedule, a missing name, an unknown command or flag', async () => {
    const db = await setup();
    expect(await schedule(db, 'pause', 'weekly')).toMatchObject({
      code: 1,
      err: ['no schedule named weekly (keel schedule list shows them)'],
    });
    expect((await schedule(db, 'resume')).err[0]).toMatch(
      /^KEEL_INVALID_ARGUMENT: name: expected the schedule's name/,
    );
    expect((await schedule(db, 'fire', 'nightly-report')).code).toBe(2);
    expect((await schedule(db, 'list', '--all')).code).toBe(2);
    expect(await schedule(db, '--help')).toMatchObject({
      code: 0,
      out: [expect.stringContaining('keel schedule list')],
    });
  });

  it('says so when there are no schedules', async () => {
    const db = await createTestDb();
    cleanups.push(() => db.close());
    await migrate(db, scheduleMigrations);
    expect(await schedule(db, 'list')).toEqual({ code: 0, out: [], err: ['no schedules'] });
  });
});
