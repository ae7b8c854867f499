import type { TestDb } from '../testing/index.ts';
import type { CliIo } from './cli-io.ts';

/**
 * Runs a `keel` command against a test database and collects what it printed. The command
 * closes the db it opens, so it gets a view whose close is a no-op and the test keeps the db.
 */
export async function runCommand(
  run: (argv: readonly string[], io: CliIo) => Promise<number>,
  db: TestDb,
  argv: readonly string[],
): Promise<{ code: number; out: string[]; err: string[] }> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await run(argv, {
    out: (l) => out.push(l),
    err: (l) => err.push(l),
    env: {},
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
