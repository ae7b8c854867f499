// Set-up the health tests of the services on PostgreSQL share: a database that fails or hangs on
// demand, and (pg only) connections of their own that a test can find and end.
import { defaultDatabaseUrl, openPgDb, type Db } from '../../../db/index.ts';
import { KeelError } from '../../../errors/index.ts';

/**
 * `db` as a service sees it: after `cut()` every statement fails as on a lost connection, after
 * `hang()` every statement waits, as on a connection that neither answers nor breaks; `restore()`
 * lets them through again (the waiting ones too). LISTEN is left alone.
 */
export function flakyDb(db: Db): { db: Db; cut: () => void; hang: () => void; restore: () => void } {
  let mode: 'up' | 'cut' | 'hang' = 'up';
  const hung: (() => void)[] = [];
  const gate = async (): Promise<void> => {
    if (mode === 'cut') throw new KeelError('KEEL_DB_UNAVAILABLE', 'connection to the database lost');
    if (mode === 'hang') await new Promise<void>((resolve) => hung.push(resolve));
  };
  const view: Db = {
    dialect: db.dialect,
    schema: db.schema,
    query: async (sql, params) => {
      await gate();
      return db.query(sql, params);
    },
    transaction: async (fn, options) => {
      await gate();
      return db.transaction(fn, options);
    },
    listen: (channel, onNotify) => db.listen(channel, onNotify),
    close: async () => undefined,
  };
  return {
    db: view,
    cut: () => void (mode = 'cut'),
    hang: () => void (mode = 'hang'),
    restore: () => {
      mode = 'up';
      for (const go of hung.splice(0)) go();
    },
  };
}

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
