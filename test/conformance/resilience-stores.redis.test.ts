// The Redis breaker-state and rate-limit stores against a real server at 127.0.0.1:6379.
// Each store gets its own key prefix, deleted afterwards. Without a server: skipped with the
// reason, except in CI (CI=true), where a missing server fails the run.
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll } from 'vitest';
import { RedisBreakerStateStore, RedisRateLimitStore } from '../../src/resilience/index.ts';
import { breakerStateStoreConformance, rateLimitStoreConformance } from '../../src/testing/index.ts';

const address = { host: process.env.REDIS_HOST ?? '127.0.0.1', port: Number(process.env.REDIS_PORT ?? 6379) };
const server = `Redis at ${address.host}:${address.port}`;

async function connect(): Promise<Redis | string> {
  const client = new Redis({
    ...address,
    lazyConnect: true,
    maxRetriesPerRequest: 1,
    connectTimeout: 1000,
    retryStrategy: () => null,
  });
  client.on('error', () => undefined);
  try {
    await client.connect();
    await client.ping();
    return client;
  } catch (error) {
    client.disconnect();
    const reason = `${server} is not reachable (${(error as Error).message})`;
    if (process.env.CI === 'true')
      throw new Error(`${reason}; CI needs it: start it (deploy/docker-compose.yml)`);
    return reason;
  }
}

const connected = await connect();
const client = typeof connected === 'string' ? undefined : connected;
const skip = typeof connected === 'string' ? connected : undefined;
const prefixes: string[] = [];

function prefix(kind: string): string {
  const p = `keel:test:${kind}:${process.pid}:${randomBytes(4).toString('hex')}:`;
  prefixes.push(p);
  return p;
}

async function dropPrefix(p: string): Promise<void> {
  const keys = await client!.keys(`${p}*`);
  if (keys.length > 0) await client!.del(...keys);
}

afterAll(async () => {
  if (client === undefined) return;
  for (const p of prefixes) await dropPrefix(p);
  await client.quit();
});

breakerStateStoreConformance({
  name: 'redis',
  skip,
  create: async () => new RedisBreakerStateStore({ client: client!, prefix: prefix('breaker') }),
});

rateLimitStoreConformance({
  name: 'redis',
  skip,
  create: async () => new RedisRateLimitStore({ client: client!, prefix: prefix('bucket') }),
});
