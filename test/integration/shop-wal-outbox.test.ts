// The shop with KEEL_OUTBOX=wal on a PostgreSQL server of the test's own with wal_level=logical:
// an order's event goes out as a logical message (no outbox row), the WAL relay hands it to the
// queue, and the worker's fulfilment saga confirms the order. Config: KEEL_OUTBOX is read and
// refused, naming itself, where the WAL outbox cannot run.
import { randomUUID } from 'node:crypto';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildShop, type Shop } from '../../apps/shop/app.ts';
import { shopConfigFromEnv } from '../../apps/shop/config.ts';
import type { Order } from '../../apps/shop/domain/order.ts';
import { shopMigrations } from '../../apps/shop/presets/open-shop.ts';
import { fulfilmentFinished, testShopConfig } from '../../apps/shop/test/test-shop.ts';
import { migrate, openPgDb } from '../../src/db/index.ts';
import { walOutboxStatus } from '../../src/outbox/index.ts';
import { startPgServer, type PgServer } from '../../src/testing/index.ts';
import { systemClock } from '../../src/time/index.ts';

let server: PgServer;
beforeAll(async () => {
  server = await startPgServer({ walLevel: 'logical' });
}, 60_000);
afterAll(async () => {
  await server?.stop();
});

describe('shop with the WAL outbox', () => {
  it("relays an order's event from the WAL: no outbox row, and the saga confirms the order", async () => {
    const db = await openPgDb({ url: server.url });
    await migrate(db, await shopMigrations());
    const shop: Shop = buildShop(
      {
        ...testShopConfig(['api', 'worker', 'relay']),
        outbox: { kind: 'wal', connectionString: server.url },
      },
      { db, clock: systemClock, logger: pino({ level: 'silent' }) },
    );
    await shop.start();
    try {
      expect(shop.walRelay).toBeDefined();
      const response = await shop.http.inject({
        method: 'POST',
        url: '/v1/orders',
        payload: { customerId: 'c-1', items: [{ sku: 'book-1', quantity: 2 }] },
        headers: { 'idempotency-key': randomUUID() },
      });
      expect(response.statusCode).toBe(202);
      const { id } = response.json<Order>();
      await fulfilmentFinished(shop, id);
      const order = await shop.http.inject({ method: 'GET', url: `/v1/orders/${id}` });
      expect(order.json<Order>()).toMatchObject({ id, status: 'CONFIRMED' });
      // The order's event never touched the outbox table (the saga's own messages do).
      const rows = await db.query<{ n: string }>(
        `SELECT count(*)::text AS n FROM keel_outbox WHERE type = 'order.placed.v1'`,
      );
      expect(rows.rows[0]?.n).toBe('0');
      expect(await walOutboxStatus(db)).toMatchObject({ exists: true, active: true });
    } finally {
      await shop.stop({ drainMs: 1000 });
    }
  });

  it('reads KEEL_OUTBOX, and refuses the WAL outbox on PGlite or a value it does not know, naming it', () => {
    expect(shopConfigFromEnv({}).outbox).toEqual({ kind: 'table' });
    expect(shopConfigFromEnv({ KEEL_OUTBOX: 'wal', KEEL_DB: 'pg', DATABASE_URL: server.url }).outbox).toEqual(
      {
        kind: 'wal',
        connectionString: server.url,
      },
    );
    expect(() => shopConfigFromEnv({ KEEL_OUTBOX: 'wal' })).toThrow(/KEEL_OUTBOX: expected .*KEEL_DB=pg/);
    expect(() => shopConfigFromEnv({ KEEL_OUTBOX: 'kafka' })).toThrow(
      /KEEL_OUTBOX: expected 'table' or 'wal'/,
    );
  });
});
