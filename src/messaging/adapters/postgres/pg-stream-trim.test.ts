import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { migrate, type Db, type Queryable } from '../../../db/index.ts';
import { isKeelError } from '../../../errors/index.ts';
import { createTestDb, testDbBackend, type TestDb } from '../../../testing/index.ts';
import { createEnvelope, type Envelope } from '../../envelope.ts';
import { PgStream, StreamTrimmedError, type StreamEntry } from './pg-stream.ts';
import { pgStreamMigrations } from './pg-stream-schema.ts';
import type { TrimOptions } from './pg-stream-trim.ts';
import { propertyRuns } from '../../../testing/property-runs.ts';

const dbs: TestDb[] = [];
afterEach(async () => {
  for (const db of dbs.splice(0)) await db.close();
});

/**
 * `db` with a hook run before each of its transactions (the trim's batches), with the number
 * of the transaction about to start: a test puts an append, or an abort, between two batches.
 */
function withHook(db: Db): { db: Db; hook: (fn: ((n: number) => Promise<void>) | undefined) => void } {
  let before: ((n: number) => Promise<void>) | undefined;
  let count = 0;
  const hooked: Db = {
    dialect: db.dialect,
    schema: db.schema,
    query: (sql, params) => db.query(sql, params),
    transaction: async (fn, options) => {
      count += 1;
      await before?.(count);
      return db.transaction(fn, options);
    },
    listen: (channel, onNotify) => db.listen(channel, onNotify),
    close: () => db.close(),
  };
  return {
    db: hooked,
    hook: (fn) => {
      before = fn;
      count = 0;
    },
  };
}

async function setup(poolSize = 5, checkNestedUse = true) {
  const db = await createTestDb({ poolSize, checkNestedUse });
  dbs.push(db);
  await migrate(db, pgStreamMigrations);
  const { db: hooked, hook } = withHook(db);
  return { db, stream: new PgStream(db), trimmer: new PgStream(hooked), hook };
}

function events(count: number, tag = 'e'): Envelope[] {
  return Array.from({ length: count }, (_, n) =>
    createEnvelope({ type: 'thing.happened.v1', payload: { tag, n } }),
  );
}

const positions = (entries: readonly StreamEntry[]): number[] => entries.map((e) => e.position);
const range = (from: number, to: number): number[] =>
  Array.from({ length: Math.max(0, to - from + 1) }, (_, i) => from + i);

/** The positions the table holds for `name`, straight from SQL: what a trim really left. */
async function stored(db: Db, name: string): Promise<{ position: number; id: string }[]> {
  const { rows } = await db.query<{ position: string; id: string }>(
    // By the column: `ORDER BY position` would sort the text output column ('10' < '4').
    'SELECT s.position::text, s.id::text FROM keel_stream AS s WHERE s.stream = $1 ORDER BY s.position',
    [name],
  );
  return rows.map((row) => ({ position: Number(row.position), id: row.id }));
}

describe('PgStream.trim', () => {
  it('deletes a prefix in batches; reads and bounds start at the first retained entry; positions go on from the head', async () => {
    const { db, stream } = await setup();
    await stream.append('orders', events(10));
    await stream.append('other', events(3));
    expect(await stream.bounds('orders')).toEqual({ first: 1, last: 10 });
    expect(await stream.trim('orders', { before: 5, batchSize: 2 })).toBe(4);
    expect(await stream.bounds('orders')).toEqual({ first: 5, last: 10 });
    expect(positions(await stream.read('orders', { after: 4 }))).toEqual(range(5, 10));
    // A bounded page counts from the first retained entry: full, not cut short by the trim.
    expect(positions(await stream.read('orders', { after: 4, limit: 3 }))).toEqual([5, 6, 7]);
    expect(await stream.append('orders', events(1))).toEqual({ first: 11, last: 11 });
    // Past the head: only what is there goes, and the next append still takes the next position.
    expect(await stream.trim('orders', { before: 1000, batchSize: 3 })).toBe(7);
    expect(await stream.bounds('orders')).toEqual({ first: 12, last: 11 });
    expect(await stream.read('orders', { after: 11 })).toEqual([]);
    expect(await stream.append('orders', events(1))).toEqual({ first: 12, last: 12 });
    expect(positions(await stream.read('orders', { after: 11 }))).toEqual([12]);
    // Other streams are untouched; a stream never appended to has nothing to trim.
    expect(positions(await stream.read('other'))).toEqual([1, 2, 3]);
    expect(await stream.trim('never', { keepLast: 0 })).toBe(0);
    expect(await stream.bounds('never')).toEqual({ first: 1, last: 0 });
    expect((await stored(db, 'orders')).map((row) => row.position)).toEqual([12]);
  });

  it('keepLast keeps the newest entries; every bound given must allow a deletion', async () => {
    const { stream } = await setup();
    await stream.append('orders', events(10));
    // before stops it at 4 though keepLast alone would go to 7.
    expect(await stream.trim('orders', { keepLast: 3, before: 5 })).toBe(4);
    expect(await stream.trim('orders', { keepLast: 3 })).toBe(3);
    expect(await stream.trim('orders', { keepLast: 3 })).toBe(0);
    expect(positions(await stream.read('orders', { after: 7 }))).toEqual([8, 9, 10]);
    expect(await stream.trim('orders', { keepLast: 0 })).toBe(3);
    expect(await stream.bounds('orders')).toEqual({ first: 11, last: 10 });
  });

  it('olderThanMs by the database clock that stamped appendedAt, as a prefix: an old entry behind a younger one stays', async () => {
    const { db, stream } = await setup();
    await stream.append('orders', events(6));
    // The database's clock cannot be moved: age the entries instead (positions 1-3 and 5).
    await db.query(
      `UPDATE keel_stream SET appended_at = appended_at - interval '2 hours'
       WHERE stream = 'orders' AND position IN (1, 2, 3, 5)`,
    );
    expect(await stream.trim('orders', { olderThanMs: 3 * 3_600_000 })).toBe(0);
    expect(await stream.trim('orders', { olderThanMs: 3_600_000, batchSize: 2 })).toBe(3);
    expect(await stream.bounds('orders')).toEqual({ first: 4, last: 6 });
    // With keepLast too: both must allow it.
    await db.query(
      `UPDATE keel_stream SET appended_at = appended_at - interval '2 hours' WHERE stream = 'orders'`,
    );
    expect(await stream.trim('orders', { olderThanMs: 3_600_000, keepLast: 2 })).toBe(1);
    expect(positions(await stream.read('orders', { after: 4 }))).toEqual([5, 6]);
  });

  it('keepUnappliedBy: the slowest named projection holds the trim; a name with no position holds all; any-projection takes every stored one', async () => {
    const { db, stream } = await setup();
    await stream.append('orders', events(10));
    await db.query(
      `INSERT INTO keel_stream_positions (projection, stream, position)
       VALUES ('a.v1', 'orders', 4), ('b.v1', 'orders', 7), ('c.v1', 'other', 0)`,
    );
    expect(await stream.trim('orders', { keepLast: 0, keepUnappliedBy: ['b.v1', 'not-started.v1'] })).toBe(0);
    // c.v1 reads another stream: it does not hold this one.
    expect(await stream.trim('orders', { keepLast: 0, keepUnappliedBy: 'any-projection' })).toBe(4);
    expect(await stream.trim('orders', { keepLast: 0, keepUnappliedBy: ['b.v1'] })).toBe(3);
    expect(await stream.bounds('orders')).toEqual({ first: 8, last: 10 });
    // a.v1 was not asked about the second trim: what it had not applied is gone.
    await expect(stream.read('orders', { after: 4 })).rejects.toBeInstanceOf(StreamTrimmedError);
    await db.query(`DELETE FROM keel_stream_positions WHERE projection = 'a.v1'`);
    expect(await stream.trim('orders', { keepLast: 0, keepUnappliedBy: 'any-projection' })).toBe(0);
    await db.query(`UPDATE keel_stream_positions SET position = 10 WHERE projection = 'b.v1'`);
    expect(await stream.trim('orders', { keepLast: 0, keepUnappliedBy: 'any-projection' })).toBe(3);
  });

  it('trimWithOutcome: what it deleted, and the projections that held it back at their position; none when another bound stopped it', async () => {
    const { db, stream } = await setup();
    await stream.append('orders', events(10));
    await db.query(
      `INSERT INTO keel_stream_positions (projection, stream, position)
       VALUES ('a.v1', 'orders', 4), ('b.v1', 'orders', 4), ('c.v1', 'orders', 7)`,
    );
    const keep = { keepLast: 0, keepUnappliedBy: 'any-projection' } as const;
    expect(await stream.trimWithOutcome('orders', { ...keep, batchSize: 3 })).toEqual({
      deleted: 4,
      heldBy: { position: 4, projections: ['a.v1', 'b.v1'] },
    });
    expect(await stream.trimWithOutcome('orders', { ...keep, keepUnappliedBy: ['c.v1', 'new.v1'] })).toEqual({
      deleted: 0,
      heldBy: { position: 0, projections: ['new.v1'] },
    });
    // keepLast stops it first: the projections held nothing back.
    expect(await stream.trimWithOutcome('orders', { ...keep, keepLast: 8 })).toEqual({
      deleted: 0,
      heldBy: undefined,
    });
    expect(await stream.trimWithOutcome('orders', { keepLast: 3 })).toEqual({
      deleted: 3,
      heldBy: undefined,
    });
    expect(await stream.trimWithOutcome('never', keep)).toEqual({ deleted: 0, heldBy: undefined });
  });

  it('a read after a trim past its cursor throws StreamTrimmedError naming what is gone, or resumes at the first retained entry when asked', async () => {
    const { stream } = await setup();
    await stream.append('orders', events(10));
    await stream.trim('orders', { before: 6 });
    const error = await stream.read('orders', { after: 2 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(StreamTrimmedError);
    expect(error).toMatchObject({
      code: 'KEEL_STREAM_TRIMMED',
      status: 410,
      stream: 'orders',
      after: 2,
      first: 6,
    });
    expect((error as Error).message).toMatch(/entries 3 to 5 were trimmed; it now starts at 6/);
    // From the start (after: 0, the default) is a cursor like any other: the first entries are gone.
    await expect(stream.read('orders')).rejects.toSatisfy((e) => isKeelError(e, 'KEEL_STREAM_TRIMMED'));
    expect(positions(await stream.read('orders', { after: 5 }))).toEqual(range(6, 10));
    expect(positions(await stream.read('orders', { after: 2, limit: 3, onTrimmed: 'resume' }))).toEqual([
      6, 7, 8,
    ]);
    expect(positions(await stream.read('orders', { onTrimmed: 'resume' }))).toEqual(range(6, 10));
    // Everything trimmed: resuming finds nothing, throwing still says what was lost.
    await stream.trim('orders', { keepLast: 0 });
    expect(await stream.read('orders', { after: 3, onTrimmed: 'resume' })).toEqual([]);
    expect(await stream.read('orders', { after: 10 })).toEqual([]);
    await expect(stream.read('orders', { after: 9 })).rejects.toMatchObject({ after: 9, first: 11 });
    await expect(stream.read('orders', { onTrimmed: 'skip' as 'resume' })).rejects.toMatchObject({
      field: 'onTrimmed',
    });
  });

  it('a read is one snapshot: a trim that commits between two of its statements cannot put a hole in its page', async () => {
    const { db, stream } = await setup();
    await stream.append('orders', events(10));
    await stream.trim('orders', { before: 3 });
    // After the read's first statement, a trim takes one more entry and commits before each next one.
    let statements = 0;
    let cut = 3;
    const trimming: Queryable = {
      query: async (sql, params) => {
        if (statements++ > 0) await stream.trim('orders', { before: ++cut });
        return db.query(sql, params);
      },
    };
    const page = await stream.read('orders', { after: 2, limit: 4 }, trimming).catch((e: unknown) => e);
    // The read may say the trim passed its cursor; a page must start right after it.
    if (!(page instanceof StreamTrimmedError)) expect(positions(page as StreamEntry[])).toEqual([3, 4, 5, 6]);
  });

  it('rejects bad bounds by field; nothing at all to keep is not a default', async () => {
    const { stream } = await setup();
    await stream.append('orders', events(3));
    const bad: [TrimOptions, string][] = [
      [{}, 'before'],
      [{ batchSize: 10 }, 'before'],
      [{ before: -1 }, 'before'],
      [{ before: 1.5 }, 'before'],
      [{ keepLast: -1 }, 'keepLast'],
      [{ olderThanMs: -1 }, 'olderThanMs'],
      [{ olderThanMs: Number.NaN }, 'olderThanMs'],
      [{ keepLast: 1, batchSize: 0 }, 'batchSize'],
      [{ keepLast: 1, keepUnappliedBy: 'all' as 'any-projection' }, 'keepUnappliedBy'],
      [{ keepLast: 1, keepUnappliedBy: ['ok.v1', 'not ok'] }, 'keepUnappliedBy.1'],
    ];
    for (const [options, field] of bad)
      await expect(stream.trim('orders', options), JSON.stringify(options)).rejects.toMatchObject({
        code: 'KEEL_INVALID_ARGUMENT',
        field,
      });
    await expect(stream.trim('bad name!', { keepLast: 0 })).rejects.toMatchObject({ field: 'stream' });
    expect(await stream.bounds('orders')).toEqual({ first: 1, last: 3 });
    await stream.close();
    await expect(stream.trim('orders', { keepLast: 0 })).rejects.toSatisfy((e) =>
      isKeelError(e, 'KEEL_SERVICE_STATE'),
    );
  });

  it('stops between batches when its signal aborts; what it deleted stays deleted', async () => {
    const { stream, trimmer, hook } = await setup();
    await stream.append('orders', events(10));
    expect(await stream.trim('orders', { keepLast: 0, signal: AbortSignal.abort() })).toBe(0);
    const abort = new AbortController();
    hook(async (n) => {
      if (n === 2) abort.abort();
    });
    // The abort comes as the second batch starts: it finishes, no third one starts.
    expect(await trimmer.trim('orders', { keepLast: 0, batchSize: 3, signal: abort.signal })).toBe(6);
    expect(await stream.bounds('orders')).toEqual({ first: 7, last: 10 });
  });

  it('keeps an append that commits while the trim runs, though the bounds would take it', async () => {
    const { db, stream, trimmer, hook } = await setup();
    await stream.append('orders', events(10));
    let appended: { first: number; last: number } | undefined;
    hook(async (n) => {
      if (n === 2) appended = await stream.append('orders', events(3, 'during'));
    });
    // olderThanMs 0: every committed entry is old enough by the time a later batch looks.
    expect(await trimmer.trim('orders', { olderThanMs: 0, batchSize: 4 })).toBe(10);
    expect(appended).toEqual({ first: 11, last: 13 });
    expect(await stream.bounds('orders')).toEqual({ first: 11, last: 13 });
    expect((await stored(db, 'orders')).map((row) => row.position)).toEqual([11, 12, 13]);
  });

  it('two trims at once delete each entry once, however their batches interleave', async () => {
    const { db, stream } = await setup();
    await stream.append('orders', events(50));
    const counts = await Promise.all([
      stream.trim('orders', { before: 41, batchSize: 3 }),
      stream.trim('orders', { before: 41, batchSize: 3 }),
    ]);
    // The second may return early, finding the first holding the lock; the next run finishes.
    const rest = await stream.trim('orders', { before: 41, batchSize: 3 });
    expect(counts[0] + counts[1] + rest).toBe(40);
    expect(await stream.bounds('orders')).toEqual({ first: 41, last: 50 });
    expect((await stored(db, 'orders')).map((row) => row.position)).toEqual(range(41, 50));
  });

  it('another trim that runs between two of its batches: the trim goes on from where that one stopped, each entry deleted once', async () => {
    const { db, stream, trimmer, hook } = await setup();
    await stream.append('orders', events(20));
    // After the first batch (1-3), another trim takes 4-10: the next batch starts at 11.
    hook(async (n) => {
      if (n === 2) expect(await stream.trim('orders', { before: 11 })).toBe(7);
    });
    expect(await trimmer.trim('orders', { keepLast: 0, batchSize: 3 })).toBe(13);
    expect(await stream.bounds('orders')).toEqual({ first: 21, last: 20 });
    expect(await stored(db, 'orders')).toEqual([]);
    // Another that stops short of this trim's next batch (21-28, then 29): this one takes the rest.
    await stream.append('orders', events(20));
    hook(async (n) => {
      if (n === 3) expect(await stream.trim('orders', { before: 30 })).toBe(1);
    });
    expect(await trimmer.trim('orders', { before: 35, batchSize: 4 })).toBe(13);
    expect(await stream.bounds('orders')).toEqual({ first: 35, last: 40 });
    // Another that goes past this trim's own bound: this one's first position must not win.
    hook(async (n) => {
      if (n === 2) expect(await stream.trim('orders', { before: 40 })).toBe(4);
    });
    expect(await trimmer.trim('orders', { before: 38, batchSize: 1 })).toBe(1);
    hook(undefined);
    expect(await stream.bounds('orders')).toEqual({ first: 40, last: 40 });
    expect((await stored(db, 'orders')).map((row) => row.position)).toEqual([40]);
    expect(positions(await stream.read('orders', { after: 39 }))).toEqual([40]);
  });

  it.skipIf(testDbBackend() === 'pglite')(
    "while another trim holds the stream's cleaner lock, a trim returns at once (pg only)",
    async () => {
      const { db, stream } = await setup(5, false);
      await stream.append('orders', events(5));
      let release: (() => void) | undefined;
      const holder = db.transaction(async (tx) => {
        await tx.query(
          `SELECT pg_advisory_xact_lock(hashtextextended('keel_cleaner:' || current_schema() || ':keel_stream:orders', 0))`,
        );
        await new Promise<void>((resolve) => (release = resolve));
      });
      while (release === undefined) await new Promise((resolve) => setImmediate(resolve));
      expect(await stream.trim('orders', { keepLast: 0 })).toBe(0);
      // Another stream has a lock of its own.
      await stream.append('audit', events(2));
      expect(await stream.trim('audit', { keepLast: 0 })).toBe(2);
      release();
      await holder;
      expect(await stream.trim('orders', { keepLast: 0 })).toBe(5);
    },
  );

  it.skipIf(testDbBackend() === 'pglite')(
    // PGlite runs one transaction at a time, so an append cannot be open while a trim runs.
    'a trim waits for an append still open on the stream, deletes only what was committed, and keeps the append (pg only)',
    async () => {
      const { db, stream } = await setup(5, false);
      await stream.append('orders', events(10));
      let trimming: Promise<number> | undefined;
      let trimPid: number | undefined;
      const appended = await db.transaction(async (tx) => {
        const taken = await stream.appendIn(tx, 'orders', events(2, 'open'));
        const { rows } = await tx.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
        trimming = stream.trim('orders', { olderThanMs: 0, batchSize: 100 });
        // The trim deleted 1-10 and now waits for our head row lock to move its first position.
        for (;;) {
          const blocked = await db.query<{ pid: number }>(
            'SELECT pid FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))',
            [rows[0]!.pid],
          );
          trimPid = blocked.rows[0]?.pid;
          if (trimPid !== undefined) break;
        }
        // Readers still see every entry: the trim has not committed.
        expect(positions(await stream.read('orders'))).toEqual(range(1, 10));
        return taken;
      });
      expect(appended).toEqual({ first: 11, last: 12 });
      expect(await trimming).toBe(10);
      expect(await stream.bounds('orders')).toEqual({ first: 11, last: 12 });
      expect(positions(await stream.read('orders', { after: 10 }))).toEqual([11, 12]);
    },
  );

  it('property: appends, trims with an append between their batches, and reads (one reader running throughout) — never a hole, never an entry below the first retained one, nothing lost', async () => {
    const { db, stream, trimmer, hook } = await setup(8);
    const op = fc.oneof(
      fc.record({ kind: fc.constant('append' as const), size: fc.integer({ min: 1, max: 4 }) }),
      fc.record({
        kind: fc.constant('trim' as const),
        before: fc.option(fc.integer({ min: 0, max: 40 }), { nil: undefined }),
        keepLast: fc.option(fc.integer({ min: 0, max: 8 }), { nil: undefined }),
        olderThanMs: fc.option(fc.constantFrom(0, 3_600_000), { nil: undefined }),
        batchSize: fc.integer({ min: 1, max: 4 }),
        // Before which of the trim's transactions an append commits (2: after the first batch).
        appendBefore: fc.option(fc.integer({ min: 2, max: 4 }), { nil: undefined }),
        appendSize: fc.integer({ min: 1, max: 3 }),
        // An append racing the trim from its start: it may commit before the trim reads the head.
        racingAppend: fc.option(fc.integer({ min: 1, max: 3 }), { nil: undefined }),
      }),
      fc.record({
        kind: fc.constant('read' as const),
        after: fc.integer({ min: 0, max: 40 }),
        limit: fc.integer({ min: 1, max: 6 }),
        onTrimmed: fc.constantFrom('throw' as const, 'resume' as const),
      }),
    );
    let run = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 14 }), async (ops) => {
        run += 1;
        const name = `prop-${run}`;
        const ids = new Map<number, string>();
        const append = async (size: number): Promise<void> => {
          const sent = events(size, `r${run}`);
          const taken = await stream.append(name, sent);
          sent.forEach((m, i) => ids.set(taken!.first + i, m.id));
        };
        // The stream as the model says it is: positions first..last, each with its id.
        let first = 1;
        const expectStored = async (): Promise<void> => {
          const last = ids.size;
          expect(await stream.bounds(name)).toEqual(ids.size === 0 ? { first: 1, last: 0 } : { first, last });
          expect(await stored(db, name)).toEqual(
            range(first, last).map((p) => ({ position: p, id: ids.get(p) })),
          );
        };

        // A reader that runs through everything with a cursor, as a projection does: each page
        // starts right after its cursor, or the read throws because a trim passed the cursor; it
        // then jumps to the first retained entry, and what it passed over must be trimmed for good.
        // Its entries' ids are checked at the end: it may read an append before append() returned.
        let done = false;
        const seen: StreamEntry[] = [];
        const passedOver: number[] = [];
        const reader = (async () => {
          let cursor = 0;
          for (let finalPass = false; ;) {
            let page: StreamEntry[];
            try {
              page = await stream.read(name, { after: cursor, limit: 3 });
            } catch (error) {
              if (!(error instanceof StreamTrimmedError)) throw error;
              expect(error.first).toBeGreaterThan(cursor + 1);
              passedOver.push(...range(cursor + 1, error.first - 1));
              cursor = error.first - 1;
              continue;
            }
            expect(positions(page)).toEqual(range(cursor + 1, cursor + page.length));
            seen.push(...page);
            cursor = seen.at(-1)?.position ?? cursor;
            if (page.length === 0 && finalPass) return;
            if (page.length === 0 && done) finalPass = true;
            await new Promise((resolve) => setImmediate(resolve));
          }
        })();
        // Awaited below; a failing step must not leave its rejection unhandled.
        reader.catch(() => undefined);

        try {
          await runSteps();
        } finally {
          done = true;
        }
        await reader;
        expect([...passedOver, ...positions(seen)].sort((a, b) => a - b)).toEqual(range(1, ids.size));
        for (const entry of seen) expect(entry.envelope.id).toBe(ids.get(entry.position));
        for (const position of passedOver) expect(position).toBeLessThan(first);

        async function runSteps(): Promise<void> {
          for (const step of ops) {
            if (step.kind === 'append') await append(step.size);
            else if (step.kind === 'read') {
              const last = ids.size;
              const read = stream.read(name, {
                after: step.after,
                limit: step.limit,
                onTrimmed: step.onTrimmed,
              });
              if (step.onTrimmed === 'throw' && step.after < first - 1) {
                await expect(read).rejects.toMatchObject({
                  code: 'KEEL_STREAM_TRIMMED',
                  after: step.after,
                  first,
                });
                continue;
              }
              const start = Math.max(step.after, first - 1);
              const page = await read;
              expect(positions(page)).toEqual(range(start + 1, Math.min(start + step.limit, last)));
              for (const entry of page) expect(entry.envelope.id).toBe(ids.get(entry.position));
            } else {
              const { kind: _, appendBefore, appendSize, racingAppend, ...bounds } = step;
              if (
                bounds.before === undefined &&
                bounds.keepLast === undefined &&
                bounds.olderThanMs === undefined
              )
                bounds.keepLast = 2;
              const lastBefore = ids.size;
              let hookRan = false;
              hook(async (n) => {
                if (n !== appendBefore) return;
                hookRan = true;
                await append(appendSize);
              });
              const [deleted] = await Promise.all([
                trimmer.trim(name, bounds),
                racingAppend === undefined ? undefined : append(racingAppend),
              ]);
              hook(undefined);
              // Only what was committed when the trim began, as far as every bound allows;
              // `youngFrom`: the first position appended after the trim's transaction began.
              const firstAfter = (lastAtStart: number, youngFrom = Number.MAX_SAFE_INTEGER): number => {
                let upTo = lastAtStart;
                if (bounds.before !== undefined) upTo = Math.min(upTo, bounds.before - 1);
                if (bounds.keepLast !== undefined) upTo = Math.min(upTo, lastAtStart - bounds.keepLast);
                if (bounds.olderThanMs === 3_600_000) upTo = first - 1;
                if (bounds.olderThanMs === 0) upTo = Math.min(upTo, youngFrom - 1);
                return Math.max(first, upTo + 1);
              };
              const { first: next } = await stream.bounds(name);
              // The racing append committed before the trim began, or after: either head is right.
              const heads =
                racingAppend === undefined ? [lastBefore] : [lastBefore, lastBefore + racingAppend];
              const possible = heads.map((head) => firstAfter(head));
              // "Older than 0 ms" is "appended before the trim's transaction began": a racing append
              // whose transaction began after it, yet committed before the trim read the head, is
              // within the head and still young, so it stays.
              if (racingAppend !== undefined && bounds.olderThanMs === 0)
                possible.push(firstAfter(lastBefore + racingAppend, lastBefore + 1));
              expect(possible).toContain(next);
              expect(deleted).toBe(next - first);
              first = next;
              // An append that its hook never reached (the trim ended first) comes after it.
              if (appendBefore !== undefined && !hookRan) await append(appendSize);
            }
            await expectStored();
          }
        }
      }),
      { numRuns: propertyRuns(50) },
    );
  });
});
