import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { PgQueue } from '../../src/messaging/index.ts';
import { advanceUntil } from '../../src/testing/index.ts';
import { ManualClock } from '../../src/time/index.ts';
import { BrokerOutage } from './test/broker-outage.ts';
import { createShopStore, openTestShop } from './test/test-shop.ts';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** Resolves once `ready()` holds, checking at every turn of the event loop (no timer). */
async function turnsUntil(ready: () => boolean): Promise<void> {
  while (!ready()) await new Promise((resolve) => setImmediate(resolve));
}

describe('shop: /readyz while the relay cannot reach the broker', () => {
  it('stays 200 but says degraded, naming the part, the dependency and the error code (not its message)', async () => {
    const store = await createShopStore();
    cleanups.push(() => store.dispose());
    const clock = new ManualClock();
    const outage = new BrokerOutage();
    const shop = await openTestShop(store, ['api', 'relay'], clock, {
      broker: (db) => outage.wrap(new PgQueue(db, { clock })),
    });
    await shop.start();
    cleanups.push(() => shop.stop({ drainMs: 1000 }));
    const readiness = async () => {
      const response = await shop.http.inject({ url: '/readyz' });
      return { status: response.statusCode, body: response.json<Record<string, unknown>>() };
    };
    expect(await readiness()).toMatchObject({ status: 200, body: { status: 'ready' } });

    outage.down = true;
    const placed = await shop.http.inject({
      method: 'POST',
      url: '/v1/orders',
      payload: { customerId: 'c-1', items: [{ sku: 'book-1', quantity: 1 }] },
      headers: { 'idempotency-key': randomUUID() },
    });
    // The api takes the order: its event waits in the outbox.
    expect(placed.statusCode).toBe(202);
    await advanceUntil(
      clock,
      turnsUntil(() => shop.healthOfParts()['outbox-relay']?.status === 'failing'),
    );
    const degraded = await readiness();
    expect(degraded).toMatchObject({
      status: 200,
      body: {
        status: 'degraded',
        parts: {
          'outbox-relay': {
            status: 'failing',
            dependency: 'broker',
            during: 'publish',
            error: 'KEEL_BROKER_UNAVAILABLE',
          },
          'process-heartbeat': { status: 'ok' },
        },
      },
    });
    expect(JSON.stringify(degraded.body)).not.toContain('10.0.0.7');

    outage.down = false;
    // The relay publishes the row at its retry, and is ok again.
    await advanceUntil(
      clock,
      turnsUntil(() => shop.healthOfParts()['outbox-relay']?.status === 'ok'),
      {
        stepMs: 500,
      },
    );
    expect(await readiness()).toMatchObject({ status: 200, body: { status: 'ready' } });
  });
});
