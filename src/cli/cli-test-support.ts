import { afterEach } from 'vitest';
import { migrate, type Migration } from '../db/index.ts';
import { pgQueueMigrations } from '../messaging/index.ts';
import { outboxMigrations } from '../outbox/index.ts';
import { createTestDb, type TestDb } from '../testing/index.ts';
import type { CliIo } from './cli-io.ts';
import { runCli } from './main.ts';

/**
 * Runs a `keel` command against a test database and collects what it printed. The command
 * closes the db it opens, so it gets a view whose close is a no-op and the test keeps the db.
 */
export async function runCommand(
  run: (argv: readonly string[], io: CliIo) => Promise<number>,
  db: TestDb,
  argv: readonly string[],
  env: Readonly<Record<string, string>> = {},
): Promise<{ code: number; out: string[]; err: string[] }> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await run(argv, {
    out: (l) => out.push(l),
    err: (l) => err.push(l),
    env,
    openDb: async () => ({
      dialect: db.dialect,
      schema: db.schema,
      query: (sql, params) => db.query(sql, params),
      transaction: (fn, options) => db.transaction(fn, options),
      listen: (channel, fn) => db.listen(channel, fn),
      close: async () => undefined,
    }),
  });
  return { code, out, err };
}

/**
 * For a test file of the outbox commands: `setup()` opens a test database, closed after each
 * test, with the PostgreSQL queue's and the outbox's tables (or the `migrations` given);
 * `cli(db, ...argv)` runs `keel` on it.
 */
export function outboxCliTests(): {
  setup: (migrations?: readonly Migration[]) => Promise<TestDb>;
  cli: (db: TestDb, ...argv: string[]) => ReturnType<typeof runCommand>;
} {
  const dbs: TestDb[] = [];
  afterEach(async () => {
    for (const db of dbs.splice(0)) await db.close();
  });
  return {
    setup: async (migrations = [...pgQueueMigrations, ...outboxMigrations]) => {
      const db = await createTestDb();
      dbs.push(db);
      await migrate(db, migrations);
      return db;
    },
    cli: (db, ...argv) => runCommand(runCli, db, argv),
  };
}
