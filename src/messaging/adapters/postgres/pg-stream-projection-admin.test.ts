import { afterEach, describe, expect, it } from 'vitest';
import type { Db, Tx } from '../../../db/index.ts';
import { NotFoundError } from '../../../errors/index.ts';
import { testDbBackend, type TestDb } from '../../../testing/index.ts';
import type { ManualClock } from '../../../time/index.ts';
import type { Envelope } from '../../envelope.ts';
import { ProjectionNotFoundError } from './pg-stream-projection-admin.ts';
import { ProjectionRunner, type Projection } from './pg-stream-projection.ts';
import { PgStream, type StreamEntry } from './pg-stream.ts';
import { PgStreamRetention } from './pg-stream-retention.ts';
import { countedEvents, openTestStream } from './pg-stream-test-support.ts';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function setup(): Promise<{ db: TestDb; stream: PgStream; clock: ManualClock }> {
  return openTestStream(
    cleanups,
    'CREATE TABLE model (projection text, position bigint, PRIMARY KEY (projection, position))',
  );
}

function events(count: number): Envelope[] {
  return countedEvents(count, 'thing.counted.v1');
}

/** Inserts each entry into `model` under the projection's name. */
function modelProjection(name: string): Projection {
  return {
    async apply(entries: readonly StreamEntry[], tx: Tx): Promise<void> {
      for (const entry of entries)
        await tx.query('INSERT INTO model (projection, position) VALUES ($1, $2)', [name, entry.position]);
    },
    async reset(tx: Tx): Promise<void> {
      await tx.query('DELETE FROM model WHERE projection = $1', [name]);
    },
  };
}

/** A projection whose `apply` waits for `release()`; `entered` settles once a batch is in it. */
function gatedProjection(name: string): Projection & { entered: Promise<void>; release: () => void } {
  const model = modelProjection(name);
  let release: () => void = () => undefined;
  const gate = new Promise<void>((resolve) => (release = resolve));
  let enter: () => void = () => undefined;
  const entered = new Promise<void>((resolve) => (enter = resolve));
  return {
    entered,
    release: () => release(),
    apply: async (entries, tx) => {
      enter();
      await gate;
      await model.apply(entries, tx);
    },
    reset: (tx) => model.reset(tx),
  };
}

function runner(
  db: Db,
  clock: ManualClock,
  name: string,
  options = {},
  projection = modelProjection(name),
): ProjectionRunner {
  const built = new ProjectionRunner(db, projection, {
    name,
    stream: 'things',
    clock,
    pollIntervalMs: 3_600_000,
    ...options,
  });
  cleanups.push(() => built.stop({ drainMs: 1000 }));
  return built;
}

async function storedNames(db: Db): Promise<string[]> {
  const { rows } = await db.query<{ projection: string }>(
    `SELECT projection FROM keel_stream_positions WHERE stream = 'things' ORDER BY projection`,
  );
  return rows.map((row) => row.projection);
}

/** pg only: waits until a statement matching `like` is blocked by another session's lock. */
async function blockedOnLock(db: Db, like: string): Promise<void> {
  for (;;) {
    const { rows } = await db.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_stat_activity
       WHERE cardinality(pg_blocking_pids(pid)) > 0 AND query LIKE $1`,
      [like],
    );
    if (rows[0]!.n > 0) return;
  }
}

describe('PgStream.projections', () => {
  it('lists each stored projection: position, lag to the head, when it last moved, and which hold an any-projection trim back', async () => {
    const { db, stream, clock } = await setup();
    await stream.append('things', events(10));
    const caughtUp = runner(db, clock, 'caught-up.v1');
    const behind = runner(db, clock, 'behind.v1', { batchSize: 4 });
    const tied = runner(db, clock, 'tied.v1', { batchSize: 4 });
    expect(await caughtUp.catchUp()).toBe(10);
    expect(await behind.applyNext()).toBe(4);
    expect(await tied.applyNext()).toBe(4);
    await db.query(
      `UPDATE keel_stream_positions SET updated_at = '2000-01-01T00:00:00Z' WHERE projection = 'behind.v1'`,
    );
    const listed = await stream.projections('things');
    expect(listed).toMatchObject({ stream: 'things', first: 1, last: 10 });
    expect(listed.projections).toEqual([
      {
        projection: 'behind.v1',
        position: 4,
        lag: 6,
        updatedAt: new Date('2000-01-01T00:00:00Z'),
        trimmedPast: false,
        holdsTrim: true,
      },
      expect.objectContaining({ projection: 'caught-up.v1', position: 10, lag: 0, holdsTrim: false }),
      // Both at the lowest position hold: forgetting one alone would let nothing more go.
      expect.objectContaining({ projection: 'tied.v1', position: 4, lag: 6, holdsTrim: true }),
    ]);
    // The runner stores when it moved in the UPDATE that moves it.
    expect(await behind.applyNext()).toBe(4);
    const moved = (await stream.projections('things')).projections[0]!;
    expect(moved).toMatchObject({ projection: 'behind.v1', position: 8, lag: 2, holdsTrim: false });
    expect(moved.updatedAt.getTime()).toBeGreaterThan(new Date('2001-01-01').getTime());
    // A trim the projections did not hold (no keepUnappliedBy) passes one: it says so.
    await stream.trim('things', { before: 8 });
    expect(
      (await stream.projections('things')).projections.map((p) => [p.projection, p.trimmedPast]),
    ).toEqual([
      ['behind.v1', false],
      ['caught-up.v1', false],
      ['tied.v1', true],
    ]);
  });

  it('every projection caught up holds nothing; a stream without projections lists none; an unknown stream is KEEL_NOT_FOUND', async () => {
    const { db, stream, clock } = await setup();
    await stream.append('things', events(3));
    expect(await stream.projections('things')).toEqual({
      stream: 'things',
      first: 1,
      last: 3,
      projections: [],
    });
    await runner(db, clock, 'a.v1').catchUp();
    expect((await stream.projections('things')).projections).toEqual([
      expect.objectContaining({ projection: 'a.v1', position: 3, lag: 0, holdsTrim: false }),
    ]);
    const unknown = await stream.projections('nothing').catch((error: unknown) => error);
    expect(unknown).toBeInstanceOf(NotFoundError);
    expect(unknown).toMatchObject({ code: 'KEEL_NOT_FOUND', message: 'stream nothing was not found' });
    // A runner that looked before the first append stored its row: the stream is known by it.
    await new ProjectionRunner(db, modelProjection('early.v1'), {
      name: 'early.v1',
      stream: 'empty',
    }).applyNext();
    expect(await stream.projections('empty')).toMatchObject({
      first: 1,
      last: 0,
      projections: [{ projection: 'early.v1', position: 0, lag: 0, holdsTrim: false }],
    });
    await expect(stream.projections('a b')).rejects.toMatchObject({ field: 'stream' });
  });
});

describe('PgStream.forgetProjection', () => {
  it('deletes a retired projection’s position, so an any-projection trim reaches past it to the live ones', async () => {
    const { db, stream, clock } = await setup();
    await stream.append('things', events(10));
    const retired = runner(db, clock, 'retired.v1', { batchSize: 3 });
    const live = runner(db, clock, 'live.v1');
    expect(await retired.applyNext()).toBe(3);
    expect(await live.catchUp()).toBe(10);
    const keep = { keepLast: 0, keepUnappliedBy: 'any-projection' } as const;
    expect(await stream.trim('things', keep)).toBe(3);
    // Held at the retired projection's position for as long as its row stays.
    expect(await stream.trim('things', keep)).toBe(0);
    expect(await stream.forgetProjection('things', 'retired.v1')).toEqual({
      stream: 'things',
      projection: 'retired.v1',
      position: 3,
      lag: 7,
      updatedAt: expect.any(Date) as unknown,
    });
    expect(await storedNames(db)).toEqual(['live.v1']);
    expect(await stream.trim('things', keep)).toBe(7);
    expect(await stream.bounds('things')).toEqual({ first: 11, last: 10 });
    // The live one goes on; the next append is kept until it applied it.
    await stream.append('things', events(2));
    expect(await stream.trim('things', keep)).toBe(0);
    expect(await live.catchUp()).toBe(2);
    expect(await stream.trim('things', keep)).toBe(2);
  });

  it('an unknown projection, or one forgotten already, is ProjectionNotFoundError (KEEL_NOT_FOUND) naming it; bad names by field', async () => {
    const { db, stream, clock } = await setup();
    await stream.append('things', events(2));
    await runner(db, clock, 'a.v1').catchUp();
    const unknown = await stream.forgetProjection('things', 'b.v1').catch((error: unknown) => error);
    expect(unknown).toBeInstanceOf(ProjectionNotFoundError);
    expect(unknown).toMatchObject({
      code: 'KEEL_NOT_FOUND',
      stream: 'things',
      projection: 'b.v1',
      during: 'forget',
      message: 'projection b.v1 has no stored position on stream things',
      details: { stream: 'things', projection: 'b.v1', during: 'forget' },
    });
    // The same name on another stream is another row.
    await expect(stream.forgetProjection('other', 'a.v1')).rejects.toMatchObject({ code: 'KEEL_NOT_FOUND' });
    expect(await storedNames(db)).toEqual(['a.v1']);
    await stream.forgetProjection('things', 'a.v1');
    await expect(stream.forgetProjection('things', 'a.v1')).rejects.toBeInstanceOf(ProjectionNotFoundError);
    await expect(stream.forgetProjection('things', '')).rejects.toMatchObject({ field: 'projection' });
    await expect(stream.forgetProjection('a b', 'a.v1')).rejects.toMatchObject({ field: 'stream' });
  });

  it('in the caller’s transaction: rolled back, nothing is forgotten', async () => {
    const { db, stream, clock } = await setup();
    await stream.append('things', events(2));
    await runner(db, clock, 'a.v1').catchUp();
    await db
      .transaction(async (tx) => {
        await stream.forgetProjection('things', 'a.v1', tx);
        throw new Error('the migration dropping the model failed');
      })
      .catch(() => undefined);
    expect(await storedNames(db)).toEqual(['a.v1']);
    await db.transaction((tx) => stream.forgetProjection('things', 'a.v1', tx));
    expect(await storedNames(db)).toEqual([]);
  });

  it('waits for a batch in flight and deletes the position it committed; the runner then refuses to store its row again', async () => {
    const { db, stream, clock } = await setup();
    await stream.append('things', events(5));
    const projection = gatedProjection('a.v1');
    const run = runner(db, clock, 'a.v1', { batchSize: 3, retryDelayMs: 5000 }, projection);
    const batch = run.applyNext();
    await projection.entered;
    let settled = false;
    const forgetting = stream.forgetProjection('things', 'a.v1').finally(() => (settled = true));
    // pg: the DELETE waits on the row lock the batch holds. PGlite: on the one connection, behind
    // the batch's transaction.
    if (testDbBackend() === 'pg') await blockedOnLock(db, 'DELETE FROM keel_stream_positions%');
    for (let i = 0; i < 20; i++) await new Promise((resolve) => setImmediate(resolve));
    expect(settled).toBe(false);
    projection.release();
    expect(await batch).toBe(3);
    // Not the position the batch found, nor a row the batch put back: the one it committed.
    expect(await forgetting).toMatchObject({ position: 3, lag: 2 });
    expect(await storedNames(db)).toEqual([]);
    const refused = await run.applyNext().catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(ProjectionNotFoundError);
    expect(refused).toMatchObject({ code: 'KEEL_NOT_FOUND', projection: 'a.v1', during: 'apply' });
    // Started, it reports each batch and stores nothing, applies nothing.
    const failed = run.events.once('error');
    await run.start();
    expect(await failed).toMatchObject({ during: 'apply', error: { during: 'apply' } });
    await run.stop();
    expect(await storedNames(db)).toEqual([]);
    expect((await db.query('SELECT * FROM model')).rows).toHaveLength(3);
    // A trim no longer waits for it.
    expect(await stream.trim('things', { keepLast: 0, keepUnappliedBy: 'any-projection' })).toBe(5);
    // rebuild() is the way back: a new row at the stream's start, an emptied model.
    await run.rebuild();
    expect(await run.position()).toBe(5);
    expect(await storedNames(db)).toEqual(['a.v1']);
    expect((await db.query('SELECT * FROM model')).rows).toEqual([]);
  });

  it('a batch that starts while a forget is uncommitted waits for it, then finds no row and stores none', async () => {
    const { db, stream, clock } = await setup();
    await stream.append('things', events(5));
    const run = runner(db, clock, 'a.v1', { batchSize: 2 });
    expect(await run.applyNext()).toBe(2);
    let commit: () => void = () => undefined;
    const gate = new Promise<void>((resolve) => (commit = resolve));
    let deleted: () => void = () => undefined;
    const deletedRow = new Promise<void>((resolve) => (deleted = resolve));
    const forgetting = db.transaction(async (tx) => {
      await stream.forgetProjection('things', 'a.v1', tx);
      deleted();
      await gate;
    });
    await deletedRow;
    // Outside the forget's transaction: the runner's own statements.
    const batch = run.applyNext().catch((error: unknown) => error);
    if (testDbBackend() === 'pg') await blockedOnLock(db, '%keel_stream_positions%FOR UPDATE%');
    commit();
    await forgetting;
    // Were it to create the row in the batch (an upsert), it would reapply 1..2 from 0 here.
    expect(await batch).toBeInstanceOf(ProjectionNotFoundError);
    expect(await storedNames(db)).toEqual([]);
    expect((await db.query('SELECT * FROM model')).rows).toHaveLength(2);
  });

  it('PgStreamRetention says which projections held a trim back (held), until the retired one is forgotten', async () => {
    const { db, stream, clock } = await setup();
    await stream.append('things', events(10));
    const retired = runner(db, clock, 'retired.v1', { batchSize: 3 });
    const live = runner(db, clock, 'live.v1', { batchSize: 8 });
    expect(await retired.applyNext()).toBe(3);
    expect(await live.applyNext()).toBe(8);
    const retention = new PgStreamRetention(db, {
      streams: [{ stream: 'things', keepLast: 0, keepUnappliedBy: 'any-projection' }],
      clock,
    });
    cleanups.push(() => retention.stop());
    const seen: unknown[] = [];
    retention.events.on('trimmed', (event) => void seen.push(['trimmed', event]));
    retention.events.on('held', (event) => void seen.push(['held', event]));
    expect(await retention.trimOnce()).toBe(3);
    expect(await retention.trimOnce()).toBe(0);
    await stream.forgetProjection('things', 'retired.v1');
    expect(await retention.trimOnce()).toBe(5);
    expect(await live.catchUp()).toBe(2);
    expect(await retention.trimOnce()).toBe(2);
    expect(seen).toEqual([
      ['trimmed', { stream: 'things', deleted: 3 }],
      ['held', { stream: 'things', position: 3, projections: ['retired.v1'] }],
      ['held', { stream: 'things', position: 3, projections: ['retired.v1'] }],
      ['trimmed', { stream: 'things', deleted: 5 }],
      ['held', { stream: 'things', position: 8, projections: ['live.v1'] }],
      // Caught up: the projections held nothing back, so no held.
      ['trimmed', { stream: 'things', deleted: 2 }],
    ]);
  });

  it('held only when the projections were the bound that stopped the trim', async () => {
    const { db, clock } = await setup();
    const stream = new PgStream(db);
    await stream.append('things', events(10));
    expect(await runner(db, clock, 'a.v1', { batchSize: 4 }).applyNext()).toBe(4);
    const held: unknown[] = [];
    const trimOnce = async (rule: object): Promise<number> => {
      const retention = new PgStreamRetention(db, { streams: [{ stream: 'things', ...rule }], clock });
      retention.events.on('held', (event) => void held.push(event));
      return retention.trimOnce();
    };
    // keepLast stops before the projection's position: it held nothing.
    expect(await trimOnce({ keepLast: 8, keepUnappliedBy: 'any-projection' })).toBe(2);
    // Entries too young stop it first.
    expect(await trimOnce({ olderThanMs: 3_600_000, keepUnappliedBy: 'any-projection' })).toBe(0);
    expect(held).toEqual([]);
    // A named projection with no stored position holds everything, at 0.
    expect(await trimOnce({ keepLast: 0, keepUnappliedBy: ['a.v1', 'missing.v1'] })).toBe(0);
    expect(held).toEqual([{ stream: 'things', position: 0, projections: ['missing.v1'] }]);
  });
});
