import Fastify, { type FastifyInstance } from 'fastify';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { migrate } from '../db/index.ts';
import { advanceUntil, createTestDb, type TestDb } from '../testing/index.ts';
import { ManualClock } from '../time/index.ts';
import {
  claimIdempotentRequest,
  completeIdempotentRequest,
  installIdempotency,
} from './fastify-idempotency.ts';
import { MemoryIdempotencyStore } from './memory-idempotency-store.ts';
import { PostgresIdempotencyStore, idempotencyMigrations } from './postgres-idempotency-store.ts';
import { propertyRuns } from '../testing/property-runs.ts';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0)) await cleanup();
});

interface ChargeBody {
  amount: number;
  /** Fail inside the transaction, after the claim. */
  failInside?: boolean;
  /** Fail after the commit, before answering. */
  failAfterCommit?: boolean;
}

/**
 * How this one request behaves, outside its fingerprint (method, path and body), so that a retry
 * of the same request can take another path: 'unprocessable' answers 422 before the transaction
 * (a check that may pass later), 'unclaimed' writes without claiming (a route that forgot to).
 */
const behaviour = 'x-test-behaviour';

/** Holds a handler inside its transaction, after its claim: `entered` once it is there. */
interface Gate {
  stall?: Promise<void>;
  entered?: () => void;
  /** The stalled transaction's server process (pg). */
  backendPid?: number;
}

/** POST /charges claiming its key in its own transaction, as the shop's POST /v1/orders does. */
async function inTransactionApp(
  clock = new ManualClock(),
  logTo?: { write: (line: string) => void },
  inFlight?: { waitMs: number; pollMs: number },
  errorHandler?: (error: unknown) => void,
) {
  const db: TestDb = await createTestDb();
  cleanups.push(() => db.close());
  await migrate(db, idempotencyMigrations);
  await db.query('CREATE TABLE charges (id serial PRIMARY KEY, amount int NOT NULL)');
  const store = new PostgresIdempotencyStore(db, { clock });
  const gate: Gate = {};
  const fastify = Fastify(logTo === undefined ? {} : { logger: { level: 'warn', stream: logTo } });
  if (errorHandler !== undefined)
    fastify.setErrorHandler((error, _request, reply) => {
      errorHandler(error);
      return reply.status(500).send({ failed: true });
    });
  installIdempotency(fastify, {
    store,
    clock,
    lockMs: 60_000,
    claim: 'in-transaction',
    ...(inFlight === undefined ? {} : { inFlight }),
  });
  fastify.post('/charges', async (request, reply) => {
    const body = request.body as ChargeBody;
    const mode = request.headers[behaviour];
    if (mode === 'unprocessable') return reply.status(422).send({ error: 'amount out of range' });
    const answer = await db.transaction(async (tx) => {
      if (mode !== 'unclaimed') await claimIdempotentRequest(request, tx);
      if (gate.stall) {
        // Awaited first, so the claim has been answered before the handler waits.
        const { rows } = await tx.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
        gate.backendPid = rows[0]?.pid;
        gate.entered?.();
        await gate.stall;
      }
      const { rows } = await tx.query<{ id: number }>(
        'INSERT INTO charges (amount) VALUES ($1) RETURNING id',
        [body.amount],
      );
      const payload = JSON.stringify({ id: rows[0]!.id });
      if (body.failInside) throw new Error('provider refused after the insert');
      await completeIdempotentRequest(request, tx, {
        status: 201,
        headers: { 'content-type': 'application/json; charset=utf-8', location: `/charges/${rows[0]!.id}` },
        body: payload,
      });
      return payload;
    });
    if (body.failAfterCommit) throw new Error('crashed after commit');
    return reply.status(201).type('application/json; charset=utf-8').send(answer);
  });
  cleanups.push(() => fastify.close());
  const charges = async () =>
    Number((await db.query<{ n: string }>('SELECT count(*) AS n FROM charges')).rows[0]!.n);
  return { fastify, charges, gate, store, db };
}

const post = (fastify: FastifyInstance, body: ChargeBody, key: string, mode?: string) =>
  fastify.inject({
    method: 'POST',
    url: '/charges',
    payload: body,
    headers: { 'idempotency-key': key, ...(mode === undefined ? {} : { [behaviour]: mode }) },
  });

describe("idempotency keys claimed in the handler's transaction", () => {
  it('runs the first request and replays its response, marked as a replay', async () => {
    const { fastify, charges } = await inTransactionApp();
    const first = await post(fastify, { amount: 5 }, 'k-1');
    const retry = await post(fastify, { amount: 5 }, 'k-1');
    expect(first.statusCode).toBe(201);
    expect(first.headers['idempotent-replayed']).toBeUndefined();
    expect(retry.statusCode).toBe(201);
    expect(retry.body).toBe(first.body);
    expect(retry.headers.location).toBe('/charges/1');
    expect(retry.headers['content-type']).toBe('application/json; charset=utf-8');
    expect(retry.headers['idempotent-replayed']).toBe('true');
    expect(await charges()).toBe(1);
  });

  it('answers 422 to the same key with a different request, and runs nothing', async () => {
    const { fastify, charges } = await inTransactionApp();
    await post(fastify, { amount: 5 }, 'k-1');
    const other = await post(fastify, { amount: 6 }, 'k-1');
    expect(other.statusCode).toBe(422);
    expect(other.headers['content-type']).toBe('application/problem+json; charset=utf-8');
    expect(other.json()).toMatchObject({ code: 'KEEL_IDEMPOTENCY_KEY_REUSED' });
    expect(await charges()).toBe(1);
  });

  it('a rollback lets the key go: the retry runs, and only its effects remain', async () => {
    const { fastify, charges } = await inTransactionApp();
    expect((await post(fastify, { amount: 5, failInside: true }, 'k-1')).statusCode).toBe(500);
    expect(await charges()).toBe(0);
    expect((await post(fastify, { amount: 5 }, 'k-1')).statusCode).toBe(201);
    expect((await post(fastify, { amount: 5 }, 'k-1')).headers['idempotent-replayed']).toBe('true');
    expect(await charges()).toBe(1);
  });

  it('a failure after the commit keeps the response: the retry replays it', async () => {
    const { fastify, charges } = await inTransactionApp();
    expect((await post(fastify, { amount: 5, failAfterCommit: true }, 'k-1')).statusCode).toBe(500);
    const retry = await post(fastify, { amount: 5, failAfterCommit: true }, 'k-1');
    expect(retry.statusCode).toBe(201);
    expect(retry.headers['idempotent-replayed']).toBe('true');
    expect(await charges()).toBe(1);
  });

  it('stores an answer given before the claim (a 422): a retry that reaches its claim replays it', async () => {
    const { fastify, charges } = await inTransactionApp();
    expect((await post(fastify, { amount: 5 }, 'k-1', 'unprocessable')).statusCode).toBe(422);
    const retry = await post(fastify, { amount: 5 }, 'k-1');
    expect(retry.statusCode).toBe(422);
    expect(retry.headers['idempotent-replayed']).toBe('true');
    expect(await charges()).toBe(0);
  });

  it('warns about a route that answers without claiming, and stores its answer', async () => {
    const lines: string[] = [];
    const { fastify, charges } = await inTransactionApp(new ManualClock(), {
      write: (line: string) => lines.push(line),
    });
    expect((await post(fastify, { amount: 5 }, 'k-1', 'unclaimed')).statusCode).toBe(201);
    expect(lines.join('')).toMatch(/answered without claimIdempotentRequest/);
    const retry = await post(fastify, { amount: 5 }, 'k-1');
    expect(retry.headers['idempotent-replayed']).toBe('true');
    expect(await charges()).toBe(1);
  });

  it("answers a refused claim before the app's error handler: neither it nor the logger sees a failure", async () => {
    const lines: string[] = [];
    const handled: unknown[] = [];
    const { fastify, charges } = await inTransactionApp(
      new ManualClock(),
      { write: (line: string) => lines.push(line) },
      undefined,
      (error) => handled.push(error),
    );
    expect((await post(fastify, { amount: 5 }, 'k-1')).statusCode).toBe(201);
    const replay = await post(fastify, { amount: 5 }, 'k-1');
    expect(replay.statusCode).toBe(201);
    expect(replay.headers['idempotent-replayed']).toBe('true');
    expect((await post(fastify, { amount: 6 }, 'k-1')).statusCode).toBe(422);
    expect(handled).toEqual([]);
    expect(lines).toEqual([]);
    // The handler's own failures still reach the error handler.
    expect((await post(fastify, { amount: 5, failInside: true }, 'k-2')).statusCode).toBe(500);
    expect(handled).toHaveLength(1);
    expect(await charges()).toBe(1);
  });

  it('answers a refused claim on a route declared before the plugin was installed, after its error handler', async () => {
    const db: TestDb = await createTestDb();
    cleanups.push(() => db.close());
    await migrate(db, idempotencyMigrations);
    const store = new PostgresIdempotencyStore(db);
    const fastify = Fastify();
    cleanups.push(() => fastify.close());
    const handled: unknown[] = [];
    fastify.setErrorHandler((error, _request, reply) => {
      handled.push(error);
      return reply.status(500).send({ failed: true });
    });
    fastify.post('/early', async (request, reply) => {
      const response = await db.transaction(async (tx) => {
        await claimIdempotentRequest(request, tx);
        await tx.query('SELECT 1');
        return completeIdempotentRequest(request, tx, { status: 201, headers: {}, body: 'made' });
      });
      return reply.status(response.status).send(response.body);
    });
    installIdempotency(fastify, { store, claim: 'in-transaction' });
    const send = () => fastify.inject({ method: 'POST', url: '/early', headers: { 'idempotency-key': 'k' } });
    expect((await send()).statusCode).toBe(201);
    const replay = await send();
    expect(replay.statusCode).toBe(201);
    expect(replay.body).toBe('made');
    expect(replay.headers['idempotent-replayed']).toBe('true');
    expect(handled).toHaveLength(1);
  });

  it('refuses a key claimed before a handler by another process (a row without a response)', async () => {
    const { fastify, charges, store } = await inTransactionApp();
    const scope = 'default POST /charges';
    const { requestFingerprint } = await import('./request-fingerprint.ts');
    const fingerprint = requestFingerprint('POST', '/charges', { amount: 5 });
    const held = await store.begin({ scope, key: 'k-1', fingerprint, lockMs: 60_000, ttlMs: 60_000 });
    expect(held.kind).toBe('started');
    const concurrent = await post(fastify, { amount: 5 }, 'k-1');
    expect(concurrent.statusCode).toBe(409);
    expect(concurrent.headers['retry-after']).toBe('1');
    expect(await charges()).toBe(0);
  });

  it('claims an expired key afresh: the request runs again, not a replay', async () => {
    const clock = new ManualClock();
    const { fastify, charges } = await inTransactionApp(clock);
    expect((await post(fastify, { amount: 5 }, 'k-1')).statusCode).toBe(201);
    expect((await post(fastify, { amount: 5 }, 'k-1')).headers['idempotent-replayed']).toBe('true');
    await clock.advance(24 * 3600 * 1000);
    const again = await post(fastify, { amount: 5 }, 'k-1');
    expect(again.statusCode).toBe(201);
    expect(again.headers['idempotent-replayed']).toBeUndefined();
    expect(await charges()).toBe(2);
  });

  it('takes over a key whose holder died without a response once its lock ran out, for the same request only', async () => {
    const clock = new ManualClock();
    const { fastify, charges, store } = await inTransactionApp(clock);
    const scope = 'default POST /charges';
    const { requestFingerprint } = await import('./request-fingerprint.ts');
    for (const key of ['k-same', 'k-other']) {
      const fingerprint = requestFingerprint('POST', '/charges', { amount: 5 });
      const held = await store.begin({ scope, key, fingerprint, lockMs: 60_000, ttlMs: 3_600_000 });
      expect(held.kind).toBe('started');
    }
    expect((await post(fastify, { amount: 5 }, 'k-same')).statusCode).toBe(409);
    await clock.advance(60_000);
    const retried = await post(fastify, { amount: 5 }, 'k-same');
    expect(retried.statusCode).toBe(201);
    expect(await charges()).toBe(1);
    // Another request under the abandoned key is still another request.
    expect((await post(fastify, { amount: 7 }, 'k-other')).statusCode).toBe(422);
    expect(await charges()).toBe(1);
  });

  it('100 concurrent requests with one key produce one effect', async () => {
    const { fastify, charges } = await inTransactionApp();
    const responses = await Promise.all(
      Array.from({ length: 100 }, () => post(fastify, { amount: 5 }, 'same')),
    );
    expect(await charges()).toBe(1);
    expect(responses.filter((r) => r.statusCode === 201 && !r.headers['idempotent-replayed'])).toHaveLength(
      1,
    );
    expect(responses.every((r) => r.statusCode === 201 || r.statusCode === 409)).toBe(true);
  });

  it('refuses a store outside the database, by name', () => {
    expect(() =>
      installIdempotency(Fastify(), { store: new MemoryIdempotencyStore(), claim: 'in-transaction' }),
    ).toThrow(/store/);
    expect(() =>
      installIdempotency(Fastify(), {
        store: new MemoryIdempotencyStore(),
        claim: 'sometimes' as 'in-transaction',
      }),
    ).toThrow(/claim/);
  });
});

describe("idempotency keys claimed in the handler's transaction, fuzzed", () => {
  it('never answer 5xx for any key and body, and never run a request twice', async () => {
    const { fastify, charges } = await inTransactionApp();
    let started = 0;
    await fc.assert(
      fc.asyncProperty(fc.string({ minLength: 0, maxLength: 300 }), fc.jsonValue(), async (key, note) => {
        const response = await fastify.inject({
          method: 'POST',
          url: '/charges',
          payload: { amount: 1, note },
          headers: { 'idempotency-key': key },
        });
        expect(response.statusCode).toBeLessThan(500);
        if (response.statusCode === 201 && response.headers['idempotent-replayed'] === undefined) started++;
        expect(await charges()).toBe(started);
      }),
      { numRuns: propertyRuns(150) },
    );
  });
});

// A key in flight is an advisory lock held by the holder's transaction; PGlite runs one
// transaction at a time, so a second request cannot meet a holder there.
describe.runIf(process.env.KEEL_DB === 'pg')('a key in flight in a transaction (PostgreSQL)', () => {
  it('answers 409 while the holder runs, then replays its response', async () => {
    const { fastify, charges, gate } = await inTransactionApp();
    let release!: () => void;
    gate.stall = new Promise((resolve) => (release = resolve));
    const entered = new Promise<void>((resolve) => (gate.entered = resolve));
    const first = post(fastify, { amount: 5 }, 'k-1');
    await entered;
    const concurrent = await post(fastify, { amount: 5 }, 'k-1');
    expect(concurrent.statusCode).toBe(409);
    expect(concurrent.json()).toMatchObject({ code: 'KEEL_IDEMPOTENCY_IN_FLIGHT' });
    gate.stall = undefined;
    release();
    expect((await first).statusCode).toBe(201);
    expect((await post(fastify, { amount: 5 }, 'k-1')).headers['idempotent-replayed']).toBe('true');
    expect(await charges()).toBe(1);
  });

  it('an answer given before the claim, while another request holds the key, stores nothing over it', async () => {
    const { fastify, charges, gate } = await inTransactionApp();
    let release!: () => void;
    gate.stall = new Promise((resolve) => (release = resolve));
    const entered = new Promise<void>((resolve) => (gate.entered = resolve));
    const holder = post(fastify, { amount: 5 }, 'k-1');
    await entered;
    expect((await post(fastify, { amount: 5 }, 'k-1', 'unprocessable')).statusCode).toBe(422);
    gate.stall = undefined;
    release();
    expect((await holder).statusCode).toBe(201);
    const retry = await post(fastify, { amount: 5 }, 'k-1');
    expect(retry.statusCode).toBe(201);
    expect(retry.headers['idempotent-replayed']).toBe('true');
    expect(await charges()).toBe(1);
  });

  it('waits for the holder with inFlight: wait, and replays its response', async () => {
    const clock = new ManualClock();
    const { fastify, charges, gate } = await inTransactionApp(clock, undefined, {
      waitMs: 10_000,
      pollMs: 20,
    });
    let release!: () => void;
    gate.stall = new Promise((resolve) => (release = resolve));
    const entered = new Promise<void>((resolve) => (gate.entered = resolve));
    const holder = post(fastify, { amount: 5 }, 'k-1');
    await entered;
    const waiting = post(fastify, { amount: 5 }, 'k-1');
    gate.stall = undefined;
    release();
    expect((await holder).statusCode).toBe(201);
    const replayed = await advanceUntil(clock, waiting, { stepMs: 20, maxSteps: 100_000 });
    expect(replayed.statusCode).toBe(201);
    expect(replayed.headers['idempotent-replayed']).toBe('true');
    expect(await charges()).toBe(1);
  });

  it('a holder whose connection dies lets the key go at once, not after lockMs', async () => {
    const { fastify, charges, gate, db } = await inTransactionApp();
    let release!: () => void;
    gate.stall = new Promise((resolve) => (release = resolve));
    const entered = new Promise<void>((resolve) => (gate.entered = resolve));
    const doomed = post(fastify, { amount: 5 }, 'k-1');
    await entered;
    // The clock stays put: only the end of the holder's session can free the key. The call
    // waits (up to 10 s) until that server process has exited and so let go of its locks.
    await db.query('SELECT pg_terminate_backend($1, 10000)', [gate.backendPid]);
    gate.stall = undefined;
    const retry = await post(fastify, { amount: 5 }, 'k-1');
    expect(retry.statusCode).toBe(201);
    expect(retry.headers['idempotent-replayed']).toBeUndefined();
    release();
    expect((await doomed).statusCode).toBeGreaterThanOrEqual(500);
    expect(await charges()).toBe(1);
  });
});
