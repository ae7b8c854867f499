import { afterEach, describe, expect, it } from 'vitest';
import { migrate } from '../db/index.ts';
import { createEnvelope, PgQueue, pgQueueMigrations } from '../messaging/index.ts';
import { addToOutbox, outboxMigrations } from '../outbox/index.ts';
import { createTestDb, type TestDb } from '../testing/index.ts';
import { runCommand } from './cli-test-support.ts';
import { runCli } from './main.ts';

const dbs: TestDb[] = [];
afterEach(async () => {
  for (const db of dbs.splice(0)) await db.close();
});

const cli = (db: TestDb, ...argv: string[]): ReturnType<typeof runCommand> => runCommand(runCli, db, argv);

async function setup(): Promise<TestDb> {
  const db = await createTestDb();
  dbs.push(db);
  await migrate(db, [...pgQueueMigrations, ...outboxMigrations]);
  return db;
}

describe('keel CLI', () => {
  it('outbox status, drain and status again', async () => {
    const db = await setup();
    await db.transaction((tx) =>
      addToOutbox(
        tx,
        'jobs',
        [1, 2, 3].map((n) => createEnvelope({ type: 'job.run.v1', payload: n })),
      ),
    );
    const before = await cli(db, 'outbox', 'status');
    expect(before.code).toBe(0);
    expect(before.out).toContain('backlog    3');
    const drain = await cli(db, 'outbox', 'drain');
    expect(drain.code).toBe(0);
    expect(drain.err).toEqual(['drained 3/3']);
    expect(drain.out).toEqual(['published 3; backlog 0, parked 0']);
    expect((await cli(db, 'queue', 'depth', 'jobs')).out).toEqual(['3']);
  });

  it('outbox retry un-parks parked rows', async () => {
    const db = await setup();
    await db.transaction((tx) => addToOutbox(tx, 'jobs', createEnvelope({ type: 'job.run.v1', payload: 1 })));
    await db.query(`UPDATE keel_outbox SET parked_at = now(), attempts = 10, last_error = 'broker down'`);
    expect((await cli(db, 'outbox', 'status')).out).toContain('parked     1');
    expect((await cli(db, 'outbox', 'retry')).out).toEqual(['1 parked row(s) will be published again']);
    expect((await cli(db, 'outbox', 'status')).out).toContain('backlog    1');
  });

  it('queue redrive moves dead letters back', async () => {
    const db = await setup();
    const queue = new PgQueue(db);
    await queue.publish('jobs.dead-letter', [
      createEnvelope({ type: 'job.run.v1', payload: 1, headers: { 'x-dead-letter-source': 'jobs' } }),
    ]);
    expect((await cli(db, 'queue', 'redrive', 'jobs.dead-letter')).out).toEqual([
      'redrove 1 message(s) from jobs.dead-letter',
    ]);
    expect(await queue.depth('jobs')).toBe(1);
  });

  it('names a bad argument and exits non-zero; prints usage for an unknown command', async () => {
    const db = await setup();
    const bad = await cli(db, 'queue', 'redrive', 'jobs.dead-letter', '--limit', '0');
    expect(bad.code).toBe(1);
    expect(bad.err[0]).toMatch(/KEEL_INVALID_ARGUMENT: limit: expected an integer >= 1/);
    const unknown = await cli(db, 'frobnicate', 'now');
    expect(unknown.code).toBe(2);
    expect(unknown.err[0]).toMatch(/unknown command: frobnicate now/);
  });
});
