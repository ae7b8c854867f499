// Child process for the crash tests: commits rows one by one into a file-backed PGlite and prints
// each id once its commit resolved. The parent kills it with SIGKILL at a moment of its choosing,
// or it kills itself after `stopAfter` commits; the parent then reopens the directory.
import { openPgliteDb } from '../pglite-db.ts';

const [dataDir, stopAfterArg] = process.argv.slice(2);
if (dataDir === undefined) throw new Error('usage: pglite-commit-loop <dataDir> [stopAfter]');
const stopAfter = stopAfterArg === undefined ? Infinity : Number(stopAfterArg);

const db = await openPgliteDb({ dataDir });
await db.query('CREATE TABLE IF NOT EXISTS crash_rows (id int PRIMARY KEY, note text NOT NULL)');
const { rows } = await db.query<{ last: number }>('SELECT coalesce(max(id), 0) AS last FROM crash_rows');
const from = (rows[0]?.last ?? 0) + 1;
process.stdout.write(`ready ${from}\n`);
for (let id = from; ; id++) {
  await db.transaction(async (tx) => {
    await tx.query('INSERT INTO crash_rows VALUES ($1, $2)', [id, `row ${id}`]);
  });
  process.stdout.write(`committed ${id}\n`);
  if (id - from + 1 >= stopAfter) process.kill(process.pid, 'SIGKILL');
}
