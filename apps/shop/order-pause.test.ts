import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { PostgresFlagStore } from '../../src/flags/index.ts';
import { until } from '../../test/until.ts';
import type { Shop } from './app.ts';
import { ordersAcceptingFlag } from './flags.ts';
import { createShopStore, openTestShop } from './test/test-shop.ts';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const order = { customerId: 'c-1', items: [{ sku: 'book-1', quantity: 1 }] };

async function post(shop: Shop, key: string): Promise<{ status: number; json: Record<string, unknown> }> {
  const response = await shop.http.inject({
    method: 'POST',
    url: '/v1/orders',
    payload: order,
    headers: { 'idempotency-key': key },
  });
  return { status: response.statusCode, json: response.json() };
}

const accepting = (enabled: boolean) => ({
  key: ordersAcceptingFlag,
  enabled: true,
  variants: { on: true, off: false },
  defaultVariant: enabled ? 'on' : 'off',
});

describe('shop: the orders.accepting flag', () => {
  it('pauses new orders with a 503 naming the flag, leaves the key free, and resumes', async () => {
    const store = await createShopStore();
    cleanups.push(() => store.dispose());
    const shop = await openTestShop(store, ['api']);
    await shop.start();
    cleanups.push(() => shop.stop({ drainMs: 1000 }));
    const flags = new PostgresFlagStore(shop.db);

    // The api seeds the flag, on, at its first start: an operator can turn it off by name.
    expect(await flags.get(ordersAcceptingFlag)).toMatchObject({ version: 1, definition: accepting(true) });
    expect((await post(shop, randomUUID())).status).toBe(202);
    await flags.put(accepting(false), { expectedVersion: 1 });
    await until(() => shop.flags?.ordersAccepting === false, 10_000, 'the pause heard');
    const key = randomUUID();
    const paused = await post(shop, key);
    expect(paused.status).toBe(503);
    expect(paused.json).toMatchObject({ code: 'KEEL_FEATURE_OFF', flag: ordersAcceptingFlag });

    await flags.put(accepting(true));
    await until(() => shop.flags?.ordersAccepting === true, 10_000, 'the resume heard');
    // The key refused during the pause places its order now.
    const resumed = await post(shop, key);
    expect(resumed.status).toBe(202);
    expect(resumed.json).toMatchObject({ status: 'PENDING' });
  });
});
