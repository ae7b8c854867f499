// Chaos: the shop as the article lays it out — an HTTP api, an outbox relay and a queue worker, each
// a process of its own started from its entry point, beside a payment provider that answers some
// charges 503 and some too late — while a client places orders, each with its own
// Idempotency-Key, retrying with the same key whatever goes wrong. One of the api, the relay and
// the worker is SIGKILLed every 0.4–1.2 s and started again. Once the client is done and the last
// processes have settled every order, nothing may be lost or done twice:
//
// - one order per key, and a key sent again answers the order it made (the stored response);
// - every order CONFIRMED or CANCELLED, with exactly one outcome event in the order stream;
// - the stock moved once per confirmed order, given back for every cancelled one, never oversold;
// - the provider charged each confirmed order once and kept no charge of a cancelled one;
// - no outbox row left unpublished or parked;
// - the analytics read model, replayed from the order stream, reaches the same outcomes.
//
// Run with the shop's queues on each broker: the PostgreSQL queue, RabbitMQ, NATS JetStream, Redis
// Streams and Kafka (where the order stream is a topic too, read here through the analytics model
// it feeds); and once on the PostgreSQL queue with the orders' events in the WAL outbox (a server of
// the test's own with wal_level=logical, the WAL relay beside the table relay in the relay process,
// which is killed mid-stream). Needs a PostgreSQL server (processes share the database); skipped,
// with the reason, only when KEEL_DB is pglite and no server answers. A missing broker fails its
// case by name.
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { shopMigrations } from '../../apps/shop/presets/open-shop.ts';
import { migrate } from '../../src/db/index.ts';
import {
  deleteTopicsNamed,
  kafkaBrokers,
  requireKafka,
  useKafka,
} from '../../src/messaging/adapters/kafka/test-support.ts';
import { deleteStreamsNamed, requireNats } from '../../src/messaging/adapters/nats/test-support.ts';
import {
  deleteQueues,
  rabbitmqctlWorks,
  requireRabbitMq,
} from '../../src/messaging/adapters/rabbitmq/test-support.ts';
import {
  dropPrefix,
  redisAddress,
  requireRedis,
} from '../../src/messaging/adapters/redis/redis-test-server.ts';
import { defaultWalOutboxSlot } from '../../src/outbox/wal-outbox-slot.ts';
import { createTestDb, startPgServer, type TestDb } from '../../src/testing/index.ts';
import { freePort } from '../../src/testing/pg-server-process.ts';
import { startRoleProcess, type RoleProcess } from './fixtures/role-process.ts';
import { placeUntilAccepted, type OrderRequest, type PlacedOrder } from './fixtures/retrying-order-client.ts';
import { sharedServerMissing, sharedServerUrl } from './shared-server.ts';

const skipReason = await sharedServerMissing();

const orderCount = 80;
/** Between a client's orders, so that they come in over ~10 s of kills. */
const pauseMs = 500;
const clients = 4;
const mugStock = 1000;

type Role = 'api' | 'relay' | 'worker';
const entries: Record<Role, string> = {
  api: 'apps/shop/cmd/api.ts',
  relay: 'apps/shop/cmd/relay.ts',
  worker: 'apps/shop/cmd/worker.ts',
};

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
});

/** Most orders a mug or two; one in ten also wants the one rare item, which only one can have. */
function orderRequest(index: number): OrderRequest {
  const items = [{ sku: 'mug-1', quantity: 1 + (index % 3) }];
  if (index % 10 === 0) items.push({ sku: 'rare-1', quantity: 1 });
  return { customerId: `chaos-${index}`, items };
}

type Broker = 'postgres' | 'rabbitmq' | 'nats' | 'redis' | 'kafka';
type Outbox = 'table' | 'wal';

/** RabbitMQ queues the processes declared under `prefix`, found by rabbitmqctl where it works. */
async function deleteQueuesWithPrefix(prefix: string): Promise<void> {
  if (!(await rabbitmqctlWorks())) return;
  const { stdout } = await promisify(execFile)('rabbitmqctl', [
    '-q',
    'list_queues',
    'name',
    '--no-table-headers',
  ]);
  await deleteQueues(
    stdout
      .split('\n')
      .map((line) => line.trim())
      .filter((name) => name.startsWith(prefix)),
  );
}

/** Fails naming the broker when it is not there; resolves with how to remove what the run left on it. */
async function brokerOfRun(broker: Broker, prefix: string): Promise<() => Promise<unknown>> {
  switch (broker) {
    case 'postgres':
      return async () => undefined;
    case 'rabbitmq':
      await requireRabbitMq();
      return () => deleteQueuesWithPrefix(prefix);
    case 'nats':
      await requireNats();
      // The shop's NATS streams are named `keel_<destination>`, dots as `~`.
      return () => deleteStreamsNamed((name) => name.startsWith(`keel_${prefix}`));
    case 'kafka': {
      await requireKafka();
      const release = await useKafka();
      return async () => {
        try {
          await deleteTopicsNamed((topic) => topic.startsWith(prefix));
        } finally {
          await release();
        }
      };
    }
    case 'redis': {
      await requireRedis();
      return async () => {
        const { Redis } = await import('ioredis');
        const client = new Redis(redisAddress);
        try {
          await dropPrefix(client, `keel:stream:${prefix}`);
        } finally {
          client.disconnect();
        }
      };
    }
  }
}

interface Settled {
  statuses: Record<string, number>;
  open: number;
}

/**
 * Resolves once the WAL relay has published every WAL outbox message committed before the call:
 * a mark is written into the WAL, and the slot's confirmed position passes it only once everything
 * before it was published or parked (the relay publishes in commit order), as `keel outbox drain`
 * watches a running relay.
 */
async function walOutboxDrained(db: TestDb, deadline: number): Promise<boolean> {
  const { rows } = await db.query<{ lsn: string }>(
    `SELECT pg_logical_emit_message(true, 'keel-chaos-mark', '')::text AS lsn`,
  );
  const passed = async (): Promise<boolean> => {
    const { rows: slots } = await db.query<{ passed: boolean | null }>(
      `SELECT confirmed_flush_lsn > $1::pg_lsn AS passed FROM pg_replication_slots WHERE slot_name = $2`,
      [rows[0]!.lsn, defaultWalOutboxSlot],
    );
    return slots[0]?.passed === true;
  };
  while (!(await passed())) {
    if (Date.now() > deadline) return false;
    await sleep(200);
  }
  return true;
}

async function settled(db: TestDb): Promise<Settled> {
  const { rows } = await db.query<{ status: string; n: number }>(
    `SELECT status, count(*)::int AS n FROM orders WHERE customer_id LIKE 'chaos-%' GROUP BY status`,
  );
  const statuses = Object.fromEntries(rows.map((row) => [row.status, row.n]));
  return { statuses, open: (statuses.PENDING ?? 0) + (statuses.ACCEPTED ?? 0) };
}

describe.skipIf(skipReason !== undefined)(
  `chaos: the shop's api, relay and worker SIGKILLed while orders come in${skipReason ? ` (skipped: ${skipReason})` : ''}`,
  () => {
    it.each([
      ['postgres', 'table'],
      ['rabbitmq', 'table'],
      ['nats', 'table'],
      ['redis', 'table'],
      ['kafka', 'table'],
      ['postgres', 'wal'],
    ] as const satisfies readonly (readonly [Broker, Outbox])[])(
      'on %s, the %s outbox: one order per key, every order settled once, stock and charges moved once',
      async (broker, outbox) => {
        // The WAL outbox needs wal_level=logical, which the shared server does not run.
        const walServer = outbox === 'wal' ? await startPgServer({ walLevel: 'logical' }) : undefined;
        if (walServer !== undefined) cleanups.push(() => walServer.stop());
        const shopUrl = walServer?.url ?? sharedServerUrl;
        const shopDb = await createTestDb({ backend: 'pg', env: { ...process.env, DATABASE_URL: shopUrl } });
        cleanups.push(() => shopDb.close());
        await migrate(shopDb, await shopMigrations());
        const ledgerDb = await createTestDb({ backend: 'pg' });
        cleanups.push(() => ledgerDb.close());
        const dir = await mkdtemp(join(tmpdir(), 'keel-shop-chaos-'));
        cleanups.push(() => rm(dir, { recursive: true, force: true }));
        // Ends in `-`, not `.`: a NATS stream's name is the destination with its dots replaced.
        const prefix = `chaos-${process.pid}-${Date.now()}-`;
        cleanups.push(await brokerOfRun(broker, prefix));

        const provider = startRoleProcess(
          'payment provider',
          'apps/shop/cmd/payment-provider.ts',
          {
            KEEL_DB: 'pg',
            DATABASE_URL: sharedServerUrl,
            KEEL_DB_SCHEMA: ledgerDb.schema,
            KEEL_PAYMENTS_PORT: String(await freePort()),
            KEEL_PAYMENTS_FAIL_RATE: '0.1',
            // Past the shop's 2 s timeout: the charge made, its answer lost, the call retried.
            KEEL_PAYMENTS_STALL_RATE: '0.15',
            KEEL_PAYMENTS_STALL_MS: '2500',
            LOG_LEVEL: 'silent',
          },
          /payment provider on (\S+),/,
        );
        cleanups.push(() => provider.stop());
        const providerUrl = await provider.ready;

        const apiPort = await freePort([Number(new URL(providerUrl).port)]);
        const env: Record<string, string> = {
          KEEL_DB: 'pg',
          DATABASE_URL: shopUrl,
          KEEL_DB_SCHEMA: shopDb.schema,
          KEEL_OUTBOX: outbox,
          KEEL_BROKER: broker,
          KEEL_BROKER_PREFIX: prefix,
          ...(broker === 'kafka' ? { KEEL_BROKER_URL: kafkaBrokers.join(',') } : {}),
          KEEL_PAYMENTS_URL: providerUrl,
          PORT: String(apiPort),
          HOST: '127.0.0.1',
          KEEL_RATE_LIMIT: 'off',
          KEEL_DAILY_SALES: 'off',
          KEEL_WORKER_LEASE_MS: '1000',
          // A live relay renews its claims; a killed one's rows wait this long for the next.
          KEEL_RELAY_CLAIM_MS: '2000',
          KEEL_POLL_INTERVAL_MS: '100',
          KEEL_DRAIN_MS: '500',
          KEEL_MAILBOX_DIR: join(dir, 'mailbox'),
          KEEL_DATA_DIR: dir,
          LOG_LEVEL: 'silent',
        };
        const running = {} as Record<Role, RoleProcess>;
        const start = (role: Role): RoleProcess => {
          running[role] = startRoleProcess(
            role,
            entries[role],
            env,
            role === 'api' ? /API +(http:\/\/\S+)/ : undefined,
          );
          return running[role];
        };
        cleanups.push(() => Promise.all(Object.values(running).map((proc) => proc.stop())));
        await Promise.all((['api', 'relay', 'worker'] as const).map((role) => start(role).ready));
        const baseUrl = `http://127.0.0.1:${apiPort}`;

        // The orders, placed by a few clients at once over some seconds, each retrying its order
        // until it is taken.
        const deadline = Date.now() + 120_000;
        const placed = new Map<string, PlacedOrder>();
        let next = 0;
        const load = Promise.all(
          Array.from({ length: clients }, async () => {
            for (let index = next++; index < orderCount; index = next++) {
              const key = `chaos-key-${index}`;
              placed.set(key, await placeUntilAccepted(baseUrl, key, orderRequest(index), deadline));
              await sleep(pauseMs * (0.5 + Math.random()));
            }
          }),
        );
        let loadDone = false;
        void load.finally(() => (loadDone = true)).catch(() => undefined);

        // Until the last order is in: kill one process at random, start it again at once. An api
        // still starting is spared, or a slow start could keep it from ever taking an order.
        const kills: Record<Role, number> = { api: 0, relay: 0, worker: 0 };
        const roles: Role[] = ['api', 'relay', 'relay', 'worker', 'worker'];
        while (!loadDone) {
          await sleep(400 + Math.random() * 800);
          if (loadDone) break;
          const role = roles[Math.floor(Math.random() * roles.length)]!;
          if (!running[role].isReady()) continue;
          await running[role].kill();
          kills[role] += 1;
          start(role);
        }
        await load;

        // Every key answers the order it made, as a replay of the stored response.
        for (let index = 0; index < orderCount; index += 7) {
          const key = `chaos-key-${index}`;
          const again = await placeUntilAccepted(baseUrl, key, orderRequest(index), deadline);
          expect(again, key).toMatchObject({ id: placed.get(key)!.id, replayed: true });
        }

        // The last processes run undisturbed until every order has its outcome.
        let state = await settled(shopDb);
        while (state.open > 0 && Date.now() < deadline) {
          await sleep(200);
          state = await settled(shopDb);
        }
        const retries = [...placed.values()].reduce((sum, order) => sum + order.attempts - 1, 0);
        console.log(
          `shop chaos on ${broker}, ${outbox} outbox: ${orderCount} orders, kills ${JSON.stringify(kills)}, ` +
            `client retries ${retries}, outcomes ${JSON.stringify(state.statuses)}`,
        );
        expect(state.open, `orders still open; worker stderr: ${running.worker.stderrTail()}`).toBe(0);
        expect(kills.relay + kills.worker + kills.api).toBeGreaterThan(0);

        // Nothing left behind in the outbox: the last relay publishes what a killed one claimed (or,
        // from the WAL, what a killed one had not confirmed). The events of the orders' outcomes go
        // out after the orders moved: what follows reads them.
        if (outbox === 'wal') expect(await walOutboxDrained(shopDb, Date.now() + 15_000)).toBe(true);
        const leftInOutbox = () =>
          shopDb.query<{
            destination: string;
            type: string;
            attempts: number;
            parked: boolean;
            last_error: string | null;
          }>(
            `SELECT destination, type, attempts, parked_at IS NOT NULL AS parked, last_error
               FROM keel_outbox WHERE published_at IS NULL`,
          );
        let left = await leftInOutbox();
        for (
          const until = Date.now() + 15_000;
          left.rows.length > 0 && Date.now() < until;
          left = await leftInOutbox()
        )
          await sleep(200);
        expect(left.rows).toEqual([]);

        // One order per key: the ids the client was given are all the orders there are.
        const { rows: orders } = await shopDb.query<{
          id: string;
          status: string;
          items: { sku: string; quantity: number }[];
        }>(`SELECT id::text AS id, status, items FROM orders WHERE customer_id LIKE 'chaos-%'`);
        expect(new Set(orders.map((order) => order.id))).toEqual(
          new Set([...placed.values()].map((order) => order.id)),
        );
        expect(orders).toHaveLength(orderCount);
        const confirmed = orders.filter((order) => order.status === 'CONFIRMED');

        // On Kafka the order stream is a topic: the analytics model, checked below, reads it.
        if (broker !== 'kafka') {
          // Exactly one outcome event per order in the order stream, matching its status. A relay
          // killed between publishing and marking appends an event again: readers deduplicate on
          // its id, so the same id twice is one event.
          const { rows: appended } = await shopDb.query<{ appends: number }>(
            `SELECT count(*)::int AS appends FROM keel_stream WHERE type IN ('order.confirmed.v1', 'order.cancelled.v1')`,
          );
          const { rows: outcomes } = await shopDb.query<{ key: string; type: string }>(
            `SELECT DISTINCT id, key, type FROM keel_stream WHERE type IN ('order.confirmed.v1', 'order.cancelled.v1')`,
          );
          console.log(`  outcome events appended ${appended[0]!.appends} times, ${outcomes.length} distinct`);
          expect(outcomes).toHaveLength(orderCount);
          const expectedOutcome = new Map(
            orders.map((order) => [
              order.id,
              order.status === 'CONFIRMED' ? 'order.confirmed.v1' : 'order.cancelled.v1',
            ]),
          );
          for (const outcome of outcomes)
            expect(outcome.type, outcome.key).toBe(expectedOutcome.get(outcome.key));
        }

        // The stock moved once per confirmed order, and came back for every cancelled one.
        const quantity = (sku: string): number =>
          confirmed
            .flatMap((order) => order.items)
            .reduce((sum, item) => sum + (item.sku === sku ? item.quantity : 0), 0);
        const { rows: stock } = await shopDb.query<{ sku: string; available: number }>(
          `SELECT sku, available FROM inventory WHERE sku IN ('mug-1', 'rare-1') ORDER BY sku`,
        );
        expect(stock).toEqual([
          { sku: 'mug-1', available: mugStock - quantity('mug-1') },
          { sku: 'rare-1', available: 1 - quantity('rare-1') },
        ]);
        const { rows: held } = await shopDb.query<{ order_id: string }>(
          `SELECT order_id::text FROM stock_reservations WHERE released_at IS NULL`,
        );
        expect(held.map((row) => row.order_id).sort()).toEqual(confirmed.map((order) => order.id).sort());

        // The provider kept one charge per confirmed order and none of a cancelled one.
        const { rows: charges } = await ledgerDb.query<{ order_id: string }>(
          `SELECT order_id::text FROM payments WHERE status = 'CHARGED'`,
        );
        expect(charges.map((row) => row.order_id).sort()).toEqual(confirmed.map((order) => order.id).sort());

        // The read model converges: analytics applied each order's outcome once, duplicates or not.
        const modelled = () =>
          shopDb.query<{ id: string; status: string }>(
            `SELECT order_id::text AS id, status FROM analytics_orders WHERE customer_id LIKE 'chaos-%' ORDER BY 1`,
          );
        const byId = orders.map(({ id, status }) => ({ id, status })).sort((a, b) => (a.id < b.id ? -1 : 1));
        let model = await modelled();
        for (const until = Date.now() + 10_000; Date.now() < until; model = await modelled()) {
          if (JSON.stringify(model.rows) === JSON.stringify(byId)) break;
          await sleep(200);
        }
        expect(model.rows).toEqual(byId);

        // And the last processes, asked to stop, drain and exit cleanly.
        expect(
          await Promise.all((['api', 'relay', 'worker'] as const).map((role) => running[role].stop())),
        ).toEqual([0, 0, 0]);
      },
      240_000,
    );
  },
);
