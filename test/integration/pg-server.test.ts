// startPgServer against the real PostgreSQL 15 binaries: a server of its own with wal_level=logical,
// logical decoding of pg_logical_emit_message, and a clean stop. It never skips: without the binaries
// it fails, naming them.
import { existsSync } from 'node:fs';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { KeelError } from '../../src/errors/index.ts';
import { startPgServer, type PgServer } from '../../src/testing/index.ts';

const servers: PgServer[] = [];
afterAll(async () => {
  await Promise.all(servers.map((server) => server.stop()));
});

async function withClient<T>(
  url: string,
  fn: (client: pg.Client) => Promise<T>,
  // `replication` is a connection parameter node-postgres passes on but does not declare.
  config: pg.ClientConfig & { replication?: 'database' } = {},
): Promise<T> {
  const client = new pg.Client({ connectionString: url, ...config });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

describe('startPgServer', () => {
  it('runs a wal_level=logical server that decodes an emitted message, and stop removes it', async () => {
    const server = await startPgServer();
    servers.push(server);
    expect(server.url).toBe(`postgres://postgres@127.0.0.1:${server.port}/postgres`);

    await withClient(server.url, async (client) => {
      const walLevel = await client.query<{ wal_level: string }>('SHOW wal_level');
      expect(walLevel.rows[0]?.wal_level).toBe('logical');
      const fsync = await client.query<{ fsync: string }>('SHOW fsync');
      expect(fsync.rows[0]?.fsync).toBe('off');

      await client.query("SELECT pg_create_logical_replication_slot('t', 'test_decoding')");
      await client.query("SELECT pg_logical_emit_message(true, 'p', 'hello')");
      const { rows } = await client.query<{ data: string }>(
        "SELECT data FROM pg_logical_slot_get_changes('t', NULL, NULL)",
      );
      expect(rows.map((row) => row.data)).toContainEqual(
        expect.stringMatching(/^message: transactional: 1 prefix: p, sz: 5 content:hello$/),
      );
    });

    // pg_hba.conf lets a logical replication connection in.
    await withClient(
      server.url,
      async (client) => {
        const { rows } = await client.query<{ systemid: string }>('IDENTIFY_SYSTEM');
        expect(rows[0]?.systemid).toMatch(/^\d+$/);
      },
      { replication: 'database' },
    );

    await server.stop();
    expect(existsSync(server.dir)).toBe(false);
    await server.stop(); // idempotent
  });

  it('with fsync on, commits are synchronous and extra settings apply', async () => {
    await using server = await startPgServer({
      walLevel: 'replica',
      fsync: true,
      maxConnections: 20,
      settings: { work_mem: '8MB', max_locks_per_transaction: 128 },
    });
    await withClient(server.url, async (client) => {
      const show = async (name: string): Promise<string | undefined> =>
        (await client.query<Record<string, string>>(`SHOW ${name}`)).rows[0]?.[name];
      expect(await show('wal_level')).toBe('replica');
      expect(await show('fsync')).toBe('on');
      expect(await show('synchronous_commit')).toBe('on');
      expect(await show('max_connections')).toBe('20');
      expect(await show('work_mem')).toBe('8MB');
      expect(await show('max_locks_per_transaction')).toBe('128');
    });
  });

  it('fails with KEEL_DB_UNAVAILABLE naming the missing binaries', async () => {
    const error = await startPgServer({ binDir: '/nonexistent/pg/bin' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(KeelError);
    expect((error as KeelError).code).toBe('KEEL_DB_UNAVAILABLE');
    expect((error as KeelError).message).toContain('missing: initdb, pg_ctl, postgres');
  });
});
