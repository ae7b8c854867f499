// Child process for the crash tests: commits rows one by one into a file-backed PGlite and prints
// each id once its commit resolved. The parent kills it with SIGKILL at a moment of its choosing,
// or it kills itself after `stopAfter` commits; the parent then reopens the directory.
import { openPgliteDb } from '../pglite-db.ts';

const [dataDir, stopAfterArg] = process.argv.slice(2);
if (dataDir === undefined) throw new Error('usage: pglite-commit-loop <dataDir> [stopAfter]');
const stopAfter = stopAfterArg === undefined ? Infinity : Number(stopAfterArg);

const db = await openPgliteDb({ dataDir });
await db.query(`CREATE TABLE IF NOT EXISTS crash_rows (id int PRIMARY KEY, note text NOT NULL);
  CREATE TABLE IF NOT EXISTS crash_total (one int PRIMARY KEY, n int NOT NULL);
  INSERT INTO crash_total VALUES (1, 0) ON CONFLICT DO NOTHING`);
const { rows } = await db.query<{ last: number }>('SELECT coalesce(max(id), 0) AS last FROM crash_rows');
const from = (rows[0]?.last ?? 0) + 1;
process.stdout.write(`ready ${from}\n`);
for (let id = from; ; id++) {
  await db.transaction(async (tx) => {
    await tx.query('INSERT INTO crash_rows VALUES ($1, $2)', [id, `row ${id}`]);
    // Two writes per commit: after a crash the total must still equal the row count.
    await tx.query('UPDATE crash_total SET n = n + 1 WHERE one = 1');
  });
  process.stdout.write(`committed ${id}\n`);
  if (id - from + 1 >= stopAfter) process.kill(process.pid, 'SIGKILL');
}
