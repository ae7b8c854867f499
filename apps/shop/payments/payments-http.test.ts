// The payment provider service on a real port, its real client, and the shop's saga charging
// through them: faults on purpose, and counts of the ledger's rows to prove no double charge.
import { randomUUID } from 'node:crypto';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { migrate, type Db } from '../../../src/db/index.ts';
import { isKeelError } from '../../../src/errors/index.ts';
import { BrokenCircuitError, type CircuitStatus } from '../../../src/resilience/index.ts';
import { createTestDb } from '../../../src/testing/index.ts';
import { systemClock } from '../../../src/time/index.ts';
import type { Shop } from '../app.ts';
import type { Payments } from '../application/payments.ts';
import type { Order } from '../domain/order.ts';
import { openShop, shopMigrations } from '../presets/open-shop.ts';
import { paymentsOf } from '../storage/payments-store.ts';
import { createShopStore, fulfilmentFinished, openTestShop } from '../test/test-shop.ts';
import { FaultPlan } from './fault-plan.ts';
import { HttpPaymentProvider, type HttpPaymentProviderOptions } from './http-payment-provider.ts';
import { PaymentProviderService } from './provider-service.ts';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** The provider service on `ledger`, listening on a free port. */
async function startProvider(ledger: Db, faults: FaultPlan): Promise<string> {
  const service = new PaymentProviderService({ db: ledger, http: { port: 0, host: '127.0.0.1' }, faults });
  await service.start();
  // A stall still waiting is cut at the drain deadline.
  cleanups.push(() => service.stop({ drainMs: 100 }));
  return service.address;
}

/** The client, with every request's Idempotency-Key and every retry's reason recorded. */
function client(url: string, options: Partial<HttpPaymentProviderOptions> = {}) {
  const keys: string[] = [];
  const retried: string[] = [];
  const payments = new HttpPaymentProvider({
    url,
    fetch: (input, init) => {
      keys.push((init?.headers as Record<string, string>)['idempotency-key'] ?? '(refund)');
      return fetch(input, init);
    },
    ...options,
  });
  payments.policies.retry.on('retry', ({ error }) =>
    retried.push(isKeelError(error) ? error.code : String(error)),
  );
  cleanups.push(async () => payments.dispose());
  return { payments, keys, retried };
}

/**
 * The shop (worker and relay) and the provider service, both on the shop's database: one
 * embedded PGlite for both, or one schema. The saga charges through the client over HTTP.
 */
async function startShopAndProvider(faults: FaultPlan, options: Partial<HttpPaymentProviderOptions>) {
  const store = await createShopStore();
  cleanups.push(() => store.dispose());
  let ledger: Db | undefined;
  const bound: { to?: HttpPaymentProvider } = {};
  // The client needs the service's port, the service the shop's database: bind them once both exist.
  const payments: Payments = {
    charge: (request, call) => bound.to!.charge(request, call),
    refund: (chargeKey, call) => bound.to!.refund(chargeKey, call),
  };
  const shop = await openTestShop(store, ['worker', 'relay'], systemClock, {
    payments: (db) => {
      ledger = db;
      return payments;
    },
    // Every saga at once, polled often: the test waits for the slowest, not for a queue of them.
    config: { worker: { concurrency: 8, pollIntervalMs: 100, leaseMs: 5000 } },
  });
  const provider = client(await startProvider(ledger!, faults), options);
  bound.to = provider.payments;
  await shop.start();
  cleanups.push(() => shop.stop({ drainMs: 1000 }));
  return { shop, ledger: ledger!, ...provider };
}

async function place(shop: Shop, customerId: string): Promise<string> {
  const response = await shop.http.inject({
    method: 'POST',
    url: '/v1/orders',
    payload: { customerId, items: [{ sku: 'book-1', quantity: 1 }] },
    headers: { 'idempotency-key': randomUUID() },
  });
  expect(response.statusCode).toBe(202);
  return response.json<Order>().id;
}

/** Every order ended CONFIRMED, with exactly one CHARGED row in the provider's ledger. */
async function expectConfirmedAndChargedOnce(shop: Shop, ledger: Db, orderIds: string[]): Promise<void> {
  for (const id of orderIds) {
    expect(await fulfilmentFinished(shop, id)).toMatchObject({ state: 'COMPLETED' });
    const order = await shop.http.inject({ url: `/v1/orders/${id}` });
    expect(order.json<Order>().status).toBe('CONFIRMED');
    expect(await paymentsOf(ledger, id)).toEqual([
      expect.objectContaining({ status: 'CHARGED', amountCents: 1500 }),
    ]);
  }
  const { rows } = await ledger.query<{ rows: number; orders: number }>(
    'SELECT count(*)::int AS rows, count(DISTINCT order_id)::int AS orders FROM payments WHERE order_id = ANY($1)',
    [orderIds],
  );
  expect(rows[0]).toEqual({ rows: orderIds.length, orders: orderIds.length });
}

/** mulberry32: the same faults in the same order on every run. */
function seeded(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const sagaKey = (orderId: string): string => `order-fulfilment:${orderId}:take-payment:action`;

// Real servers on two loaded cores: room for a slow machine, though a run takes a few seconds.
describe('the shop charging the payment provider service over HTTP', { timeout: 60_000 }, () => {
  it('with 40 % failures and stalls past the timeout, every order is CONFIRMED and charged once', async () => {
    const faults = new FaultPlan({ failRate: 0.4, stallRate: 0.25, stallMs: 1200 }, seeded(42));
    const { shop, ledger, keys, retried } = await startShopAndProvider(faults, {
      // Long enough for a charge on a loaded machine: the stalls are what times out.
      timeoutMs: 1000,
      maxAttempts: 4,
      // A breaker that 40 % failures do not open: this test is about retries and keys.
      threshold: { kind: 'consecutive', failures: 20 },
    });

    const orderIds = await Promise.all(Array.from({ length: 8 }, (_, i) => place(shop, `c-${i}`)));
    await expectConfirmedAndChargedOnce(shop, ledger, orderIds);

    // The faults happened, and every repeat carried its saga step's key.
    expect(retried).toContain('KEEL_UPSTREAM_FAILED');
    expect(retried).toContain('KEEL_TIMEOUT');
    expect(keys.length).toBeGreaterThan(orderIds.length);
    expect(new Set(keys)).toEqual(new Set(orderIds.map(sagaKey)));
  });

  it('a call stalled past the timeout is retried with the same key and charges once', async () => {
    // The first request stalls 2 s (after charging); the rest answer at once.
    const draws = [0];
    const faults = new FaultPlan({ stallRate: 0.5, stallMs: 2000 }, () => draws.shift() ?? 0.99);
    const { shop, ledger, keys, retried } = await startShopAndProvider(faults, { timeoutMs: 500 });

    const orderId = await place(shop, 'c-stall');
    await expectConfirmedAndChargedOnce(shop, ledger, [orderId]);
    expect(retried[0]).toBe('KEEL_TIMEOUT');
    expect(keys.length).toBeGreaterThanOrEqual(2);
    expect(new Set(keys)).toEqual(new Set([sagaKey(orderId)]));
    const saga = await fulfilmentFinished(shop, orderId);
    const [row] = await paymentsOf(ledger, orderId);
    // The saga holds the ledger's one payment: the retry was answered with the stalled charge.
    expect(saga.results['take-payment']).toMatchObject({ paymentId: row!.id });
  });

  it('a provider that is down opens the breaker, calls fail fast, and once it is back the sagas complete', async () => {
    const faults = new FaultPlan({ down: true });
    const { shop, ledger, payments, keys } = await startShopAndProvider(faults, {
      timeoutMs: 1000,
      maxAttempts: 3,
      threshold: { kind: 'consecutive', failures: 3 },
      openMs: 300,
    });
    const transitions: CircuitStatus[] = [];
    payments.policies.breaker.on('stateChange', ({ to }) => transitions.push(to.status));

    // Three dropped connections: the call fails, typed, and the breaker opens.
    const charge = { orderId: randomUUID(), customerId: 'c-down', amountCents: 100 };
    await expect(payments.charge(charge, { idempotencyKey: 'down-1' })).rejects.toMatchObject({
      code: 'KEEL_UPSTREAM_FAILED',
    });
    expect(keys).toHaveLength(3);
    expect(payments.breaker).toMatchObject({ name: 'payment-provider', state: { status: 'open' } });
    // Open: the next call fails at once with the breaker's error and sends nothing.
    const failFast = payments.charge(charge, { idempotencyKey: 'down-2' });
    await expect(failFast).rejects.toBeInstanceOf(BrokenCircuitError);
    await expect(failFast).rejects.toMatchObject({ code: 'KEEL_BROKEN_CIRCUIT' });
    expect(keys).toHaveLength(3);

    // Orders placed while it is down wait in their sagas' retries...
    const refusedForSaga = new Promise<void>((resolve) =>
      payments.policies.breaker.on('rejected', () => resolve()),
    );
    const orderIds = await Promise.all([place(shop, 'c-a'), place(shop, 'c-b'), place(shop, 'c-c')]);
    await refusedForSaga;
    // ...and complete once it is back: a probe closes the breaker.
    faults.set({ down: false });
    await expectConfirmedAndChargedOnce(shop, ledger, orderIds);
    expect(payments.breaker.state.status).toBe('closed');
    expect(transitions[0]).toBe('open');
    expect(transitions.slice(-2)).toEqual(['half-open', 'closed']);
  });

  it('openShop charges the service at KEEL_PAYMENTS_URL, and hands out its client', async () => {
    // Here the provider keeps its own ledger, as a separate service does.
    const ledger = await createTestDb({ schemaPrefix: 'provider' });
    cleanups.push(() => ledger.close());
    await migrate(ledger, await shopMigrations());
    const url = await startProvider(ledger, new FaultPlan());
    const store = await createShopStore();
    cleanups.push(() => store.dispose());
    const { shop, payments } = await openShop({
      env: { ...store.env, KEEL_PAYMENTS_URL: url, KEEL_POLL_INTERVAL_MS: '100' },
      db: store.config,
      roles: ['worker', 'relay'],
      logger: pino({ level: 'silent' }),
    });
    cleanups.push(async () => payments?.dispose());
    await shop.start();
    cleanups.push(() => shop.stop({ drainMs: 1000 }));
    expect(payments).toBeInstanceOf(HttpPaymentProvider);
    expect(payments!.breaker).toMatchObject({ name: 'payment-provider', state: { status: 'closed' } });

    const orderId = await place(shop, 'c-env');
    await expectConfirmedAndChargedOnce(shop, ledger, [orderId]);
    // The shop's own ledger stays empty: the charge went over HTTP.
    expect(await paymentsOf(shop.db, orderId)).toEqual([]);
  });
});
