import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/time/index.ts';
import type { Shop } from './app.ts';
import { shopConfigFromEnv } from './config.ts';
import { createShopStore, openTestShop } from './test/test-shop.ts';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const order = { customerId: 'c-1', items: [{ sku: 'book-1', quantity: 1 }] };

function post(shop: Shop, from: string) {
  return shop.http.inject({
    method: 'POST',
    url: '/v1/orders',
    payload: order,
    headers: { 'idempotency-key': randomUUID() },
    remoteAddress: from,
  });
}

describe('shop: the rate limit per client', () => {
  it('answers 429 with Retry-After past a client’s burst, per address, and again once tokens refill', async () => {
    const store = await createShopStore();
    cleanups.push(() => store.dispose());
    const clock = new ManualClock();
    const shop = await openTestShop(store, ['worker'], clock, {
      config: { rateLimit: { capacity: 2, refillPerSecond: 0.5 } },
    });
    await shop.start();
    cleanups.push(() => shop.stop({ drainMs: 1000 }));

    expect((await post(shop, '10.0.0.1')).statusCode).toBe(202);
    expect((await post(shop, '10.0.0.1')).statusCode).toBe(202);
    const limited = await post(shop, '10.0.0.1');
    expect(limited.statusCode).toBe(429);
    expect(limited.headers['retry-after']).toBe('2');
    expect(limited.json()).toMatchObject({ code: 'KEEL_RATE_LIMITED', retryAfterMs: 2000 });
    // Another client has its own bucket; health checks are not limited.
    expect((await post(shop, '10.0.0.2')).statusCode).toBe(202);
    expect(
      (await shop.http.inject({ method: 'GET', url: '/healthz', remoteAddress: '10.0.0.1' })).statusCode,
    ).toBe(200);
    await clock.advance(2000);
    expect((await post(shop, '10.0.0.1')).statusCode).toBe(202);
  });

  it('reads KEEL_RATE_LIMIT: burst/per second, 60/20 by default, off, and names a bad value', () => {
    expect(shopConfigFromEnv({}).rateLimit).toEqual({ capacity: 60, refillPerSecond: 20 });
    expect(shopConfigFromEnv({ KEEL_RATE_LIMIT: '5/0.5' }).rateLimit).toEqual({
      capacity: 5,
      refillPerSecond: 0.5,
    });
    expect(shopConfigFromEnv({ KEEL_RATE_LIMIT: 'off' }).rateLimit).toBeUndefined();
    expect(() => shopConfigFromEnv({ KEEL_RATE_LIMIT: 'lots' })).toThrow(
      /KEEL_RATE_LIMIT: expected '<burst>\/<per second>'/,
    );
  });
});
