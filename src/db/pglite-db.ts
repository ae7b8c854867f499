import { existsSync } from 'node:fs';
import path from 'node:path';
import type { PGlite, QueryOptions, Results } from '@electric-sql/pglite';
import { InvalidArgumentError, KeelError } from '../errors/index.ts';
import { withCallerStack } from './caller-stack.ts';
import { lockDataDir, type DataDirLock } from './data-dir-lock.ts';
import { loadPglite, type PgliteModule } from './pglite-module.ts';
import type { Db, QueryResult, Row, TransactionOptions, Tx, Unlisten } from './db.ts';
import { checkIdentifier, quoteIdentifier } from './identifiers.ts';
import { checkIsolation } from './isolation.ts';
import { SerialQueue } from './serial-queue.ts';
import {
  ScopedTx,
  assertOutsideTransaction,
  outsideTransactionScope,
  runInTransactionScope,
} from './transaction-scope.ts';
import { sendNotifications } from './notify-after-commit.ts';

export interface PgliteDbOptions {
  /**
   * Where the data lives: a directory (created if missing), or `memory://` for a database that
   * vanishes on close. Default `memory://`. Ignored when `pglite` is given.
   */
  dataDir?: string;
  /** The schema unqualified names resolve to; created if missing. Default `public`. */
  schema?: string;
  /**
   * A data directory tarball (`pglite.dumpDataDir('none')` of an empty database) to start a new
   * database from instead of running initdb, which costs about 2 s. Used only when `dataDir` holds
   * no database yet; an existing one is opened as it is. The test harness uses this.
   */
  template?: Blob;
  /**
   * An open PGlite instance to use instead of opening one. Several `PgliteDb`s may share one
   * instance, each with its own schema (the test harness does this: one instance per test file).
   * Closing such a `PgliteDb` leaves the instance open; its owner closes it.
   */
  pglite?: PGlite;
}

const INT8 = 20;
const INT8_ARRAY = 1016;
// node-postgres returns int8 (`count(*)`, bigserial) as a string; PGlite as a number. keel returns
// what pg returns, so code written against the embedded default behaves the same in production.
const JSON_OID = 114;
const JSONB_OID = 3802;

/**
 * node-postgres sends a JS array as a PostgreSQL array literal whatever the parameter's type, so an
 * array bound to a json/jsonb parameter fails there; PGlite would quietly send JSON. Refusing it
 * here makes code tested on the embedded default fail the way production would, with the fix.
 */
function serializeJson(value: unknown): string {
  if (Array.isArray(value)) {
    throw new InvalidArgumentError(
      'params',
      'JSON.stringify(array) for a json/jsonb parameter (node-postgres sends a bare array as a PostgreSQL array, which is not JSON)',
      value,
    );
  }
  return typeof value === 'string' ? value : JSON.stringify(value);
}

function queryOptionsOf({ types }: PgliteModule): QueryOptions {
  return {
    parsers: {
      [INT8]: (value: string) => value,
      [INT8_ARRAY]: (value: string): unknown =>
        types.arrayParser(value, (element: string) => element, INT8_ARRAY),
    },
    serializers: { [JSON_OID]: serializeJson, [JSONB_OID]: serializeJson },
  };
}

/** Set by the first `PgliteDb` to start, which loads PGlite: every query runs on one that did. */
let queryOptions: QueryOptions | undefined;

/**
 * One PGlite instance is one connection. Every `PgliteDb` over it goes through this FIFO lock, so
 * a query from outside a transaction waits until the transaction ends instead of running inside
 * it, and each `PgliteDb` can set its own `search_path` before it runs.
 */
class PgliteSession {
  readonly pglite: PGlite;
  /** The search_path last set on the instance, so it is only set again when another schema takes a turn. */
  searchPath: string | undefined;
  readonly #queue = new SerialQueue();

  constructor(pglite: PGlite) {
    this.pglite = pglite;
  }

  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    return this.#queue.run(fn);
  }
}

const sessions = new WeakMap<PGlite, PgliteSession>();

function sessionOf(pglite: PGlite): PgliteSession {
  let session = sessions.get(pglite);
  if (session === undefined) {
    session = new PgliteSession(pglite);
    sessions.set(pglite, session);
  }
  return session;
}

function holdsDatabase(directory: string): boolean {
  return existsSync(path.join(directory, 'PG_VERSION'));
}

/** What a `PgliteDb` that opened its instance must release on close. */
interface Owned {
  lock: DataDirLock | undefined;
}

type PgliteQueryable = Pick<PGlite, 'query' | 'exec'>;

/**
 * Runs one statement with parameters (extended protocol), or, like node-postgres, a script of
 * several statements when there are none (simple protocol); the result is the last statement's.
 */
async function run(
  on: PgliteQueryable,
  sql: string,
  params: readonly unknown[] | undefined,
): Promise<QueryResult> {
  try {
    if (params !== undefined && params.length > 0) {
      return toQueryResult(await on.query<Row>(sql, [...params], queryOptions));
    }
    const results = await on.exec(sql, queryOptions);
    const last = results.at(-1);
    return last === undefined ? { rows: [], rowCount: 0 } : toQueryResult(last);
  } catch (error) {
    throw withCallerStack(error);
  }
}

/** Whether a transaction still runs statements: not, once one failed and no savepoint undid it (25P02). */
async function stillUsable(on: PgliteQueryable): Promise<boolean> {
  try {
    await on.exec('SELECT 1', queryOptions);
    return true;
  } catch {
    return false;
  }
}

function toQueryResult(result: Results<Row>): QueryResult {
  // `rowCount` is the command tag's count (rows returned or changed), as node-postgres reports it;
  // `affectedRows` is the fallback for statements without a count.
  return { rows: result.rows, rowCount: result.rowCount ?? result.affectedRows ?? 0 };
}

/** The embedded `Db`: PostgreSQL compiled to WASM, in this process. */
export class PgliteDb implements Db {
  readonly dialect = 'pglite' as const;
  readonly schema: string;
  readonly #session: PgliteSession;
  /** Set when this PgliteDb opened the instance (and locked its directory); undefined when it joined one. */
  readonly #owned: Owned | undefined;
  #closed: Promise<void> | undefined;
  readonly #unlisteners = new Set<Unlisten>();

  private constructor(session: PgliteSession, schema: string, owned: Owned | undefined) {
    this.#session = session;
    this.schema = schema;
    this.#owned = owned;
  }

  /** Opens (or joins) a PGlite instance and creates the schema if it is missing. */
  static async open(options: PgliteDbOptions = {}): Promise<PgliteDb> {
    const schema = checkIdentifier('schema', options.schema ?? 'public');
    if (options.pglite !== undefined) return PgliteDb.#start(options.pglite, schema, undefined);
    const dataDir = options.dataDir ?? 'memory://';
    if (typeof dataDir !== 'string' || dataDir === '') {
      throw new InvalidArgumentError('dataDir', 'a directory path or "memory://"', dataDir);
    }
    const directory = dataDir.startsWith('memory://') ? undefined : dataDir.replace(/^file:\/\//, '');
    const lock = directory === undefined ? undefined : await lockDataDir(directory);
    let pglite: PGlite;
    try {
      const fresh = options.template !== undefined && (directory === undefined || !holdsDatabase(directory));
      const { PGlite } = await loadPglite();
      pglite = await PGlite.create(dataDir, fresh ? { loadDataDir: options.template } : {});
    } catch (cause) {
      await lock?.release();
      if (cause instanceof KeelError) throw cause;
      throw new KeelError('KEEL_DB_UNAVAILABLE', `PGlite could not open its data directory ${dataDir}`, {
        cause,
        details: { dataDir },
      });
    }
    return PgliteDb.#start(pglite, schema, { lock });
  }

  static async #start(pglite: PGlite, schema: string, owned: Owned | undefined): Promise<PgliteDb> {
    queryOptions ??= queryOptionsOf(await loadPglite());
    const db = new PgliteDb(sessionOf(pglite), schema, owned);
    try {
      await db.#session.exclusive(async () => {
        await pglite.exec(`CREATE SCHEMA IF NOT EXISTS ${quoteIdentifier(schema)}`);
        await db.#useSchema();
      });
    } catch (error) {
      if (owned !== undefined) {
        await pglite.close();
        await owned.lock?.release();
      }
      throw error;
    }
    return db;
  }

  /** The PGlite instance underneath, for what the `Db` interface does not cover (dumps, extensions). */
  get pglite(): PGlite {
    return this.#session.pglite;
  }

  async query<R = Row>(sql: string, params?: readonly unknown[]): Promise<QueryResult<R>> {
    this.#assertUsable('query');
    const result = await this.#session.exclusive(async () => {
      await this.#useSchema();
      return run(this.#session.pglite, sql, params);
    });
    return result as QueryResult<R>;
  }

  async transaction<T>(fn: (tx: Tx) => Promise<T>, options: TransactionOptions = {}): Promise<T> {
    this.#assertUsable('transaction');
    const isolation = checkIsolation(options.isolation);
    return this.#session.exclusive(async () => {
      await this.#useSchema();
      let tx: ScopedTx | undefined;
      const committing = this.#session.pglite.transaction(async (ptx) => {
        // PGlite is a single session: every isolation level behaves as serializable would, but
        // SET TRANSACTION still validates the request the same way the server does.
        if (isolation !== undefined)
          await ptx.query(`SET TRANSACTION ISOLATION LEVEL ${isolation.toUpperCase()}`);
        tx = new ScopedTx((sql, params) => run(ptx, sql, params));
        const scoped = tx;
        try {
          const value = await runInTransactionScope(this.#session, scoped, () => fn(scoped));
          const failure = await scoped.unansweredFailure();
          // As on a server: it commits only if the failure was undone by a rollback to a savepoint
          // made before it, and a statement then still runs.
          if (failure !== undefined && !(await stillUsable(ptx))) throw failure;
          return value;
        } catch (error) {
          scoped.dropReadsAfterCommit();
          throw await scoped.causeOf(error);
        } finally {
          scoped.end();
        }
      });
      let result: T;
      try {
        result = await committing;
      } catch (error) {
        // The COMMIT itself failed (a deferred constraint): the reads queued for after it get nothing.
        tx?.dropReadsAfterCommit();
        throw error;
      }
      if (tx !== undefined) {
        await tx.sendReadsAfterCommit(
          (sql, params) => run(this.#session.pglite, sql, params),
          Promise.resolve(true),
        );
        await sendNotifications((sql, params) => run(this.#session.pglite, sql, params), tx.notifications);
      }
      return result;
    });
  }

  async listen(channel: string, onNotify: (payload: string) => void): Promise<Unlisten> {
    this.#assertUsable('listen');
    checkIdentifier('channel', channel);
    const deliver = (payload: string): void => {
      outsideTransactionScope(() => {
        try {
          onNotify(payload);
        } catch (error) {
          // A throwing listener is a bug in the listener; surface it instead of breaking the query that delivered the notification.
          queueMicrotask(() => {
            throw error;
          });
        }
      });
    };
    const pglite = this.#session.pglite;
    const unlisten = await this.#session.exclusive(() => pglite.listen(channel, deliver));
    let done = false;
    const stop = async (): Promise<void> => {
      if (done) return;
      done = true;
      this.#unlisteners.delete(stop);
      if (pglite.closed) return;
      await this.#session.exclusive(() => unlisten());
    };
    this.#unlisteners.add(stop);
    return stop;
  }

  /**
   * Stops this Db's listeners, waits for queued work, then closes the instance if this `PgliteDb`
   * opened it (and releases its data directory). Idempotent.
   * Calls made after `close()` reject with `KEEL_SERVICE_STATE`.
   */
  close(): Promise<void> {
    this.#closed ??= (async () => {
      // On a shared instance the listeners would outlive this Db and hear the next user's notifications.
      for (const stop of [...this.#unlisteners]) await stop();
      await this.#session.exclusive(async () => {
        if (this.#owned === undefined) return;
        if (!this.#session.pglite.closed) await this.#session.pglite.close();
        await this.#owned.lock?.release();
      });
    })();
    return this.#closed;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  #assertUsable(method: string): void {
    if (this.#closed !== undefined || this.#session.pglite.closed) {
      throw new KeelError('KEEL_SERVICE_STATE', `db.${method}() was called after the database was closed`);
    }
    assertOutsideTransaction(this.#session, method);
  }

  async #useSchema(): Promise<void> {
    if (this.#session.searchPath === this.schema) return;
    await this.#session.pglite.exec(`SET search_path TO ${quoteIdentifier(this.schema)}`);
    this.#session.searchPath = this.schema;
  }
}

/** Opens a PGlite-backed `Db`; see `PgliteDbOptions`. */
export function openPgliteDb(options: PgliteDbOptions = {}): Promise<PgliteDb> {
  return PgliteDb.open(options);
}
