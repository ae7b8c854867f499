/** A row as the driver returns it: column name to value. */
export type Row = Record<string, unknown>;

export interface QueryResult<R = Row> {
  rows: R[];
  /**
   * The count of the statement's command tag, as node-postgres reports it on both backends: rows
   * returned by a SELECT, rows inserted, updated or deleted by DML; 0 for statements without a
   * count (DDL, SHOW).
   */
  rowCount: number;
}

/**
 * Anything that runs SQL with `$1` parameters: a `Db`, a transaction, a pg `PoolClient`,
 * a PGlite transaction. keel's outbox and inbox take this, so no ORM is a dependency.
 */
export interface Queryable {
  /**
   * Runs `sql`. With parameters it is one statement (`$1`, `$2`, ...); without (or with `[]`) it may
   * be a script of several statements, and the result is the last one's.
   *
   * Values come back as node-postgres returns them, on PGlite too: int8 (`count(*)`, bigserial) and
   * numeric as strings, json/jsonb parsed, timestamps as `Date`. A failed statement rejects with
   * the driver's error, whose `code` is the SQLSTATE (`23505` unique violation, ...); a lost
   * connection rejects with `KEEL_DB_UNAVAILABLE`.
   */
  query<R = Row>(sql: string, params?: readonly unknown[]): Promise<QueryResult<R>>;
}

/**
 * A transaction handle: valid only inside the callback that received it; used after the callback
 * settled, it rejects with `KEEL_SERVICE_STATE`.
 */
export type Tx = Queryable;

export type IsolationLevel = 'read committed' | 'repeatable read' | 'serializable';

export interface TransactionOptions {
  isolation?: IsolationLevel;
}

/** Stops a LISTEN registration. */
export type Unlisten = () => Promise<void>;

export type DbDialect = 'pglite' | 'pg';

/**
 * keel's one database interface over PostgreSQL: PGlite in-process for the embedded default,
 * a node-postgres pool in production. Same SQL on both.
 *
 * Concurrency: `query` and `transaction` may be called concurrently. On PGlite they are
 * serialised (one connection): a query from outside waits until an open transaction ends, it never
 * runs inside it, so a long transaction stalls every other caller. On pg each transaction holds
 * one pooled connection.
 *
 * Inside a `transaction` callback, use the `tx` it received: calling `query`/`transaction` of the
 * same Db there rejects with `KEEL_DB_IN_TRANSACTION` on PGlite (it would wait for itself
 * forever) and on pg when `checkNestedUse` is on, as in `createTestDb` (otherwise it runs outside
 * the transaction, on another connection).
 */
export interface Db extends Queryable {
  readonly dialect: DbDialect;
  /** The schema every unqualified name resolves to (`search_path`). */
  readonly schema: string;
  /**
   * Runs `fn` in a transaction: commits when it resolves, rolls back when it throws (and
   * rethrows). Resolving means the commit is durable. If a statement failed inside and `fn`
   * swallowed the error, the server rolls back at COMMIT: that rejects with SQLSTATE `25P02`,
   * never reports success.
   */
  transaction<T>(fn: (tx: Tx) => Promise<T>, options?: TransactionOptions): Promise<T>;
  /**
   * LISTENs on `channel` (a lower-case identifier, else `KEEL_INVALID_ARGUMENT`); `onNotify` gets
   * each NOTIFY payload, a NOTIFY sent in a transaction only after its commit. Used for wake-ups
   * only: a notification can be lost (a reconnect), so listeners always pair it with polling.
   * Channels are database-wide, not per schema: a notification may come from another schema's
   * user, so treat it as a hint. `onNotify` must not throw (a throw is reported as uncaught).
   */
  listen(channel: string, onNotify: (payload: string) => void): Promise<Unlisten>;
  /**
   * Closes connections after queued work finished; idempotent. Calls after close reject with
   * `KEEL_SERVICE_STATE`.
   */
  close(): Promise<void>;
}
