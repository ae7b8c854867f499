import { randomUUID } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Shop } from './app.ts';
import type { Order } from './domain/order.ts';
import { createShopStore, fulfilmentFinished, openTestShop, type ShopStore } from './test/test-shop.ts';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function started(
  store: ShopStore,
  roles: Parameters<typeof openTestShop>[1] = ['worker', 'relay'],
): Promise<Shop> {
  const shop = await openTestShop(store, roles);
  await shop.start();
  cleanups.push(() => shop.stop({ drainMs: 1000 }));
  return shop;
}

async function newStore(): Promise<ShopStore> {
  const store = await createShopStore();
  cleanups.push(() => store.dispose());
  return store;
}

const validOrder = { customerId: 'c-1', items: [{ sku: 'book-1', quantity: 2 }] };

async function post(
  shop: Shop,
  body: unknown,
  key: string = randomUUID(),
): Promise<{
  status: number;
  json: Record<string, unknown>;
  body: string;
  headers: Record<string, unknown>;
}> {
  const response = await shop.http.inject({
    method: 'POST',
    url: '/v1/orders',
    payload: body as object,
    headers: { 'idempotency-key': key },
  });
  return {
    status: response.statusCode,
    json: response.json(),
    body: response.body,
    headers: response.headers,
  };
}

/** The order as `GET /v1/orders/:id` shows it once its fulfilment saga has ended. */
async function fulfilled(shop: Shop, id: string): Promise<Order> {
  await fulfilmentFinished(shop, id);
  const response = await shop.http.inject({ method: 'GET', url: `/v1/orders/${id}` });
  return response.json<Order>();
}

describe('shop: placing an order', () => {
  it('answers 202 with the order and a Location, and the fulfilment saga confirms it', async () => {
    const shop = await started(await newStore());
    const { status, json, headers } = await post(shop, validOrder);
    expect(status).toBe(202);
    expect(json).toMatchObject({ status: 'PENDING', customerId: 'c-1', items: validOrder.items, version: 1 });
    expect(headers.location).toBe(`/v1/orders/${String(json.id)}`);
    // PENDING → ACCEPTED (the saga's first step) → CONFIRMED (its last).
    expect(await fulfilled(shop, String(json.id))).toMatchObject({ status: 'CONFIRMED', version: 3 });
  });

  it('keeps the confirmed order across a restart on the same data, and migrations stay applied', async () => {
    const store = await newStore();
    const first = await openTestShop(store);
    await first.start();
    const { json } = await post(first, validOrder);
    expect(await fulfilled(first, String(json.id))).toMatchObject({ status: 'CONFIRMED' });
    await first.stop();

    const second = await started(store);
    const response = await second.http.inject({ method: 'GET', url: `/v1/orders/${String(json.id)}` });
    expect(response.statusCode).toBe(200);
    expect(response.json()).toMatchObject({ id: json.id, status: 'CONFIRMED' });
  });

  it('a retry with the same Idempotency-Key replays the first answer and places no second order', async () => {
    const shop = await started(await newStore(), []);
    const first = await post(shop, validOrder, 'order-key-1');
    const retry = await post(shop, validOrder, 'order-key-1');
    expect(retry.status).toBe(202);
    expect(retry.body).toBe(first.body);
    expect(retry.headers.location).toBe(first.headers.location);
    expect(retry.headers['content-type']).toBe(first.headers['content-type']);
    expect(retry.headers['idempotent-replayed']).toBe('true');
    const reused = await post(shop, { ...validOrder, customerId: 'c-2' }, 'order-key-1');
    expect(reused.status).toBe(422);
    expect(reused.json).toMatchObject({ code: 'KEEL_IDEMPOTENCY_KEY_REUSED' });
    expect(await countRows(shop)).toEqual({ orders: 1, outbox: 1 });
  });

  it('50 concurrent requests with one Idempotency-Key place one order', async () => {
    const shop = await started(await newStore(), []);
    const answers = await Promise.all(Array.from({ length: 50 }, () => post(shop, validOrder, 'same-key')));
    expect(
      answers.filter((a) => a.status === 202 && a.headers['idempotent-replayed'] === undefined),
    ).toHaveLength(1);
    expect(answers.every((a) => a.status === 202 || a.status === 409)).toBe(true);
    expect(await countRows(shop)).toEqual({ orders: 1, outbox: 1 });
  });

  it('serves /healthz and /readyz', async () => {
    const shop = await started(await newStore());
    expect((await shop.http.inject({ url: '/healthz' })).json()).toEqual({ status: 'ok' });
    const ready = (await shop.http.inject({ url: '/readyz' })).json<{ status: string; parts: object }>();
    // Each long-running part says whether it reaches what it depends on.
    expect(ready.status).toBe('ready');
    expect(Object.keys(ready.parts)).toEqual(
      expect.arrayContaining(['process-heartbeat', 'saga-runner', 'worker', 'notifications', 'outbox-relay']),
    );
    expect(Object.values(ready.parts).every((part: { status: string }) => part.status === 'ok')).toBe(true);
  });
});

describe('shop: bad input gets a 4xx problem+json naming what is wrong, and writes nothing', () => {
  let shop: Shop;
  let store: ShopStore;
  beforeAll(async () => {
    store = await createShopStore();
    shop = await openTestShop(store, []);
    await shop.start();
  });
  afterAll(async () => {
    await shop.stop();
    await store.dispose();
  });

  const cases: {
    name: string;
    request: { payload?: string; headers?: Record<string, string> };
    status: number;
    code: string;
    mentions: RegExp;
  }[] = [
    {
      name: 'an empty Idempotency-Key',
      request: { payload: JSON.stringify(validOrder), headers: { 'idempotency-key': '' } },
      status: 400,
      code: 'KEEL_IDEMPOTENCY_KEY_REQUIRED',
      mentions: /Idempotency-Key/,
    },
    {
      name: 'malformed JSON',
      request: { payload: '{"customerId": "c-1", items: [' },
      status: 400,
      code: 'KEEL_MALFORMED_BODY',
      mentions: /not valid JSON/,
    },
    {
      name: 'an empty body',
      request: { payload: '' },
      status: 400,
      code: 'KEEL_MALFORMED_BODY',
      mentions: /empty/,
    },
    {
      name: 'a missing field',
      request: { payload: JSON.stringify({ items: validOrder.items }) },
      status: 400,
      code: 'KEEL_VALIDATION_FAILED',
      mentions: /customerId/,
    },
    {
      name: 'an extra field',
      request: { payload: JSON.stringify({ ...validOrder, coupon: 'FREE' }) },
      status: 400,
      code: 'KEEL_VALIDATION_FAILED',
      mentions: /coupon: unknown field/,
    },
    {
      name: 'an extra field in an item',
      request: { payload: JSON.stringify({ customerId: 'c', items: [{ sku: 'a', quantity: 1, price: 0 }] }) },
      status: 400,
      code: 'KEEL_VALIDATION_FAILED',
      mentions: /items\.0\.price: unknown field/,
    },
    {
      name: 'a wrong type',
      request: { payload: JSON.stringify({ customerId: 42, items: validOrder.items }) },
      status: 400,
      code: 'KEEL_VALIDATION_FAILED',
      mentions: /customerId/,
    },
    {
      name: 'quantity 0',
      request: { payload: JSON.stringify({ customerId: 'c', items: [{ sku: 'a', quantity: 0 }] }) },
      status: 400,
      code: 'KEEL_VALIDATION_FAILED',
      mentions: /items\.0\.quantity/,
    },
    {
      name: 'a negative quantity',
      request: { payload: JSON.stringify({ customerId: 'c', items: [{ sku: 'a', quantity: -3 }] }) },
      status: 400,
      code: 'KEEL_VALIDATION_FAILED',
      mentions: /items\.0\.quantity/,
    },
    {
      name: 'a fractional quantity',
      request: { payload: JSON.stringify({ customerId: 'c', items: [{ sku: 'a', quantity: 1.5 }] }) },
      status: 400,
      code: 'KEEL_VALIDATION_FAILED',
      mentions: /items\.0\.quantity/,
    },
    {
      name: 'no items',
      request: { payload: JSON.stringify({ customerId: 'c', items: [] }) },
      status: 400,
      code: 'KEEL_VALIDATION_FAILED',
      mentions: /items/,
    },
    {
      name: 'a JSON array body',
      request: { payload: '[]' },
      status: 400,
      code: 'KEEL_VALIDATION_FAILED',
      mentions: /expected object/,
    },
    {
      name: 'an oversized body',
      request: { payload: JSON.stringify({ customerId: 'x'.repeat(70_000), items: validOrder.items }) },
      status: 413,
      code: 'KEEL_PAYLOAD_TOO_LARGE',
      mentions: /larger than/,
    },
    {
      name: 'a non-JSON content type',
      request: { payload: 'customerId=c', headers: { 'content-type': 'application/x-www-form-urlencoded' } },
      status: 415,
      code: 'KEEL_UNSUPPORTED_MEDIA_TYPE',
      mentions: /application\/json/,
    },
  ];

  it.each(cases)('$name → $status $code', async ({ request, status, code, mentions }) => {
    const response = await shop.http.inject({
      method: 'POST',
      url: '/v1/orders',
      payload: request.payload ?? '',
      headers: { 'content-type': 'application/json', 'idempotency-key': randomUUID(), ...request.headers },
    });
    expect(response.statusCode).toBe(status);
    expect(response.headers['content-type']).toMatch(/^application\/problem\+json/);
    const problem = response.json<{
      code: string;
      detail: string;
      status: number;
      type: string;
      title: string;
    }>();
    expect(problem).toMatchObject({ code, status });
    expect(problem.type).toMatch(/^urn:keel:error:/);
    expect(problem.detail).toMatch(mentions);
    expect(await countRows(shop)).toEqual({ orders: 0, outbox: 0 });
  });

  it('no Idempotency-Key → 400 KEEL_IDEMPOTENCY_KEY_REQUIRED, and nothing is written', async () => {
    const shop = await started(await newStore(), []);
    const response = await shop.http.inject({ method: 'POST', url: '/v1/orders', payload: validOrder });
    expect(response.statusCode).toBe(400);
    expect(response.json()).toMatchObject({ code: 'KEEL_IDEMPOTENCY_KEY_REQUIRED' });
    expect(await countRows(shop)).toEqual({ orders: 0, outbox: 0 });
  });

  it('an unknown order id → 404 naming the id; a malformed id → 400 naming the field', async () => {
    const shop = await started(await newStore(), []);
    const unknown = '01a2205b-b3e8-77ba-ba9b-f9c3d17002af';
    const notFound = await shop.http.inject({ url: `/v1/orders/${unknown}` });
    expect(notFound.statusCode).toBe(404);
    expect(notFound.json()).toMatchObject({
      code: 'KEEL_NOT_FOUND',
      detail: `order ${unknown} was not found`,
    });
    const malformed = await shop.http.inject({ url: '/v1/orders/not-a-uuid' });
    expect(malformed.statusCode).toBe(400);
    expect(malformed.json()).toMatchObject({ code: 'KEEL_VALIDATION_FAILED', errors: [{ path: 'id' }] });
    const noRoute = await shop.http.inject({ url: '/v2/nothing' });
    expect(noRoute.statusCode).toBe(404);
    expect(noRoute.json()).toMatchObject({ code: 'KEEL_ROUTE_NOT_FOUND' });
  });
});

async function countRows(shop: Shop): Promise<{ orders: number; outbox: number }> {
  const { rows } = await shop.db.query<{ orders: number; outbox: number }>(
    'SELECT (SELECT count(*)::int FROM orders) AS orders, (SELECT count(*)::int FROM keel_outbox) AS outbox',
  );
  return rows[0]!;
}
