import { spawn } from 'node:child_process';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { migrate, type Db, type Tx } from '../db/index.ts';
import {
  defineSchedule,
  readSchedules,
  Scheduler,
  scheduleMigrations,
  waitForTriggeredRun,
  type ScheduleTick,
} from '../schedule/index.ts';
import { createTestDb, testDbBackend, type TestDb } from '../testing/index.ts';
import { ManualClock, systemClock, type Clock } from '../time/index.ts';
import { runCommand } from './cli-test-support.ts';
import { runScheduleCli, stillPendingExitCode } from './schedule-cli.ts';

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

/** The command on a manual clock: what it writes as now, and how long `--wait` waits. */
const scheduleAt = (clock: Clock, db: TestDb, ...argv: string[]): ReturnType<typeof runCommand> =>
  runCommand((args, io) => runScheduleCli(args, io, { clock }), db, ['schedule', ...argv]);

/**
 * A running scheduler of `nightly-report`, as it is defined where it runs, that looks at the rows
 * once an hour: only the notification of a run by hand wakes it within a test.
 */
async function startScheduler(db: Db, clock: Clock, fail?: string): Promise<void> {
  const nightly = defineSchedule({
    name: 'nightly-report',
    cron: '0 3 * * *',
    fire: async (tx: Tx, tick: ScheduleTick) => {
      if (fail !== undefined) throw new Error(fail);
      await tx.query('SELECT $1::text', [tick.key]);
    },
  });
  const scheduler = new Scheduler(db, { schedules: [nightly], clock, pollMs: 3_600_000 });
  await scheduler.start();
  cleanups.push(() => scheduler.stop({ drainMs: 1000 }));
}

/** Resolves once the command waits between two reads of the row: its poll timer is set. */
async function pausing(clock: ManualClock, timers: number): Promise<void> {
  while (clock.pendingTimers < timers) await new Promise((resolve) => setImmediate(resolve));
}

const start = Date.parse('2026-06-01T00:00:00Z');

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

  it('list: a run by hand pending, and the last one a scheduler did', async () => {
    const db = await setup();
    await db.query(
      `UPDATE keel_schedules SET triggers = 3, triggered_at = '2026-06-01T00:00:00Z', last_trigger = 2,
              last_trigger_done_at = '2026-05-31T12:00:00Z', last_trigger_error = 'Error: report service down'
        WHERE name = 'nightly-report'`,
    );
    await db.query(
      `UPDATE keel_schedules SET triggers = 1, last_trigger = 1, last_trigger_done_at = '2026-05-31T13:00:00Z'
        WHERE name = 'hourly-sync'`,
    );
    const { out } = await scheduleAt(new ManualClock(start), db, 'list');
    expect(out[3]).toBe('  last run by hand 1 fired at 2026-05-31T13:00:00.000Z');
    expect(out.slice(4)).toEqual([
      'nightly-report  cron 0 3 * * * UTC  waiting, run by hand asked at 2026-06-01T00:00:00.000Z',
      '  next 2999-01-01T03:00:00.000Z  last 2998-12-31T03:00:00.000Z  fired 12  given up 0',
      '  last run by hand 2 failed at 2026-05-31T12:00:00.000Z: Error: report service down',
    ]);
  });

  it('says so when there are no schedules', async () => {
    const db = await createTestDb();
    cleanups.push(() => db.close());
    await migrate(db, scheduleMigrations);
    expect(await schedule(db, 'list')).toEqual({ code: 0, out: [], err: ['no schedules'] });
  });
});

describe('keel schedule trigger --wait', () => {
  it('waits for the run and says when it fired', async () => {
    const db = await setup();
    const clock = new ManualClock(start);
    await startScheduler(db, clock);
    expect(await scheduleAt(clock, db, 'trigger', 'nightly-report', '--wait')).toEqual({
      code: 0,
      out: ['nightly-report: run 1 fired at 2026-06-01T00:00:00.000Z'],
      err: [
        'nightly-report: run 1 asked for at 2026-06-01T00:00:00.000Z; waiting up to 60 s for a scheduler to do it',
      ],
    });
  });

  it('exits 1 with the error of a run that failed', async () => {
    const db = await setup();
    const clock = new ManualClock(start);
    await startScheduler(db, clock, 'report service down');
    const { code, err } = await scheduleAt(clock, db, 'trigger', 'nightly-report', '--wait');
    expect(code).toBe(1);
    expect(err[1]).toBe(
      'nightly-report: run 1 failed at 2026-06-01T00:00:00.000Z: Error: report service down\n' +
        '(not retried: keel schedule trigger nightly-report asks for another run)',
    );
  });

  it(`exits ${stillPendingExitCode} when no scheduler did it within --timeout, saying it stays pending`, async () => {
    const db = await setup();
    const clock = new ManualClock(start);
    const command = scheduleAt(clock, db, 'trigger', 'nightly-report', '--wait', '--timeout', '2.5');
    await pausing(clock, 1);
    await clock.advance(1000);
    await pausing(clock, 1);
    await clock.advance(1000);
    await pausing(clock, 1);
    await clock.advance(500);
    const { code, err } = await command;
    expect(code).toBe(stillPendingExitCode);
    expect(err[0]).toMatch(/waiting up to 2\.5 s for a scheduler to do it$/);
    expect(err[1]).toBe(
      'nightly-report: run 1 not picked up within 2.5 s: no scheduler that defines the schedule has done it. ' +
        'The request stays pending: the next one that looks fires it (keel schedule list shows it)',
    );
    expect((await readSchedules(db, ['nightly-report']))[0]).toMatchObject({
      triggers: 1,
      triggeredAt: start,
    });
  });

  it('names what is wrong: an unknown schedule, a bad --timeout, a flag where it means nothing', async () => {
    const db = await setup();
    const clock = new ManualClock(start);
    expect(await scheduleAt(clock, db, 'trigger', 'weekly', '--wait')).toEqual({
      code: 1,
      out: [],
      err: ['no schedule named weekly (keel schedule list shows them)'],
    });
    const refused: [string[], string][] = [
      [
        ['trigger', 'nightly-report', '--wait', '--timeout', 'soon'],
        'KEEL_INVALID_ARGUMENT: --timeout: expected a number of seconds >= 0, such as 60 or 2.5, got "soon"',
      ],
      [
        ['trigger', 'nightly-report', '--wait', '--timeout=-1'],
        'KEEL_INVALID_ARGUMENT: --timeout: expected a number',
      ],
      [
        ['trigger', 'nightly-report', '--wait', '--timeout', '1e3'],
        'KEEL_INVALID_ARGUMENT: --timeout: expected a number',
      ],
      [
        ['trigger', 'nightly-report', '--timeout', '5'],
        'KEEL_INVALID_ARGUMENT: --timeout: expected --wait beside it: it is how long --wait waits',
      ],
      [
        ['pause', 'nightly-report', '--wait'],
        'KEEL_INVALID_ARGUMENT: --wait: expected only with trigger (keel schedule trigger <name> --wait)',
      ],
    ];
    for (const [argv, message] of refused) {
      const { code, err } = await scheduleAt(clock, db, ...argv);
      expect([code, err[0]]).toEqual([2, expect.stringContaining(message)]);
    }
    // Nothing was asked for by the commands refused.
    expect((await readSchedules(db)).map((row) => row.triggers)).toEqual([0, 0]);
  });
});

// The command as an operator runs it: its own process, its own connections to PostgreSQL.
const pgOnly = testDbBackend() !== 'pg';
describe('keel schedule trigger --wait, in a process of its own', () => {
  const keel = path.join(import.meta.dirname, 'keel.ts');
  const run = (db: TestDb, ...argv: string[]) =>
    new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
      const child = spawn(process.execPath, ['--import', 'tsx', keel, 'schedule', ...argv], {
        env: { ...process.env, KEEL_DB: 'pg', KEEL_DB_SCHEMA: db.schema },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
      child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      child.on('error', reject);
      child.on('close', (code) => resolve({ code, stdout, stderr }));
    });

  it.skipIf(pgOnly)(
    'hears of the run from a running scheduler, and exits 3 at the timeout without one' +
      (pgOnly ? ' (skipped: PGlite lives in one process; KEEL_DB=pg runs it)' : ''),
    async () => {
      const db = await setup();
      expect(await run(db, 'trigger', 'nightly-report', '--wait', '--timeout', '0')).toMatchObject({
        code: stillPendingExitCode,
        stderr: expect.stringContaining('The request stays pending') as unknown,
      });
      // A scheduler starting fires the run pending; the next one asked for is heard of at once.
      await startScheduler(db, systemClock);
      const pending = { schedule: 'nightly-report', run: 1, askedAt: new Date() };
      expect(await waitForTriggeredRun(db, pending, { timeoutMs: 20_000 })).toMatchObject({ kind: 'fired' });
      const started = Date.now();
      const fired = await run(db, 'trigger', 'nightly-report', '--wait', '--timeout', '20');
      expect(fired).toMatchObject({
        code: 0,
        stdout: expect.stringMatching(/^nightly-report: run 2 fired at \d{4}-/) as unknown,
      });
      expect(Date.now() - started).toBeLessThan(15_000);
    },
    30_000,
  );
});
