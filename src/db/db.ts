/** A row as the driver returns it: column name to value. */
export type Row = Record<string, unknown>;

export interface QueryResult<R = Row> {
  rows: R[];
  /** Rows inserted, updated or deleted by the statement; 0 for a plain SELECT on PGlite. */
  rowCount: number;
}

/**
 * Anything that runs SQL with `$1` parameters: a `Db`, a transaction, a pg `PoolClient`,
 * a PGlite transaction. keel's outbox and inbox take this, so no ORM is a dependency.
 */
export interface Queryable {
  query<R = Row>(sql: string, params?: readonly unknown[]): Promise<QueryResult<R>>;
}

/** A transaction handle: valid only inside the callback that received it. */
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
 * serialised (one connection); on pg each transaction holds one pooled connection.
 */
export interface Db extends Queryable {
  readonly dialect: DbDialect;
  /** The schema every unqualified name resolves to (`search_path`). */
  readonly schema: string;
  /**
   * Runs `fn` in a transaction: commits when it resolves, rolls back when it throws (and
   * rethrows). Resolving means the commit is durable.
   */
  transaction<T>(fn: (tx: Tx) => Promise<T>, options?: TransactionOptions): Promise<T>;
  /**
   * LISTENs on `channel`; `onNotify` gets each NOTIFY payload. Used for wake-ups only: a
   * notification can be lost (a reconnect), so listeners always pair it with polling.
   */
  listen(channel: string, onNotify: (payload: string) => void): Promise<Unlisten>;
  /** Closes connections. Queries after close reject. */
  close(): Promise<void>;
}
