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
import { pgQueueMigrations } from '../../../src/messaging/index.ts';
import { inboxMigrations, outboxMigrations } from '../../../src/outbox/index.ts';
import { sagaMigrations } from '../../../src/saga/index.ts';
import { systemClock, type Clock } from '../../../src/time/index.ts';
import { buildShop, type Shop, type ShopRole } from '../app.ts';
import { shopConfigFromEnv } from '../config.ts';
import { createLogger } from '../logger.ts';

const migrationsDir = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'migrations');

/** keel's own tables first (queue, outbox, inbox, idempotency keys, sagas, flags), then the shop's, in one ordered list. */
export async function shopMigrations(): Promise<Migration[]> {
  return [
    ...pgQueueMigrations,
    ...outboxMigrations,
    ...inboxMigrations,
    ...idempotencyMigrations,
    ...sagaMigrations,
    ...flagMigrations,
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
  const shop = buildShop(config, {
    db,
    clock: options.clock ?? systemClock,
    logger: options.logger ?? createLogger(),
    ...(options.meter ? { meter: options.meter } : {}),
    ...(replica ? { replica } : {}),
  });
  return { shop, db: dbConfig };
}
