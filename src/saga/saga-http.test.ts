// A step that calls an HTTP service through its retry and timeout, with the idempotency key as
// the `Idempotency-Key` header: a real local server that fails, stalls, and deduplicates by key.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { migrate } from '../db/index.ts';
import { circuitBreaker } from '../resilience/index.ts';
import { advanceUntil, createTestDb, type TestDb } from '../testing/index.ts';
import { constantBackoff, ManualClock } from '../time/index.ts';
import { defineSaga } from './definition.ts';
import { SagaRunner } from './saga-runner.ts';
import { getSaga } from './saga-admin.ts';
import { startSaga } from './saga-store.ts';
import { sagaMigrations } from './schema.ts';

/** A payment provider: answers 503 `failures` times, stalls when asked, charges once per key. */
class Provider {
  readonly keys: string[] = [];
  readonly charged = new Set<string>();
  failures = 0;
  stall = false;
  readonly server: Server = createServer((req, res) => {
    const key = String(req.headers['idempotency-key']);
    this.keys.push(key);
    if (this.stall) return; // never answers; the client's abort ends it
    if (this.failures > 0) {
      this.failures -= 1;
      res.writeHead(503).end();
      return;
    }
    this.charged.add(key);
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ charge: `ch_${key}` }));
  });
  async listen(): Promise<string> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }
  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

async function setup(): Promise<{ db: TestDb; clock: ManualClock; provider: Provider; url: string }> {
  const db = await createTestDb();
  cleanup.push(() => db.close());
  await migrate(db, sagaMigrations);
  const provider = new Provider();
  const url = await provider.listen();
  cleanup.push(() => provider.close());
  return { db, clock: new ManualClock(), provider, url };
}

function paymentSaga(url: string, clock: ManualClock) {
  const breaker = circuitBreaker({ clock, threshold: { kind: 'consecutive', failures: 10 }, openMs: 1000 });
  return defineSaga<{ amount: number }>({
    name: 'pay',
    version: 1,
    steps: [
      {
        name: 'charge',
        retry: { maxAttempts: 3, backoff: constantBackoff(100) },
        timeoutMs: 500,
        policy: breaker,
        action: async (ctx) => {
          const res = await fetch(`${url}/charges`, {
            method: 'POST',
            headers: { 'idempotency-key': ctx.idempotencyKey },
            body: JSON.stringify({ amount: ctx.input.amount }),
            signal: ctx.signal,
          });
          if (!res.ok) throw new Error(`provider answered ${res.status}`);
          return await res.json();
        },
        compensation: async () => undefined,
      },
    ],
  });
}

describe('a saga step over HTTP', () => {
  it('retries 503s with the same idempotency key, and the provider charges once', async () => {
    const { db, clock, provider, url } = await setup();
    provider.failures = 2;
    const saga = paymentSaga(url, clock);
    const { id } = await startSaga(db, saga, { amount: 5 }, { clock, id: 'pay-http-1' });
    await advanceUntil(clock, new SagaRunner({ db, sagas: [saga], clock }).runDue(), { stepMs: 50 });
    const { instance } = await getSaga(db, id);
    expect(instance).toMatchObject({
      state: 'COMPLETED',
      results: { charge: { charge: `ch_${id}:charge:action` } },
    });
    expect(provider.keys).toEqual([`${id}:charge:action`, `${id}:charge:action`, `${id}:charge:action`]);
    expect([...provider.charged]).toEqual([`${id}:charge:action`]);
  });

  it('a provider that stalls hits the step timeout on every attempt; the step fails and is compensated', async () => {
    const { db, clock, provider, url } = await setup();
    provider.stall = true;
    const saga = paymentSaga(url, clock);
    const { id } = await startSaga(db, saga, { amount: 5 }, { clock });
    await advanceUntil(clock, new SagaRunner({ db, sagas: [saga], clock }).runDue(), { stepMs: 50 });
    const { instance } = await getSaga(db, id);
    expect(instance.state).toBe('COMPENSATED');
    expect(instance.failure).toMatchObject({ code: 'KEEL_TIMEOUT', step: 'charge' });
    expect(provider.keys).toHaveLength(3);
    expect(provider.charged.size).toBe(0);
  });
});
