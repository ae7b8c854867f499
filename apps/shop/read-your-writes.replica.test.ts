// The shop over a real primary and streaming replica (started by the test, see
// startReplicaCluster): POST answers with a Consistency-Token; a GET that sends it back sees the
// order even while the replica lags; a GET without one reads the replica and may not, yet.
import { randomUUID } from 'node:crypto';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrate, openPgDb, type PgDb } from '../../src/db/index.ts';
import { startReplicaCluster, type ReplicaCluster } from '../../src/testing/index.ts';
import { sleep, systemClock } from '../../src/time/index.ts';
import { buildShop, type Shop } from './app.ts';
import { shopMigrations } from './presets/open-shop.ts';
import { testShopConfig } from './test/test-shop.ts';

let cluster: ReplicaCluster | undefined;
let shop: Shop | undefined;
let replica: PgDb;

/** Real time: the replica replays on its own schedule. */
async function eventually(what: string, check: () => Promise<boolean>): Promise<void> {
  const deadline = systemClock.now() + 10_000;
  while (!(await check())) {
    if (systemClock.now() > deadline) throw new Error(`not within 10 s: ${what}`);
    await sleep(10);
  }
}

async function setReplay(state: 'pause' | 'resume'): Promise<void> {
  await replica.query(`SELECT pg_wal_replay_${state}()`);
  if (state === 'pause')
    await eventually('replay paused', async () => {
      const { rows } = await replica.query<{ s: string }>('SELECT pg_get_wal_replay_pause_state() AS s');
      return rows[0]!.s === 'paused';
    });
}

describe('shop: read-your-writes over a streaming replica', () => {
  beforeAll(async () => {
    cluster = await startReplicaCluster();
    const primary = await openPgDb({ url: cluster.primaryUrl, poolSize: 4 });
    await migrate(primary, await shopMigrations());
    replica = await openPgDb({ url: cluster.replicaUrl, poolSize: 4 });
    await eventually('the replica has the orders table', async () => {
      const { rows } = await replica.query("SELECT 1 FROM pg_tables WHERE tablename = 'orders'");
      return rows.length === 1;
    });
    // The api role only: the order stays PENDING, so the test reads exactly what POST wrote.
    shop = buildShop(testShopConfig(['api']), {
      db: primary,
      replica,
      clock: systemClock,
      logger: pino({ level: 'silent' }),
    });
    await shop.start();
  }, 60_000);

  afterAll(async () => {
    await replica?.query('SELECT pg_wal_replay_resume()').catch(() => undefined);
    await shop?.stop();
    await cluster?.stop();
  });

  it('a GET with the POST token sees the order while the replica lags; without it, the replica answers 404', async () => {
    await setReplay('pause');
    const posted = await shop!.http.inject({
      method: 'POST',
      url: '/v1/orders',
      payload: { customerId: 'c-1', items: [{ sku: 'book-1', quantity: 1 }] },
      headers: { 'idempotency-key': randomUUID() },
    });
    expect(posted.statusCode).toBe(202);
    const token = posted.headers['consistency-token'];
    expect(token).toMatch(/^[0-9A-F]+\/[0-9A-F]+$/);
    const location = String(posted.headers.location);

    const withToken = await shop!.http.inject({
      url: location,
      headers: { 'consistency-token': String(token) },
    });
    expect(withToken.statusCode).toBe(200);
    expect(withToken.json()).toMatchObject({ status: 'PENDING' });
    const withoutToken = await shop!.http.inject({ url: location });
    expect(withoutToken.statusCode).toBe(404);

    await setReplay('resume');
    await eventually('the replica serves the order', async () => {
      return (await shop!.http.inject({ url: location })).statusCode === 200;
    });
  });

  it('a replayed POST carries a token too, and a malformed token is a 400 naming the header', async () => {
    const key = randomUUID();
    const order = { customerId: 'c-2', items: [{ sku: 'book-1', quantity: 1 }] };
    await shop!.http.inject({
      method: 'POST',
      url: '/v1/orders',
      payload: order,
      headers: { 'idempotency-key': key },
    });
    const replay = await shop!.http.inject({
      method: 'POST',
      url: '/v1/orders',
      payload: order,
      headers: { 'idempotency-key': key },
    });
    expect(replay.headers['idempotent-replayed']).toBe('true');
    expect(replay.headers['consistency-token']).toMatch(/^[0-9A-F]+\/[0-9A-F]+$/);
    const bad = await shop!.http.inject({
      url: String(replay.headers.location),
      headers: { 'consistency-token': 'yesterday' },
    });
    expect(bad.statusCode).toBe(400);
    expect(bad.json()).toMatchObject({ code: 'KEEL_BAD_CONSISTENCY_TOKEN' });
    expect(bad.json<{ detail: string }>().detail).toMatch(/Consistency-Token/);
  });
});
