import { afterEach, describe, expect, it } from 'vitest';
import { defaultDatabaseUrl } from '../../src/db/open-db.ts';
import { openPgDb, type PgDb } from '../../src/db/pg-db.ts';
import { isKeelError } from '../../src/errors/index.ts';
import { createTestDb, testDbBackend, type TestDb } from '../../src/testing/db.ts';
import { until } from '../until.ts';

const pgPass = testDbBackend() === 'pg';
const url = process.env.DATABASE_URL?.trim() || defaultDatabaseUrl;

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

describe('PgDb without a server', () => {
  it('fails to open with KEEL_DB_UNAVAILABLE naming host and port', async () => {
    const error: unknown = await openPgDb({
      url: 'postgres://postgres@127.0.0.1:1/test',
      connectTimeoutMs: 2000,
    }).catch((e: unknown) => e);
    expect(isKeelError(error, 'KEEL_DB_UNAVAILABLE')).toBe(true);
    expect((error as Error).message).toContain('PostgreSQL at 127.0.0.1:1');
    expect((error as Error).message).not.toContain('postgres://');
  });

  it('makes createTestDb fail by name when KEEL_DB=pg and the server is missing', async () => {
    const error: unknown = await createTestDb({
      env: { KEEL_DB: 'pg', DATABASE_URL: 'postgres://postgres@127.0.0.1:1/test', CI: 'true' },
    }).catch((e: unknown) => e);
    expect(isKeelError(error, 'KEEL_DB_UNAVAILABLE')).toBe(true);
    expect((error as Error).message).toMatch(/KEEL_DB=pg .*PostgreSQL at 127\.0\.0\.1:1/);
  });

  it('validates its options naming the field', async () => {
    await expect(openPgDb({ url: '' })).rejects.toMatchObject({ code: 'KEEL_INVALID_ARGUMENT' });
    await expect(openPgDb({ url, poolSize: 0 })).rejects.toMatchObject({ field: 'poolSize' });
    await expect(openPgDb({ url, poolSize: 2, poolMin: 3 })).rejects.toMatchObject({ field: 'poolMin' });
    await expect(openPgDb({ url, idleTimeoutMs: 0 })).rejects.toMatchObject({ field: 'idleTimeoutMs' });
    await expect(openPgDb({ url, schema: 'Robert"); DROP' })).rejects.toMatchObject({ field: 'schema' });
  });
});

describe.skipIf(!pgPass)('PgDb against the server (runs in the KEEL_DB=pg pass only)', () => {
  async function testDb(): Promise<TestDb> {
    const db = await createTestDb();
    cleanups.push(() => db.close());
    return db;
  }

  async function openSecond(schema: string, applicationName = 'keel-test'): Promise<PgDb> {
    const db = await openPgDb({
      url,
      schema,
      applicationName,
      listenerBackoff: { initialMs: 20, maxMs: 200 },
    });
    cleanups.push(() => db.close());
    return db;
  }

  it('sets the schema on every pooled connection', async () => {
    const db = await testDb();
    const schemas = await Promise.all(
      Array.from({ length: 12 }, () =>
        db.transaction(async (tx) => {
          const { rows } = await tx.query<{ s: string }>('SELECT current_schema() AS s, pg_sleep(0.02)');
          return rows[0]?.s;
        }),
      ),
    );
    expect(new Set(schemas)).toEqual(new Set([db.schema]));
  });

  it('re-LISTENs after the listening connection is killed', async () => {
    const schema = (await testDb()).schema;
    const db = await openSecond(schema, 'keel-test-reconnect');
    const channel = `reconnect_${schema}`;
    const received: string[] = [];
    await db.listen(channel, (payload) => received.push(payload));
    await db.query('SELECT pg_notify($1, $2)', [channel, 'before']);
    await until(async () => received.includes('before'), 10_000, 'the first notification');

    const pid = db.listenerState.backendPid;
    expect(pid).toBeTypeOf('number');
    await db.query('SELECT pg_terminate_backend($1)', [pid]);
    await until(
      async () => db.listenerState.reconnects === 1 && db.listenerState.connected,
      10_000,
      'the reconnect',
    );
    expect(db.listenerState.backendPid).not.toBe(pid);

    await db.query('SELECT pg_notify($1, $2)', [channel, 'after']);
    await until(async () => received.includes('after'), 10_000, 'a notification after the reconnect');
  });

  it('turns a connection killed mid-transaction into KEEL_DB_UNAVAILABLE, and keeps serving', async () => {
    const db = await testDb();
    const pid = await db.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
    expect(pid.rows[0]?.pid).toBeTypeOf('number');
    let victim: number | undefined;
    const running = db.transaction(async (tx) => {
      victim = (await tx.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]?.pid;
      await tx.query('SELECT pg_sleep(5)');
    });
    const failed = running.catch((e: unknown) => e);
    await until(async () => victim !== undefined, 10_000, 'the transaction to start');
    await db.query('SELECT pg_terminate_backend($1)', [victim]);
    const error: unknown = await failed;
    expect(isKeelError(error, 'KEEL_DB_UNAVAILABLE')).toBe(true);
    expect((error as Error).message).toContain('PostgreSQL at');
    expect((await db.query('SELECT 1 AS ok')).rows).toEqual([{ ok: 1 }]);
  });

  it('says so when every pooled connection is busy, rather than blaming the server', async () => {
    const schema = (await testDb()).schema;
    const db = await openPgDb({ url, schema, poolSize: 1, connectTimeoutMs: 200 });
    cleanups.push(() => db.close());
    let release: () => void = () => undefined;
    const held = new Promise<void>((resolve) => (release = resolve));
    let started: () => void = () => undefined;
    const isHeld = new Promise<void>((resolve) => (started = resolve));
    const holder = db.transaction(async () => {
      started();
      await held;
    });
    await isHeld;
    const error: unknown = await db.query('SELECT 1').catch((e: unknown) => e);
    release();
    await holder;
    expect(isKeelError(error, 'KEEL_DB_UNAVAILABLE')).toBe(true);
    expect((error as Error).message).toMatch(/no pooled connection became free within 200 ms \(all 1 busy/);
    // Production's Db does not refuse nested calls, so the message names them as a cause.
    expect((error as Error).message).toContain('inside a db.transaction callback');
  });

  it('opens on an existing schema without the CREATE privilege', async () => {
    const owner = await testDb();
    const role = `keel_ro_${process.pid}`;
    await owner.query(`DROP ROLE IF EXISTS ${role}`).catch(() => undefined);
    await owner.query(`CREATE ROLE ${role} LOGIN`);
    cleanups.push(async () => {
      await owner.query(`DROP OWNED BY ${role}; DROP ROLE IF EXISTS ${role}`);
    });
    await owner.query(`GRANT USAGE ON SCHEMA "${owner.schema}" TO ${role}`);
    // PUBLIC has no CREATE on a database by default, so the role cannot create schemas.
    const restricted = new URL(url);
    restricted.username = role;
    const db = await openPgDb({ url: restricted.toString(), schema: owner.schema });
    cleanups.push(() => db.close());
    expect((await db.query<{ s: string }>('SELECT current_schema() AS s')).rows).toEqual([
      { s: owner.schema },
    ]);
  });

  it('closes idle connections after idleTimeoutMs, keeping poolMin of them open', async () => {
    const applicationName = `keel-pool-min-${process.pid}-${Date.now()}`;
    const db = await openPgDb({ url, applicationName, poolSize: 4, poolMin: 1, idleTimeoutMs: 100 });
    cleanups.push(() => db.close());
    const observer = await testDb();
    const open = async (): Promise<number> => {
      const { rows } = await observer.query<{ n: number }>(
        'SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1',
        [applicationName],
      );
      return rows[0]?.n ?? 0;
    };
    // Four transactions at once hold four connections; idle, three close and one stays.
    await Promise.all([1, 2, 3, 4].map(() => db.transaction((tx) => tx.query('SELECT pg_sleep(0.05)'))));
    expect(await open()).toBe(4);
    await until(async () => (await open()) === 1, 5000, 'idle connections above poolMin closed');
    // Several idle timeouts later the kept one is still open and serves.
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(await open()).toBe(1);
    expect((await db.query<{ one: number }>('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
  });

  it('closes the pool and the listener: no connection is left on the server', async () => {
    const schema = (await testDb()).schema;
    const name = `keel-close-${process.pid}`;
    const db = await openPgDb({ url, schema, applicationName: name });
    await db.listen(`close_${schema}`, () => undefined);
    await Promise.all(Array.from({ length: 4 }, () => db.query('SELECT pg_sleep(0.01)')));
    const observer = await testDb();
    const count = async (): Promise<number> =>
      Number(
        (
          await observer.query<{ n: string }>(
            'SELECT count(*) AS n FROM pg_stat_activity WHERE application_name LIKE $1',
            [`${name}%`],
          )
        ).rows[0]?.n,
      );
    expect(await count()).toBeGreaterThanOrEqual(2);
    await db.close();
    await until(async () => (await count()) === 0, 10_000, 'the connections to close');
  });
});
