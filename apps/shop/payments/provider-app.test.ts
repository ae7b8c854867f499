import { randomUUID } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { migrate } from '../../../src/db/index.ts';
import { createTestDb, type TestDb } from '../../../src/testing/index.ts';
import { ManualClock } from '../../../src/time/index.ts';
import { PaymentProvider } from '../application/payment-provider.ts';
import { shopMigrations } from '../presets/open-shop.ts';
import { paymentsOf } from '../storage/payments-store.ts';
import { FaultPlan } from './fault-plan.ts';
import { buildProviderApp } from './provider-app.ts';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function setup(
  faults: FaultPlan,
  ready = true,
): Promise<{ app: FastifyInstance; db: TestDb; clock: ManualClock }> {
  const db = await createTestDb({ schemaPrefix: 'payments_app' });
  cleanups.push(() => db.close());
  await migrate(db, await shopMigrations());
  const clock = new ManualClock();
  const app = buildProviderApp({
    provider: new PaymentProvider(db, { clock }),
    faults,
    clock,
    health: { db, isReady: () => ready },
  });
  cleanups.push(() => app.close());
  return { app, db, clock };
}

const charge = (app: FastifyInstance, body: object, key?: string) =>
  app.inject({
    method: 'POST',
    url: '/v1/charges',
    payload: body,
    headers: key === undefined ? {} : { 'idempotency-key': key },
  });

describe('the payment provider service', () => {
  it('charges once per Idempotency-Key, answers a decline 402, and refunds once', async () => {
    const { app, db } = await setup(new FaultPlan());
    const orderId = randomUUID();
    const body = { orderId, customerId: 'c-1', amountCents: 2500 };
    const first = await charge(app, body, 'key-1');
    expect(first.statusCode).toBe(200);
    expect(first.json()).toMatchObject({ idempotencyKey: 'key-1', status: 'CHARGED', amountCents: 2500 });
    const again = await charge(app, body, 'key-1');
    expect(again.json()).toEqual(first.json());
    expect(await paymentsOf(db, orderId)).toHaveLength(1);

    const declined = await charge(app, { ...body, orderId: randomUUID(), customerId: 'declined-1' }, 'key-2');
    expect(declined.statusCode).toBe(402);
    expect(declined.json()).toMatchObject({ status: 'DECLINED', declineReason: 'card declined' });

    const refund = () => app.inject({ method: 'POST', url: '/v1/refunds', payload: { chargeKey: 'key-1' } });
    expect((await refund()).json()).toEqual({ refunded: true });
    expect((await refund()).json()).toEqual({ refunded: false });
  });

  it('refuses a charge without a key or with a bad body as problem+json naming what is wrong', async () => {
    const { app } = await setup(new FaultPlan());
    const body = { orderId: randomUUID(), customerId: 'c-1', amountCents: 100 };
    const keyless = await charge(app, body);
    expect(keyless.statusCode).toBe(400);
    expect(keyless.json()).toMatchObject({ code: 'KEEL_IDEMPOTENCY_KEY_REQUIRED' });
    const bad = await charge(app, { ...body, amountCents: -5 }, 'key-3');
    expect(bad.statusCode).toBe(400);
    expect(bad.json()).toMatchObject({ code: 'KEEL_VALIDATION_FAILED', errors: [{ path: 'amountCents' }] });
    const reused = await charge(app, body, 'key-4');
    expect(reused.statusCode).toBe(200);
    const other = await charge(app, { ...body, amountCents: 101 }, 'key-4');
    expect(other.statusCode).toBe(422);
    expect(other.json()).toMatchObject({ code: 'KEEL_IDEMPOTENCY_KEY_REUSED' });
  });

  it('answers 503 at the fail rate and charges nothing then', async () => {
    const draws = [0.1, 0.9];
    const { app, db } = await setup(new FaultPlan({ failRate: 0.5 }, () => draws.shift()!));
    const body = { orderId: randomUUID(), customerId: 'c-1', amountCents: 100 };
    const failed = await charge(app, body, 'key-5');
    expect(failed.statusCode).toBe(503);
    expect(failed.headers['content-type']).toContain('application/problem+json');
    expect(await paymentsOf(db, body.orderId)).toEqual([]);
    const retried = await charge(app, body, 'key-5');
    expect(retried.statusCode).toBe(200);
    expect(await paymentsOf(db, body.orderId)).toHaveLength(1);
  });

  it('keeps its health routes out of the faults: a failing provider still answers its probes', async () => {
    const { app } = await setup(new FaultPlan({ failRate: 1 }, () => 0));
    expect((await app.inject({ url: '/healthz' })).statusCode).toBe(200);
    expect((await app.inject({ url: '/readyz' })).json()).toEqual({ status: 'ready' });
    const body = { orderId: randomUUID(), customerId: 'c-1', amountCents: 100 };
    expect((await charge(app, body, 'key-7')).statusCode).toBe(503);
    const { app: starting } = await setup(new FaultPlan(), false);
    expect((await starting.inject({ url: '/readyz' })).statusCode).toBe(503);
  });

  it('a stalled charge is applied at once and answered stallMs later', async () => {
    const { app, db, clock } = await setup(new FaultPlan({ stallRate: 1, stallMs: 3000 }, () => 0));
    const body = { orderId: randomUUID(), customerId: 'c-1', amountCents: 100 };
    let answered = false;
    const response = charge(app, body, 'key-6').then((r) => {
      answered = true;
      return r;
    });
    // The stall's timer is set once the charge is recorded: the effect comes before the answer.
    await waitUntil(() => clock.pendingTimers === 1);
    expect(await paymentsOf(db, body.orderId)).toEqual([expect.objectContaining({ status: 'CHARGED' })]);
    await clock.advance(2999);
    expect(answered).toBe(false);
    await clock.advance(1);
    expect((await response).statusCode).toBe(200);
    expect(answered).toBe(true);
  });
});

/** Waits for a state the handler reaches through database I/O alone, which no clock drives. */
async function waitUntil(condition: () => boolean): Promise<void> {
  const giveUpAt = performance.now() + 5000;
  while (!condition()) {
    if (performance.now() > giveUpAt) throw new Error('condition not reached within 5 s');
    await new Promise((resolve) => setImmediate(resolve));
  }
}
