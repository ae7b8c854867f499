// outbox.add in the transaction your code already has: a node-postgres client inside BEGIN (or
// a PGlite transaction), and a Kysely transaction. keel imports neither: `addToOutbox` takes any
// `{ query(sql, params) }`, and a Kysely transaction becomes one in a line.
//
//   npx tsx examples/03-outbox-in-your-transaction/main.ts                      # embedded PGlite
//   DATABASE_URL=postgres://… npx tsx examples/03-outbox-in-your-transaction/main.ts   # a server (schema keel_example_03)
import { PGlite } from '@electric-sql/pglite';
import { CompiledQuery, Kysely, PostgresDialect, type PostgresPool, type Transaction } from 'kysely';
import pg from 'pg';
import { migrate, openPgDb, openPgliteDb, type Db } from 'keel/db';
import { createEnvelope, type Envelope } from 'keel/messaging';
import { OutboxRelay, addToOutbox, outboxMigrations, type OutboxExecutor } from 'keel/outbox';

interface Tables {
  orders: { id: string; cents: number };
}

/** A Kysely transaction as the outbox's executor: the one line to copy. */
const fromKysely = <T>(trx: Transaction<T>): OutboxExecutor => ({
  query: (sql, params) => trx.executeQuery(CompiledQuery.raw(sql, params)),
});

const orderPlaced = (id: string, cents: number): Envelope =>
  createEnvelope({ type: 'order.placed.v1', payload: { id, cents }, key: id });

/** Where to run: embedded PGlite (a given instance stays open), or a schema on a server. */
export type Target = { kind: 'pglite'; pglite?: PGlite } | { kind: 'pg'; url: string; schema: string };

export async function runExample(options: { log: (line: string) => void; target: Target }): Promise<void> {
  const { log, target } = options;
  const setup =
    target.kind === 'pg' ? await onServer(target.url, target.schema) : await embedded(target.pglite);
  const { keelDb, kysely } = setup;
  try {
    await migrate(keelDb, [
      ...outboxMigrations,
      { id: '0001_orders', sql: 'CREATE TABLE orders (id text PRIMARY KEY, cents int NOT NULL)' },
    ]);

    // 1. The raw driver: your client, your BEGIN/COMMIT; addToOutbox takes the client as it is.
    await setup.rawTransaction(async (client) => {
      await client.query('INSERT INTO orders (id, cents) VALUES ($1, $2)', ['o-1', 1200]);
      await addToOutbox(client, 'orders', orderPlaced('o-1', 1200));
    });
    log(`${target.kind}: order o-1 and its event committed in one transaction`);

    // 2. Kysely: the query builder's transaction, and the outbox row in it.
    await kysely.transaction().execute(async (trx) => {
      await trx.insertInto('orders').values({ id: 'o-2', cents: 350 }).execute();
      await addToOutbox(fromKysely(trx), 'orders', orderPlaced('o-2', 350));
    });
    log('kysely: order o-2 and its event committed in one transaction');

    // 3. A transaction that fails after writing its event: neither the order nor the event stays.
    await kysely
      .transaction()
      .execute(async (trx) => {
        await trx.insertInto('orders').values({ id: 'o-3', cents: 99 }).execute();
        await addToOutbox(fromKysely(trx), 'orders', orderPlaced('o-3', 99));
        throw new Error('payment declined');
      })
      .catch((error: unknown) => log(`kysely: o-3 rolled back (${(error as Error).message}), no event`));

    // 4. The relay publishes what committed, to any Publisher; here one that prints.
    const relay = new OutboxRelay(keelDb, {
      publish: async (destination, messages) => {
        for (const m of messages) log(`published to ${destination}: ${m.type} ${JSON.stringify(m.payload)}`);
      },
    });
    log(`relay published ${await relay.relayOnce()} events`);
  } finally {
    await setup.close();
  }
}

interface Setup {
  keelDb: Db;
  kysely: Kysely<Tables>;
  rawTransaction: (fn: (client: OutboxExecutor) => Promise<void>) => Promise<void>;
  close: () => Promise<void>;
}

async function onServer(url: string, schema: string): Promise<Setup> {
  const keelDb = await openPgDb({ url, schema });
  const pool = new pg.Pool({ connectionString: url, options: `-c search_path=${schema}`, max: 2 });
  const kysely = new Kysely<Tables>({ dialect: new PostgresDialect({ pool }) });
  return {
    keelDb,
    kysely,
    rawTransaction: async (fn) => {
      const client = await pool.connect();
      try {
        await client.query('BEGIN');
        await fn(client);
        await client.query('COMMIT');
      } catch (error) {
        await client.query('ROLLBACK');
        throw error;
      } finally {
        client.release();
      }
    },
    close: async () => {
      await kysely.destroy(); // ends the pool
      await keelDb.close();
    },
  };
}

async function embedded(given: PGlite | undefined): Promise<Setup> {
  const pglite = given ?? new PGlite();
  const keelDb = await openPgliteDb({ pglite });
  const kysely = new Kysely<Tables>({ dialect: new PostgresDialect({ pool: pglitePool(pglite) }) });
  return {
    keelDb,
    kysely,
    // A PGlite transaction has query(sql, params): it fits as it is.
    rawTransaction: (fn) => pglite.transaction((tx) => fn(tx)),
    close: async () => {
      await kysely.destroy();
      await keelDb.close();
      if (given === undefined) await pglite.close();
    },
  };
}

/** Kysely's Postgres dialect over one PGlite instance (one session: fine for one caller at a time). */
function pglitePool(pglite: PGlite): PostgresPool {
  const client = {
    query: async (sql: string, parameters: readonly unknown[]) => {
      const result = await pglite.query(sql, [...parameters]);
      const command = /^\s*(\w+)/.exec(sql)?.[1]?.toUpperCase() ?? '';
      return { command, rowCount: result.affectedRows ?? result.rows.length, rows: result.rows };
    },
    release: () => undefined,
  };
  return {
    connect: async () => client as unknown as Awaited<ReturnType<PostgresPool['connect']>>,
    end: async () => undefined,
  };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const url = process.env.DATABASE_URL;
  // On a server, a schema of the example's own, emptied first so each run starts afresh.
  const schema = 'keel_example_03';
  if (url !== undefined) {
    const server = await openPgDb({ url });
    await server.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    await server.close();
  }
  await runExample({
    log: (line) => console.log(line),
    target: url === undefined ? { kind: 'pglite' } : { kind: 'pg', url, schema },
  });
}
