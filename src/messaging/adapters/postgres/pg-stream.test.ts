import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { migrate } from '../../../db/index.ts';
import { isKeelError } from '../../../errors/index.ts';
import { createTestDb, type TestDb } from '../../../testing/index.ts';
import { createEnvelope, type Envelope } from '../../envelope.ts';
import { PublishError } from '../../publisher.ts';
import { PgStream, type StreamEntry } from './pg-stream.ts';
import { pgStreamChannel, pgStreamMigrations } from './pg-stream-schema.ts';
import { propertyRuns } from '../../../testing/property-runs.ts';

const dbs: TestDb[] = [];
afterEach(async () => {
  for (const db of dbs.splice(0)) await db.close();
});

async function setup(poolSize = 5, checkNestedUse = true): Promise<{ db: TestDb; stream: PgStream }> {
  const db = await createTestDb({ poolSize, checkNestedUse });
  dbs.push(db);
  await migrate(db, pgStreamMigrations);
  return { db, stream: new PgStream(db) };
}

function events(count: number, tag = 'e'): Envelope[] {
  return Array.from({ length: count }, (_, i) =>
    createEnvelope({
      type: 'thing.happened.v1',
      payload: { tag, n: i },
      key: `k${i % 3}`,
      headers: { h: tag },
    }),
  );
}

/** Reads the whole stream in small pages, as a consumer with a cursor would. */
async function readAll(stream: PgStream, name: string, limit = 3): Promise<StreamEntry[]> {
  const all: StreamEntry[] = [];
  for (;;) {
    const page = await stream.read(name, { after: all.at(-1)?.position ?? 0, limit });
    all.push(...page);
    if (page.length < limit) return all;
  }
}

describe('PgStream', () => {
  it('numbers entries 1, 2, 3, ... per stream and round-trips envelopes', async () => {
    const { stream } = await setup();
    const first = events(2, 'a');
    const second = events(3, 'b');
    expect(await stream.append('orders', first)).toEqual({ first: 1, last: 2 });
    await stream.publish('orders', second);
    await stream.publish('other', events(1, 'c'));
    const read = await readAll(stream, 'orders', 2);
    expect(read.map((e) => e.position)).toEqual([1, 2, 3, 4, 5]);
    expect(read.map((e) => e.envelope)).toEqual([...first, ...second]);
    expect(read[0]?.appendedAt).toBeInstanceOf(Date);
    expect(await stream.head('orders')).toBe(5);
    expect(await stream.head('other')).toBe(1);
    expect(await stream.head('never')).toBe(0);
    expect(await stream.read('orders', { after: 5 })).toEqual([]);
  });

  it('keeps what it reads: a second reader from position 0 sees the same entries (replay)', async () => {
    const { stream } = await setup();
    await stream.append('orders', events(4));
    const once = await readAll(stream, 'orders');
    const again = await readAll(stream, 'orders', 100);
    expect(again).toEqual(once);
    expect(once).toHaveLength(4);
  });

  it('appends inside a transaction only when it commits, without leaving a gap behind a rollback', async () => {
    const { db, stream } = await setup();
    await db
      .transaction(async (tx) => {
        expect(await stream.appendIn(tx, 'orders', events(2))).toEqual({ first: 1, last: 2 });
        throw new Error('roll back');
      })
      .catch(() => undefined);
    expect(await stream.head('orders')).toBe(0);
    await db.transaction((tx) => stream.appendIn(tx, 'orders', events(1)));
    expect((await stream.read('orders')).map((e) => e.position)).toEqual([1]);
  });

  it('stores a duplicate as it is given (at-least-once publishers), at a position of its own', async () => {
    const { stream } = await setup();
    const [event] = events(1);
    await stream.publish('orders', [event!]);
    await stream.publish('orders', [event!]);
    const read = await stream.read('orders');
    expect(read.map((e) => [e.position, e.envelope.id])).toEqual([
      [1, event!.id],
      [2, event!.id],
    ]);
  });

  it('wakes LISTENers on the stream channel with the stream name, after the commit', async () => {
    const { db, stream } = await setup();
    const names: string[] = [];
    let heard: () => void = () => undefined;
    const ours = new Promise<void>((resolve) => (heard = resolve));
    // Other tests' streams notify on the same database-wide channel: wait for ours.
    const unlisten = await db.listen(pgStreamChannel, (name) => {
      names.push(name);
      if (name === 'orders-notify') heard();
    });
    await stream.append('orders-notify', events(1));
    await ours;
    await unlisten();
    expect(names).toContain('orders-notify');
  });

  it('rejects bad input by field, and wraps a failed append in PublishError', async () => {
    const { db, stream } = await setup();
    await expect(stream.publish('bad name!', events(1))).rejects.toMatchObject({
      code: 'KEEL_INVALID_ARGUMENT',
      field: 'destination',
    });
    await expect(stream.read('orders', { after: -1 })).rejects.toMatchObject({ field: 'after' });
    await expect(stream.read('orders', { after: 1.5 })).rejects.toMatchObject({ field: 'after' });
    await expect(stream.read('orders', { limit: 0 })).rejects.toMatchObject({ field: 'limit' });
    await expect(stream.read('orders', { limit: 10_001 })).rejects.toMatchObject({ field: 'limit' });
    await expect(stream.append('', events(1))).rejects.toMatchObject({ field: 'stream' });
    expect(await stream.append('orders', [])).toBeUndefined();
    await db.query('DROP TABLE keel_stream');
    const sent = events(2);
    const failure = await stream.publish('orders', sent).catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(PublishError);
    expect((failure as PublishError).failedIds).toEqual(sent.map((m) => m.id));
    await stream.close();
    await expect(stream.read('orders')).rejects.toSatisfy((e) => isKeelError(e, 'KEEL_SERVICE_STATE'));
  });

  it.skipIf(process.env.KEEL_DB !== 'pg')(
    // PGlite runs one transaction at a time, so appenders there never overlap.
    'makes a later append wait for an open one, so positions follow commit order (pg only)',
    async () => {
      // The second appender and the lock probe run on other pooled connections, on purpose.
      const { db, stream } = await setup(5, false);
      let second: Promise<unknown> | undefined;
      let releaseFirst: () => void = () => undefined;
      const firstMayCommit = new Promise<void>((resolve) => (releaseFirst = resolve));
      const first = db.transaction(async (tx) => {
        await stream.appendIn(tx, 'orders', events(1, 'first'));
        const { rows } = await tx.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
        second = stream.append('orders', events(1, 'second'));
        // The second appender is blocked on our lock (not merely not started yet) ...
        for (;;) {
          const blocked = await db.query<{ n: number }>(
            'SELECT count(*)::int AS n FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))',
            [rows[0]!.pid],
          );
          if (blocked.rows[0]!.n > 0) break;
        }
        // ... and a reader sees neither append yet: no position 2 to skip past position 1.
        expect(await stream.read('orders')).toEqual([]);
        await firstMayCommit;
      });
      releaseFirst();
      await first;
      await second;
      const read = await stream.read('orders');
      expect(read.map((e) => [e.position, (e.envelope.payload as { tag: string }).tag])).toEqual([
        [1, 'first'],
        [2, 'second'],
      ]);
    },
  );

  it('property: concurrent appends (some rolled back) and a concurrent reader — gap-free, each committed entry read once, in commit order', async () => {
    const { db, stream } = await setup(8);
    let run = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.record({ size: fc.integer({ min: 1, max: 4 }), commit: fc.boolean() }), {
          minLength: 1,
          maxLength: 12,
        }),
        fc.integer({ min: 1, max: 5 }),
        async (appends, readLimit) => {
          run += 1;
          const name = `prop-${run}`;
          const committed = new Map<string, number>();
          let done = false;
          const seen: StreamEntry[] = [];
          const reader = (async () => {
            // Reads while appends commit; every page must start right after the cursor.
            for (let finalPass = false; ;) {
              const after = seen.at(-1)?.position ?? 0;
              const page = await stream.read(name, { after, limit: readLimit });
              page.forEach((entry, i) => expect(entry.position).toBe(after + i + 1));
              seen.push(...page);
              if (page.length === 0 && finalPass) return;
              if (page.length === 0 && done) finalPass = true;
              await new Promise((resolve) => setImmediate(resolve));
            }
          })();
          await Promise.all(
            appends.map(async ({ size, commit }, batch) => {
              const sent = events(size, `b${batch}`);
              const result = await db
                .transaction(async (tx) => {
                  const taken = await stream.appendIn(tx, name, sent);
                  if (!commit) throw new Error('roll back');
                  return taken;
                })
                .catch(() => undefined);
              if (!commit) return;
              // One append's entries sit together, in the order given.
              expect(result!.last - result!.first).toBe(size - 1);
              sent.forEach((m, i) => committed.set(m.id, result!.first + i));
            }),
          );
          done = true;
          await reader;
          expect(seen.map((e) => e.position)).toEqual(
            Array.from({ length: committed.size }, (_, i) => i + 1),
          );
          expect(new Set(seen.map((e) => e.envelope.id)).size).toBe(seen.length);
          for (const entry of seen) expect(committed.get(entry.envelope.id)).toBe(entry.position);
          expect(await stream.head(name)).toBe(committed.size);
        },
      ),
      { numRuns: propertyRuns(25) },
    );
  });
});
