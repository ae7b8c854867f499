import { afterEach, describe, expect, it } from 'vitest';
import { shopConfigFromEnv } from '../../config.ts';
import { createShopStore, openTestShop } from '../../test/test-shop.ts';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

describe("the shop's request timeout", () => {
  it('reads KEEL_HTTP_REQUEST_TIMEOUT_MS: 30 s by default, 0 for none, a bad one refused by name', () => {
    expect(shopConfigFromEnv({}).http.requestTimeoutMs).toBe(30_000);
    expect(shopConfigFromEnv({ KEEL_HTTP_REQUEST_TIMEOUT_MS: '0' }).http.requestTimeoutMs).toBe(0);
    expect(shopConfigFromEnv({ KEEL_HTTP_REQUEST_TIMEOUT_MS: '5000' }).http.requestTimeoutMs).toBe(5000);
    expect(() => shopConfigFromEnv({ KEEL_HTTP_REQUEST_TIMEOUT_MS: '-1' })).toThrow(
      /^KEEL_HTTP_REQUEST_TIMEOUT_MS: expected an integer from 0/,
    );
  });

  it("is the API's, whose refusal createHttpApp answers as a 408 problem", async () => {
    const store = await createShopStore();
    cleanups.push(() => store.dispose());
    const shop = await openTestShop(store, ['api'], undefined, {
      config: { http: { port: 0, host: '127.0.0.1', requestTimeoutMs: 1234 } },
    });
    cleanups.push(() => shop.stop({ drainMs: 1000 }));
    // Node's server enforces it; fastify hands it over as it creates the server. Node checks it
    // every tenth of it (at least every second), not every 30 s.
    expect(shop.http.server.requestTimeout).toBe(1234);
    expect(shop.http.server).toMatchObject({ connectionsCheckingInterval: 1000 });
  });
});
