import { randomUUID } from 'node:crypto';
import { Validator } from '@seriousme/openapi-schema-validator';
import type { InjectOptions } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openApiResponses, type ObservedResponse } from '../../../src/testing/index.ts';
import { ManualClock } from '../../../src/time/index.ts';
import type { Shop } from '../app.ts';
import { createApiKey } from '../storage/api-keys-store.ts';
import { createShopStore, fulfilmentFinished, openTestShop, type ShopStore } from '../test/test-shop.ts';
import { shopOpenApiDocument, shopOperations } from './http-api.ts';
import { staleContracts } from './published-contract.ts';

// The shop is held to its published contract both ways: every route it serves is documented
// (and every documented one served), and every answer below — successes, replays and each kind
// of refusal — matches the document's schema, content type and required headers for its status.

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

/** Sends a request, records its answer for the contract check, and returns it. */
async function call(shop: Shop, options: InjectOptions & { url: string }) {
  const response = await shop.http.inject(options);
  const method = options.method ?? 'GET';
  observed.push({
    method,
    url: options.url,
    status: response.statusCode,
    headers: response.headers,
    body: response.body,
  });
  const operation = shopOperations.find(
    (op) =>
      op.method === method.toLowerCase() &&
      new RegExp(`^${op.path.replace(/:[^/]+/g, '[^/]+')}$`).test(options.url.split('?')[0]!),
  );
  if (operation !== undefined) exercised.add(`${operation.operationId} ${response.statusCode}`);
  return response;
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

  it('401 without an API key where keys are required, 429 past the rate limit', async () => {
    const clock = new ManualClock();
    const guarded = await openTestShop(await store(), ['api'], clock, {
      config: { apiKeys: 'required', rateLimit: { capacity: 1, refillPerSecond: 0.5 } },
    });
    await guarded.start();
    cleanups.push(() => guarded.stop({ drainMs: 1000 }));
    const before = observed.length;
    expect((await call(guarded, { url: `/v1/orders/${randomUUID()}` })).statusCode).toBe(401);
    const { key } = await createApiKey(guarded.db, 'contract test');
    const headers = { authorization: `Bearer ${key}` };
    expect((await call(guarded, { url: `/v1/orders/${randomUUID()}`, headers })).statusCode).toBe(404);
    const limited = await call(guarded, { url: `/v1/orders/${randomUUID()}`, headers });
    expect(limited.statusCode).toBe(429);
    expect(observed.slice(before).flatMap(check)).toEqual([]);
  });

  it('every operation was exercised above', () => {
    const operations = new Set([...exercised].map((entry) => entry.split(' ')[0]));
    expect([...operations].sort()).toEqual(shopOperations.map((op) => op.operationId).sort());
  });
});
