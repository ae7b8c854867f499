import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Db } from '../../../../src/db/index.ts';
import type { Shop } from '../../app.ts';
import { beforeEachCall } from '../../test/db-fault.ts';
import { createShopStore, openTestShop, type ShopStore } from '../../test/test-shop.ts';

// What the shop answers on its own before a route runs — a URL it cannot decode, a request on a
// busy connection while it stops — is problem+json like every other error answer.

/** A view of the shop's database whose calls wait, while `hold` is set, until released. */
class HeldDb {
  hold = false;
  readonly held: (() => void)[] = [];

  wrap(db: Db): Db {
    return beforeEachCall(db, async () => {
      if (this.hold) await new Promise<void>((resolve) => this.held.push(resolve));
    });
  }

  release(): void {
    this.hold = false;
    for (const resume of this.held.splice(0)) resume();
  }
}

const gate = new HeldDb();
let store: ShopStore;
let shop: Shop;
beforeAll(async () => {
  store = await createShopStore();
  shop = await openTestShop(store, ['api'], undefined, { db: (db) => gate.wrap(db) });
  await shop.start();
});
afterAll(async () => {
  gate.release();
  await shop.stop({ drainMs: 1000 });
  await store.dispose();
});

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

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
    const { hostname, port } = new URL(shop.server!.address);
    const socket = net.connect(Number(port), hostname);
    let received = '';
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => (received += chunk));
    const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    const get = `GET /v1/orders/01a2205b-b3e8-77ba-ba9b-f9c3d17002af HTTP/1.1\r\nHost: shop\r\nConnection: keep-alive\r\n\r\n`;
    let arrived = 0;
    shop.http.server.on('request', () => void arrived++);
    // The first request waits at the database, so its connection is busy when the stop begins.
    gate.hold = true;
    socket.write(get);
    while (gate.held.length === 0) await pause(10);
    const stopped = shop.stop({ drainMs: 5000 });
    await pause(50);
    socket.write(get);
    while (arrived < 2) await pause(10);
    gate.release();
    await stopped;
    await closed;
    expect(received).toMatch(/HTTP\/1.1 404/);
    expect(received).toMatch(/HTTP\/1.1 503[^]*application\/problem\+json[^]*KEEL_SHUTTING_DOWN/);
  });
});
