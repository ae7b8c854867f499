import path from 'node:path';
import { InvalidArgumentError } from '../errors/index.ts';
import type { Db } from './db.ts';
import { checkIdentifier } from './identifiers.ts';
import { openPgDb, type PgDbOptions } from './pg-db.ts';
import { openPgliteDb } from './pglite-db.ts';

/** Which database to open. Both kinds speak the same PostgreSQL. */
export type DbConfig =
  | {
      kind: 'pglite';
      /** A data directory (created if missing); omitted or `memory://` for in-memory. */
      dataDir?: string;
      /** Default `public`. */
      schema?: string;
    }
  | ({ kind: 'pg'; url: string; schema?: string } & Omit<PgDbOptions, 'url' | 'schema'>);

/** The server `KEEL_DB=pg` reaches when `DATABASE_URL` is not set: the local PostgreSQL, trust auth. */
export const defaultDatabaseUrl = 'postgres://postgres@127.0.0.1:5432/test';
/** Where the embedded database lives when `KEEL_DATA_DIR` is not set. */
export const defaultDataDir = './.keel';

/** Opens the database `config` names: PGlite in-process or a node-postgres pool. */
export async function openDb(config: DbConfig): Promise<Db> {
  if (config === null || typeof config !== 'object')
    throw new InvalidArgumentError('config', 'an object', config);
  switch (config.kind) {
    case 'pglite':
      return openPgliteDb({ dataDir: config.dataDir ?? 'memory://', schema: config.schema ?? 'public' });
    case 'pg': {
      const { kind: _kind, ...options } = config;
      return openPgDb(options);
    }
    default:
      throw new InvalidArgumentError('config.kind', "'pglite' or 'pg'", (config as { kind?: unknown }).kind);
  }
}

/**
 * Reads the database configuration from the environment (12-factor):
 *
 * - `KEEL_DB`: `pglite` (default) or `pg`.
 * - `KEEL_DATA_DIR`: the application's data directory, default `./.keel`; PGlite keeps its files in
 *   `<KEEL_DATA_DIR>/pglite`. `memory://` keeps everything in memory.
 * - `DATABASE_URL`: for `pg`, default `postgres://postgres@127.0.0.1:5432/test`.
 * - `KEEL_DB_SCHEMA`: the schema, default `public`.
 * - `KEEL_DB_PREPARED`: for `pg`, `on` (default) or `off`: keel's hot statements as named prepared
 *   statements (`PgDbOptions.preparedStatements`); `off` behind a pooler that cannot keep them.
 * - `KEEL_DB_POOL_SIZE`, `KEEL_DB_POOL_MIN`: for `pg`, the most connections the pool opens
 *   (default 10) and how many it keeps open while idle (default 0).
 * - `KEEL_DB_QUERY_TIMEOUT_MS`: for `pg`, the longest a statement may take
 *   (`PgDbOptions.queryTimeoutMs`); default none.
 *
 * A bad value fails with `KEEL_INVALID_ARGUMENT` naming the variable.
 */
export function dbConfigFromEnv(env: Readonly<Record<string, string | undefined>> = process.env): DbConfig {
  const kind = nonEmpty(env.KEEL_DB) ?? 'pglite';
  const schemaValue = nonEmpty(env.KEEL_DB_SCHEMA) ?? 'public';
  const schema = checkIdentifier('KEEL_DB_SCHEMA', schemaValue);
  if (kind === 'pglite') {
    const dataDir = nonEmpty(env.KEEL_DATA_DIR) ?? defaultDataDir;
    return { kind, dataDir: dataDir === 'memory://' ? dataDir : path.join(dataDir, 'pglite'), schema };
  }
  if (kind === 'pg') {
    const url = nonEmpty(env.DATABASE_URL) ?? defaultDatabaseUrl;
    checkDatabaseUrl(url);
    const poolSize = countFromEnv(env, 'KEEL_DB_POOL_SIZE', 1);
    const poolMin = countFromEnv(env, 'KEEL_DB_POOL_MIN', 0);
    const queryTimeoutMs = countFromEnv(env, 'KEEL_DB_QUERY_TIMEOUT_MS', 1);
    if (poolMin !== undefined && poolMin > (poolSize ?? 10))
      throw new InvalidArgumentError(
        'KEEL_DB_POOL_MIN',
        `at most the pool size (${poolSize ?? 10})`,
        poolMin,
      );
    return {
      kind,
      url,
      schema,
      preparedStatements: preparedStatementsFromEnv(env),
      ...(poolSize === undefined ? {} : { poolSize }),
      ...(poolMin === undefined ? {} : { poolMin }),
      ...(queryTimeoutMs === undefined ? {} : { queryTimeoutMs }),
    };
  }
  throw new InvalidArgumentError('KEEL_DB', "'pglite' or 'pg'", kind);
}

/** `KEEL_DB_PREPARED`: `on` (default) or `off`; anything else fails naming the variable. */
export function preparedStatementsFromEnv(env: Readonly<Record<string, string | undefined>>): boolean {
  const prepared = nonEmpty(env.KEEL_DB_PREPARED) ?? 'on';
  if (prepared !== 'on' && prepared !== 'off')
    throw new InvalidArgumentError('KEEL_DB_PREPARED', "'on' or 'off'", prepared);
  return prepared === 'on';
}

/** A whole number of at least `least` in `name`, or undefined when it is not set. */
function countFromEnv(
  env: Readonly<Record<string, string | undefined>>,
  name: string,
  least: number,
): number | undefined {
  const text = nonEmpty(env[name]);
  if (text === undefined) return undefined;
  const value = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(value) || value < least)
    throw new InvalidArgumentError(name, `a whole number of at least ${least}`, text);
  return value;
}

function nonEmpty(value: string | undefined): string | undefined {
  const trimmed = value?.trim();
  return trimmed === undefined || trimmed === '' ? undefined : trimmed;
}

function checkDatabaseUrl(url: string): void {
  let parsed: URL | undefined;
  try {
    parsed = new URL(url);
  } catch {
    parsed = undefined;
  }
  if (parsed === undefined || (parsed.protocol !== 'postgres:' && parsed.protocol !== 'postgresql:')) {
    // The value is not echoed: a connection string may carry a password.
    throw new InvalidArgumentError('DATABASE_URL', 'a postgres://user@host:port/database connection string');
  }
}
