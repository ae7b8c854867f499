import { randomUUID } from 'node:crypto';
import { Validator } from '@seriousme/openapi-schema-validator';
import type { InjectOptions } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PostgresFlagStore } from '../../../src/flags/index.ts';
import { openApiResponses, testDbBackend, type ObservedResponse } from '../../../src/testing/index.ts';
import { ManualClock, systemClock } from '../../../src/time/index.ts';
import { until } from '../../../test/until.ts';
import type { Shop } from '../app.ts';
import { ordersAcceptingFlag } from '../flags.ts';
import { createApiKey } from '../storage/api-keys-store.ts';
import { DbFault, HeldDb, databaseUnreachable, statementFailed } from '../test/db-fault.ts';
import { RawConnection, rawGet } from '../test/raw-http.ts';
import { createShopStore, fulfilmentFinished, openTestShop, type ShopStore } from '../test/test-shop.ts';
import { shopOpenApiDocument, shopOperations } from './http-api.ts';
import { staleContracts } from './published-contract.ts';

// The shop is held to its published contract both ways: every route it serves is documented
// (and every documented one served), and every answer below — successes, replays and each kind
// of refusal — matches the document's schema, content type and required headers for its status.
// Between them the answers cover every status the document lists for every operation.

const document = shopOpenApiDocument();
const { check } = openApiResponses(document);
const observed: ObservedResponse[] = [];
const exercised = new Set<string>();

const cleanups: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function store(): Promise<ShopStore> {
  const created = await createShopStore();
  cleanups.push(() => created.dispose());
  return created;
}

type Request = InjectOptions & { url: string };

/** Records an answer for the contract check, and which documented (operation, status) it exercised. */
function record(answer: ObservedResponse): void {
  observed.push(answer);
  const operation = shopOperations.find(
    (op) =>
      op.method === answer.method.toLowerCase() &&
      new RegExp(`^${op.path.replace(/:[^/]+/g, '[^/]+')}$`).test(answer.url.split('?')[0]!),
  );
  if (operation !== undefined) exercised.add(`${operation.operationId} ${answer.status}`);
}

/** Sends a request, records its answer for the contract check, and returns it. */
async function call(shop: Shop, options: Request) {
  const response = await shop.http.inject(options);
  record({
    method: options.method ?? 'GET',
    url: options.url,
    status: response.statusCode,
    headers: response.headers,
    body: response.body,
  });
  return response;
}

/** One request to each `/v1` operation, that gets past validation: fresh keys and emails on each call. */
function oneRequestPerV1Operation(): Request[] {
  return [
    {
      method: 'POST',
      url: '/v1/orders',
      payload: { customerId: 'c-1', items: [{ sku: 'book-1', quantity: 1 }] },
      headers: { 'idempotency-key': randomUUID() },
    },
    { url: `/v1/orders/${randomUUID()}` },
    { method: 'POST', url: '/v1/signups', payload: { email: `${randomUUID()}@shop.test`, name: 'Ada' } },
    { url: `/v1/accounts/${randomUUID()}` },
    { url: '/v1/analytics/orders' },
  ];
}

let shop: Shop;
const routes: { method: string; url: string }[] = [];

beforeAll(async () => {
  shop = await openTestShop(await store(), ['api', 'worker', 'relay']);
  // Before start, when the route plugins load: every route they add passes through here.
  shop.http.addHook('onRoute', (route) => {
    for (const method of [route.method].flat()) routes.push({ method, url: route.url });
  });
  await shop.start();
  cleanups.push(() => shop.stop({ drainMs: 1000 }));
});

describe('the published contract (apps/shop/contracts/openapi.json)', () => {
  it('is what the code describes, as is asyncapi.json: after a deliberate change, npm run contracts -- write', async () => {
    expect(await staleContracts()).toEqual([]);
  });

  it('is a valid OpenAPI 3.1 document', async () => {
    const result = await new Validator().validate(
      document as unknown as Parameters<Validator['validate']>[0],
    );
    expect(result.errors ?? []).toEqual([]);
    expect(result.valid).toBe(true);
    const broken = { ...document, paths: { '/x': { get: { responses: { 200: {} } } } } };
    expect(
      (await new Validator().validate(broken as unknown as Parameters<Validator['validate']>[0])).valid,
    ).toBe(false);
  });

  it('documents every route the shop serves but its operator pages, and no other', () => {
    const operational = (url: string) =>
      url === '/metrics' || url === '/dashboard' || url.startsWith('/dashboard/');
    const served = routes
      .filter((route) => route.method !== 'HEAD' && !operational(route.url))
      .map((route) => `${route.method.toLowerCase()} ${route.url}`)
      .sort();
    const documented = shopOperations.map((op) => `${op.method} ${op.path}`).sort();
    expect(served).toEqual(documented);
  });

  it('is served at GET /openapi.json', async () => {
    const response = await call(shop, { url: '/openapi.json' });
    expect(response.statusCode).toBe(200);
    expect(response.json()).toEqual(document);
  });
});

describe('the shop answers as its contract says', () => {
  it('signups, accounts, orders, replays, reads, analytics and the probes, with each kind of refusal', async () => {
    const email = `${randomUUID()}@shop.test`;
    const signedUp = await call(shop, {
      method: 'POST',
      url: '/v1/signups',
      payload: { email, name: 'Ada' },
    });
    expect(signedUp.statusCode).toBe(201);
    const account = signedUp.json<{ id: string }>();
    expect(
      (await call(shop, { method: 'POST', url: '/v1/signups', payload: { email, name: 'Ada' } })).statusCode,
    ).toBe(200);
    expect(
      (await call(shop, { method: 'POST', url: '/v1/signups', payload: { email, name: 'Bob' } })).statusCode,
    ).toBe(409);
    expect(
      (await call(shop, { method: 'POST', url: '/v1/signups', payload: { email: 'nope', name: '' } }))
        .statusCode,
    ).toBe(400);
    const longName = { email: `${randomUUID()}@shop.test`, name: 'x'.repeat(20_000) };
    expect((await call(shop, { method: 'POST', url: '/v1/signups', payload: longName })).statusCode).toBe(
      413,
    );
    const xml = { 'content-type': 'application/xml' };
    const signupXml = await call(shop, { method: 'POST', url: '/v1/signups', payload: '<a/>', headers: xml });
    expect(signupXml.statusCode).toBe(415);
    expect((await call(shop, { url: `/v1/accounts/${account.id}` })).statusCode).toBe(200);
    expect((await call(shop, { url: `/v1/accounts/${randomUUID()}` })).statusCode).toBe(404);
    expect((await call(shop, { url: '/v1/accounts/not-a-uuid' })).statusCode).toBe(400);

    const order = { customerId: account.id, items: [{ sku: 'book-1', quantity: 2 }] };
    const key = randomUUID();
    const place = (body: unknown, headers: Record<string, string> = { 'idempotency-key': key }) =>
      call(shop, { method: 'POST', url: '/v1/orders', payload: body as object, headers });
    const placed = await place(order);
    expect(placed.statusCode).toBe(202);
    const id = placed.json<{ id: string }>().id;
    const replay = await place(order);
    expect(replay.statusCode).toBe(202);
    expect(replay.headers['idempotent-replayed']).toBe('true');
    expect((await place({ ...order, items: [{ sku: 'book-2', quantity: 1 }] })).statusCode).toBe(422);
    expect((await place(order, {})).statusCode).toBe(400);
    expect((await place({ ...order, items: [] }, { 'idempotency-key': randomUUID() })).statusCode).toBe(400);
    const malformed = await call(shop, {
      method: 'POST',
      url: '/v1/orders',
      payload: '{"customerId":',
      headers: { 'content-type': 'application/json', 'idempotency-key': randomUUID() },
    });
    expect(malformed.statusCode).toBe(400);
    const notJson = await call(shop, {
      method: 'POST',
      url: '/v1/orders',
      payload: '<order/>',
      headers: { 'content-type': 'application/xml', 'idempotency-key': randomUUID() },
    });
    expect(notJson.statusCode).toBe(415);
    const huge = await place({ ...order, note: 'x'.repeat(70_000) }, { 'idempotency-key': randomUUID() });
    expect(huge.statusCode).toBe(413);

    await fulfilmentFinished(shop, id);
    const token = String(placed.headers['consistency-token']);
    const read = await call(shop, { url: `/v1/orders/${id}`, headers: { 'consistency-token': token } });
    expect(read.json()).toMatchObject({ id, status: 'CONFIRMED' });
    expect((await call(shop, { url: `/v1/orders/${randomUUID()}` })).statusCode).toBe(404);
    expect(
      (await call(shop, { url: `/v1/orders/${id}`, headers: { 'consistency-token': 'garbage' } })).statusCode,
    ).toBe(400);

    expect((await call(shop, { url: '/v1/analytics/orders?top=3' })).statusCode).toBe(200);
    expect((await call(shop, { url: '/v1/analytics/orders?top=0' })).statusCode).toBe(400);
    expect((await call(shop, { url: '/healthz' })).statusCode).toBe(200);
    expect((await call(shop, { url: '/readyz' })).statusCode).toBe(200);
    expect((await call(shop, { url: '/v1/nothing-here' })).statusCode).toBe(404);

    expect(observed.filter((r) => r.url !== '/v1/nothing-here').flatMap(check)).toEqual([]);
    // An unknown route is no operation of the contract, and the checker says so.
    expect(check(observed.find((r) => r.url === '/v1/nothing-here')!)).toEqual([
      'GET /v1/nothing-here: no such operation',
    ]);
  });

  it('401 from every /v1 operation without an API key where keys are required, 429 past the rate limit', async () => {
    const clock = new ManualClock();
    const guarded = await openTestShop(await store(), ['api'], clock, {
      config: { apiKeys: 'required', rateLimit: { capacity: 1, refillPerSecond: 0.5 } },
    });
    await guarded.start();
    cleanups.push(() => guarded.stop({ drainMs: 1000 }));
    const before = observed.length;
    for (const request of oneRequestPerV1Operation()) {
      expect((await call(guarded, request)).statusCode, request.url).toBe(401);
    }
    const { key } = await createApiKey(guarded.db, 'contract test');
    const authorization = { authorization: `Bearer ${key}` };
    expect(
      (await call(guarded, { url: `/v1/orders/${randomUUID()}`, headers: authorization })).statusCode,
    ).toBe(404);
    // The bucket held one request and the clock stands still: every operation is refused now.
    for (const request of oneRequestPerV1Operation()) {
      const headers = { ...request.headers, ...authorization };
      expect((await call(guarded, { ...request, headers })).statusCode, request.url).toBe(429);
    }
    expect(observed.slice(before).flatMap(check)).toEqual([]);
  });
});

describe('the shop answers a key in flight, a pause and its failures as its contract says', () => {
  // An api process alone, on a database that can be made to fail under it.
  const fault = new DbFault();
  let api: Shop;
  let beforeStart: ObservedResponse;
  beforeAll(async () => {
    api = await openTestShop(await store(), ['api'], systemClock, { db: (db) => fault.wrap(db) });
    await call(api, { url: '/readyz' });
    beforeStart = observed.at(-1)!;
    await api.start();
    cleanups.push(() => api.stop({ drainMs: 1000 }));
  });

  const placeOrder = (key: string) =>
    call(api, {
      method: 'POST',
      url: '/v1/orders',
      payload: { customerId: 'c-1', items: [{ sku: 'book-1', quantity: 1 }] },
      headers: { 'idempotency-key': key },
    });

  it('503 from /readyz until the process has started', async () => {
    expect(beforeStart.status).toBe(503);
    expect(JSON.parse(beforeStart.body)).toMatchObject({ code: 'KEEL_SERVICE_STATE' });
    expect(check(beforeStart)).toEqual([]);
    expect((await call(api, { url: '/readyz' })).statusCode).toBe(200);
  });

  // The key is an advisory lock of the first request's transaction; PGlite runs one transaction
  // at a time, so there a second request waits for the first to commit and is its replay.
  it.skipIf(testDbBackend() !== 'pg')(
    '409 to a request whose Idempotency-Key a concurrent request holds, in its transaction (PostgreSQL)',
    async () => {
      const before = observed.length;
      // Another session holds the orders table against writes, as a long migration would: the
      // first request claims its key, then waits at its insert with its transaction open.
      let release!: () => void;
      const released = new Promise<void>((resolve) => (release = resolve));
      let locked!: () => void;
      const isLocked = new Promise<void>((resolve) => (locked = resolve));
      const holder = api.db.transaction(async (tx) => {
        await tx.query('LOCK TABLE orders IN SHARE MODE');
        locked();
        await released;
      });
      await isLocked;
      const key = randomUUID();
      try {
        const first = placeOrder(key);
        await until(
          async () =>
            (await api.db.query(`SELECT 1 FROM pg_locks WHERE relation = 'orders'::regclass AND NOT granted`))
              .rows.length > 0,
          10_000,
          'the first request waiting at its insert',
        );
        const concurrent = await placeOrder(key);
        expect(concurrent.statusCode).toBe(409);
        expect(concurrent.json()).toMatchObject({ code: 'KEEL_IDEMPOTENCY_IN_FLIGHT' });
        release();
        expect((await first).statusCode).toBe(202);
        expect((await placeOrder(key)).headers['idempotent-replayed']).toBe('true');
      } finally {
        release();
        await holder;
      }
      expect(observed.slice(before).flatMap(check)).toEqual([]);
    },
  );

  it('503 to a new order while the orders.accepting flag pauses orders', async () => {
    const before = observed.length;
    const flags = new PostgresFlagStore(api.db);
    const accepting = async (on: boolean) => {
      const current = await flags.get(ordersAcceptingFlag);
      const definition = current!.definition;
      await flags.put(
        { ...definition, defaultVariant: on ? 'on' : 'off' },
        { expectedVersion: current!.version },
      );
      await until(() => api.flags?.ordersAccepting === on, 10_000, `orders.accepting ${on} heard`);
    };
    await accepting(false);
    try {
      const paused = await placeOrder(randomUUID());
      expect(paused.statusCode).toBe(503);
      expect(paused.json()).toMatchObject({ code: 'KEEL_FEATURE_OFF', flag: ordersAcceptingFlag });
    } finally {
      await accepting(true);
    }
    expect(observed.slice(before).flatMap(check)).toEqual([]);
  });

  it('503 from every /v1 operation and from /readyz while the database is unreachable', async () => {
    const before = observed.length;
    await fault.during(databaseUnreachable(), async () => {
      for (const request of oneRequestPerV1Operation()) {
        const response = await call(api, request);
        expect(response.statusCode, request.url).toBe(503);
        expect(response.json()).toMatchObject({ code: 'KEEL_DB_UNAVAILABLE' });
      }
      const ready = await call(api, { url: '/readyz' });
      expect(ready.json()).toMatchObject({ status: 503, code: 'KEEL_DB_UNAVAILABLE' });
    });
    expect(observed.slice(before).flatMap(check)).toEqual([]);
  });

  it('500 from every /v1 operation when a statement fails unexpectedly, saying nothing of why', async () => {
    const before = observed.length;
    await fault.during(statementFailed(), async () => {
      for (const request of oneRequestPerV1Operation()) {
        const response = await call(api, request);
        expect(response.statusCode, request.url).toBe(500);
        expect(response.json()).toMatchObject({
          code: 'KEEL_INTERNAL',
          detail: 'The server failed to handle the request.',
        });
        expect(response.body).not.toContain('16402');
      }
    });
    expect(observed.slice(before).flatMap(check)).toEqual([]);
  });
});

describe('the shop answers while it stops as its contract says', () => {
  // `inject` refuses an app that is closing: these requests go over connections of their own.
  it('503 from the probes and the contract to a request on a connection still busy when the stop began', async () => {
    const gate = new HeldDb();
    const stopping = await openTestShop(await store(), ['api'], systemClock, { db: (db) => gate.wrap(db) });
    // Registered after the app's own preClose hook, so it runs once the app counts as closing.
    let closing!: () => void;
    const isClosing = new Promise<void>((resolve) => (closing = resolve));
    stopping.http.addHook('preClose', (done) => {
      closing();
      done();
    });
    let arrived = 0;
    stopping.http.server.on('request', () => void arrived++);
    await stopping.start();
    cleanups.push(async () => {
      gate.release();
      await stopping.stop({ drainMs: 1000 });
    });

    const refused = ['/healthz', '/openapi.json', '/readyz'];
    const connections = refused.map(() => new RawConnection(stopping.server!.address));
    cleanups.push(async () => connections.forEach((connection) => connection.destroy()));
    // Each connection is busy with a read held at the database when the stop begins. A request
    // that has arrived is past the refusal (the app's first onRequest hook, run as it arrives).
    const held = `/v1/orders/${randomUUID()}`;
    gate.hold = true;
    for (const connection of connections) connection.write(rawGet(held));
    await until(() => arrived === connections.length, 10_000, 'every read arrived');
    const stopped = stopping.stop({ drainMs: 5000 });
    await isClosing;
    connections.forEach((connection, i) => connection.write(rawGet(refused[i]!)));
    await until(() => arrived === 2 * connections.length, 10_000, 'every second request arrived');
    gate.release();
    await stopped;

    const before = observed.length;
    for (const [i, connection] of connections.entries()) {
      await connection.closed;
      const [first, second] = connection.responses();
      expect(first?.status).toBe(404);
      expect(second?.status, refused[i]).toBe(503);
      expect(JSON.parse(second?.body ?? ''), refused[i]).toMatchObject({ code: 'KEEL_SHUTTING_DOWN' });
      for (const [url, answer] of [
        [held, first],
        [refused[i]!, second],
      ] as const) {
        record({ method: 'GET', url, status: answer!.status, headers: answer!.headers, body: answer!.body });
      }
    }
    expect(observed.slice(before).flatMap(check)).toEqual([]);
  });
});

describe('what the answers above covered', () => {
  it('every status the document lists for each operation, but those named here with the reason', () => {
    const notAnswered = new Map<string, string>(
      testDbBackend() === 'pg'
        ? []
        : [['placeOrder 409', 'PGlite runs one transaction at a time: no request meets another in flight']],
    );
    const documented = shopOperations.flatMap((op) =>
      Object.keys(op.responses).map((status) => `${op.operationId} ${status}`),
    );
    expect(documented.filter((answer) => !exercised.has(answer) && !notAnswered.has(answer))).toEqual([]);
    expect([...exercised].filter((answer) => !documented.includes(answer))).toEqual([]);
  });
});
