import { afterEach, describe, expect, it } from 'vitest';
import type { Db, Tx } from '../../../db/index.ts';
import { advanceUntil, testDbBackend, type TestDb } from '../../../testing/index.ts';
import type { ManualClock } from '../../../time/index.ts';
import type { Envelope } from '../../envelope.ts';
import { ProjectionRunner, type Projection } from './pg-stream-projection.ts';
import type { PgStream } from './pg-stream.ts';
import { StreamTrimmedError, type StreamEntry } from './pg-stream.ts';
import { countedEvents, openTestStream } from './pg-stream-test-support.ts';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function setup(): Promise<{ db: TestDb; stream: PgStream; clock: ManualClock }> {
  return openTestStream(
    cleanups,
    'CREATE TABLE model (id uuid PRIMARY KEY, n integer NOT NULL, position bigint NOT NULL)',
  );
}

function events(count: number): Envelope[] {
  return countedEvents(count, 'thing.counted.v1');
}

/** Inserts each entry into `model`; `fail` decides per entry whether to throw instead. */
function modelProjection(
  fail: (entry: StreamEntry) => boolean = () => false,
): Projection & { calls: number } {
  const projection = {
    calls: 0,
    async apply(entries: readonly StreamEntry[], tx: Tx): Promise<void> {
      projection.calls += 1;
      for (const entry of entries) {
        await tx.query('INSERT INTO model (id, n, position) VALUES ($1, $2, $3)', [
          entry.envelope.id,
          (entry.envelope.payload as { n: number }).n,
          entry.position,
        ]);
        if (fail(entry)) throw new Error(`cannot apply ${entry.position}`);
      }
    },
    async reset(tx: Tx): Promise<void> {
      await tx.query('DELETE FROM model');
    },
  };
  return projection;
}

async function model(db: Db): Promise<{ id: string; n: number; position: string }[]> {
  return (
    await db.query<{ id: string; n: number; position: string }>('SELECT * FROM model ORDER BY position')
  ).rows;
}

function runner(db: Db, projection: Projection, clock: ManualClock, options = {}): ProjectionRunner {
  const built = new ProjectionRunner(db, projection, {
    name: 'counts.v1',
    stream: 'things',
    clock,
    ...options,
  });
  cleanups.push(() => built.stop({ drainMs: 1000 }));
  return built;
}

describe('ProjectionRunner', () => {
  it('applies every entry once, in order, moving the stored position with each batch', async () => {
    const { db, stream, clock } = await setup();
    const sent = events(7);
    await stream.append('things', sent);
    await stream.append('other', events(2));
    const projection = modelProjection();
    const run = runner(db, projection, clock, { batchSize: 3 });
    const batches: { from: number; to: number; count: number }[] = [];
    run.events.on('applied', (batch) => void batches.push(batch));
    expect(await run.catchUp()).toBe(7);
    expect(batches).toEqual([
      { from: 0, to: 3, count: 3 },
      { from: 3, to: 6, count: 3 },
      { from: 6, to: 7, count: 1 },
    ]);
    expect((await model(db)).map((row) => row.id)).toEqual(sent.map((m) => m.id));
    expect(await run.position()).toBe(7);
    expect(await run.lag()).toBe(0);
    // Caught up: another look applies nothing and calls no handler.
    expect(await run.applyNext()).toBe(0);
    expect(projection.calls).toBe(3);
  });

  it('wakes on the NOTIFY of an append, with polling set to an hour', async () => {
    const { db, stream, clock } = await setup();
    const run = runner(db, modelProjection(), clock, { pollIntervalMs: 3_600_000 });
    await run.start();
    const applied = run.events.once('applied');
    await stream.append('things', events(2));
    expect(await applied).toEqual({ from: 0, to: 2, count: 2 });
    await run.stop();
    expect(await model(db)).toHaveLength(2);
  });

  it('without LISTEN, finds entries by polling on its clock', async () => {
    const { db, stream, clock } = await setup();
    const deaf: Db = {
      dialect: db.dialect,
      schema: db.schema,
      query: (sql, params) => db.query(sql, params),
      transaction: (fn, options) => db.transaction(fn, options),
      listen: () => Promise.reject(new Error('no LISTEN here')),
      close: () => db.close(),
    };
    const run = runner(deaf, modelProjection(), clock, { pollIntervalMs: 500 });
    const errors: string[] = [];
    run.events.on('error', ({ during }) => void errors.push(during));
    await run.start();
    expect(errors).toEqual(['listen']);
    await stream.append('things', events(3));
    const startedAt = clock.now();
    await advanceUntil(clock, run.events.once('applied'));
    expect(clock.now() - startedAt).toBeGreaterThan(0);
    expect(clock.now() - startedAt).toBeLessThanOrEqual(600);
    expect(await model(db)).toHaveLength(3);
  });

  it('rolls a failing batch back with its position, and retries it after retryDelayMs', async () => {
    const { db, stream, clock } = await setup();
    await stream.append('things', events(4));
    let failures = 1;
    const projection = modelProjection((entry) => entry.position === 3 && failures-- > 0);
    const run = runner(db, projection, clock, { retryDelayMs: 5000, pollIntervalMs: 3_600_000 });
    const failed = run.events.once('error');
    await run.start();
    expect((await failed).during).toBe('apply');
    // Nothing of the failed batch stayed: not the rows before the throw, not the position.
    expect(await model(db)).toEqual([]);
    expect(await run.position()).toBe(0);
    const failedAt = clock.now();
    await advanceUntil(clock, run.events.once('applied'));
    expect(clock.now() - failedAt).toBeGreaterThanOrEqual(5000);
    expect((await model(db)).map((row) => Number(row.position))).toEqual([1, 2, 3, 4]);
    expect(await run.position()).toBe(4);
  });

  it('rebuild() empties the model and replays from the first entry into the same model', async () => {
    const { db, stream, clock } = await setup();
    await stream.append('things', events(5));
    const run = runner(db, modelProjection(), clock);
    await run.catchUp();
    const before = await model(db);
    await run.rebuild();
    expect(await model(db)).toEqual([]);
    expect(await run.position()).toBe(0);
    expect(await run.catchUp()).toBe(5);
    expect(await model(db)).toEqual(before);
  });

  it('rebuild() of a started runner replays without being asked twice', async () => {
    const { db, stream, clock } = await setup();
    await stream.append('things', events(3));
    const run = runner(db, modelProjection(), clock, { pollIntervalMs: 3_600_000 });
    await run.start();
    // Listening before looking: a batch that commits between the look and the listen is not missed.
    for (let next = run.events.once('applied'); (await run.position()) < 3; next = run.events.once('applied'))
      await next;
    const replayed = run.events.once('applied');
    await run.rebuild();
    expect(await replayed).toEqual({ from: 0, to: 3, count: 3 });
    expect(await model(db)).toHaveLength(3);
  });

  it('two runners of one projection (two workers) take turns: each entry applied once', async () => {
    const { db, stream, clock } = await setup();
    const first = runner(db, modelProjection(), clock, { batchSize: 2 });
    const second = runner(db, modelProjection(), clock, { batchSize: 2 });
    const errors: unknown[] = [];
    for (const run of [first, second]) run.events.on('error', ({ error }) => void errors.push(error));
    await Promise.all([first.start(), second.start()]);
    for (let i = 0; i < 10; i++) await stream.append('things', events(3));
    await advanceUntil(
      clock,
      (async () => {
        while ((await first.position()) < 30) await new Promise((resolve) => setImmediate(resolve));
      })(),
    );
    expect(errors).toEqual([]);
    expect((await model(db)).map((row) => Number(row.position))).toEqual(
      Array.from({ length: 30 }, (_, i) => i + 1),
    );
  });

  it('a stream trimmed past the stored position: batches fail with StreamTrimmedError by default, model and position untouched', async () => {
    const { db, stream, clock } = await setup();
    await stream.append('things', events(6));
    const run = runner(db, modelProjection(), clock, { batchSize: 2, pollIntervalMs: 3_600_000 });
    expect(await run.applyNext()).toBe(2);
    expect(await stream.trim('things', { before: 5 })).toBe(4);
    const failure = await run.applyNext().catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(StreamTrimmedError);
    expect(failure).toMatchObject({ code: 'KEEL_STREAM_TRIMMED', after: 2, first: 5 });
    expect(await run.position()).toBe(2);
    expect((await model(db)).map((row) => Number(row.position))).toEqual([1, 2]);
    // Started, it reports the same and retries, never skipping on its own.
    const failed = run.events.once('error');
    await run.start();
    expect(await failed).toMatchObject({ during: 'apply', error: { code: 'KEEL_STREAM_TRIMMED' } });
    await run.stop();
    expect(await run.position()).toBe(2);
  });

  it("onTrimmed: 'resume' moves past the trimmed entries, says so (skipped), and applies on from the first retained one", async () => {
    const { db, stream, clock } = await setup();
    await stream.append('things', events(6));
    const run = runner(db, modelProjection(), clock, { batchSize: 2, onTrimmed: 'resume' });
    const skipped: unknown[] = [];
    const applied: unknown[] = [];
    run.events.on('skipped', (event) => void skipped.push(event));
    run.events.on('applied', (event) => void applied.push(event));
    expect(await run.applyNext()).toBe(2);
    await stream.trim('things', { before: 5 });
    expect(await run.catchUp()).toBe(2);
    expect(skipped).toEqual([{ from: 2, to: 4, count: 2 }]);
    expect(applied.slice(1)).toEqual([{ from: 4, to: 6, count: 2 }]);
    expect((await model(db)).map((row) => Number(row.position))).toEqual([1, 2, 5, 6]);
    // Everything trimmed: a new projection moves to the head without applying anything.
    await stream.trim('things', { keepLast: 0 });
    const late = runner(db, modelProjection(), clock, { name: 'late.v1', onTrimmed: 'resume' });
    const lateSkipped = late.events.once('skipped');
    expect(await late.catchUp()).toBe(0);
    expect(await lateSkipped).toEqual({ from: 0, to: 6, count: 6 });
    expect(await late.position()).toBe(6);
    expect(await late.lag()).toBe(0);
  });

  it('rebuild() after a trim replays from the first retained entry, without asking for onTrimmed', async () => {
    const { db, stream, clock } = await setup();
    await stream.append('things', events(6));
    const run = runner(db, modelProjection(), clock);
    expect(await run.catchUp()).toBe(6);
    await stream.trim('things', { before: 4 });
    await run.rebuild();
    expect(await model(db)).toEqual([]);
    expect(await run.position()).toBe(3);
    const replayed = run.events.once('applied');
    expect(await run.catchUp()).toBe(3);
    expect(await replayed).toEqual({ from: 3, to: 6, count: 3 });
    expect((await model(db)).map((row) => Number(row.position))).toEqual([4, 5, 6]);
  });

  it('a trim with keepUnappliedBy waits for the projection: it applies everything, and the trim follows it', async () => {
    const { db, stream, clock } = await setup();
    await stream.append('things', events(10));
    const run = runner(db, modelProjection(), clock, { batchSize: 3 });
    const keep = { keepLast: 0, keepUnappliedBy: ['counts.v1'] } as const;
    // Not started yet: no stored position, so it holds everything.
    expect(await stream.trim('things', keep)).toBe(0);
    expect(await run.applyNext()).toBe(3);
    expect(await stream.trim('things', keep)).toBe(3);
    expect(await run.catchUp()).toBe(7);
    expect(await stream.trim('things', { ...keep, batchSize: 2 })).toBe(7);
    expect(await stream.bounds('things')).toEqual({ first: 11, last: 10 });
    expect((await model(db)).map((row) => Number(row.position))).toEqual(
      Array.from({ length: 10 }, (_, i) => i + 1),
    );
  });

  it.skipIf(testDbBackend() === 'pglite')(
    // PGlite runs one transaction at a time, so a trim never overlaps a batch there.
    'a trim protecting a projection waits for its batch in flight and trims up to the position that batch commits (pg only)',
    async () => {
      const { db, stream, clock } = await setup();
      await stream.append('things', events(5));
      let release: () => void = () => undefined;
      const gate = new Promise<void>((resolve) => (release = resolve));
      let entered: () => void = () => undefined;
      const inBatch = new Promise<void>((resolve) => (entered = resolve));
      const projection = modelProjection();
      const slow: Projection = {
        apply: async (entries, tx) => {
          entered();
          await gate;
          await projection.apply(entries, tx);
        },
        reset: (tx) => projection.reset(tx),
      };
      const run = runner(db, slow, clock, { batchSize: 3 });
      // Its first batch in flight: the runner stored its position row (0) before, not in, it.
      const batch = run.applyNext();
      await inBatch;
      const trimming = stream.trim('things', { keepLast: 0, keepUnappliedBy: 'any-projection' });
      // The trim is blocked on the position row the batch holds, not finished with a stale position.
      for (;;) {
        const { rows } = await db.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM pg_stat_activity
           WHERE cardinality(pg_blocking_pids(pid)) > 0 AND query LIKE '%keel_stream_positions%FOR SHARE%'`,
        );
        if (rows[0]!.n > 0) break;
      }
      release();
      expect(await batch).toBe(3);
      expect(await trimming).toBe(3);
      expect(await stream.bounds('things')).toEqual({ first: 4, last: 5 });
      expect(await run.catchUp()).toBe(2);
    },
  );

  it('rejects bad options by field; stop() is idempotent', async () => {
    const { db, clock } = await setup();
    const projection = modelProjection();
    const build = (options: object) =>
      new ProjectionRunner(db, projection, { name: 'p', stream: 's', clock, ...options });
    expect(() => build({ name: '' })).toThrow(expect.objectContaining({ field: 'name' }));
    expect(() => build({ stream: 'a b' })).toThrow(expect.objectContaining({ field: 'stream' }));
    expect(() => build({ batchSize: 0 })).toThrow(expect.objectContaining({ field: 'batchSize' }));
    expect(() => build({ pollIntervalMs: 1.5 })).toThrow(
      expect.objectContaining({ field: 'pollIntervalMs' }),
    );
    expect(() => build({ retryDelayMs: -1 })).toThrow(expect.objectContaining({ field: 'retryDelayMs' }));
    expect(() => build({ onTrimmed: 'skip' })).toThrow(expect.objectContaining({ field: 'onTrimmed' }));
    expect(
      () =>
        new ProjectionRunner(db, { apply: async () => undefined } as unknown as Projection, {
          name: 'p',
          stream: 's',
        }),
    ).toThrow(expect.objectContaining({ field: 'handler' }));
    const run = build({});
    await run.start();
    const stopping = run.stop();
    expect(run.stop()).toBe(stopping);
    await stopping;
    expect(run.state).toBe('stopped');
  });
});
