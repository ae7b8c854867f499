import { randomUUID } from 'node:crypto';
import { pino } from 'pino';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { migrate, type Db } from '../../../src/db/index.ts';
import type { CircuitBreakerPolicy } from '../../../src/resilience/index.ts';
import { testDbBackend } from '../../../src/testing/index.ts';
import { systemClock } from '../../../src/time/index.ts';
import { buildShop, type Shop, type ShopDeps } from '../app.ts';
import { HttpPaymentProvider } from '../payments/http-payment-provider.ts';
import { shopMigrations } from '../presets/open-shop.ts';
import { writeHeartbeat } from '../processes/processes-store.ts';
import { DbFault, databaseUnreachable, statementFailed } from '../test/db-fault.ts';
import {
  createShopStore,
  openTestShop,
  sharedDb,
  testShopConfig,
  type ShopStore,
} from '../test/test-shop.ts';
import type { DashboardSnapshot } from './dashboard-snapshot.ts';

let store: ShopStore | undefined;
const shops: Shop[] = [];
afterEach(async () => {
  // The api's shop owns a shared PGlite: it stops last.
  for (const shop of shops.splice(0).reverse()) await shop.stop({ drainMs: 1000 });
  await store?.dispose();
  store = undefined;
});

const state = async (shop: Shop): Promise<DashboardSnapshot> => {
  const response = await shop.http.inject({ url: '/dashboard/state' });
  expect(response.statusCode).toBe(200);
  return response.json<DashboardSnapshot>();
};

describe('the dashboard of a split shop', () => {
  it("the api's page lists every process and the worker's breakers, and shows the worker's stop", async () => {
    store = await createShopStore();
    const apiDb = await store.open();
    await migrate(apiDb, await shopMigrations());
    // PGlite is one process's database: both "processes" share it. On PostgreSQL each has its own pool.
    const workerDb = testDbBackend() === 'pg' ? await store.open() : sharedDb(apiDb);
    const deps = (db: Db): ShopDeps => ({ db, clock: systemClock, logger: pino({ level: 'silent' }) });
    const api = buildShop(testShopConfig(['api']), deps(apiDb));
    // A remote payment provider gives the worker a breaker of its own; nothing calls it here.
    const worker = buildShop(testShopConfig(['worker']), {
      ...deps(workerDb),
      payments: new HttpPaymentProvider({ url: 'http://127.0.0.1:9', clock: systemClock }),
    });
    shops.push(api, worker);
    await api.start();
    await worker.start();

    // An operator isolates the worker's breaker: the worker writes it at once, not at its next beat.
    const written = worker.heartbeat.events.once('beat');
    (worker.policies['payment-provider'] as CircuitBreakerPolicy).isolate();
    await written;

    // A snapshot is cached for a second: poll until one read after the write arrives.
    await vi.waitFor(
      async () => {
        const seen = await state(api);
        expect(seen.unavailable).toEqual([]);
        expect(seen.breakers).toEqual([
          { name: 'payment-provider', state: 'isolated', process: worker.heartbeat.id },
        ]);
        expect(seen.processes).toEqual([
          expect.objectContaining({ id: api.heartbeat.id, roles: ['api'], status: 'live', self: true }),
          expect.objectContaining({
            id: worker.heartbeat.id,
            roles: ['worker'],
            pid: process.pid,
            status: 'live',
            self: false,
            stoppedAt: null,
          }),
        ]);
        // The api's parts read now, the worker's as its beat wrote them: its saga runner running.
        expect(seen.processes![0]!.parts['process-heartbeat']).toMatchObject({ status: 'ok' });
        expect(seen.processes![1]!.parts).toMatchObject({
          'process-heartbeat': { status: 'ok' },
          'saga-runner': { status: 'ok' },
        });
      },
      { timeout: 10_000, interval: 200 },
    );

    // A clean stop is marked as one, and a stopped process's breakers are no longer shown.
    await worker.stop();
    await vi.waitFor(
      async () => {
        const seen = await state(api);
        expect(seen.breakers).toEqual([]);
        const gone = seen.processes!.find((p) => p.id === worker.heartbeat.id);
        expect(gone).toMatchObject({ status: 'stopped' });
        expect(gone!.stoppedAt).not.toBeNull();
        // What its parts said while they ran, not that they stopped.
        expect(gone!.parts['saga-runner']).toMatchObject({ status: 'ok' });
      },
      { timeout: 10_000, interval: 200 },
    );
  });

  it("shows the api's own row, live with its parts, while the database is down", async () => {
    store = await createShopStore();
    const fault = new DbFault();
    const api = await openTestShop(store, ['api'], undefined, { db: (db) => fault.wrap(db) });
    shops.push(api);
    await api.start();

    await fault.during(databaseUnreachable(), async () => {
      // Its next beat fails: the heartbeat, one of its parts, says so.
      await api.heartbeat.beat();
      await vi.waitFor(
        async () => {
          const seen = await state(api);
          expect(seen.unavailable).toContainEqual({
            part: 'processes',
            error: expect.stringMatching(
              /^other processes' unknown: PostgreSQL at .* is unreachable/,
            ) as string,
          });
          expect(seen.processes).toEqual([
            expect.objectContaining({
              id: api.heartbeat.id,
              roles: ['api'],
              pid: process.pid,
              status: 'live',
              self: true,
              lastSeenAt: seen.at,
            }),
          ]);
          expect(seen.processes![0]!.parts['process-heartbeat']).toMatchObject({
            status: 'failing',
            dependency: 'database',
            error: 'KEEL_DB_UNAVAILABLE',
          });
        },
        { timeout: 10_000, interval: 200 },
      );
    });

    // Back: its row again, from the table.
    await api.heartbeat.beat();
    await vi.waitFor(
      async () => {
        const seen = await state(api);
        expect(seen.unavailable).toEqual([]);
        expect(seen.processes!.map((p) => [p.id, p.self])).toEqual([[api.heartbeat.id, true]]);
      },
      { timeout: 10_000, interval: 200 },
    );
  });

  it("shows the api's own row, live with its parts, among the others' while its own is not written", async () => {
    store = await createShopStore();
    const fault = new DbFault();
    const api = await openTestShop(store, ['api'], undefined, { db: (db) => fault.wrap(db) });
    shops.push(api);
    // A worker elsewhere, beating every minute: the table answers with its row.
    const worker = randomUUID();
    await writeHeartbeat(api.db, {
      id: worker,
      roles: ['worker'],
      host: 'elsewhere',
      pid: 4242,
      startedAt: Date.now() - 600_000,
      lastSeenAt: Date.now(),
      heartbeatMs: 60_000,
      breakers: [],
      health: {},
    });

    // Only the api's heartbeat cannot write: its first beat fails, and it starts all the same.
    await fault.during(
      statementFailed(),
      async () => {
        await api.start();
        await vi.waitFor(
          async () => {
            const seen = await state(api);
            expect(seen.unavailable).toEqual([]);
            expect(seen.processes).toEqual([
              expect.objectContaining({ id: worker, status: 'live', self: false }),
              expect.objectContaining({
                id: api.heartbeat.id,
                roles: ['api'],
                pid: process.pid,
                status: 'live',
                self: true,
                lastSeenAt: seen.at,
              }),
            ]);
            expect(seen.processes![1]!.parts['process-heartbeat']).toMatchObject({
              status: 'failing',
              dependency: 'database',
              error: 'XX001',
            });
          },
          { timeout: 10_000, interval: 200 },
        );
      },
      /^\s*INSERT INTO processes/,
    );

    // Its row written: shown once, from the row.
    await api.heartbeat.beat();
    await vi.waitFor(
      async () => {
        const seen = await state(api);
        expect(seen.processes!.map((p) => [p.id, p.self])).toEqual([
          [worker, false],
          [api.heartbeat.id, true],
        ]);
        expect(seen.processes![1]!.parts['process-heartbeat']).toMatchObject({ status: 'ok' });
      },
      { timeout: 10_000, interval: 200 },
    );
  });
});
