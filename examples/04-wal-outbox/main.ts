// The WAL outbox: the event goes into the WAL as a transactional logical message — no outbox row
// — and a relay streams it from a replication slot, in commit order, to any Publisher.
//
//   npx tsx examples/04-wal-outbox/main.ts                  # starts a throwaway PostgreSQL 15 with
//                                                           # wal_level=logical (Debian's binaries)
//   DATABASE_URL=postgres://… npx tsx examples/04-wal-outbox/main.ts   # your server (wal_level=logical,
//                                                           # a user with REPLICATION)
import { migrate, openPgDb } from 'keel/db';
import { createEnvelope, type Envelope } from 'keel/messaging';
import {
  WalOutboxRelay,
  addToWalOutbox,
  dropWalOutboxSlot,
  ensureWalOutboxSlot,
  outboxMigrations,
} from 'keel/outbox';
import { startPgServer } from 'keel/testing';

const orderPlaced = (id: string, cents: number): Envelope =>
  createEnvelope({ type: 'order.placed.v1', payload: { id, cents }, key: id });

export async function runExample(options: { log: (line: string) => void; url?: string }): Promise<void> {
  const { log } = options;
  const server = options.url === undefined ? await startPgServer({ walLevel: 'logical' }) : undefined;
  const url = options.url ?? server!.url;
  const db = await openPgDb({ url });
  // A slot and a prefix of the example's own, so it never reads another application's messages.
  const names = { slotName: 'example_04', publicationName: 'example_04', prefix: 'example_04' };
  try {
    // The relay parks what the broker refuses in the table outbox: its table comes too.
    await migrate(db, [
      ...outboxMigrations,
      {
        id: 'example_04_orders',
        sql: 'CREATE TABLE IF NOT EXISTS example_orders (id text PRIMARY KEY, cents int NOT NULL)',
      },
    ]);
    // 1. The slot first — at deploy, beside the migrations: a message written while no slot
    //    exists is in no slot's stream.
    await ensureWalOutboxSlot(db, names);
    log('slot example_04 ready');

    // 2. The order and its event in one transaction; the event is in the WAL only.
    await db.transaction(async (tx) => {
      await tx.query('INSERT INTO example_orders (id, cents) VALUES ($1, $2)', ['o-1', 1200]);
      await addToWalOutbox(tx, 'orders', orderPlaced('o-1', 1200), { prefix: names.prefix });
    });
    log('order o-1 and its event committed in one transaction');

    // 3. A transaction that fails after writing its event: decoding never sees the event.
    await db
      .transaction(async (tx) => {
        await tx.query('INSERT INTO example_orders (id, cents) VALUES ($1, $2)', ['o-2', 99]);
        await addToWalOutbox(tx, 'orders', orderPlaced('o-2', 99), { prefix: names.prefix });
        throw new Error('payment declined');
      })
      .catch((error: unknown) => log(`o-2 rolled back (${(error as Error).message}), no event`));

    await db.transaction(async (tx) => {
      await tx.query('INSERT INTO example_orders (id, cents) VALUES ($1, $2)', ['o-3', 350]);
      await addToWalOutbox(tx, 'orders', orderPlaced('o-3', 350), { prefix: names.prefix });
    });
    log('order o-3 and its event committed in one transaction');

    // 4. The relay streams the slot to any Publisher (here one that prints), in commit order, and
    //    confirms to the server only what the publisher accepted.
    let published = 0;
    const relay = new WalOutboxRelay(
      db,
      {
        publish: async (destination, messages) => {
          for (const m of messages)
            log(`published to ${destination}: ${m.type} ${JSON.stringify(m.payload)}`);
          published += messages.length;
        },
      },
      { connectionString: url, ...names },
    );
    await relay.start();
    while (published < 2) await new Promise((resolve) => setTimeout(resolve, 10));
    await relay.stop();
    log(`relay published ${published} events`);
  } finally {
    await dropWalOutboxSlot(db, names).catch(() => undefined);
    await db.query('DROP TABLE IF EXISTS example_orders').catch(() => undefined);
    await db.close();
    await server?.stop();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  await runExample({ log: (line) => console.log(line), url: process.env.DATABASE_URL });
}
