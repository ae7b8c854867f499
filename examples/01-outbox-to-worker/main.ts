// The article's core loop in one file: a business write and its event commit together (the
// transactional outbox), a relay moves the event to a queue, and a worker applies its effect
// exactly once (the inbox) although delivery is at-least-once. Embedded PostgreSQL: no server.
//
//   npx tsx examples/01-outbox-to-worker/main.ts
import { z } from 'zod';
import { migrate, openDb, type Db } from 'keel/db';
import { PgQueue, defineMessage, pgQueueMigrations } from 'keel/messaging';
import { OutboxRelay, addToOutbox, inboxMigrations, inboxOnce, outboxMigrations } from 'keel/outbox';

const paymentCaptured = defineMessage(
  'payment.captured',
  1,
  z.object({ paymentId: z.string(), cents: z.number().int() }),
);

export async function runExample(options: { log: (line: string) => void; db?: Db }): Promise<void> {
  const { log } = options;
  const db = options.db ?? (await openDb({ kind: 'pglite' }));
  await migrate(db, [
    ...pgQueueMigrations,
    ...outboxMigrations,
    ...inboxMigrations,
    {
      id: '0001_ledger',
      sql: 'CREATE TABLE payments (id text PRIMARY KEY); CREATE TABLE ledger (payment_id text, cents int)',
    },
  ]);
  const queue = new PgQueue(db);

  // 1. The write and its event in one transaction: both or neither.
  for (const [paymentId, cents] of [
    ['p-1', 1200],
    ['p-2', 350],
  ] as const) {
    await db.transaction(async (tx) => {
      await tx.query('INSERT INTO payments (id) VALUES ($1)', [paymentId]);
      await addToOutbox(tx, 'ledger', paymentCaptured.create({ paymentId, cents }, { key: paymentId }));
    });
  }
  log('committed 2 payments and their events');

  // 2. The relay publishes committed events to the queue.
  const relay = new OutboxRelay(db, queue);
  log(`relay published ${await relay.relayOnce()} events`);

  // 3. A redelivery, as a crash between commit and ack would cause: the same message twice.
  const source = queue.source('ledger');
  const [first] = await source.claim(1);
  if (first === undefined) throw new Error('nothing to redeliver');
  await source.release(first);
  await queue.publish('ledger', [first.envelope]);
  log(`queue holds ${await queue.depth('ledger')} messages (one is a duplicate)`);

  // 4. The worker: effect and inbox record in one transaction; a duplicate changes nothing.
  let handled = 0;
  const worker = queue.consumer('ledger', async (message) => {
    const { payload } = paymentCaptured.parse(message);
    const outcome = await db.transaction((tx) =>
      inboxOnce(tx, 'ledger-writer', message, (t) =>
        t.query('INSERT INTO ledger VALUES ($1, $2)', [payload.paymentId, payload.cents]),
      ),
    );
    handled++;
    log(
      `${payload.paymentId}: ${outcome.duplicate ? 'duplicate, skipped' : `booked ${payload.cents} cents`}`,
    );
  });
  await worker.start();
  while (handled < 3) await worker.events.once('acked');
  await worker.stop();

  const { rows } = await db.query<{ entries: number; total: number }>(
    'SELECT count(*)::int AS entries, sum(cents)::int AS total FROM ledger',
  );
  log(`ledger: ${rows[0]?.entries} entries, ${rows[0]?.total} cents`);
  if (options.db === undefined) await db.close();
}

if (import.meta.url === `file://${process.argv[1]}`) {
  await runExample({ log: (line) => console.log(line) });
}
