import type { Readable } from 'node:stream';
import Fastify from 'fastify';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { CircuitState } from '../../../src/resilience/index.ts';
import { systemClock } from '../../../src/time/index.ts';
import type { Shop } from '../app.ts';
import { createShopStore, fulfilmentFinished, openTestShop, type ShopStore } from '../test/test-shop.ts';
import { dashboardRoutes } from './dashboard-routes.ts';
import type { DashboardSnapshot } from './dashboard-snapshot.ts';

let store: ShopStore;
let shop: Shop;

beforeAll(async () => {
  store = await createShopStore();
  shop = await openTestShop(store, ['api', 'worker', 'relay']);
  await shop.start();
});
afterAll(async () => {
  await shop?.stop();
  await store?.dispose();
});

const state = async (): Promise<DashboardSnapshot> => {
  const response = await shop.http.inject({ url: '/dashboard/state' });
  expect(response.statusCode).toBe(200);
  return response.json<DashboardSnapshot>();
};

/** The first `data:` event of an event stream, parsed. */
async function firstEvent(stream: Readable): Promise<DashboardSnapshot> {
  let text = '';
  for await (const chunk of stream) {
    text += String(chunk);
    const match = /^data: (.*)\n\n/m.exec(text);
    if (match !== null) return JSON.parse(match[1]!) as DashboardSnapshot;
  }
  throw new Error(`the stream ended before an event: ${text}`);
}

describe('the dashboard over HTTP', () => {
  it('serves the page, its script and style from the shop itself, under a strict CSP', async () => {
    const page = await shop.http.inject({ url: '/dashboard' });
    expect(page.statusCode).toBe(200);
    expect(page.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(page.headers['content-security-policy']).toContain("script-src 'self'");
    expect(page.body).toContain('<script src="/dashboard/dashboard.js" defer></script>');
    // No CDN: the machine it runs on may have no internet.
    expect(page.body).not.toMatch(/https?:\/\//);
    const script = await shop.http.inject({ url: '/dashboard/dashboard.js' });
    expect(script.headers['content-type']).toBe('text/javascript; charset=utf-8');
    expect(script.body).toContain("new EventSource('/dashboard/events')");
    const style = await shop.http.inject({ url: '/dashboard/dashboard.css' });
    expect(style.headers['content-type']).toBe('text/css; charset=utf-8');
  });

  it('reports an order in /dashboard/state: sagas, outbox, queue and the route it came through', async () => {
    const before = await state();
    expect(before.unavailable).toEqual([]);
    expect(before.breakers).toEqual([]);
    expect(before.queues!.map((queue) => queue.name)).toEqual(['shop.orders', 'shop.notifications']);
    expect(before.queues![0]).toMatchObject({ name: 'shop.orders', deadLetters: 0 });
    expect(before.queues![0]!.lagSeconds).toBeGreaterThanOrEqual(0);
    const completedBefore = before.sagas!.byState.COMPLETED;
    const publishedBefore = before.outbox!.published;

    const placed = await shop.http.inject({
      method: 'POST',
      url: '/v1/orders',
      headers: { 'idempotency-key': 'dashboard-state-1' },
      payload: { customerId: 'c-1', items: [{ sku: 'book-1', quantity: 1 }] },
    });
    expect(placed.statusCode).toBe(202);
    await fulfilmentFinished(shop, placed.json<{ id: string }>().id);

    // A snapshot is cached for a second: poll until one read after the saga ended arrives.
    await vi.waitFor(
      async () => {
        const after = await state();
        expect(after.sagas!.byState.COMPLETED).toBe(completedBefore + 1);
        expect(after.outbox!.published).toBeGreaterThan(publishedBefore);
        expect(after.outbox!.backlog).toBe(0);
        const route = after.latency.find((r) => r.route === 'POST /v1/orders');
        expect(route).toMatchObject({ count: 1 });
        expect(route!.p50Ms).toBeGreaterThan(0);
        // Its own routes are not timed: a stream's "duration" is how long a page stayed open.
        expect(after.latency.filter((r) => r.route.includes('/dashboard'))).toEqual([]);
      },
      { timeout: 10_000, interval: 200 },
    );
  });

  it('shows the breakers it is given, each snapshot reading their state anew', async () => {
    const app = Fastify();
    let payments: CircuitState = { status: 'closed', since: 0 };
    await app.register(dashboardRoutes, {
      db: shop.db,
      queue: shop.depths!,
      queues: [],
      clock: systemClock,
      intervalMs: 0,
      breakers: () => [{ name: 'payments', state: payments }],
    });
    try {
      const read = async (): Promise<unknown> =>
        (await app.inject({ url: '/dashboard/state' })).json<DashboardSnapshot>().breakers;
      expect(await read()).toEqual([{ name: 'payments', state: 'closed' }]);
      payments = { status: 'open', since: 0, until: 10_000, reason: 'consecutive-failures' };
      expect(await read()).toEqual([{ name: 'payments', state: 'open' }]);
    } finally {
      await app.close();
    }
  });

  it('streams snapshots as Server-Sent Events, the first at once', async () => {
    const response = await shop.http.inject({ url: '/dashboard/events', payloadAsStream: true });
    expect(response.statusCode).toBe(200);
    expect(response.headers['content-type']).toBe('text/event-stream; charset=utf-8');
    expect(response.headers['cache-control']).toBe('no-store');
    const stream = response.stream();
    try {
      const snapshot = await firstEvent(stream);
      expect(snapshot.queues?.[0]?.name).toBe('shop.orders');
      expect(snapshot.sagas?.byState).toHaveProperty('NEEDS_ATTENTION');
    } finally {
      stream.destroy();
    }
  });

  it('ends open event streams when the shop stops, instead of holding the drain', async () => {
    await using ownStore = await createShopStore();
    const own = await openTestShop(ownStore, ['api']);
    await own.start();
    const response = await fetch(`${own.server!.address}/dashboard/events`);
    expect(response.headers.get('content-type')).toBe('text/event-stream; charset=utf-8');
    const reader = response.body!.getReader();
    expect((await reader.read()).done).toBe(false);
    // A drain budget past the test's timeout: only ending the stream lets stop() finish in time.
    await own.stop({ drainMs: 60_000 });
    for (;;) if ((await reader.read()).done) break;
  });
});
