export type {
  Db,
  DbDialect,
  IsolationLevel,
  Queryable,
  QueryResult,
  Row,
  TransactionOptions,
  Tx,
  Unlisten,
} from './db.ts';
export { openDb, dbConfigFromEnv, defaultDatabaseUrl, defaultDataDir, type DbConfig } from './open-db.ts';
export { PgliteDb, openPgliteDb, type PgliteDbOptions } from './pglite-db.ts';
export { PgDb, openPgDb, type PgDbOptions } from './pg-db.ts';
export { migrate, type MigrateOptions, type MigrationReport, type MigrationSource } from './migrations.ts';
export { loadMigrations, migrationChecksum, type Migration } from './migration-files.ts';
export { canNotifyAfterCommit, type NotifiesAfterCommit } from './notify-after-commit.ts';
export {
  canSendWithoutWaiting,
  writeWithoutWaiting,
  type SendsWithoutWaiting,
} from './send-without-waiting.ts';
export { canReadAfterCommit, type ReadsAfterCommit } from './read-after-commit.ts';
export { preparedStatement } from './prepared-statements.ts';
