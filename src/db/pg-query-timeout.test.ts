// PgDb's queryTimeoutMs against the PostgreSQL server: a statement that runs past it is cancelled
// by the server (KEEL_TIMEOUT, a transaction rolls back); behind a network that carries nothing
// (startTcpProxy's silence()), keel gives up on the connection a second later (KEEL_DB_UNAVAILABLE)
// and the pool goes on with fresh connections once the network is back. pg pass only: PGlite runs
// in the process and has no connection to lose.
import { afterEach, describe, expect, it } from 'vitest';
import { isKeelError } from '../errors/index.ts';
import { defaultDatabaseUrl } from './open-db.ts';
import { openPgDb, type PgDb } from './pg-db.ts';
import { testDbBackend } from '../testing/db.ts';
import { startTcpProxy, type TcpProxy } from '../testing/tcp-proxy.ts';

const url = process.env.DATABASE_URL?.trim() || defaultDatabaseUrl;
const schema = `query_timeout_${process.pid}`;
const opened: PgDb[] = [];

async function open(queryTimeoutMs?: number, through = url): Promise<PgDb> {
  const db = await openPgDb({
    url: through,
    schema,
    poolSize: 2,
    applicationName: `keel-test-query-timeout-${process.pid}`,
    ...(queryTimeoutMs === undefined ? {} : { queryTimeoutMs }),
  });
  opened.push(db);
  return db;
}

afterEach(async () => {
  const admin = opened[0];
  await admin?.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`).catch(() => undefined);
  await Promise.all(opened.splice(0).map((db) => db.close()));
});

/** Statements of this file's connections the server is still running, by their text. */
async function running(db: PgDb, text: string): Promise<number> {
  const { rows } = await db.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM pg_stat_activity
     WHERE application_name = $1 AND state = 'active' AND query = $2`,
    [`keel-test-query-timeout-${process.pid}`, text],
  );
  return rows[0]!.n;
}

describe.skipIf(testDbBackend() !== 'pg')('PgDb queryTimeoutMs (pg pass only)', () => {
  it('has the server cancel a statement that runs past it, on a connection that stays', async () => {
    const db = await open(300);
    const observer = await open();
    const sleep = 'SELECT pg_sleep(5)';
    const started = Date.now();
    const error = await db.query(sleep).then(
      () => undefined,
      (failure: unknown) => failure,
    );
    expect(Date.now() - started).toBeLessThan(2000);
    expect(isKeelError(error, 'KEEL_TIMEOUT')).toBe(true);
    expect((error as Error).message).toMatch(/queryTimeoutMs \(300 ms\)/);
    expect((error as { cause?: { code?: unknown } }).cause?.code).toBe('57014');
    expect(await running(observer, sleep)).toBe(0);
    expect((await db.query('SELECT pg_sleep(0.05), 1 AS one')).rows).toEqual([{ pg_sleep: '', one: 1 }]);
  });

  it('gives up on a connection the network stopped carrying, and goes on once it carries again', async () => {
    const server = new URL(url);
    const proxy: TcpProxy = await startTcpProxy({ port: Number(server.port || 5432), host: server.hostname });
    try {
      const through = new URL(url);
      through.host = `${proxy.host}:${proxy.port}`;
      const db = await open(300, through.toString());
      expect((await db.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
      proxy.silence();
      const started = Date.now();
      const error = await db.query('SELECT 2 AS two').then(
        () => undefined,
        (failure: unknown) => failure,
      );
      // The server never heard the statement, so nothing cancels it: a second past the bound, keel gives up.
      expect(Date.now() - started).toBeGreaterThanOrEqual(1200);
      expect(Date.now() - started).toBeLessThan(5000);
      expect(isKeelError(error, 'KEEL_DB_UNAVAILABLE')).toBe(true);
      expect((error as Error).message).toMatch(/did not answer a statement within queryTimeoutMs \(300 ms\)/);
      proxy.restore();
      expect((await db.query('SELECT 3 AS three')).rows).toEqual([{ three: 3 }]);
    } finally {
      await proxy.close();
    }
  });

  it('rolls a transaction back when one of its statements runs past it', async () => {
    const db = await open(300);
    await db.query('CREATE TABLE t (id int)');
    await expect(
      db.transaction(async (tx) => {
        await tx.query('INSERT INTO t VALUES (1)');
        await tx.query('SELECT pg_sleep(5)');
        await tx.query('INSERT INTO t VALUES (2)');
      }),
    ).rejects.toMatchObject({ code: 'KEEL_TIMEOUT' });
    expect((await db.query('SELECT count(*)::int AS n FROM t')).rows).toEqual([{ n: 0 }]);
    await db.transaction(async (tx) => tx.query('INSERT INTO t VALUES (3)'));
    expect((await db.query('SELECT id FROM t')).rows).toEqual([{ id: 3 }]);
  });

  it('waits as long as a statement takes without it', async () => {
    const db = await open();
    expect((await db.query('SELECT pg_sleep(0.5), 2 AS two')).rows).toEqual([{ pg_sleep: '', two: 2 }]);
  });
});

describe('PgDb queryTimeoutMs, checked', () => {
  it.each([0, -1, 1.5, '300'])('refuses %j, naming the option', async (value) => {
    await expect(openPgDb({ url, queryTimeoutMs: value as number })).rejects.toMatchObject({
      code: 'KEEL_INVALID_ARGUMENT',
      details: { field: 'queryTimeoutMs' },
    });
  });
});
