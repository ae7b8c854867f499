import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { pino } from 'pino';
import { defaultDatabaseUrl, migrate, openDb, type Db, type DbConfig } from '../../../src/db/index.ts';
import {
  createTempPgliteDir,
  sagaEnded,
  testDbBackend,
  trackedDb,
  uniqueSchemaName,
  type TempPgliteDir,
} from '../../../src/testing/index.ts';
import type { SagaInstance } from '../../../src/saga/index.ts';
import { systemClock, type Clock } from '../../../src/time/index.ts';
import { buildShop, type Shop, type ShopConfig, type ShopRole } from '../app.ts';
import { fulfilmentId } from '../application/fulfilment.ts';
import type { Payments } from '../application/payments.ts';
import { shopMigrations } from '../presets/open-shop.ts';
import type { Mailer } from '../notifications/mailer.ts';
import type { MessageBroker } from '../../../src/messaging/index.ts';
import type { OrderStream } from '../analytics/order-stream.ts';

/**
 * A place the shop's data lives that outlives one shop instance, on the backend the suite runs
 * on: a temporary PGlite directory, or a schema of its own on the PostgreSQL server. Opening it
 * twice is how the tests restart the app.
 */
export interface ShopStore extends AsyncDisposable {
  readonly config: DbConfig;
  /** Environment for a child process that should open this same store. */
  readonly env: Record<string, string>;
  open(): Promise<Db>;
  dispose(): Promise<void>;
}

export async function createShopStore(): Promise<ShopStore> {
  if (testDbBackend() === 'pg') {
    const url = process.env.DATABASE_URL?.trim() || defaultDatabaseUrl;
    const schema = uniqueSchemaName('shop');
    const config: DbConfig = { kind: 'pg', url, schema };
    const dispose = async (): Promise<void> => {
      const client = new pg.Client({ connectionString: url });
      await client.connect();
      await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      await client.end();
    };
    return {
      config,
      env: { KEEL_DB: 'pg', DATABASE_URL: url, KEEL_DB_SCHEMA: schema },
      open: () => openDb(config),
      dispose,
      [Symbol.asyncDispose]: dispose,
    };
  }
  const dir: TempPgliteDir = await createTempPgliteDir('keel-shop-');
  return {
    config: { kind: 'pglite', dataDir: dir.path },
    // KEEL_DATA_DIR/pglite is where dbConfigFromEnv looks; the temp dir is the PGlite dir itself.
    env: { KEEL_DB: 'pglite', KEEL_PGLITE_DIR: dir.path },
    open: () => dir.open(),
    dispose: () => dir.remove(),
    [Symbol.asyncDispose]: () => dir.remove(),
  };
}

export const testShopConfig = (roles: readonly ShopRole[]): ShopConfig => ({
  roles: new Set(roles),
  http: { port: 0, host: '127.0.0.1' },
  worker: { concurrency: 4, pollIntervalMs: 200, leaseMs: 5000 },
  relay: { pollIntervalMs: 200, batchSize: 100 },
  // Mail goes to a folder outside the checkout, one file per event id (tests that read mail pass a mailer).
  mail: { kind: 'mailbox', dir: path.join(tmpdir(), 'keel-test-mailbox'), from: 'shop <shop@shop.test>' },
});

/**
 * Opens the store, migrates, and builds (does not start) a shop with a silent logger; `payments`
 * builds the payment provider on the opened database in place of the shop's default. The shop's
 * database is tracked as a test database is, so `advanceUntil` waits for the shop's statements
 * between the steps of a manual clock.
 */
export async function openTestShop(
  store: ShopStore,
  roles: readonly ShopRole[] = ['worker', 'relay'],
  clock: Clock = systemClock,
  options: {
    payments?: (db: Db) => Payments;
    config?: Partial<ShopConfig>;
    mailer?: Mailer;
    /** The shop's broker, or how to build it on the opened database (keel's PostgreSQL queue, wrapped). */
    broker?: MessageBroker | ((db: Db) => MessageBroker);
    /** What the shop uses in place of the opened, migrated database: a view of it that fails on demand. */
    db?: (db: Db) => Db;
    /** Where the order stream lives; default keel's PostgreSQL stream in the store. */
    orderStream?: OrderStream;
  } = {},
): Promise<Shop> {
  const db = await store.open();
  await migrate(db, await shopMigrations());
  const payments = options.payments?.(db);
  const broker = typeof options.broker === 'function' ? options.broker(db) : options.broker;
  return buildShop(
    { ...testShopConfig(roles), ...options.config },
    {
      db: trackedDb(options.db?.(db) ?? db),
      clock,
      logger: pino({ level: 'silent' }),
      ...(payments === undefined ? {} : { payments }),
      ...(options.mailer === undefined ? {} : { mailer: options.mailer }),
      ...(broker === undefined ? {} : { broker }),
      ...(options.orderStream === undefined ? {} : { orderStream: options.orderStream }),
    },
  );
}

/**
 * Resolves with the order's fulfilment saga once it has ended (COMPLETED, COMPENSATED or
 * NEEDS_ATTENTION), from the shop's runner's events: no sleeping, no polling.
 */
export async function fulfilmentFinished(shop: Shop, orderId: string): Promise<SagaInstance> {
  if (shop.sagas === undefined) throw new Error('the shop runs no saga runner: give it the worker role');
  return sagaEnded(shop.sagas, shop.db, fulfilmentId(orderId));
}

/**
 * A view of `db` whose `close` does nothing: a second shop over the same PGlite must not close
 * it, as the first shop owns it.
 */
export function sharedDb(db: Db): Db {
  return new Proxy(db, {
    get(target, property, receiver) {
      if (property === 'close') return async () => undefined;
      const value: unknown = Reflect.get(target, property, receiver);
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
    },
  });
}
