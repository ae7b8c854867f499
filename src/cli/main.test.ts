import { describe, expect, it } from 'vitest';
import { createEnvelope, PgQueue } from '../messaging/index.ts';
import { addToOutbox } from '../outbox/index.ts';
import { outboxCliTests } from './cli-test-support.ts';

const { setup, cli } = outboxCliTests();

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

  it('outbox status says nothing of the WAL outbox without its slot, and names a missing --slot', async () => {
    const db = await setup();
    // No replication slot here (PGlite has no logical decoding): the table outbox's lines only.
    const status = await cli(db, 'outbox', 'status');
    expect(status.code).toBe(0);
    expect(status.out.map((line) => line.split(/\s+/)[0])).toEqual([
      'backlog',
      'parked',
      'published',
      'oldest',
    ]);
    expect(status.err).toEqual([]);
    const named = await cli(db, 'outbox', 'status', '--slot', 'orders_wal');
    expect(named.code).toBe(0);
    expect(named.out.at(-1)).toBe('wal slot   orders_wal (no such replication slot)');
    const bad = await cli(db, 'outbox', 'status', '--slot', 'Orders-WAL');
    expect(bad.code).toBe(1);
    expect(bad.err[0]).toMatch(/KEEL_INVALID_ARGUMENT: slotName: expected lower-case letters/);
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

  it('on a database without the outbox, names the missing table, the schema and where to look', async () => {
    const db = await setup([]);
    const status = await cli(db, 'outbox', 'status');
    expect(status.code).toBe(1);
    expect(status.err).toEqual([
      `relation "keel_outbox" does not exist in schema ${db.schema}: is this the service's database ` +
        '(KEEL_DB, DATABASE_URL, KEEL_DATA_DIR), and has the service started once, to run its migrations?',
    ]);
  });
});
