// Every idempotency store passes one suite: memory, PostgreSQL on the backend KEEL_DB chooses
// (each store in its own schema), and Redis at 127.0.0.1:6379 (its own key prefix). Without a
// Redis server the file fails, naming the server.
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll } from 'vitest';
import type { Db } from '../../src/db/db.ts';
import { migrate } from '../../src/db/index.ts';
import {
  MemoryIdempotencyStore,
  PostgresIdempotencyStore,
  RedisIdempotencyStore,
  idempotencyMigrations,
  type IdempotencyStore,
} from '../../src/idempotency/index.ts';
import { redisAddress, requireRedis } from '../../src/messaging/adapters/redis/redis-test-server.ts';
import { createTestDb, idempotencyStoreConformance, testDbBackend } from '../../src/testing/index.ts';

idempotencyStoreConformance({
  name: 'memory',
  create: async (clock) => new MemoryIdempotencyStore({ clock }),
});

const open = new WeakMap<IdempotencyStore, Db>();
idempotencyStoreConformance({
  name: `postgres (${testDbBackend()})`,
  create: async (clock) => {
    const db = await createTestDb({ schemaPrefix: 'idem' });
    await migrate(db, idempotencyMigrations);
    const store = new PostgresIdempotencyStore(db, { clock });
    open.set(store, db);
    return store;
  },
  destroy: async (store) => open.get(store)?.close(),
});

await requireRedis();
const client = new Redis(redisAddress);
const prefix = `keel:test:idem:${process.pid}:${randomBytes(4).toString('hex')}:`;
let stores = 0;

afterAll(async () => {
  const keys = await client.keys(`${prefix}*`);
  if (keys.length > 0) await client.del(...keys);
  await client.quit();
});

idempotencyStoreConformance({
  name: 'redis',
  create: async (clock) => new RedisIdempotencyStore({ client, prefix: `${prefix}${stores++}:`, clock }),
});
