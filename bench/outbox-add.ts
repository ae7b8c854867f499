// bench/outbox-add: what `outbox.add` costs inside a business transaction.
//
// Method: one process, one database (PGlite by default, KEEL_DB=pg for the server at
// DATABASE_URL; the target is on pg), both sides in one schema. BENCH_CONCURRENCY
// closed loops each run BENCH_TRANSACTIONS / concurrency business transactions: insert one
// order row (the shop's table shape) — and, on the keel side, add its `order.placed.v1` event to
// the outbox in the same transaction (key lock and insert, sent with the COMMIT on pg; wake-up
// after the commit). No relay
// runs, so the outbox only grows, as it would between two relay batches. Rounds alternate
// with/without after a warm-up; each figure is the best round.
// The target: the transaction with outbox.add at most 10 % slower than without.
import { v7 as uuidv7 } from 'uuid';
import { migrate, type Db } from '../src/db/index.ts';
import { createEnvelope } from '../src/messaging/index.ts';
import { addToOutbox, outboxMigrations } from '../src/outbox/index.ts';
import { createTestDb, testDbBackend } from '../src/testing/index.ts';

const rounds = Number(process.env.BENCH_ROUNDS ?? 3);
const transactions = Number(process.env.BENCH_TRANSACTIONS ?? 3000);
const concurrency = Number(process.env.BENCH_CONCURRENCY ?? 16);
// keel's production default pool (PgDb's 10 connections), not the tests' 5.
const poolSize = Number(process.env.BENCH_POOL ?? 10);

async function businessTransactions(db: Db, total: number, withOutbox: boolean): Promise<number> {
  let left = total;
  const loop = async (): Promise<void> => {
    while (left-- > 0) {
      const id = uuidv7();
      await db.transaction(async (tx) => {
        await tx.query(
          `INSERT INTO orders (id, customer_id, status, items, created_at, updated_at)
           VALUES ($1, 'c-1', 'PENDING', '[{"sku":"book-1","quantity":2}]', now(), now())`,
          [id],
        );
        if (withOutbox)
          await addToOutbox(
            tx,
            'orders',
            createEnvelope({ type: 'order.placed.v1', key: id, payload: { orderId: id, customerId: 'c-1' } }),
          );
      });
    }
  };
  const start = process.hrtime.bigint();
  await Promise.all(Array.from({ length: concurrency }, loop));
  return total / (Number(process.hrtime.bigint() - start) / 1e9);
}

export default async function main(): Promise<void> {
  console.log(
    [
      'bench/outbox-add: a business transaction (one order INSERT) with and without outbox.add of its event',
      `  database: ${testDbBackend()} (pool of ${poolSize}); ${rounds} rounds of ${transactions} transactions, ${concurrency} concurrent, best round each; no relay running`,
    ].join('\n'),
  );
  const db = await createTestDb({ schemaPrefix: 'bench_outbox_add', poolSize });
  try {
    await migrate(db, outboxMigrations);
    await db.query(`CREATE TABLE orders (
      id uuid PRIMARY KEY, customer_id text NOT NULL, status text NOT NULL, items jsonb NOT NULL,
      version integer NOT NULL DEFAULT 1, created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL)`);
    await businessTransactions(db, 300, true);
    await businessTransactions(db, 300, false);
    let withBest = 0;
    let withoutBest = 0;
    for (let round = 1; round <= rounds; round++) {
      const withRate = await businessTransactions(db, transactions, true);
      const withoutRate = await businessTransactions(db, transactions, false);
      withBest = Math.max(withBest, withRate);
      withoutBest = Math.max(withoutBest, withoutRate);
      console.log(
        `  round ${round}: with outbox.add ${withRate.toFixed(0)} tx/s, without ${withoutRate.toFixed(0)} tx/s`,
      );
    }
    const ratio = withBest / withoutBest;
    console.log(`  with outbox.add: ${((1 - ratio) * 100).toFixed(1)} % slower (target ≤ 10 %)`);
    console.log(
      `bench: business transactions per second with outbox.add (higher is better) | keel ${withBest.toFixed(0)} tx/s | without outbox ${withoutBest.toFixed(0)} tx/s | ratio ${ratio.toFixed(2)}`,
    );
  } finally {
    await db.close();
  }
}
