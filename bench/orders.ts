// bench/orders: what the shop's POST /v1/orders costs against the plainest way to write the row.
//
// Method: one process, one database (PGlite by default, KEEL_DB=pg for the server at
// DATABASE_URL; the target is on pg), each side in its own schema. Both listen on
// 127.0.0.1 and are driven over real HTTP by the same closed-loop client: BENCH_CONCURRENCY
// connections (keep-alive), each sending its next request when the previous answer arrives.
//   - keel: the shop's api (buildShop), so each request validates the body with zod, and in one
//     transaction claims its Idempotency-Key, writes the order and its outbox event, and stores
//     the key's response (a unique key per request: every request runs, none replays).
//   - peer: fastify + the same Db, one INSERT of the same row, no key, no event, no validation
//     beyond JSON parsing: what a hand-rolled endpoint without exactly-once does.
// Rounds alternate keel/peer after a warm-up of two rounds each; each side's figure is its best round.
// The target: keel at least 70 % of the plain endpoint's requests per second.
// BENCH_CLIENT=process: the same client in a child process of its own instead of this one, so the
// CPU figures are the servers' alone. On two cores the client's CPU then competes beside the
// servers instead of on their thread, which moves the ratio (docs/benchmarks.md, orders): the
// line of record keeps the client in this process.
// BENCH_OUTBOX=wal: the shop with KEEL_OUTBOX=wal (the order's event as a logical message, not an
// outbox row); both sides then run on a wal_level=logical server the bench starts itself
// (startPgServer: fsync and synchronous_commit on, the same disk), in schemas of their own.
import Fastify from 'fastify';
import { pino } from 'pino';
import { v7 as uuidv7 } from 'uuid';
import { buildShop } from '../apps/shop/app.ts';
import { shopMigrations } from '../apps/shop/presets/open-shop.ts';
import { testShopConfig } from '../apps/shop/test/test-shop.ts';
import { migrate, openPgDb, type Db } from '../src/db/index.ts';
import { createTestDb, startPgServer, testDbBackend, type PgServer } from '../src/testing/index.ts';
import { systemClock } from '../src/time/index.ts';
import { childProcessClient, inProcessClient, type LoadClient } from './orders/load-client.ts';

const rounds = Number(process.env.BENCH_ROUNDS ?? 3);
const requests = Number(process.env.BENCH_REQUESTS ?? 2000);
const concurrency = Number(process.env.BENCH_CONCURRENCY ?? 16);
// Both sides get keel's production default pool (PgDb's 10 connections), not the tests' 5.
const poolSize = Number(process.env.BENCH_POOL ?? 10);
const clientInProcess = process.env.BENCH_CLIENT !== 'process';

interface Round {
  /** Requests per second. */
  rate: number;
  /** This process's CPU time (user + system) per request, µs: the servers', and the client's when it runs here. */
  cpuMicros: number;
}

/** Sends `total` POSTs through `client`; the CPU is this process's, the client's too when it runs here. */
async function drive(client: LoadClient, address: string, total: number, withKey: boolean): Promise<Round> {
  const cpu = process.cpuUsage();
  const { seconds, failed } = await client.run({ address, total, concurrency, withKey });
  const used = process.cpuUsage(cpu);
  if (failed > 0) throw new Error(`${failed} of ${total} requests did not answer 202`);
  return { rate: total / seconds, cpuMicros: (used.user + used.system) / total };
}

const walOutbox = process.env.BENCH_OUTBOX === 'wal';

/** Each side's database: the suite's backend, or with BENCH_OUTBOX=wal a schema on the bench's own server. */
function openSideDb(server: PgServer | undefined, schema: string): Promise<Db> {
  return server === undefined
    ? // As deployed: production's Db does not check for nested calls (PgDbOptions.checkNestedUse).
      createTestDb({ schemaPrefix: schema, poolSize, checkNestedUse: false, trackStatements: false })
    : openPgDb({ url: server.url, schema, poolSize });
}

async function keelSide(
  server: PgServer | undefined,
): Promise<{ address: string; close: () => Promise<void> }> {
  const db = await openSideDb(server, 'bench_keel');
  await migrate(db, await shopMigrations());
  const config = testShopConfig(['api']);
  if (server !== undefined) config.outbox = { kind: 'wal', connectionString: server.url };
  const shop = buildShop(config, {
    db,
    clock: systemClock,
    logger: pino({ level: 'silent' }),
  });
  await shop.start();
  return { address: shop.server!.address, close: () => shop.stop() };
}

async function peerSide(
  server: PgServer | undefined,
): Promise<{ address: string; close: () => Promise<void> }> {
  const db: Db = await openSideDb(server, 'bench_plain');
  await db.query(`CREATE TABLE orders (
    id uuid PRIMARY KEY, customer_id text NOT NULL, status text NOT NULL, items jsonb NOT NULL,
    version integer NOT NULL DEFAULT 1, created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL)`);
  const app = Fastify();
  app.post('/v1/orders', async (request, reply) => {
    const input = request.body as { customerId: string; items: unknown[] };
    const now = new Date();
    const order = {
      id: uuidv7(),
      customerId: input.customerId,
      items: input.items,
      status: 'PENDING',
      version: 1,
    };
    await db.query(
      `INSERT INTO orders (id, customer_id, status, items, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $5)`,
      [order.id, order.customerId, order.status, JSON.stringify(order.items), now],
    );
    return reply.status(202).header('location', `/v1/orders/${order.id}`).send(order);
  });
  const address = await app.listen({ port: 0, host: '127.0.0.1' });
  return {
    address,
    close: async () => {
      await app.close();
      await db.close();
    },
  };
}

export default async function main(): Promise<void> {
  console.log(
    [
      'bench/orders: POST /v1/orders over real HTTP (loopback, keep-alive), closed loop',
      `  database: ${walOutbox ? 'pg, a wal_level=logical server the bench started (BENCH_OUTBOX=wal)' : testDbBackend()} (pool of ${poolSize} each); ${rounds} rounds of ${requests} requests, ${concurrency} connections, best round each`,
      `  keel: the shop api — zod validation; Idempotency-Key claim, order, ${walOutbox ? 'its event as a logical message (the WAL outbox)' : 'outbox event'}`,
      '        and key response in one transaction; peer: plain fastify + one INSERT of the same row',
      `  client: fetch, ${clientInProcess ? 'in this process' : 'in a child process (BENCH_CLIENT=process)'}`,
    ].join('\n'),
  );
  const server = walOutbox
    ? await startPgServer({ walLevel: 'logical', fsync: true, settings: { shared_buffers: '128MB' } })
    : undefined;
  const keel = await keelSide(server);
  const peer = await peerSide(server);
  const client = clientInProcess ? inProcessClient() : childProcessClient();
  try {
    // A warm-up of a round's size each: keel runs more code than the plain endpoint, and its
    // CPU per request kept falling for the first ~10,000 requests after a warm-up of 300.
    for (let i = 0; i < 2; i++) {
      await drive(client, keel.address, requests, true);
      await drive(client, peer.address, requests, false);
    }
    let bestKeel = 0;
    let bestPeer = 0;
    const cpu = { keel: [] as number[], peer: [] as number[] };
    // Each round runs both sides back to back, so its ratio is taken in one state of the machine.
    const roundRatios: number[] = [];
    for (let round = 1; round <= rounds; round++) {
      const k = await drive(client, keel.address, requests, true);
      const p = await drive(client, peer.address, requests, false);
      bestKeel = Math.max(bestKeel, k.rate);
      bestPeer = Math.max(bestPeer, p.rate);
      cpu.keel.push(k.cpuMicros);
      roundRatios.push(k.rate / p.rate);
      cpu.peer.push(p.cpuMicros);
      console.log(
        `  round ${round}: keel ${k.rate.toFixed(0)} req/s (${k.cpuMicros.toFixed(0)} µs CPU/req), plain ${p.rate.toFixed(0)} req/s (${p.cpuMicros.toFixed(0)} µs CPU/req)`,
      );
    }
    console.log(
      `  lowest CPU per request in this process (${clientInProcess ? 'client + server' : 'server only'}): keel ${Math.min(...cpu.keel).toFixed(0)} µs, plain ${Math.min(...cpu.peer).toFixed(0)} µs`,
    );
    const ratio = bestKeel / bestPeer;
    const sorted = [...roundRatios].sort((a, b) => a - b);
    const median = sorted[Math.floor((sorted.length - 1) / 2)]!;
    console.log(
      `  keel reaches ${(ratio * 100).toFixed(0)} % of the plain endpoint, best round against best round (target ≥ 70 %); median of the rounds' ratios ${median.toFixed(2)}`,
    );
    console.log(
      `bench: POST /v1/orders requests per second${walOutbox ? ', the shop on the WAL outbox' : ''}${clientInProcess ? '' : ', the client in its own process'} (higher is better) | keel ${bestKeel.toFixed(0)} req/s | fastify+pg insert ${bestPeer.toFixed(0)} req/s | ratio ${ratio.toFixed(2)}`,
    );
  } finally {
    await client.close();
    await keel.close();
    await peer.close();
    await server?.stop();
  }
}
