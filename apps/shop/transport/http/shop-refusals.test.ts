import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Shop } from '../../app.ts';
import { HeldDb } from '../../test/db-fault.ts';
import { RawConnection, rawGet } from '../../test/raw-http.ts';
import { createShopStore, openTestShop, type ShopStore } from '../../test/test-shop.ts';

// What the shop answers on its own before a route runs — a URL it cannot decode, a request on a
// busy connection while it stops — is problem+json like every other error answer.

const gate = new HeldDb();
let store: ShopStore;
let shop: Shop;
let arrived = 0;
let isClosing!: Promise<void>;
beforeAll(async () => {
  store = await createShopStore();
  shop = await openTestShop(store, ['api'], undefined, { db: (db) => gate.wrap(db) });
  // Registered after the app's own preClose hook, so it runs once the app counts as closing.
  isClosing = new Promise<void>((resolve) =>
    shop.http.addHook('preClose', (done) => {
      resolve();
      done();
    }),
  );
  shop.http.server.on('request', () => void arrived++);
  await shop.start();
});
afterAll(async () => {
  gate.release();
  await shop.stop({ drainMs: 1000 });
  await store.dispose();
});

const turn = () => new Promise((resolve) => setImmediate(resolve));

describe('the shop', () => {
  it('answers a URL with a malformed %-escape with a 400 problem', async () => {
    const response = await shop.http.inject({ url: '/v1/orders/%E0%A4%A' });
    expect(response.statusCode).toBe(400);
    expect(response.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(response.json()).toMatchObject({
      code: 'KEEL_VALIDATION_FAILED',
      instance: '/v1/orders/%E0%A4%A',
    });
  });

  // Last: it stops the shop.
  it('answers a request on a busy keep-alive connection while it stops with a 503 problem', async () => {
    const connection = new RawConnection(shop.server!.address);
    const get = rawGet('/v1/orders/01a2205b-b3e8-77ba-ba9b-f9c3d17002af');
    // The first request waits at the database, so its connection is busy when the stop begins. A
    // request that has arrived is past the refusal (the app's first onRequest hook).
    gate.hold = true;
    const before = arrived;
    connection.write(get);
    while (arrived === before) await turn();
    const stopped = shop.stop({ drainMs: 5000 });
    await isClosing;
    connection.write(get);
    while (arrived === before + 1) await turn();
    gate.release();
    await stopped;
    await connection.closed;
    const [first, second] = connection.responses();
    expect(first?.status).toBe(404);
    expect(second).toMatchObject({ status: 503, headers: { 'retry-after': '1', connection: 'close' } });
    expect(second?.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(JSON.parse(second?.body ?? '')).toMatchObject({ code: 'KEEL_SHUTTING_DOWN' });
  });
});
