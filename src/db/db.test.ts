import { afterEach, describe, expect, it } from 'vitest';
import { createTestDb, testDbBackend, type TestDb } from '../testing/db.ts';
import { isKeelError } from '../errors/index.ts';
import { canNotifyAfterCommit } from './notify-after-commit.ts';
import { canSendWithoutWaiting } from './send-without-waiting.ts';
import { canReadAfterCommit } from './read-after-commit.ts';

// Runs on the backend KEEL_DB chooses: `KEEL_DB=pglite npx vitest run src/db` and `KEEL_DB=pg ...`.
const open: TestDb[] = [];
async function testDb(): Promise<TestDb> {
  const db = await createTestDb();
  open.push(db);
  return db;
}
afterEach(async () => {
  await Promise.all(open.splice(0).map((db) => db.close()));
});

/** Resolves after the event loop turned `n` times: lets concurrent work interleave if it can. */
async function turns(n: number): Promise<void> {
  for (let i = 0; i < n; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}

describe('Db', () => {
  it('runs queries with $n parameters and reports rowCount like node-postgres', async () => {
    const db = await testDb();
    await db.query('CREATE TABLE t (id int PRIMARY KEY, name text, n bigint, doc jsonb)');
    const inserted = await db.query('INSERT INTO t VALUES ($1, $2, $3, $4), ($5, $6, $7, $8)', [
      1,
      'a',
      10,
      { x: 1 },
      2,
      "b'; DROP TABLE t; --",
      20,
      null,
    ]);
    expect(inserted.rowCount).toBe(2);
    const { rows, rowCount } = await db.query<{ id: number; name: string; n: string; doc: unknown }>(
      'SELECT id, name, n, doc FROM t ORDER BY id',
    );
    expect(rowCount).toBe(2);
    expect(rows).toEqual([
      { id: 1, name: 'a', n: '10', doc: { x: 1 } },
      { id: 2, name: "b'; DROP TABLE t; --", n: '20', doc: null },
    ]);
    // int8 is a string on both backends, as node-postgres returns it.
    expect((await db.query<{ c: unknown }>('SELECT count(*) AS c FROM t')).rows[0]?.c).toBe('2');
    expect((await db.query('UPDATE t SET name = $1 WHERE id > $2', ['z', 0])).rowCount).toBe(2);
    expect((await db.query('DELETE FROM t WHERE id = $1', [99])).rowCount).toBe(0);
  });

  it('returns the same JavaScript values on both backends', async () => {
    const db = await testDb();
    const { rows } = await db.query<Record<string, unknown>>(
      `SELECT 1::int2 AS i2, 2::int4 AS i4, 9007199254740993::int8 AS i8, 1.50::numeric(4,2) AS num,
              0.5::float8 AS f8, true AS b, 'x'::text AS t, '{"a":[1]}'::jsonb AS jb, '[2]'::json AS j,
              '2026-01-02T03:04:05.678Z'::timestamptz AS ts, NULL::text AS nothing,
              '00000000-0000-7000-8000-000000000001'::uuid AS id, ARRAY['a','b']::text[] AS arr,
              ARRAY[1,2]::int4[] AS ints, ARRAY[3,NULL]::int8[] AS i8s`,
    );
    expect(rows[0]).toEqual({
      i2: 1,
      i4: 2,
      i8: '9007199254740993',
      num: '1.50',
      f8: 0.5,
      b: true,
      t: 'x',
      jb: { a: [1] },
      j: [2],
      ts: new Date('2026-01-02T03:04:05.678Z'),
      nothing: null,
      id: '00000000-0000-7000-8000-000000000001',
      arr: ['a', 'b'],
      ints: [1, 2],
      i8s: ['3', null],
    });
    // Parameters: objects go in as JSON, Dates as timestamps.
    const when = new Date('2026-05-06T07:08:09.010Z');
    const back = await db.query<{ doc: unknown; at: Date }>(
      'SELECT $1::jsonb AS doc, $2::timestamptz AS at',
      [{ k: 'v' }, when],
    );
    expect(back.rows[0]).toEqual({ doc: { k: 'v' }, at: when });
    // An array must be stringified for a json parameter: node-postgres would send a PostgreSQL array.
    await expect(db.query('SELECT $1::jsonb AS doc', [[1, 2]])).rejects.toThrow();
    expect((await db.query('SELECT $1::jsonb AS doc', [JSON.stringify([1, 2])])).rows).toEqual([
      { doc: [1, 2] },
    ]);
  });

  it('runs a script of several statements when there are no parameters, answering with the last', async () => {
    const db = await testDb();
    const result = await db.query(
      'CREATE TABLE s (v int); INSERT INTO s VALUES (1), (2); SELECT sum(v) AS total FROM s',
    );
    expect(result.rows).toEqual([{ total: '3' }]);
  });

  it('rejects SQL errors with the SQLSTATE as code', async () => {
    const db = await testDb();
    await expect(db.query('SELECT * FROM missing_table')).rejects.toMatchObject({ code: '42P01' });
    await db.query('CREATE TABLE u (id int PRIMARY KEY)');
    await db.query('INSERT INTO u VALUES (1)');
    await expect(db.query('INSERT INTO u VALUES ($1)', [1])).rejects.toMatchObject({ code: '23505' });
  });

  it('commits a transaction that resolves and returns its value', async () => {
    const db = await testDb();
    await db.query('CREATE TABLE t (id int)');
    const value = await db.transaction(async (tx) => {
      await tx.query('INSERT INTO t VALUES (1)');
      await tx.query('INSERT INTO t VALUES (2)');
      return 'done';
    });
    expect(value).toBe('done');
    expect((await db.query('SELECT id FROM t ORDER BY id')).rows).toEqual([{ id: 1 }, { id: 2 }]);
  });

  it('accepts concurrent queries on one transaction handle', async () => {
    const db = await testDb();
    await db.query('CREATE TABLE t (id int)');
    const counts = await db.transaction(async (tx) => {
      await Promise.all(Array.from({ length: 20 }, (_, i) => tx.query('INSERT INTO t VALUES ($1)', [i])));
      return (await tx.query<{ n: string }>('SELECT count(*) AS n FROM t')).rows[0]?.n;
    });
    expect(counts).toBe('20');
  });

  it('rolls back a transaction that throws, and rethrows', async () => {
    const db = await testDb();
    await db.query('CREATE TABLE t (id int)');
    const boom = new Error('boom');
    await expect(
      db.transaction(async (tx) => {
        await tx.query('INSERT INTO t VALUES (1)');
        throw boom;
      }),
    ).rejects.toBe(boom);
    expect((await db.query('SELECT id FROM t')).rows).toEqual([]);
  });

  it('refuses to report a commit when a failed statement was swallowed inside the transaction', async () => {
    const db = await testDb();
    await db.query('CREATE TABLE t (id int PRIMARY KEY)');
    await db.query('INSERT INTO t VALUES (1)');
    await expect(
      db.transaction(async (tx) => {
        await tx.query('INSERT INTO t VALUES (2)');
        await tx.query('INSERT INTO t VALUES (1)').catch(() => undefined);
      }),
    ).rejects.toMatchObject({ code: '25P02' });
    expect((await db.query('SELECT id FROM t')).rows).toEqual([{ id: 1 }]);
  });

  it('applies the isolation option, and rejects an unknown one naming the field', async () => {
    const db = await testDb();
    for (const isolation of ['read committed', 'repeatable read', 'serializable'] as const) {
      const level = await db.transaction(
        async (tx) =>
          (await tx.query<{ level: string }>("SELECT current_setting('transaction_isolation') AS level"))
            .rows[0]?.level,
        { isolation },
      );
      expect(level).toBe(isolation);
    }
    await expect(
      db.transaction(async () => undefined, { isolation: 'chaos' as 'serializable' }),
    ).rejects.toMatchObject({ code: 'KEEL_INVALID_ARGUMENT', field: 'isolation' });
  });

  it('refuses the tx handle after its transaction ended', async () => {
    const db = await testDb();
    let leaked: { query: (sql: string) => Promise<unknown> } | undefined;
    await db.transaction(async (tx) => {
      leaked = tx;
    });
    await expect(leaked?.query('SELECT 1')).rejects.toMatchObject({ code: 'KEEL_SERVICE_STATE' });
  });

  it('refuses db calls made inside its own transaction callback instead of hanging', async () => {
    const db = await testDb();
    const error: unknown = await db
      .transaction(async () => {
        await db.query('SELECT 1');
      })
      .catch((e: unknown) => e);
    expect(isKeelError(error, 'KEEL_DB_IN_TRANSACTION')).toBe(true);
    await expect(db.transaction(async () => db.transaction(async () => 1))).rejects.toMatchObject({
      code: 'KEEL_DB_IN_TRANSACTION',
    });
    // After the transaction, the same async context may use the db again.
    expect((await db.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
  });

  it.skipIf(testDbBackend() !== 'pg')(
    'on pg, refuses nested calls only when asked: without the check they run outside the transaction (pg pass only)',
    async () => {
      // Production's default (checkNestedUse off): no AsyncLocalStorage, so nothing recognises
      // the call as nested, and it runs on another pooled connection.
      const db = await createTestDb({ checkNestedUse: false });
      open.push(db);
      await db.query('CREATE TABLE t (id int)');
      const seenOutside = await db.transaction(async (tx) => {
        await tx.query('INSERT INTO t VALUES (1)');
        return (await db.query('SELECT count(*)::int AS n FROM t')).rows[0];
      });
      expect(seenOutside).toEqual({ n: 0 });
      expect((await db.query('SELECT count(*)::int AS n FROM t')).rows).toEqual([{ n: 1 }]);
    },
  );

  it('never lets a query from outside run inside an open transaction', async () => {
    const db = await testDb();
    await db.query('CREATE TABLE t (id int)');
    let opened: () => void = () => undefined;
    const isOpen = new Promise<void>((resolve) => (opened = resolve));
    let proceed: () => void = () => undefined;
    const mayProceed = new Promise<void>((resolve) => (proceed = resolve));
    const transaction = db.transaction(async (tx) => {
      await tx.query('INSERT INTO t VALUES (1)');
      opened();
      await mayProceed;
      await tx.query('INSERT INTO t VALUES (2)');
      throw new Error('roll back');
    });
    await isOpen;
    // Issued from outside while the transaction is open. Had it run on the transaction's
    // connection, it would see the uncommitted row (101) and be rolled back with it.
    const outside = db.query('INSERT INTO t SELECT 100 + count(*) FROM t');
    await turns(20);
    proceed();
    await expect(transaction).rejects.toThrow('roll back');
    await outside;
    expect((await db.query('SELECT id FROM t ORDER BY id')).rows).toEqual([{ id: 100 }]);
  });

  it('runs many concurrent transactions, each atomically', async () => {
    const db = await testDb();
    await db.query(
      'CREATE TABLE counter (id int PRIMARY KEY, n int NOT NULL); INSERT INTO counter VALUES (1, 0)',
    );
    await db.query('CREATE TABLE log (tx int, step int)');
    const count = 40;
    await Promise.all(
      Array.from({ length: count }, (_, i) =>
        db
          .transaction(async (tx) => {
            await tx.query('INSERT INTO log VALUES ($1, 1)', [i]);
            await turns(2);
            // FOR UPDATE serialises the read-modify-write on pg; on PGlite transactions never overlap.
            const { rows } = await tx.query<{ n: number }>('SELECT n FROM counter WHERE id = 1 FOR UPDATE');
            await tx.query('UPDATE counter SET n = $1 WHERE id = 1', [(rows[0]?.n ?? 0) + 1]);
            await tx.query('INSERT INTO log VALUES ($1, 2)', [i]);
            if (i % 5 === 0) throw new Error(`abort ${i}`);
          })
          .catch((error: unknown) => {
            if (!(error instanceof Error) || !error.message.startsWith('abort')) throw error;
          }),
      ),
    );
    const committed = count - count / 5;
    expect((await db.query<{ n: number }>('SELECT n FROM counter')).rows[0]?.n).toBe(committed);
    const { rows } = await db.query<{ tx: number; steps: string }>(
      'SELECT tx, count(*) AS steps FROM log GROUP BY tx ORDER BY tx',
    );
    expect(rows).toHaveLength(committed);
    expect(rows.every((row) => row.steps === '2' && row.tx % 5 !== 0)).toBe(true);
  });

  it('delivers NOTIFY to listeners, and a NOTIFY inside a transaction only after its commit', async () => {
    const db = await testDb();
    const channel = `ch_${db.schema}`;
    const received: string[] = [];
    let arrived: () => void = () => undefined;
    const unlisten = await db.listen(channel, (payload) => {
      received.push(payload);
      arrived();
    });
    const next = (): Promise<void> => new Promise<void>((resolve) => (arrived = resolve));

    let got = next();
    await db.query('SELECT pg_notify($1, $2)', [channel, 'plain']);
    await got;
    expect(received).toEqual(['plain']);

    got = next();
    await db.transaction(async (tx) => {
      await tx.query('SELECT pg_notify($1, $2)', [channel, 'in-tx']);
      await turns(20);
      expect(received).toEqual(['plain']);
    });
    await got;
    expect(received).toEqual(['plain', 'in-tx']);

    await expect(
      db.transaction(async (tx) => {
        await tx.query('SELECT pg_notify($1, $2)', [channel, 'rolled-back']);
        throw new Error('no');
      }),
    ).rejects.toThrow('no');

    await unlisten();
    await unlisten();
    await db.query('SELECT pg_notify($1, $2)', [channel, 'after-unlisten']);
    await turns(50);
    expect(received).toEqual(['plain', 'in-tx']);
  });

  it('sends notifyAfterCommit once per (channel, payload), only after a commit, never after a rollback', async () => {
    const db = await testDb();
    const channel = `nac_${db.schema}`;
    const received: string[] = [];
    let arrived: () => void = () => undefined;
    await db.listen(channel, (payload) => {
      received.push(payload);
      arrived();
    });
    await expect(
      db.transaction(async (tx) => {
        if (!canNotifyAfterCommit(tx)) throw new Error('a keel tx can notify after commit');
        tx.notifyAfterCommit(channel, 'rolled-back');
        throw new Error('no');
      }),
    ).rejects.toThrow('no');
    const got = new Promise<void>((resolve) => (arrived = resolve));
    await db.transaction(async (tx) => {
      if (!canNotifyAfterCommit(tx)) throw new Error('a keel tx can notify after commit');
      tx.notifyAfterCommit(channel, 'a');
      tx.notifyAfterCommit(channel, 'a');
      tx.notifyAfterCommit(channel, 'b');
      await turns(20);
      expect(received).toEqual([]);
    });
    await got;
    await turns(50);
    expect(received.sort()).toEqual(['a', 'b']);
    expect(canNotifyAfterCommit(db)).toBe(false);
  });

  it('commits statements sent without waiting together with the rest of the transaction', async () => {
    const db = await testDb();
    await db.query('CREATE TABLE t (id int PRIMARY KEY)');
    await db.transaction(async (tx) => {
      if (!canSendWithoutWaiting(tx)) throw new Error('a keel tx can send without waiting');
      tx.sendWithoutWaiting('INSERT INTO t VALUES ($1)', [1]);
      tx.sendWithoutWaiting('INSERT INTO t VALUES ($1)', [2]);
      // Sent in order: a later statement of the transaction sees them.
      const { rows } = await tx.query<{ n: string }>('SELECT count(*) AS n FROM t');
      expect(rows[0]?.n).toBe('2');
      tx.sendWithoutWaiting('INSERT INTO t VALUES ($1)', [3]);
    });
    const { rows } = await db.query<{ id: number }>('SELECT id FROM t ORDER BY id');
    expect(rows.map((r) => r.id)).toEqual([1, 2, 3]);
    expect(canSendWithoutWaiting(db)).toBe(false);
  });

  it('rejects the transaction with the error of a statement sent without waiting, keeping nothing', async () => {
    const db = await testDb();
    await db.query('CREATE TABLE t (id int PRIMARY KEY)');
    await db.query('INSERT INTO t VALUES (1)');
    // Failing last, just before the COMMIT.
    await expect(
      db.transaction(async (tx) => {
        await tx.query('INSERT INTO t VALUES (2)');
        if (!canSendWithoutWaiting(tx)) throw new Error('a keel tx can send without waiting');
        tx.sendWithoutWaiting('INSERT INTO t VALUES ($1)', [1]);
        return 'reported as committed';
      }),
    ).rejects.toMatchObject({ code: '23505' });
    // Failing in the middle: the callback's next query fails (transaction aborted), and the
    // transaction reports the cause, not that.
    await expect(
      db.transaction(async (tx) => {
        if (!canSendWithoutWaiting(tx)) throw new Error('a keel tx can send without waiting');
        tx.sendWithoutWaiting('INSERT INTO t VALUES ($1)', [1]);
        await tx.query('INSERT INTO t VALUES (3)');
      }),
    ).rejects.toMatchObject({ code: '23505' });
    const { rows } = await db.query<{ id: number }>('SELECT id FROM t ORDER BY id');
    expect(rows.map((r) => r.id)).toEqual([1]);
  });

  it('commits when the callback undid a failed statement sent without waiting by rolling back to a savepoint', async () => {
    const db = await testDb();
    await db.query('CREATE TABLE t (id int PRIMARY KEY)');
    await db.query('INSERT INTO t VALUES (1)');
    let seen: unknown;
    await db.transaction(async (tx) => {
      if (!canSendWithoutWaiting(tx)) throw new Error('a keel tx can send without waiting');
      await tx.query('INSERT INTO t VALUES (2)');
      await tx.query('SAVEPOINT before_the_duplicate');
      tx.sendWithoutWaiting('INSERT INTO t VALUES ($1)', [1]);
      // The next statement finds the transaction aborted; rolling back to the savepoint mends it.
      seen = await tx.query('INSERT INTO t VALUES (3)').catch((error: unknown) => error);
      await tx.query('ROLLBACK TO SAVEPOINT before_the_duplicate');
      await tx.query('INSERT INTO t VALUES (4)');
    });
    expect(seen).toMatchObject({ code: '25P02' });
    const { rows } = await db.query<{ id: number }>('SELECT id FROM t ORDER BY id');
    expect(rows.map((r) => r.id)).toEqual([1, 2, 4]);
  });

  it('runs a read after the commit, read-only, and gives nothing when the transaction rolled back', async () => {
    const db = await testDb();
    await db.query('CREATE TABLE t (id int PRIMARY KEY)');
    let counted: Promise<{ rows: { n: string }[] } | undefined> | undefined;
    let wrote: Promise<unknown> | undefined;
    let wroteWithParams: Promise<unknown> | undefined;
    let countedWithParams: Promise<{ rows: { n: string }[] } | undefined> | undefined;
    await db.transaction(async (tx) => {
      if (!canReadAfterCommit(tx)) throw new Error('a keel tx can read after commit');
      counted = tx.readAfterCommit<{ n: string }>('SELECT count(*) AS n FROM t');
      wrote = tx.readAfterCommit('INSERT INTO t VALUES (99)');
      wroteWithParams = tx.readAfterCommit('INSERT INTO t VALUES ($1)', [98]);
      countedWithParams = tx.readAfterCommit<{ n: string }>('SELECT count(*) AS n FROM t WHERE id > $1', [0]);
      await tx.query('INSERT INTO t VALUES (1)');
    });
    // After the commit: it sees the row.
    expect((await counted)?.rows[0]?.n).toBe('1');
    // A write fails in the read-only transaction, so nothing comes back and nothing is written.
    expect(await wrote).toBeUndefined();
    expect(await wroteWithParams).toBeUndefined();
    expect((await countedWithParams)?.rows[0]?.n).toBe('1');
    let rolledBack: Promise<unknown> | undefined;
    await expect(
      db.transaction(async (tx) => {
        if (!canReadAfterCommit(tx)) throw new Error('a keel tx can read after commit');
        rolledBack = tx.readAfterCommit('SELECT 1');
        throw new Error('no');
      }),
    ).rejects.toThrow('no');
    expect(await rolledBack).toBeUndefined();
    const { rows } = await db.query<{ id: number }>('SELECT id FROM t ORDER BY id');
    expect(rows.map((r) => r.id)).toEqual([1]);
    expect(canReadAfterCommit(db)).toBe(false);
  });

  it("runs a lone read in the COMMIT's message: its result, or nothing when it fails, never a failed commit", async () => {
    const db = await testDb();
    await db.query('CREATE TABLE t (id int PRIMARY KEY)');
    await db.query('CREATE TABLE parent (id int PRIMARY KEY)');
    await db.query('CREATE TABLE child (parent int REFERENCES parent DEFERRABLE INITIALLY DEFERRED)');
    const withRead = async (sql: string, write: number): Promise<unknown> => {
      let read: Promise<unknown> | undefined;
      await db.transaction(async (tx) => {
        if (!canReadAfterCommit(tx)) throw new Error('a keel tx can read after commit');
        read = tx.readAfterCommit(sql);
        await tx.query('INSERT INTO t VALUES ($1)', [write]);
      });
      return read;
    };
    expect(await withRead('SELECT count(*)::int AS n FROM t', 1)).toMatchObject({ rows: [{ n: 1 }] });
    // The read fails after the commit (a write in a read-only transaction; a division by zero):
    // the transaction still committed and says so; the read gives nothing.
    expect(await withRead('INSERT INTO t VALUES (99)', 2)).toBeUndefined();
    expect(await withRead('SELECT 1/0', 3)).toBeUndefined();
    const { rows } = await db.query<{ id: number }>('SELECT id FROM t ORDER BY id');
    expect(rows.map((r) => r.id)).toEqual([1, 2, 3]);
    // The COMMIT itself fails (a deferred foreign key): the transaction rejects, the read gives nothing.
    let read: Promise<unknown> | undefined;
    await expect(
      db.transaction(async (tx) => {
        if (!canReadAfterCommit(tx)) throw new Error('a keel tx can read after commit');
        read = tx.readAfterCommit('SELECT 1 AS one');
        await tx.query('INSERT INTO child VALUES (7)');
      }),
    ).rejects.toMatchObject({ code: '23503' });
    expect(await read).toBeUndefined();
    expect((await db.query('SELECT * FROM child')).rows).toEqual([]);
    // The connection went back to the pool usable.
    expect(await withRead('SELECT count(*)::int AS n FROM t', 4)).toMatchObject({ rows: [{ n: 4 }] });
  });

  it('refuses sendWithoutWaiting after its transaction ended', async () => {
    const db = await testDb();
    let kept: unknown;
    await db.transaction(async (tx) => {
      kept = tx;
    });
    if (!canSendWithoutWaiting(kept)) throw new Error('a keel tx can send without waiting');
    const handle = kept;
    expect(() => handle.sendWithoutWaiting('SELECT 1', [])).toThrow(
      expect.objectContaining({ code: 'KEEL_SERVICE_STATE' }),
    );
  });

  it('lets a listener query the db from its callback, as a relay woken by NOTIFY does', async () => {
    const db = await testDb();
    const channel = `wake_${db.schema}`;
    await db.query('CREATE TABLE inbox (v text)');
    let seen: Promise<unknown> | undefined;
    let woke: () => void = () => undefined;
    const woken = new Promise<void>((resolve) => (woke = resolve));
    await db.listen(channel, () => {
      seen = db.query('SELECT v FROM inbox');
      woke();
    });
    await db.transaction(async (tx) => {
      await tx.query("INSERT INTO inbox VALUES ('row')");
      await tx.query('SELECT pg_notify($1, $2)', [channel, '']);
    });
    await woken;
    expect(await seen).toMatchObject({ rows: [{ v: 'row' }] });
  });

  it('rejects a channel name that is not a plain identifier', async () => {
    const db = await testDb();
    await expect(db.listen('Bad Channel"; --', () => undefined)).rejects.toMatchObject({
      code: 'KEEL_INVALID_ARGUMENT',
      field: 'channel',
    });
  });

  it('keeps each test database in its own schema', async () => {
    const a = await testDb();
    const b = await testDb();
    expect(a.schema).not.toBe(b.schema);
    await a.query('CREATE TABLE items (v text)');
    await b.query('CREATE TABLE items (v text)');
    await a.query("INSERT INTO items VALUES ('a')");
    await b.query("INSERT INTO items VALUES ('b')");
    // Interleaved use of both keeps each on its own search_path.
    const [ra, rb] = await Promise.all([a.query('SELECT v FROM items'), b.query('SELECT v FROM items')]);
    expect(ra.rows).toEqual([{ v: 'a' }]);
    expect(rb.rows).toEqual([{ v: 'b' }]);
    expect((await a.query<{ s: string }>('SELECT current_schema() AS s')).rows[0]?.s).toBe(a.schema);
  });

  it('rejects a commit that fails at COMMIT (a deferred constraint), keeping nothing', async () => {
    const db = await testDb();
    await db.query(`CREATE TABLE parent (id int PRIMARY KEY);
      CREATE TABLE child (parent_id int REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED)`);
    await expect(
      db.transaction(async (tx) => {
        await tx.query('INSERT INTO child VALUES (1)');
      }),
    ).rejects.toMatchObject({ code: '23503' });
    expect((await db.query('SELECT * FROM child')).rows).toEqual([]);
    // The connection is usable after the failed commit.
    await db.transaction(async (tx) => {
      await tx.query('INSERT INTO parent VALUES (1)');
      await tx.query('INSERT INTO child VALUES (1)');
    });
    expect((await db.query('SELECT parent_id FROM child')).rows).toEqual([{ parent_id: 1 }]);
  });

  it('lets close wait for a transaction in flight, which commits', async () => {
    const db = await createTestDb();
    await db.query('CREATE TABLE t (id int)');
    let opened: () => void = () => undefined;
    const isOpen = new Promise<void>((resolve) => (opened = resolve));
    const transaction = db.inner.transaction(async (tx) => {
      opened();
      await turns(10);
      await tx.query('INSERT INTO t VALUES (1)');
      return 'committed';
    });
    await isOpen;
    const closing = db.inner.close();
    await expect(db.inner.query('SELECT 1')).rejects.toMatchObject({ code: 'KEEL_SERVICE_STATE' });
    expect(await transaction).toBe('committed');
    await closing;
    await db.close();
    if (db.backend === 'pg') {
      // The inner Db was closed under the harness, which could not drop the schema: check the row, then drop it.
      const observer = await testDb();
      expect((await observer.query(`SELECT id FROM "${db.schema}".t`)).rows).toEqual([{ id: 1 }]);
      await observer.query(`DROP SCHEMA "${db.schema}" CASCADE`);
    }
  });

  it('stops its listeners when closed', async () => {
    const db = await createTestDb();
    const observer = await testDb();
    const channel = `closing_${observer.schema}`;
    const heard: string[] = [];
    await db.listen(channel, (payload) => heard.push(payload));
    await db.close();
    let arrived: () => void = () => undefined;
    const own = new Promise<void>((resolve) => (arrived = resolve));
    await observer.listen(channel, () => arrived());
    await observer.query('SELECT pg_notify($1, $2)', [channel, 'after close']);
    await own;
    await turns(20);
    expect(heard).toEqual([]);
  });

  it('rejects calls after close, and close is idempotent', async () => {
    const db = await createTestDb();
    await db.query('SELECT 1');
    await db.close();
    await db.close();
    await expect(db.query('SELECT 1')).rejects.toMatchObject({ code: 'KEEL_SERVICE_STATE' });
    await expect(db.transaction(async () => 1)).rejects.toMatchObject({ code: 'KEEL_SERVICE_STATE' });
    await expect(db.listen('x', () => undefined)).rejects.toMatchObject({ code: 'KEEL_SERVICE_STATE' });
  });

  it('drops its schema on close', async () => {
    const db = await createTestDb();
    const schema = db.schema;
    await db.query('CREATE TABLE t (id int)');
    await db.close();
    await using other = await createTestDb();
    const { rows } = await other.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [schema]);
    expect(rows).toEqual([]);
  });
});
