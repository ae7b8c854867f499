import type { Db } from '../db/index.ts';
import { KeelError } from '../errors/index.ts';

/** A `Db` as a service under test sees it, and the switches that break it. */
export interface FlakyDb {
  readonly db: Db;
  /** From now on every new statement and transaction fails as on a lost connection (`KEEL_DB_UNAVAILABLE`). */
  readonly cut: () => void;
  /** From now on every new statement and transaction waits, as on a connection that neither answers nor breaks. */
  readonly hang: () => void;
  /** Lets statements through again, the waiting ones too. */
  readonly restore: () => void;
}

/**
 * `db` as a service sees it, broken on demand: for tests of what a service does, and what its
 * `health()` says, while its database is lost or hangs. The fault is at the door: a transaction
 * begun before keeps going. LISTEN is left alone; closing the view closes nothing.
 */
export function flakyDb(db: Db): FlakyDb {
  let mode: 'up' | 'cut' | 'hang' = 'up';
  const waiting: (() => void)[] = [];
  const gate = async (): Promise<void> => {
    if (mode === 'hang') await new Promise<void>((resolve) => waiting.push(resolve));
    if (mode === 'cut') throw new KeelError('KEEL_DB_UNAVAILABLE', 'connection to the database lost');
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
      for (const go of waiting.splice(0)) go();
    },
  };
}
