import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Meter } from '@opentelemetry/api';
import type { Logger } from 'pino';
import {
  dbConfigFromEnv,
  loadMigrations,
  migrate,
  openDb,
  type DbConfig,
  type Migration,
} from '../../../src/db/index.ts';
import { flagMigrations } from '../../../src/flags/index.ts';
import { idempotencyMigrations } from '../../../src/idempotency/index.ts';
import { pgQueueMigrations, pgStreamMigrations } from '../../../src/messaging/index.ts';
// The file of migrations alone: the Kafka client is loaded only when the shop runs on Kafka.
import { kafkaProjectionMigrations } from '../../../src/messaging/adapters/kafka/kafka-projection-schema.ts';
import { inboxMigrations, outboxMigrations } from '../../../src/outbox/index.ts';
import { sagaMigrations } from '../../../src/saga/index.ts';
import { scheduleMigrations } from '../../../src/schedule/index.ts';
import { systemClock, type Clock } from '../../../src/time/index.ts';
import { buildShop, type Shop, type ShopRole } from '../app.ts';
import { shopConfigFromEnv } from '../config.ts';
import { createLogger } from '../logger.ts';
import { brokerConfigFromEnv, type BrokerConfig } from './broker-config.ts';
import { openBroker } from './open-broker.ts';
import { openOrderStream } from './order-stream-config.ts';
import type { HttpPaymentProvider } from '../payments/http-payment-provider.ts';
import { paymentsFromEnv } from '../payments/payments-config.ts';

const migrationsDir = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'migrations');

/**
 * keel's own tables first (queue, stream and Kafka projection offsets, outbox, inbox, idempotency
 * keys, sagas, flags), then the shop's, in one ordered list.
 */
export async function shopMigrations(): Promise<Migration[]> {
  return [
    ...pgQueueMigrations,
    ...pgStreamMigrations,
    ...kafkaProjectionMigrations,
    ...outboxMigrations,
    ...inboxMigrations,
    ...idempotencyMigrations,
    ...sagaMigrations,
    ...flagMigrations,
    ...scheduleMigrations,
    ...(await loadMigrations(migrationsDir)),
  ];
}

export interface OpenShopOptions {
  env?: NodeJS.ProcessEnv;
  /** Roles when `KEEL_ROLES` is not set. Default: all. */
  roles?: readonly ShopRole[];
  /** Default: from the environment (embedded PGlite in `KEEL_DATA_DIR` unless `KEEL_DB=pg`). */
  db?: DbConfig;
  clock?: Clock;
  logger?: Logger;
  /** Where handler durations go (keel/observability); none when omitted. */
  meter?: Meter;
}

export interface OpenedShop {
  shop: Shop;
  db: DbConfig;
  /** Where the shop's queues run (`KEEL_BROKER`). */
  broker: BrokerConfig;
  /** With `KEEL_PAYMENTS_URL`: the client the saga charges through; `payments.breaker` is `{ name, state }`. */
  payments?: HttpPaymentProvider;
}

/**
 * The preset every entry point uses: reads the environment, opens the database (embedded PGlite
 * by default, a PostgreSQL server with `KEEL_DB=pg`), applies migrations, and builds the shop.
 * Starts nothing; the caller starts the shop.
 */
export async function openShop(options: OpenShopOptions = {}): Promise<OpenedShop> {
  const env = options.env ?? process.env;
  const config = shopConfigFromEnv(env, options.roles);
  const dbConfig = options.db ?? dbConfigFromEnv(env);
  const clock = options.clock ?? systemClock;
  const payments = paymentsFromEnv(env, clock);
  const brokerConfig = brokerConfigFromEnv(env);
  const db = await openDb(dbConfig);
  try {
    await migrate(db, await shopMigrations());
  } catch (error) {
    await db.close();
    throw error;
  }
  // A streaming standby for reads, on a server only: PGlite has no replicas.
  const replicaUrl = env.DATABASE_REPLICA_URL?.trim();
  const replica =
    replicaUrl && dbConfig.kind === 'pg'
      ? await openDb({ kind: 'pg', url: replicaUrl, ...(dbConfig.schema ? { schema: dbConfig.schema } : {}) })
      : undefined;
  // keel's queue in the shop's database by default; a broker's client is loaded only when named.
  const broker = brokerConfig.kind === 'postgres' ? undefined : await openBroker(brokerConfig, { db, clock });
  // On Kafka the order stream is a topic beside the queues; elsewhere it stays in the database.
  const orderStream = await openOrderStream(brokerConfig);
  const shop = buildShop(config, {
    db,
    clock,
    ...(broker ? { broker } : {}),
    orderStream,
    logger: options.logger ?? createLogger(),
    ...(options.meter ? { meter: options.meter } : {}),
    ...(replica ? { replica } : {}),
    ...(payments ? { payments } : {}),
  });
  return { shop, db: dbConfig, broker: brokerConfig, ...(payments ? { payments } : {}) };
}
