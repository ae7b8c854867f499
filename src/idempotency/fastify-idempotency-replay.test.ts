// What a first response stores and its replay repeats, over every store: bodies that are not
// text (none at all, bytes), the headers that describe the result (and those that do not), and
// the answers that must not be replayed because the request never acted.
import { randomBytes } from 'node:crypto';
import Fastify, { type FastifyReply, type LightMyRequestResponse } from 'fastify';
import { Redis } from 'ioredis';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { migrate } from '../db/index.ts';
import { redisAddress, requireRedis } from '../messaging/adapters/redis/redis-test-server.ts';
import { createTestDb } from '../testing/index.ts';
import { ManualClock } from '../time/index.ts';
import { installIdempotency } from './fastify-idempotency.ts';
import type { IdempotencyStore } from './idempotency-store.ts';
import { MemoryIdempotencyStore } from './memory-idempotency-store.ts';
import { PostgresIdempotencyStore, idempotencyMigrations } from './postgres-idempotency-store.ts';
import { RedisIdempotencyStore } from './redis-idempotency-store.ts';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0)) await cleanup();
});

await requireRedis();
const redis = new Redis(redisAddress);
const prefix = `keel:test:idem-replay:${process.pid}:${randomBytes(4).toString('hex')}:`;
let redisStores = 0;
afterAll(async () => {
  const keys = await redis.keys(`${prefix}*`);
  if (keys.length > 0) await redis.del(...keys);
  await redis.quit();
});

const stores: { name: string; make: (clock: ManualClock) => Promise<IdempotencyStore> }[] = [
  { name: 'memory', make: async (clock) => new MemoryIdempotencyStore({ clock }) },
  {
    name: 'postgres',
    make: async (clock) => {
      const db = await createTestDb({ schemaPrefix: 'idem_replay' });
      cleanups.push(() => db.close());
      await migrate(db, idempotencyMigrations);
      return new PostgresIdempotencyStore(db, { clock });
    },
  },
  {
    name: 'redis',
    make: async (clock) =>
      new RedisIdempotencyStore({ client: redis, prefix: `${prefix}${redisStores++}:`, clock }),
  },
];

/** An app whose POST /things answers with `answer`, counting its runs. */
async function app(
  store: IdempotencyStore,
  answer: (reply: FastifyReply, run: number) => FastifyReply,
): Promise<{ post: () => Promise<LightMyRequestResponse>; runs: () => number }> {
  const fastify = Fastify();
  // A hook ahead of the handler, as a rate limiter or CORS sets its headers on every request.
  let requests = 0;
  fastify.addHook('onRequest', async (_request, reply) => {
    void reply.header('x-ratelimit-remaining', String(10 - ++requests));
  });
  installIdempotency(fastify, { store, ttlMs: 60_000, lockMs: 5_000 });
  let runs = 0;
  fastify.post('/things', async (_request, reply) => answer(reply, ++runs));
  cleanups.push(() => fastify.close());
  const post = () =>
    fastify.inject({
      method: 'POST',
      url: '/things',
      payload: { n: 1 },
      headers: { 'idempotency-key': 'k' },
    });
  return { post, runs: () => runs };
}

describe.each(stores)('a replay over the $name store', ({ make }) => {
  it('replays a response with no body (204): the retry does not run again', async () => {
    const { post, runs } = await app(await make(new ManualClock()), (reply) => reply.status(204).send());
    expect((await post()).statusCode).toBe(204);
    const retry = await post();
    expect(retry.statusCode).toBe(204);
    expect(retry.headers['idempotent-replayed']).toBe('true');
    expect(retry.body).toBe('');
    expect(runs()).toBe(1);
  });

  it('replays a binary body byte for byte, with its content type', async () => {
    const bytes = Buffer.from([0x00, 0xff, 0xfe, 0x80, 0x41, 0xc3, 0x28]);
    const { post, runs } = await app(await make(new ManualClock()), (reply) =>
      reply.status(201).type('application/octet-stream').send(bytes),
    );
    const first = await post();
    const retry = await post();
    expect(retry.headers['idempotent-replayed']).toBe('true');
    for (const answer of [first, retry]) {
      expect(answer.statusCode).toBe(201);
      expect(answer.headers['content-type']).toBe('application/octet-stream');
      expect(answer.rawPayload.equals(bytes)).toBe(true);
    }
    expect(runs()).toBe(1);
  });

  it("replays the headers that describe the result, not the connection's, the first request's ids or cookies", async () => {
    const { post } = await app(await make(new ManualClock()), (reply, run) =>
      reply
        .status(201)
        .header('etag', `"v${run}"`)
        .header('cache-control', 'no-store')
        .header('content-language', 'de')
        .header('link', ['</things/1>; rel="self"', '</things>; rel="collection"'])
        .header('x-consistency-token', `t${run}`)
        .header('x-request-id', `req-${run}`)
        .header('set-cookie', 'session=secret; HttpOnly')
        .send({ id: run }),
    );
    const first = await post();
    const retry = await post();
    expect(retry.headers['idempotent-replayed']).toBe('true');
    for (const name of ['etag', 'cache-control', 'content-language', 'x-consistency-token', 'content-type'])
      expect(retry.headers[name], name).toBe(first.headers[name]);
    expect(retry.headers['link']).toBe('</things/1>; rel="self", </things>; rel="collection"');
    expect(retry.headers['x-request-id']).toBeUndefined();
    // Set before the handler, by a hook that sets it afresh for the retry: not the first one's.
    expect([first.headers['x-ratelimit-remaining'], retry.headers['x-ratelimit-remaining']]).toEqual([
      '9',
      '8',
    ]);
    expect(retry.headers['set-cookie']).toBeUndefined();
    expect(retry.json()).toEqual({ id: 1 });
  });

  it('lets the key go after a 429 (the request never acted): the retry runs', async () => {
    const { post, runs } = await app(await make(new ManualClock()), (reply, run) =>
      run === 1
        ? reply.status(429).header('retry-after', '1').send({ error: 'slow down' })
        : reply.status(201).send({ id: run }),
    );
    expect((await post()).statusCode).toBe(429);
    const retry = await post();
    expect(retry.statusCode).toBe(201);
    expect(retry.headers['idempotent-replayed']).toBeUndefined();
    expect(runs()).toBe(2);
  });
});
