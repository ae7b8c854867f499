import Fastify, { type FastifyInstance } from 'fastify';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { migrate } from '../db/index.ts';
import { createTestDb, type TestDb } from '../testing/index.ts';
import { ManualClock } from '../time/index.ts';
import { completeIdempotentRequest, installIdempotency, sendStoredResponse } from './fastify-idempotency.ts';
import type { IdempotencyStore } from './idempotency-store.ts';
import { MemoryIdempotencyStore } from './memory-idempotency-store.ts';
import { PostgresIdempotencyStore, idempotencyMigrations } from './postgres-idempotency-store.ts';
import { propertyRuns } from '../testing/property-runs.ts';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0)) await cleanup();
});

const stores: { name: string; make: (clock: ManualClock) => Promise<IdempotencyStore> }[] = [
  { name: 'memory', make: async (clock) => new MemoryIdempotencyStore({ clock }) },
  {
    name: 'postgres',
    make: async (clock) => {
      const db: TestDb = await createTestDb();
      cleanups.push(() => db.close());
      await migrate(db, idempotencyMigrations);
      return new PostgresIdempotencyStore(db, { clock });
    },
  },
];

/** Stalls the handler: `entered` is called once a request is inside it, `stall` holds it there. */
interface Gate {
  stall?: Promise<void>;
  entered?: () => void;
}

/** An app whose POST /charges counts its effects, and can be told to fail or stall. */
async function app(
  store: IdempotencyStore,
): Promise<{ app: FastifyInstance; effects: () => number; gate: Gate }> {
  let effects = 0;
  const gate: Gate = {};
  const fastify = Fastify();
  installIdempotency(fastify, { store, ttlMs: 60_000, lockMs: 5_000 });
  fastify.post('/charges', async (request, reply) => {
    const body = request.body as { amount: number; fail?: boolean; invalid?: boolean };
    if (body.invalid) return reply.status(400).send({ error: 'invalid' });
    if (gate.stall) {
      gate.entered?.();
      await gate.stall;
    }
    if (body.fail) throw new Error('provider down');
    effects++;
    return reply
      .status(201)
      .header('location', `/charges/${effects}`)
      .send({ id: effects, amount: body.amount });
  });
  cleanups.push(() => fastify.close());
  return { app: fastify, effects: () => effects, gate };
}

const post = (fastify: FastifyInstance, body: object, key?: string) =>
  fastify.inject({
    method: 'POST',
    url: '/charges',
    payload: body,
    headers: key === undefined ? {} : { 'idempotency-key': key },
  });

describe.each(stores)('idempotency keys over the $name store', ({ make }) => {
  it('runs the first request and replays its response to a retry, marked as a replay', async () => {
    const { app: fastify, effects } = await app(await make(new ManualClock()));
    const first = await post(fastify, { amount: 5 }, 'k-1');
    const retry = await post(fastify, { amount: 5 }, 'k-1');
    expect(first.statusCode).toBe(201);
    expect(retry.statusCode).toBe(201);
    expect(retry.body).toBe(first.body);
    expect(retry.headers.location).toBe(first.headers.location);
    expect(retry.headers['idempotent-replayed']).toBe('true');
    expect(first.headers['idempotent-replayed']).toBeUndefined();
    expect(effects()).toBe(1);
  });

  it('treats the same JSON with fields in another order as the same request', async () => {
    const { app: fastify, effects } = await app(await make(new ManualClock()));
    await fastify.inject({
      method: 'POST',
      url: '/charges',
      payload: '{"amount":5,"note":"x"}',
      headers: { 'content-type': 'application/json', 'idempotency-key': 'k' },
    });
    const retry = await fastify.inject({
      method: 'POST',
      url: '/charges',
      payload: '{"note":"x","amount":5}',
      headers: { 'content-type': 'application/json', 'idempotency-key': 'k' },
    });
    expect(retry.headers['idempotent-replayed']).toBe('true');
    expect(effects()).toBe(1);
  });

  it('answers 422 to the same key with a different request', async () => {
    const { app: fastify, effects } = await app(await make(new ManualClock()));
    await post(fastify, { amount: 5 }, 'k-1');
    const other = await post(fastify, { amount: 6 }, 'k-1');
    expect(other.statusCode).toBe(422);
    expect(other.json()).toMatchObject({ code: 'KEEL_IDEMPOTENCY_KEY_REUSED' });
    expect(effects()).toBe(1);
  });

  it('tells requests apart by their query too: another query is 422, the same one in another order replays', async () => {
    const { app: fastify, effects } = await app(await make(new ManualClock()));
    const send = (query: string) =>
      fastify.inject({
        method: 'POST',
        url: `/charges?${query}`,
        payload: { amount: 5 },
        headers: { 'idempotency-key': 'k-1' },
      });
    expect((await send('capture=false&currency=eur')).statusCode).toBe(201);
    const other = await send('capture=true&currency=eur');
    expect(other.statusCode).toBe(422);
    expect(other.json()).toMatchObject({ code: 'KEEL_IDEMPOTENCY_KEY_REUSED' });
    expect((await send('currency=eur&capture=false')).headers['idempotent-replayed']).toBe('true');
    expect(effects()).toBe(1);
  });

  it('answers 409 while the first request with the key still runs, then replays', async () => {
    const { app: fastify, effects, gate } = await app(await make(new ManualClock()));
    let release: (() => void) | undefined;
    gate.stall = new Promise((resolve) => (release = resolve));
    const entered = new Promise<void>((resolve) => (gate.entered = resolve));
    const first = post(fastify, { amount: 5 }, 'k-1');
    await entered; // the first request holds the key and is inside the handler
    const concurrent = await post(fastify, { amount: 5 }, 'k-1');
    expect(concurrent.statusCode).toBe(409);
    expect(concurrent.json()).toMatchObject({ code: 'KEEL_IDEMPOTENCY_IN_FLIGHT' });
    expect(concurrent.headers['retry-after']).toBe('1');
    gate.stall = undefined;
    release?.();
    expect((await first).statusCode).toBe(201);
    expect((await post(fastify, { amount: 5 }, 'k-1')).headers['idempotent-replayed']).toBe('true');
    expect(effects()).toBe(1);
  });

  it('releases the key after a 5xx or a 400, so a retry runs again', async () => {
    const { app: fastify, effects } = await app(await make(new ManualClock()));
    expect((await post(fastify, { amount: 5, fail: true }, 'k-1')).statusCode).toBe(500);
    expect((await post(fastify, { amount: 5, fail: true }, 'k-1')).statusCode).toBe(500);
    expect((await post(fastify, { amount: 5, invalid: true }, 'k-2')).statusCode).toBe(400);
    expect((await post(fastify, { amount: 5, invalid: true }, 'k-2')).statusCode).toBe(400);
    expect(effects()).toBe(0);
  });

  it('lets a key go after the ttl', async () => {
    const clock = new ManualClock();
    const store = await make(clock);
    const { app: fastify, effects } = await app(store);
    await post(fastify, { amount: 5 }, 'k-1');
    await clock.advance(60_000);
    expect((await post(fastify, { amount: 5 }, 'k-1')).headers['idempotent-replayed']).toBeUndefined();
    expect(effects()).toBe(2);
    // A holder that dies keeps its key only for lockMs: the store conformance suite checks that.
  });

  it('requires a well-formed key', async () => {
    const { app: fastify } = await app(await make(new ManualClock()));
    expect((await post(fastify, { amount: 5 })).json()).toMatchObject({
      status: 400,
      code: 'KEEL_IDEMPOTENCY_KEY_REQUIRED',
    });
    expect((await post(fastify, { amount: 5 }, 'x'.repeat(256))).statusCode).toBe(400);
  });

  it('100 concurrent requests with one key produce one effect', async () => {
    const { app: fastify, effects } = await app(await make(new ManualClock()));
    const responses = await Promise.all(
      Array.from({ length: 100 }, () => post(fastify, { amount: 5 }, 'same')),
    );
    expect(effects()).toBe(1);
    expect(responses.every((r) => r.statusCode === 201 || r.statusCode === 409)).toBe(true);
  });
});

describe('idempotency keys, fuzzed', () => {
  it('never answer 5xx for any key and body, and never run a request twice', async () => {
    const { app: fastify, effects } = await app(new MemoryIdempotencyStore({ clock: new ManualClock() }));
    let started = 0;
    await fc.assert(
      fc.asyncProperty(fc.string({ minLength: 0, maxLength: 300 }), fc.jsonValue(), async (key, body) => {
        const payload = { amount: 1, body };
        const response = await fastify.inject({
          method: 'POST',
          url: '/charges',
          payload,
          headers: { 'idempotency-key': key },
        });
        expect(response.statusCode).toBeLessThan(500);
        if (response.statusCode === 201 && response.headers['idempotent-replayed'] === undefined) started++;
        expect(effects()).toBe(started);
      }),
      { numRuns: propertyRuns(300) },
    );
  });
});

describe('a response stored in the handler transaction (PostgreSQL store)', () => {
  async function transactionalApp() {
    const db: TestDb = await createTestDb();
    cleanups.push(() => db.close());
    await migrate(db, idempotencyMigrations);
    await db.query('CREATE TABLE charges (id serial PRIMARY KEY, amount int NOT NULL)');
    const store = new PostgresIdempotencyStore(db);
    const fastify = Fastify();
    installIdempotency(fastify, { store, lockMs: 60_000 });
    fastify.post('/charges', async (request, reply) => {
      const body = request.body as { amount: number; failAfterCommit?: boolean; failInside?: boolean };
      const answer = await db.transaction(async (tx) => {
        const { rows } = await tx.query<{ id: number }>(
          'INSERT INTO charges (amount) VALUES ($1) RETURNING id',
          [body.amount],
        );
        const stored = await completeIdempotentRequest(request, tx, {
          status: 201,
          headers: { 'content-type': 'application/json; charset=utf-8', location: `/charges/${rows[0]!.id}` },
          body: JSON.stringify({ id: rows[0]!.id }),
        });
        if (body.failInside) throw new Error('constraint broke after the response was stored');
        return stored;
      });
      // The process "dies" after the commit, before it answers: the client sees a 5xx.
      if (body.failAfterCommit) throw new Error('crashed after commit');
      return sendStoredResponse(reply, answer);
    });
    cleanups.push(() => fastify.close());
    const charges = async () =>
      Number((await db.query<{ n: string }>('SELECT count(*) AS n FROM charges')).rows[0]!.n);
    return { fastify, charges };
  }

  it('the first answer, sent as stored, and its replay carry the same status, headers and body', async () => {
    const { fastify, charges } = await transactionalApp();
    const first = await post(fastify, { amount: 7 }, 'k-1');
    const replay = await post(fastify, { amount: 7 }, 'k-1');
    expect(replay.headers['idempotent-replayed']).toBe('true');
    for (const answer of [first, replay]) {
      expect(answer.statusCode).toBe(201);
      expect(answer.headers['location']).toBe('/charges/1');
      expect(answer.headers['content-type']).toBe('application/json; charset=utf-8');
      expect(answer.json()).toEqual({ id: 1 });
    }
    expect(await charges()).toBe(1);
  });

  it('a failure after the commit keeps the stored response: the retry replays it, nothing runs twice', async () => {
    const { fastify, charges } = await transactionalApp();
    const first = await post(fastify, { amount: 5, failAfterCommit: true }, 'k-1');
    expect(first.statusCode).toBe(500);
    const retry = await post(fastify, { amount: 5, failAfterCommit: true }, 'k-1');
    expect(retry.statusCode).toBe(201);
    expect(retry.headers['idempotent-replayed']).toBe('true');
    expect(retry.json()).toEqual({ id: 1 });
    expect(await charges()).toBe(1);
  });

  it('a rolled-back transaction releases the key: the retry runs, and only its effects remain', async () => {
    const { fastify, charges } = await transactionalApp();
    expect((await post(fastify, { amount: 5, failInside: true }, 'k-1')).statusCode).toBe(500);
    expect(await charges()).toBe(0);
    const retry = await post(fastify, { amount: 5 }, 'k-2');
    expect(retry.statusCode).toBe(201);
    const again = await post(fastify, { amount: 5 }, 'k-2');
    expect(again.headers['idempotent-replayed']).toBe('true');
    expect(await charges()).toBe(1);
  });
});

describe('inFlight: wait', () => {
  it('waits for the running request and replays its response instead of answering 409', async () => {
    const clock = new ManualClock();
    const store = new MemoryIdempotencyStore({ clock });
    const fastify = Fastify();
    installIdempotency(fastify, { store, clock, inFlight: { waitMs: 1_000, pollMs: 100 } });
    let release!: () => void;
    const stalled = new Promise<void>((resolve) => (release = resolve));
    let entered!: () => void;
    const inside = new Promise<void>((resolve) => (entered = resolve));
    let runs = 0;
    fastify.post('/charges', async (_request, reply) => {
      runs++;
      entered();
      await stalled;
      return reply.status(201).send({ id: runs });
    });
    cleanups.push(() => fastify.close());
    const first = post(fastify, { amount: 5 }, 'k');
    await inside;
    const second = post(fastify, { amount: 5 }, 'k');
    await clock.advance(250);
    release();
    expect((await first).statusCode).toBe(201);
    await clock.advance(100);
    const replayed = await second;
    expect(replayed.statusCode).toBe(201);
    expect(replayed.headers['idempotent-replayed']).toBe('true');
    expect(runs).toBe(1);
  });

  it('rejects a negative waitMs by name', () => {
    expect(() =>
      installIdempotency(Fastify(), { store: new MemoryIdempotencyStore(), inFlight: { waitMs: -1 } }),
    ).toThrow(/inFlight.waitMs/);
  });
});
