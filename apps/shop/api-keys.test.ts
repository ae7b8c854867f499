import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/time/index.ts';
import type { Shop } from './app.ts';
import { runApiKeys } from './cmd/api-keys.ts';
import { shopConfigFromEnv } from './config.ts';
import { createApiKey, listApiKeys, revokeApiKey } from './storage/api-keys-store.ts';
import { createShopStore, openTestShop, type ShopStore } from './test/test-shop.ts';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const order = { customerId: 'c-1', items: [{ sku: 'book-1', quantity: 1 }] };

function post(shop: Shop, headers: Record<string, string>) {
  return shop.http.inject({
    method: 'POST',
    url: '/v1/orders',
    payload: order,
    headers: { 'idempotency-key': randomUUID(), ...headers },
    remoteAddress: '10.0.0.1',
  });
}

async function shopWithKeys(clock: ManualClock, rateLimit?: { capacity: number; refillPerSecond: number }) {
  const store = await createShopStore();
  cleanups.push(() => store.dispose());
  const shop = await openTestShop(store, ['worker'], clock, {
    config: { apiKeys: 'required', ...(rateLimit === undefined ? {} : { rateLimit }) },
  });
  await shop.start();
  cleanups.push(() => shop.stop({ drainMs: 1000 }));
  return { shop, store };
}

describe('shop: API keys', () => {
  it('asks for a live key on /v1, takes it as a bearer token or X-Api-Key, and drops a revoked one within the cache time', async () => {
    const clock = new ManualClock();
    const { shop } = await shopWithKeys(clock);
    const { id, key } = await createApiKey(shop.db, 'mobile app');
    expect(key).toMatch(/^shop_[A-Za-z0-9_-]{32}$/);

    const none = await post(shop, {});
    expect(none.statusCode).toBe(401);
    expect(none.headers['www-authenticate']).toBe('Bearer realm="shop"');
    expect(none.json()).toMatchObject({ code: 'KEEL_UNAUTHENTICATED' });
    expect((await post(shop, { authorization: 'Bearer shop_not-a-key' })).statusCode).toBe(401);
    expect((await post(shop, { authorization: `Bearer ${key}` })).statusCode).toBe(202);
    expect((await post(shop, { 'x-api-key': key })).statusCode).toBe(202);
    // Health stays open to the orchestrator.
    expect((await shop.http.inject({ url: '/healthz' })).statusCode).toBe(200);

    expect(await revokeApiKey(shop.db, id)).toBe(true);
    expect((await post(shop, { 'x-api-key': key })).statusCode).toBe(202); // remembered for 30 s
    await clock.advance(30_000);
    expect((await post(shop, { 'x-api-key': key })).statusCode).toBe(401);
    expect(await listApiKeys(shop.db)).toEqual([
      expect.objectContaining({ id, name: 'mobile app', revokedAt: expect.any(Date) as unknown }),
    ]);
  });

  it('limits the rate per key, not per address', async () => {
    const { shop } = await shopWithKeys(new ManualClock(), { capacity: 1, refillPerSecond: 0.1 });
    const a = await createApiKey(shop.db, 'a');
    const b = await createApiKey(shop.db, 'b');
    expect((await post(shop, { 'x-api-key': a.key })).statusCode).toBe(202);
    expect((await post(shop, { 'x-api-key': a.key })).statusCode).toBe(429);
    // The same address, another key: a bucket of its own.
    expect((await post(shop, { 'x-api-key': b.key })).statusCode).toBe(202);
  });

  it('are made, listed and revoked from a shell, and read from KEEL_API_KEYS', async () => {
    const store: ShopStore = await createShopStore();
    cleanups.push(() => store.dispose());
    const lines: string[] = [];
    const out = (line: string): number => lines.push(line);
    expect(await runApiKeys(['create', 'ops'], out, () => store.open())).toBe(0);
    const id = /^id +(\S+)$/.exec(lines[0]!)![1]!;
    expect(lines[1]).toMatch(/^key +shop_/);
    lines.length = 0;
    expect(await runApiKeys(['revoke', id], out, () => store.open())).toBe(0);
    expect(await runApiKeys(['revoke', id], out, () => store.open())).toBe(1);
    expect(await runApiKeys(['list'], out, () => store.open())).toBe(0);
    expect(lines).toEqual([
      `${id} revoked`,
      `KEEL_NOT_FOUND: no live API key with id ${id}`,
      expect.stringMatching(new RegExp(`^${id}  ops +\\S+Z  \\S+Z$`)) as unknown,
    ]);
    expect(shopConfigFromEnv({}).apiKeys).toBe('off');
    expect(shopConfigFromEnv({ KEEL_API_KEYS: 'required' }).apiKeys).toBe('required');
    expect(() => shopConfigFromEnv({ KEEL_API_KEYS: 'yes' })).toThrow(/KEEL_API_KEYS/);
  });

  it('npm run api-keys opens the database the environment names', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'keel-api-keys-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const { stdout } = await promisify(execFile)(
      process.execPath,
      ['--import', 'tsx', 'apps/shop/cmd/api-keys.ts', 'create', 'from the shell'],
      {
        cwd: fileURLToPath(new URL('../../', import.meta.url)),
        env: { ...process.env, KEEL_DB: 'pglite', KEEL_DATA_DIR: dir },
      },
    );
    expect(stdout).toMatch(/^key +shop_/m);
    expect(existsSync(path.join(dir, 'pglite'))).toBe(true);
  }, 60_000);
});
