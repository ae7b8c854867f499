// A read model rebuilt by replaying a stream, on PostgreSQL alone: the outbox relay appends
// committed events to a PgStream (a table with gap-free positions), a ProjectionRunner applies
// them to the model in the transaction that moves its position, and rebuild() replays the stream
// from its first entry into an emptied model. Then retention: a trim that never passes what the
// projection has not applied, after which a rebuild can only replay what the stream still holds.
//
//   npx tsx examples/05-stream-projection/main.ts                      # embedded PGlite, in memory
//   DATABASE_URL=postgres://… npx tsx examples/05-stream-projection/main.ts   # a server (schema keel_example_05)
import { migrate, openPgDb, openPgliteDb, type Db } from 'keel/db';
import {
  PgStream,
  ProjectionRunner,
  createEnvelope,
  pgStreamMigrations,
  type Envelope,
  type Projection,
} from 'keel/messaging';
import { OutboxRelay, addToOutbox, outboxMigrations } from 'keel/outbox';

const orderPlaced = (orderId: string, customer: string, cents: number): Envelope =>
  createEnvelope({ type: 'order.placed.v1', payload: { orderId, customer, cents }, key: orderId });

/**
 * Orders and cents per customer. The relay is at-least-once, so the stream can hold an event
 * twice: `seen` remembers applied event ids in the model itself, so a rebuild forgets them too.
 */
const perCustomer: Projection = {
  async apply(entries, tx) {
    for (const { envelope } of entries) {
      const fresh = await tx.query('INSERT INTO seen (id) VALUES ($1) ON CONFLICT DO NOTHING', [envelope.id]);
      if (fresh.rowCount === 0) continue;
      const { customer, cents } = envelope.payload as { customer: string; cents: number };
      await tx.query(
        `INSERT INTO per_customer (customer, orders, cents) VALUES ($1, 1, $2)
         ON CONFLICT (customer) DO UPDATE SET orders = per_customer.orders + 1, cents = per_customer.cents + $2`,
        [customer, cents],
      );
    }
  },
  async reset(tx) {
    await tx.query('DELETE FROM per_customer');
    await tx.query('DELETE FROM seen');
  },
};

async function model(db: Db): Promise<string> {
  const { rows } = await db.query<{ customer: string; orders: number; cents: number }>(
    'SELECT customer, orders, cents FROM per_customer ORDER BY customer',
  );
  return rows.map((r) => `${r.customer} ${r.orders} order(s) ${r.cents} cents`).join(', ');
}

export async function runExample(options: { log: (line: string) => void; db?: Db }): Promise<void> {
  const { log } = options;
  const db = options.db ?? (await openDefault());
  try {
    await migrate(db, [
      ...outboxMigrations,
      ...pgStreamMigrations,
      {
        id: '0001_per_customer',
        sql: `CREATE TABLE per_customer (customer text PRIMARY KEY, orders int NOT NULL, cents int NOT NULL);
              CREATE TABLE seen (id uuid PRIMARY KEY);`,
      },
    ]);
    // 1. Events written with the business transaction, then relayed into the stream.
    const events = [
      orderPlaced('o-1', 'ada', 1200),
      orderPlaced('o-2', 'bob', 350),
      orderPlaced('o-3', 'ada', 99),
    ];
    await db.transaction((tx) => addToOutbox(tx, 'orders', events));
    const stream = new PgStream(db);
    log(`relay appended ${await new OutboxRelay(db, stream).relayOnce()} events to the stream`);

    // 2. A relay that crashed after publishing publishes again: the stream holds o-1 twice.
    await stream.publish('orders', [events[0]!]);
    log(`stream positions: ${(await stream.read('orders')).map((e) => e.position).join(', ')}`);

    // 3. The projection applies the stream; its position moves in the same transactions.
    const runner = new ProjectionRunner(db, perCustomer, { name: 'per-customer.v1', stream: 'orders' });
    log(
      `applied ${await runner.catchUp()} entries up to position ${await runner.position()}: ${await model(db)}`,
    );

    // 4. Rebuild: the model emptied and the position set to 0 together, then the same replay.
    await runner.rebuild();
    log(`rebuilt from position 0, applied ${await runner.catchUp()} entries: ${await model(db)}`);

    // 5. Retention: keep the last entry, and nothing the projection has not applied yet. What is
    //    trimmed is gone for good: a rebuild now replays only the duplicate of o-1 (a model that
    //    must outlive the stream's retention keeps its own history, or is never rebuilt).
    const trimmed = await stream.trim('orders', { keepLast: 1, keepUnappliedBy: ['per-customer.v1'] });
    const { first, last } = await stream.bounds('orders');
    log(`trimmed ${trimmed} entries; the stream holds positions ${first} to ${last}`);
    await runner.rebuild();
    log(
      `rebuilt from position ${await runner.position()}, applied ${await runner.catchUp()} entries: ${await model(db)}`,
    );
  } finally {
    if (options.db === undefined) await db.close();
  }
}

/** Embedded by default; on a server, a schema of the example's own, emptied first so each run starts afresh. */
async function openDefault(): Promise<Db> {
  const url = process.env.DATABASE_URL;
  if (url === undefined) return openPgliteDb({});
  const schema = 'keel_example_05';
  const server = await openPgDb({ url });
  await server.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  await server.close();
  return openPgDb({ url, schema });
}

if (import.meta.url === `file://${process.argv[1]}`) {
  await runExample({ log: (line) => console.log(line) });
}
