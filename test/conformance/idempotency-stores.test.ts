// Every idempotency store passes one suite: memory, PostgreSQL on the backend KEEL_DB chooses
// (each store in its own schema), and Redis at 127.0.0.1:6379 (its own key prefix). Without a
// Redis server the Redis suite is skipped with the reason, except in CI (CI=true), where a
// missing server fails the run.
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

const address = { host: process.env.REDIS_HOST ?? '127.0.0.1', port: Number(process.env.REDIS_PORT ?? 6379) };

async function connect(): Promise<Redis | string> {
  const client = new Redis({
    ...address,
    lazyConnect: true,
    maxRetriesPerRequest: 1,
    retryStrategy: () => null,
  });
  client.on('error', () => undefined);
  try {
    await client.connect();
    await client.ping();
    return client;
  } catch (error) {
    client.disconnect();
    const reason = `Redis at ${address.host}:${address.port} is not reachable (${(error as Error).message})`;
    if (process.env.CI === 'true') throw new Error(`${reason}; CI needs it`);
    return reason;
  }
}

const connected = await connect();
const client = typeof connected === 'string' ? undefined : connected;
const prefix = `keel:test:idem:${process.pid}:${randomBytes(4).toString('hex')}:`;
let stores = 0;

afterAll(async () => {
  if (client === undefined) return;
  const keys = await client.keys(`${prefix}*`);
  if (keys.length > 0) await client.del(...keys);
  await client.quit();
});

idempotencyStoreConformance({
  name: 'redis',
  skip: typeof connected === 'string' ? connected : undefined,
  create: async (clock) =>
    new RedisIdempotencyStore({ client: client!, prefix: `${prefix}${stores++}:`, clock }),
});
