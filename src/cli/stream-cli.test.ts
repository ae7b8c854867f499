import { afterEach, describe, expect, it } from 'vitest';
import { migrate } from '../db/index.ts';
import { createEnvelope, PgStream, pgStreamMigrations } from '../messaging/index.ts';
import { createTestDb, type TestDb } from '../testing/index.ts';
import { runCommand } from './cli-test-support.ts';
import { runStreamCli } from './stream-cli.ts';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** A stream of `entries` entries, and a projection `orders-model` that has applied the first `applied`. */
async function setup(entries: number, applied: number): Promise<TestDb> {
  const db = await createTestDb();
  cleanups.push(() => db.close());
  await migrate(db, pgStreamMigrations);
  const stream = new PgStream(db);
  await stream.append(
    'orders',
    Array.from({ length: entries }, (_, n) => createEnvelope({ type: 'order.placed.v1', payload: { n } })),
  );
  await db.query(
    `INSERT INTO keel_stream_positions (projection, stream, position) VALUES ('orders-model', 'orders', $1)`,
    [applied],
  );
  return db;
}

const stream = (db: TestDb, ...argv: string[]): ReturnType<typeof runCommand> =>
  runCommand(runStreamCli, db, ['stream', ...argv]);

describe('keel stream', () => {
  it('status: each stream’s bounds and each projection’s position and lag', async () => {
    const db = await setup(10, 4);
    const { code, out } = await stream(db, 'status');
    expect(code).toBe(0);
    expect(out[0]).toBe('orders  first 1  last 10  entries 10');
    expect(out[1]).toMatch(/^ {2}orders-model {2}position 4 {2}lag 6 {2}updated \d{4}-/);
    expect((await stream(db, 'status', 'nothing')).code).toBe(1);
  });

  it('trim: deletes the oldest entries every bound allows, keeping what a projection has not applied, and names it', async () => {
    const db = await setup(10, 4);
    const held =
      'orders: held back at position 4 by projection orders-model, which has not applied the entries after it';
    // keepLast 3 alone would keep 8..10; the projection has applied only 1..4.
    expect(await stream(db, 'trim', 'orders', '--keep-last', '3', '--keep-unapplied')).toMatchObject({
      code: 0,
      out: ['orders: trimmed 4 entries; it now holds 5 to 10', held],
    });
    expect(
      (await stream(db, 'trim', 'orders', '--keep-last', '3', '--keep-unapplied-by', 'orders-model')).out,
    ).toEqual(['orders: trimmed 0 entries; it now holds 5 to 10', held]);
    expect((await stream(db, 'trim', 'orders', '--keep-last', '3')).out).toEqual([
      'orders: trimmed 3 entries; it now holds 8 to 10',
    ]);
    // The projection is now behind the stream's start, and status says so.
    expect((await stream(db, 'status', 'orders')).out[1]).toContain(
      '(entries it has not applied were trimmed)',
    );
    expect((await stream(db, 'trim', 'orders', '--older-than', '1d')).out).toEqual([
      'orders: trimmed 0 entries; it now holds 8 to 10',
    ]);
  });

  it('trim: names every projection at the position that held it back, and none when another bound stopped it first', async () => {
    const db = await setup(10, 4);
    await db.query(
      `INSERT INTO keel_stream_positions (projection, stream, position)
       VALUES ('audit-model', 'orders', 4), ('search-model', 'orders', 7)`,
    );
    expect((await stream(db, 'trim', 'orders', '--keep-last', '0', '--keep-unapplied')).out).toEqual([
      'orders: trimmed 4 entries; it now holds 5 to 10',
      'orders: held back at position 4 by projections audit-model, orders-model, which have not applied the entries after it',
    ]);
    // Named ones only: search-model is the slowest of them; one never started holds from 0.
    expect(
      (await stream(db, 'trim', 'orders', '--keep-last', '0', '--keep-unapplied-by', 'search-model')).out,
    ).toEqual([
      'orders: trimmed 3 entries; it now holds 8 to 10',
      'orders: held back at position 7 by projection search-model, which has not applied the entries after it',
    ]);
    expect(
      (
        await stream(
          db,
          'trim',
          'orders',
          '--keep-last',
          '0',
          '--keep-unapplied-by',
          'search-model,new-model',
        )
      ).out[1],
    ).toBe(
      'orders: held back at position 0 by projection new-model, which has not applied the entries after it',
    );
    // --keep-last stops the trim before the projections would: they held nothing back.
    expect((await stream(db, 'trim', 'orders', '--keep-last', '3', '--keep-unapplied')).out).toEqual([
      'orders: trimmed 0 entries; it now holds 8 to 10',
    ]);
  });

  it('projections: a table of each projection’s position, lag and last move, naming the one holding trims back', async () => {
    const db = await setup(10, 4);
    await db.query(
      `INSERT INTO keel_stream_positions (projection, stream, position, updated_at)
       VALUES ('audit-model', 'orders', 10, '2030-01-02T03:04:05Z')`,
    );
    await db.query(`UPDATE keel_stream_positions SET updated_at = '2030-01-01T00:00:00Z' WHERE position = 4`);
    const { code, out } = await stream(db, 'projections', 'orders');
    expect(code).toBe(0);
    expect(out).toEqual([
      'orders  first 1  last 10  entries 10',
      'PROJECTION    POSITION  LAG  UPDATED',
      'audit-model   10        0    2030-01-02T03:04:05.000Z',
      'orders-model  4         6    2030-01-01T00:00:00.000Z  holds back --keep-unapplied trims',
    ]);
    await stream(db, 'trim', 'orders', '--before', '8');
    expect((await stream(db, 'projections', 'orders')).out[3]).toBe(
      'orders-model  4         6    2030-01-01T00:00:00.000Z  holds back --keep-unapplied trims; entries it has not applied were trimmed',
    );
    expect(await stream(db, 'projections', 'nothing')).toMatchObject({
      code: 1,
      err: ['KEEL_NOT_FOUND: stream nothing was not found'],
    });
  });

  it('forget: deletes a retired projection’s position and says what it was; trims then reach past it', async () => {
    const db = await setup(10, 4);
    await db.query(
      `UPDATE keel_stream_positions SET updated_at = '2030-01-01T00:00:00Z' WHERE projection = 'orders-model'`,
    );
    expect((await stream(db, 'trim', 'orders', '--keep-last', '0', '--keep-unapplied')).out).toEqual([
      'orders: trimmed 4 entries; it now holds 5 to 10',
      'orders: held back at position 4 by projection orders-model, which has not applied the entries after it',
    ]);
    expect(await stream(db, 'forget', 'orders', 'orders-model')).toEqual({
      code: 0,
      out: [
        'orders: forgot projection orders-model at position 4 (lag 6, updated 2030-01-01T00:00:00.000Z); trims no longer keep entries for it',
      ],
      err: [],
    });
    expect((await stream(db, 'projections', 'orders')).out).toEqual([
      'orders  first 5  last 10  entries 6',
      'no projection has a stored position on it',
    ]);
    expect((await stream(db, 'trim', 'orders', '--keep-last', '0', '--keep-unapplied')).out).toEqual([
      'orders: trimmed 6 entries; it now holds 11 to 10',
    ]);
    // Forgotten already: named, exit 1, nothing else touched.
    expect(await stream(db, 'forget', 'orders', 'orders-model')).toMatchObject({
      code: 1,
      out: [],
      err: ['KEEL_NOT_FOUND: projection orders-model has no stored position on stream orders'],
    });
    expect(await stream(db, 'forget', 'orders', 'a b')).toMatchObject({
      code: 1,
      err: [expect.stringMatching(/^KEEL_INVALID_ARGUMENT: projection/) as unknown],
    });
  });

  it('names what is wrong with its input before it opens the database', async () => {
    const db = await setup(1, 0);
    expect(await stream(db, 'trim', 'orders', '--older-than', 'a week')).toMatchObject({
      code: 2,
      err: [expect.stringMatching(/^KEEL_INVALID_ARGUMENT: .*--older-than/) as unknown],
    });
    expect((await stream(db, 'trim', 'orders', '--keep-last', '-1')).err[0]).toMatch(/--keep-last/);
    expect((await stream(db, 'trim')).err[0]).toMatch(/^KEEL_INVALID_ARGUMENT: .*stream/);
    expect((await stream(db, 'trim', 'orders')).err[0]).toMatch(/KEEL_INVALID_ARGUMENT/);
    expect((await stream(db, 'trim', 'orders', '--nope')).code).toBe(2);
    expect((await stream(db, 'rewind')).code).toBe(2);
    expect((await stream(db, 'projections')).err[0]).toMatch(/^KEEL_INVALID_ARGUMENT: stream/);
    expect((await stream(db, 'forget', 'orders')).err[0]).toMatch(/^KEEL_INVALID_ARGUMENT: projection/);
    expect((await stream(db, 'forget', 'orders', 'a', 'b')).err[0]).toMatch(
      /^KEEL_INVALID_ARGUMENT: arguments: .*got "b"/,
    );
    expect((await stream(db, 'forget', 'orders', 'a', '--keep-last', '1')).err[0]).toMatch(
      /^KEEL_INVALID_ARGUMENT: forget/,
    );
  });
});
