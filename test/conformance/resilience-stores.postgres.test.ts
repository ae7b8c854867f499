// The PostgreSQL breaker-state and rate-limit stores, on the backend KEEL_DB chooses
// (pglite by default, pg for a real server). Each store gets a schema of its own.
import type { Db } from '../../src/db/db.ts';
import { PostgresBreakerStateStore, PostgresRateLimitStore } from '../../src/resilience/index.ts';
import {
  breakerStateStoreConformance,
  createTestDb,
  rateLimitStoreConformance,
  testDbBackend,
} from '../../src/testing/index.ts';

const backend = testDbBackend();
const open = new WeakMap<object, Db>();

breakerStateStoreConformance({
  name: `postgres (${backend})`,
  create: async () => {
    const db = await createTestDb({ schemaPrefix: 'breaker' });
    const store = new PostgresBreakerStateStore({ db });
    await store.ensureTable();
    open.set(store, db);
    return store;
  },
  destroy: async (store) => open.get(store)?.close(),
});

rateLimitStoreConformance({
  name: `postgres (${backend})`,
  create: async () => {
    const db = await createTestDb({ schemaPrefix: 'bucket' });
    const store = new PostgresRateLimitStore({ db });
    await store.ensureTable();
    open.set(store, db);
    return store;
  },
  destroy: async (store) => open.get(store)?.close(),
});
