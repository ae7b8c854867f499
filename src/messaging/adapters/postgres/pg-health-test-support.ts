// Set-up the health tests of the services on PostgreSQL share (pg only): connections of their own
// that a test can find and end. A database that fails or hangs on demand is keel/testing's flakyDb.
import { defaultDatabaseUrl, openPgDb, type Db } from '../../../db/index.ts';

/**
 * pg only: a pool on `schema` whose connections carry `applicationName`, so that a test finds
 * exactly them in `pg_stat_activity` (test files run side by side on one server).
 */
export function namedPgDb(schema: string, applicationName: string): Promise<Db> {
  return openPgDb({
    url: process.env.DATABASE_URL?.trim() || defaultDatabaseUrl,
    schema,
    poolSize: 2,
    applicationName,
  });
}

/** pg only: resolves with the pid of a backend named `applicationName` once one waits on a lock. */
export async function backendWaitingOnLock(db: Db, applicationName: string): Promise<number> {
  for (;;) {
    const { rows } = await db.query<{ pid: number }>(
      `SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock'`,
      [applicationName],
    );
    if (rows[0] !== undefined) return rows[0].pid;
  }
}
