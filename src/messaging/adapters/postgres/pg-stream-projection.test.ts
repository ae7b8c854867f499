import { afterEach, describe, expect, it } from 'vitest';
import { migrate, type Db, type Tx } from '../../../db/index.ts';
import { advanceUntil, createTestDb, type TestDb } from '../../../testing/index.ts';
import { ManualClock } from '../../../time/index.ts';
import { createEnvelope, type Envelope } from '../../envelope.ts';
import { ProjectionRunner, type Projection } from './pg-stream-projection.ts';
import { PgStream, type StreamEntry } from './pg-stream.ts';
import { pgStreamMigrations } from './pg-stream-schema.ts';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function setup(): Promise<{ db: TestDb; stream: PgStream; clock: ManualClock }> {
  const db = await createTestDb();
  cleanups.push(() => db.close());
  await migrate(db, [
    ...pgStreamMigrations,
    // A read model whose primary key turns a second application of an entry into an error.
    {
      id: 'model',
      sql: 'CREATE TABLE model (id uuid PRIMARY KEY, n integer NOT NULL, position bigint NOT NULL)',
    },
  ]);
  return { db, stream: new PgStream(db), clock: new ManualClock() };
}

function events(count: number): Envelope[] {
  return Array.from({ length: count }, (_, n) =>
    createEnvelope({ type: 'thing.counted.v1', payload: { n } }),
  );
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
    while ((await run.position()) < 3) await run.events.once('applied');
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
