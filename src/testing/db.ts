import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { PGlite } from '@electric-sql/pglite';
import type { Db, QueryResult, Row, TransactionOptions, Tx, Unlisten } from '../db/db.ts';
import { quoteIdentifier } from '../db/identifiers.ts';
import { defaultDatabaseUrl, preparedStatementsFromEnv } from '../db/open-db.ts';
import { openPgDb } from '../db/pg-db.ts';
import { openPgliteDb, type PgliteDb, type PgliteDbOptions } from '../db/pglite-db.ts';
import { loadPglite } from '../db/pglite-module.ts';
import { InvalidArgumentError, KeelError, isKeelError } from '../errors/index.ts';
import { systemClock, type TimerHandle } from '../time/index.ts';
import { discardPgliteTemplate, pgliteTemplate } from './pglite-template.ts';
import { trackStatement, trackTransaction } from './statements-in-flight.ts';

/** Runs `open` from the cached initdb template; a template that fails is discarded and initdb runs instead. */
async function fromTemplate<T>(open: (template: Blob | undefined) => Promise<T>): Promise<T> {
  let template: Blob;
  try {
    template = await pgliteTemplate();
  } catch {
    return open(undefined);
  }
  try {
    return await open(template);
  } catch (error) {
    // A directory in use is not the template's fault.
    if (isKeelError(error) && error.details?.lockFile !== undefined) throw error;
    await discardPgliteTemplate();
    return open(undefined);
  }
}

export type TestDbBackend = 'pglite' | 'pg';

export interface TestDbOptions {
  /** Which database. Default: `KEEL_DB` from `env`, else `pglite`. */
  backend?: TestDbBackend;
  /**
   * PGlite only. By default every test database of a test file is a schema in one shared in-memory
   * PGlite instance (a fresh instance costs about 2 s of initdb). `true` gives this one an instance of
   * its own: for tests that close the instance, or measure it alone.
   */
  isolated?: boolean;
  /** Start of the generated schema name. Default `test`. */
  schemaPrefix?: string;
  /** pg only: most pooled connections. Default 5. */
  poolSize?: number;
  /**
   * pg only: refuse the Db's own `query`/`transaction` inside its transaction callbacks
   * (`PgDbOptions.checkNestedUse`). Default true, unlike production: a test suite is where the
   * mistake should surface. Benchmarks of what production runs turn it off. PGlite always checks.
   */
  checkNestedUse?: boolean;
  /**
   * Count this database's statements in flight, so that `advanceUntil` moves a manual clock only
   * between them. Default true; benchmarks turn it off (a closure and a proxy per statement).
   */
  trackStatements?: boolean;
  /** Where `KEEL_DB` and `DATABASE_URL` are read. Default `process.env`. */
  env?: Readonly<Record<string, string | undefined>>;
}

/** A `Db` in a schema of its own. `close()` (or `await using`) drops the schema and closes the connections. */
export interface TestDb extends Db, AsyncDisposable {
  readonly backend: TestDbBackend;
  /** The Db underneath (`PgliteDb` or `PgDb`), for tests of backend-specific behaviour. */
  readonly inner: Db;
}

/** The backend the suite runs on: `KEEL_DB=pglite|pg`, default `pglite`. */
export function testDbBackend(
  env: Readonly<Record<string, string | undefined>> = process.env,
): TestDbBackend {
  const value = env.KEEL_DB?.trim() ?? '';
  if (value === '' || value === 'pglite') return 'pglite';
  if (value === 'pg') return 'pg';
  throw new InvalidArgumentError('KEEL_DB', "'pglite' or 'pg'", value);
}

let schemaCounter = 0;

/** A schema name no other test, file or concurrent run uses: `<prefix>_<pid>_<n>_<random>`. */
export function uniqueSchemaName(prefix = 'test'): string {
  schemaCounter += 1;
  return `${prefix}_${process.pid}_${schemaCounter}_${randomBytes(4).toString('hex')}`.toLowerCase();
}

/**
 * A fresh, empty `Db` for one test, on the backend `KEEL_DB` chooses, in a schema of its own.
 *
 * ```ts
 * await using db = await createTestDb();
 * ```
 *
 * With `KEEL_DB=pg` and no server answering at `DATABASE_URL` (default the local
 * `postgres://postgres@127.0.0.1:5432/test`), it rejects with `KEEL_DB_UNAVAILABLE` naming
 * `PostgreSQL at host:port`: the suite asked for PostgreSQL, so a missing one fails, never skips.
 */
export async function createTestDb(options: TestDbOptions = {}): Promise<TestDb> {
  const env = options.env ?? process.env;
  const backend = options.backend ?? testDbBackend(env);
  const schema = uniqueSchemaName(options.schemaPrefix ?? 'test');
  const track = options.trackStatements ?? true;
  if (backend === 'pg') {
    const url = env.DATABASE_URL?.trim() || defaultDatabaseUrl;
    let db: Db;
    try {
      db = await openPgDb({
        url,
        schema,
        poolSize: options.poolSize ?? 5,
        applicationName: 'keel-test',
        // As for the app: KEEL_DB_PREPARED=off runs keel's hot statements unprepared (benchmarks compare).
        preparedStatements: preparedStatementsFromEnv(env),
        checkNestedUse: options.checkNestedUse ?? true,
      });
    } catch (error) {
      if (!isKeelError(error, 'KEEL_DB_UNAVAILABLE')) throw error;
      throw new KeelError(
        'KEEL_DB_UNAVAILABLE',
        `KEEL_DB=pg asks for PostgreSQL, and ${error.message}. Start it, or set DATABASE_URL to a server that runs`,
        { cause: error, details: error.details },
      );
    }
    return new SchemaScopedDb(db, backend, async () => undefined, track);
  }
  if (backend !== 'pglite') throw new InvalidArgumentError('backend', "'pglite' or 'pg'", backend);
  if (options.isolated === true) {
    const db = await fromTemplate((template) => openPgliteDb({ schema, template }));
    return new SchemaScopedDb(db, backend, async () => undefined, track);
  }
  const pglite = await sharedPglite.acquire();
  try {
    const db = await openPgliteDb({ pglite, schema });
    return new SchemaScopedDb(db, backend, () => sharedPglite.release(), track);
  } catch (error) {
    await sharedPglite.release();
    throw error;
  }
}

/**
 * One in-memory PGlite per test file (per module instance), shared by its test databases, each in
 * its own schema. Closed once no test database used it for a while, so a worker process that runs
 * several files does not accumulate instances.
 */
const sharedPglite = new (class {
  #instance: Promise<PGlite> | undefined;
  #users = 0;
  #idle: TimerHandle | undefined;

  acquire(): Promise<PGlite> {
    if (this.#idle !== undefined) systemClock.clearTimeout(this.#idle);
    this.#idle = undefined;
    this.#users += 1;
    this.#instance ??= fromTemplate(async (template) =>
      (await loadPglite()).PGlite.create(
        'memory://',
        template === undefined ? {} : { loadDataDir: template },
      ),
    );
    const instance = this.#instance;
    instance.catch(() => {
      if (this.#instance === instance) this.#instance = undefined;
    });
    return instance;
  }

  async release(): Promise<void> {
    this.#users -= 1;
    if (this.#users > 0 || this.#instance === undefined) return;
    const instance = this.#instance;
    this.#idle = systemClock.setTimeout(() => {
      if (this.#users > 0 || this.#instance !== instance) return;
      this.#instance = undefined;
      void instance.then((pglite) => pglite.close()).catch(() => undefined);
    }, 2000);
  }
})();

class SchemaScopedDb implements TestDb {
  readonly backend: TestDbBackend;
  readonly inner: Db;
  readonly #afterClose: () => Promise<void>;
  readonly #track: boolean;
  #closed: Promise<void> | undefined;

  constructor(inner: Db, backend: TestDbBackend, afterClose: () => Promise<void>, track: boolean) {
    this.inner = inner;
    this.backend = backend;
    this.#afterClose = afterClose;
    this.#track = track;
  }

  get dialect(): Db['dialect'] {
    return this.inner.dialect;
  }

  get schema(): string {
    return this.inner.schema;
  }

  query<R = Row>(sql: string, params?: readonly unknown[]): Promise<QueryResult<R>> {
    if (!this.#track) return this.inner.query<R>(sql, params);
    return trackStatement(() => this.inner.query<R>(sql, params));
  }

  transaction<T>(fn: (tx: Tx) => Promise<T>, options?: TransactionOptions): Promise<T> {
    if (!this.#track) return this.inner.transaction(fn, options);
    return trackTransaction((tracked) => this.inner.transaction(tracked, options), fn);
  }

  listen(channel: string, onNotify: (payload: string) => void): Promise<Unlisten> {
    return this.inner.listen(channel, onNotify);
  }

  /** Drops the schema, closes the connections. Idempotent. */
  close(): Promise<void> {
    this.#closed ??= (async () => {
      try {
        await this.inner.query(`DROP SCHEMA IF EXISTS ${quoteIdentifier(this.schema)} CASCADE`);
      } catch {
        // Closed already by the test, or the server went away: nothing left to drop from here.
      }
      await this.inner.close();
      await this.#afterClose();
    })();
    return this.#closed;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

/** A temporary directory for a file-backed PGlite; `remove()` (or `await using`) deletes it. */
export interface TempPgliteDir extends AsyncDisposable {
  readonly path: string;
  /** Opens a `PgliteDb` on this directory; close it before opening another on the same directory. */
  open(options?: Omit<PgliteDbOptions, 'dataDir' | 'pglite'>): Promise<PgliteDb>;
  remove(): Promise<void>;
}

/** For tests of durability: data that survives close and reopen, or a killed process. */
export async function createTempPgliteDir(prefix = 'keel-pglite-'): Promise<TempPgliteDir> {
  const dir = await mkdtemp(path.join(tmpdir(), prefix));
  const remove = (): Promise<void> => rm(dir, { recursive: true, force: true });
  return {
    path: dir,
    // The template only seeds a directory without a database; a reopen finds the data and keeps it.
    open: (options = {}) => fromTemplate((template) => openPgliteDb({ ...options, dataDir: dir, template })),
    remove,
    [Symbol.asyncDispose]: remove,
  };
}
