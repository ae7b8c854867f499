// bench/outbox-add: what `outbox.add` costs inside a business transaction.
//
// Method: one process, one database (PGlite by default, KEEL_DB=pg for the server at
// DATABASE_URL; the issue's target is on pg), both sides in one schema. BENCH_CONCURRENCY
// closed loops each run BENCH_TRANSACTIONS / concurrency business transactions: insert one
// order row (the shop's table shape) — and, on the keel side, add its `order.placed.v1` event to
// the outbox in the same transaction (key lock and insert, sent with the COMMIT on pg; wake-up
// after the commit). No relay
// runs, so the outbox only grows, as it would between two relay batches. A third side writes
// the same event the way a hand-rolled outbox does: an awaited INSERT into a table of its own
// with the same indexes (a sequence key, a unique message id, a partial index of the rows still
// to publish), no key lock, no wake-up — what the row itself costs, without keel.
// Rounds alternate the three sides after a warm-up; each figure is the best round.
// The issue's target: the transaction with outbox.add at most 10 % slower than without.
//
// Then the same comparison in the shop's own order transaction, the business transaction of
// the reference system: the Idempotency-Key claimed in it (advisory lock and check), the order
// row, and the key's row with the response written last (PostgresIdempotencyStore's claimWithin
// and completeClaimWithin, as `POST /v1/orders` runs them) — with and without outbox.add. The
// one-INSERT transaction above is the worst case for the add; this is what a request pays.
//
// Then the WAL outbox (`addToWalOutbox`: a transactional logical message, no table row) against the
// same transaction without it. It needs wal_level=logical, so on pg that part runs on a server the
// bench starts itself (startPgServer, fsync and synchronous_commit on, the same disk), with its
// slot in place, and times 'without' there again beside it: the two figures share a server.
// BENCH_WAL=off leaves it out; PGlite has no logical decoding, so it runs on pg only.
import { randomUUID } from 'node:crypto';
import { v7 as uuidv7 } from 'uuid';
import { migrate, openPgDb, type Db, type Tx } from '../src/db/index.ts';
import { createEnvelope, type Envelope } from '../src/messaging/index.ts';
import {
  PostgresIdempotencyStore,
  idempotencyMigrations,
  requestFingerprint,
  type BeginRequest,
} from '../src/idempotency/index.ts';
import { addToOutbox, addToWalOutbox, ensureWalOutboxSlot, outboxMigrations } from '../src/outbox/index.ts';
import { createTestDb, startPgServer, testDbBackend } from '../src/testing/index.ts';

const rounds = Number(process.env.BENCH_ROUNDS ?? 3);
const transactions = Number(process.env.BENCH_TRANSACTIONS ?? 3000);
const concurrency = Number(process.env.BENCH_CONCURRENCY ?? 16);
// keel's production default pool (PgDb's 10 connections), not the tests' 5.
const poolSize = Number(process.env.BENCH_POOL ?? 10);

type Side =
  | 'outbox.add'
  | 'without'
  | 'hand-rolled'
  | 'WAL outbox.add'
  | 'order with outbox.add'
  | 'order with WAL outbox.add'
  | 'order without';

const orderBody = { customerId: 'c-1', items: [{ sku: 'book-1', quantity: 2 }] };

/** The key claim of one shop request, as the idempotency plugin makes it for `POST /v1/orders`. */
function keyRequest(): BeginRequest {
  return {
    scope: 'default POST /v1/orders',
    key: uuidv7(),
    fingerprint: requestFingerprint('POST', '/v1/orders', orderBody),
    ttlMs: 86_400_000,
    lockMs: 60_000,
  };
}

async function businessTransactions(db: Db, total: number, side: Side): Promise<number> {
  const keys = new PostgresIdempotencyStore(db);
  const order = side.startsWith('order ');
  let left = total;
  const loop = async (): Promise<void> => {
    while (left-- > 0) {
      const id = uuidv7();
      const key = order ? keyRequest() : undefined;
      await db.transaction(async (tx) => {
        if (key !== undefined) await keys.claimWithin(tx, key);
        await tx.query(
          `INSERT INTO orders (id, customer_id, status, items, created_at, updated_at)
           VALUES ($1, 'c-1', 'PENDING', '[{"sku":"book-1","quantity":2}]', now(), now())`,
          [id],
        );
        if (side !== 'without' && side !== 'order without') {
          const event = createEnvelope({
            type: 'order.placed.v1',
            key: id,
            payload: { orderId: id, customerId: 'c-1' },
          });
          await addEvent(tx, side, event);
        }
        if (key !== undefined)
          await keys.completeClaimWithin(tx, key, randomUUID(), {
            status: 202,
            headers: { 'content-type': 'application/json; charset=utf-8', location: `/v1/orders/${id}` },
            body: JSON.stringify({ id, ...orderBody, status: 'PENDING', version: 1 }),
          });
      });
    }
  };
  const start = process.hrtime.bigint();
  await Promise.all(Array.from({ length: concurrency }, loop));
  return total / (Number(process.hrtime.bigint() - start) / 1e9);
}

async function addEvent(tx: Tx, side: Side, event: Envelope): Promise<void> {
  if (side === 'outbox.add' || side === 'order with outbox.add') await addToOutbox(tx, 'orders', event);
  else if (side === 'WAL outbox.add' || side === 'order with WAL outbox.add')
    await addToWalOutbox(tx, 'orders', event);
  else
    await tx.query(
      `INSERT INTO hand_rolled_outbox (message_id, topic, key, type, payload, headers, occurred_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)`,
      [
        event.id,
        'orders',
        event.key,
        event.type,
        JSON.stringify(event.payload),
        JSON.stringify(event.headers),
        event.occurredAt,
      ],
    );
}

async function createTables(db: Db): Promise<void> {
  await migrate(db, [...outboxMigrations, ...idempotencyMigrations]);
  await db.query(`CREATE TABLE orders (
    id uuid PRIMARY KEY, customer_id text NOT NULL, status text NOT NULL, items jsonb NOT NULL,
    version integer NOT NULL DEFAULT 1, created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL)`);
  await db.query(`CREATE TABLE hand_rolled_outbox (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, message_id uuid NOT NULL UNIQUE,
    topic text NOT NULL, key text, type text NOT NULL, payload jsonb NOT NULL, headers jsonb NOT NULL,
    occurred_at timestamptz NOT NULL, created_at timestamptz NOT NULL DEFAULT now(), published_at timestamptz)`);
  await db.query(
    `CREATE INDEX hand_rolled_outbox_unpublished ON hand_rolled_outbox (seq) WHERE published_at IS NULL`,
  );
}

/** Warm-up, then `rounds` rounds alternating the sides; returns each side's best round. */
async function compare(db: Db, sides: readonly Side[]): Promise<Map<Side, number>> {
  for (const side of sides) await businessTransactions(db, 300, side);
  const best = new Map<Side, number>(sides.map((side) => [side, 0]));
  const ratios: number[] = [];
  for (let round = 1; round <= rounds; round++) {
    const rates = new Map<Side, number>();
    for (const side of sides) rates.set(side, await businessTransactions(db, transactions, side));
    for (const [side, rate] of rates) best.set(side, Math.max(best.get(side)!, rate));
    ratios.push(rates.get(sides[0]!)! / rates.get(sides[1]!)!);
    console.log(
      `  round ${round}: ${sides.map((side) => `${side} ${rates.get(side)!.toFixed(0)} tx/s`).join(', ')}`,
    );
  }
  // Each round runs the sides back to back, so its ratio is less exposed to the machine's swings
  // than best against best.
  ratios.sort((a, b) => a - b);
  const mid = ratios.length >> 1;
  const median = ratios.length % 2 ? ratios[mid]! : (ratios[mid - 1]! + ratios[mid]!) / 2;
  console.log(`  median of the rounds' ratios, ${sides[0]} / ${sides[1]}: ${median.toFixed(2)}`);
  return best;
}

/** The WAL outbox beside 'without', on a wal_level=logical server of the bench's own. */
async function walOutbox(): Promise<string[]> {
  console.log(
    '\nthe WAL outbox (addToWalOutbox), on a server the bench started with wal_level=logical, fsync and synchronous_commit on:',
  );
  const server = await startPgServer({
    walLevel: 'logical',
    fsync: true,
    settings: { shared_buffers: '128MB' },
  });
  const db = await openPgDb({ url: server.url, poolSize });
  try {
    await createTables(db);
    // The slot must exist before the first message, or the message is in no slot's stream.
    await ensureWalOutboxSlot(db);
    const best = await compare(db, ['WAL outbox.add', 'without', 'outbox.add']);
    const keel = best.get('WAL outbox.add')!;
    const without = best.get('without')!;
    console.log(
      `  with the WAL outbox's add: ${((1 - keel / without) * 100).toFixed(1)} % slower (target ≤ 10 %)`,
    );
    console.log("\nthe shop's order transaction there, with and without the WAL outbox's add:");
    const placed = await compare(db, ['order with WAL outbox.add', 'order without']);
    const withAdd = placed.get('order with WAL outbox.add')!;
    const withoutAdd = placed.get('order without')!;
    return [
      `bench: business transactions per second with the WAL outbox's add (higher is better) | keel ${keel.toFixed(0)} tx/s | without outbox ${without.toFixed(0)} tx/s | ratio ${(keel / without).toFixed(2)}`,
      `bench: the shop's order transactions per second with the WAL outbox's add (higher is better) | keel ${withAdd.toFixed(0)} tx/s | without outbox ${withoutAdd.toFixed(0)} tx/s | ratio ${(withAdd / withoutAdd).toFixed(2)}`,
    ];
  } finally {
    await db.close();
    await server.stop();
  }
}

export default async function main(): Promise<void> {
  console.log(
    [
      'bench/outbox-add: a business transaction (one order INSERT) with and without outbox.add of its event',
      `  database: ${testDbBackend()} (pool of ${poolSize}); ${rounds} rounds of ${transactions} transactions, ${concurrency} concurrent, best round each; no relay running`,
    ].join('\n'),
  );
  // As deployed: production's Db does not check for nested calls (PgDbOptions.checkNestedUse).
  const db = await createTestDb({
    schemaPrefix: 'bench_outbox_add',
    poolSize,
    checkNestedUse: false,
    trackStatements: false,
  });
  const lines: string[] = [];
  try {
    await createTables(db);
    const best = await compare(db, ['outbox.add', 'without', 'hand-rolled']);
    const keel = best.get('outbox.add')!;
    const without = best.get('without')!;
    const handRolled = best.get('hand-rolled')!;
    console.log(`  with outbox.add: ${((1 - keel / without) * 100).toFixed(1)} % slower (target ≤ 10 %)`);
    console.log(
      `  a hand-rolled outbox row: ${((1 - handRolled / without) * 100).toFixed(1)} % slower than without`,
    );
    lines.push(
      `bench: business transactions per second with outbox.add (higher is better) | keel ${keel.toFixed(0)} tx/s | without outbox ${without.toFixed(0)} tx/s | ratio ${(keel / without).toFixed(2)}`,
      `bench: business transactions per second writing their event to an outbox (higher is better) | keel ${keel.toFixed(0)} tx/s | hand-rolled outbox insert ${handRolled.toFixed(0)} tx/s | ratio ${(keel / handRolled).toFixed(2)}`,
    );
    console.log(
      "\nthe shop's order transaction (key claim, order row, the key's row with its response), with and without outbox.add:",
    );
    const placed = await compare(db, ['order with outbox.add', 'order without']);
    const withAdd = placed.get('order with outbox.add')!;
    const withoutAdd = placed.get('order without')!;
    console.log(
      `  with outbox.add: ${((1 - withAdd / withoutAdd) * 100).toFixed(1)} % slower (target ≤ 10 %)`,
    );
    lines.push(
      `bench: the shop's order transactions per second with outbox.add (higher is better) | keel ${withAdd.toFixed(0)} tx/s | without outbox ${withoutAdd.toFixed(0)} tx/s | ratio ${(withAdd / withoutAdd).toFixed(2)}`,
    );
  } finally {
    await db.close();
  }
  if (testDbBackend() === 'pg' && process.env.BENCH_WAL !== 'off') lines.push(...(await walOutbox()));
  console.log('');
  for (const line of lines) console.log(line);
}
