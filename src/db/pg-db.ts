import pg from 'pg';
import { InvalidArgumentError, KeelError } from '../errors/index.ts';
import { systemClock, type Clock } from '../time/index.ts';
import type { Db, QueryResult, Row, TransactionOptions, Tx, Unlisten } from './db.ts';
import { checkIdentifier, quoteIdentifier } from './identifiers.ts';
import { withCallerStack } from './caller-stack.ts';
import { commitWithRead, type CommitAnswer } from './commit-with-read.ts';
import { checkIsolation } from './isolation.ts';
import { PgListener } from './pg-listener.ts';
import {
  abortedTransactionError,
  describeServer,
  isConnectionError,
  isReadTimeout,
  isStatementTimeout,
  unavailable,
  type ServerAddress,
} from './pg-errors.ts';
import { sendNotifications } from './notify-after-commit.ts';
import { preparedStatementName } from './prepared-statements.ts';
import { PgTransactionSender } from './pg-transaction-sender.ts';
import { ScopedTx, assertOutsideTransaction, runInTransactionScope } from './transaction-scope.ts';

export interface PgDbOptions {
  /** `postgres://user:password@host:port/database`. Required. */
  url: string;
  /** The schema unqualified names resolve to, on every pooled connection; created if missing. Default `public`. */
  schema?: string;
  /** Most connections the pool opens. Default 10. */
  poolSize?: number;
  /**
   * Connections the pool keeps open however long they sit idle, once opened. Default 0: every
   * idle connection closes after `idleTimeoutMs`. A process whose statements come minutes
   * apart (a scheduler's per-minute tick) otherwise opens a connection for each; 1 keeps one warm.
   */
  poolMin?: number;
  /** How long a pooled connection above `poolMin` stays open idle. Default 10 000 ms. */
  idleTimeoutMs?: number;
  /** How long opening one connection may take before it fails with `KEEL_DB_UNAVAILABLE`. Default 5000 ms. */
  connectTimeoutMs?: number;
  /**
   * The longest a statement may take. The server cancels one that runs longer (its
   * `statement_timeout`): it fails with `KEEL_TIMEOUT`, and a transaction rolls back. A server
   * that does not answer at all — a network that drops packets without a reset, a host that hangs
   * — cannot cancel anything, and would hold the statement and its pooled connection until TCP
   * gives up (about fifteen minutes on Linux): one second past the bound keel gives up on the
   * connection itself, and the statement, with those sent behind it on that connection, fails
   * with `KEEL_DB_UNAVAILABLE`. Set it above the longest statement the application runs
   * (migrations and batch jobs included), or give those a Db of their own. Default: none.
   */
  queryTimeoutMs?: number;
  /** Times the listener's reconnect backoff. Default the system clock. */
  clock?: Clock;
  /** First and longest wait between reconnect attempts of the listener (doubling). Default 100 ms and 5000 ms. */
  listenerBackoff?: { initialMs?: number; maxMs?: number };
  /** `application_name` on every connection, visible in `pg_stat_activity`. Default `keel`. */
  applicationName?: string;
  /**
   * Send keel's hot statements (registered with `preparedStatement`) as named prepared
   * statements, parsed and planned once per connection. Default true. Turn it off behind a
   * connection pooler in transaction mode that does not track prepared statements (PgBouncer
   * before 1.21, or with `max_prepared_statements = 0`).
   */
  preparedStatements?: boolean;
  /**
   * Refuse `query` and `transaction` of this Db called from inside one of its transaction
   * callbacks, with `KEEL_DB_IN_TRANSACTION`: on pg such a call runs on another connection,
   * outside the transaction. Default false. The check needs an `AsyncLocalStorage`, and on
   * Node 20 the first one used turns on promise hooks for the whole process: every promise
   * created from then on, by any code, pays for it (in bench/orders both endpoints in the
   * process served 15–25 % more requests a second without it). `createTestDb` turns it on, so
   * a test suite catches the mistake; PGlite always checks, since there the call would hang.
   */
  checkNestedUse?: boolean;
}

interface ResolvedPgDbOptions {
  url: string;
  schema: string;
  poolSize: number;
  poolMin: number;
  idleTimeoutMs: number;
  connectTimeoutMs: number;
  queryTimeoutMs: number | undefined;
  clock: Clock;
  backoffInitialMs: number;
  backoffMaxMs: number;
  applicationName: string;
  preparedStatements: boolean;
  checkNestedUse: boolean;
  server: ServerAddress;
}

function positiveInteger(field: string, value: unknown, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value <= 0) {
    throw new InvalidArgumentError(field, 'a positive integer', value);
  }
  return value;
}

function nonNegativeInteger(field: string, value: unknown, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0) {
    throw new InvalidArgumentError(field, 'a non-negative integer', value);
  }
  return value;
}

function booleanOption(field: string, value: unknown, fallback: boolean): boolean {
  if (value === undefined) return fallback;
  if (typeof value !== 'boolean') throw new InvalidArgumentError(field, 'true or false', value);
  return value;
}

function resolveOptions(options: PgDbOptions): ResolvedPgDbOptions {
  if (typeof options.url !== 'string' || options.url === '') {
    throw new KeelError('KEEL_INVALID_ARGUMENT', 'url: expected a postgres:// connection string', {
      details: { field: 'url' },
    });
  }
  const poolSize = positiveInteger('poolSize', options.poolSize, 10);
  const poolMin = nonNegativeInteger('poolMin', options.poolMin, 0);
  if (poolMin > poolSize)
    throw new InvalidArgumentError('poolMin', `at most poolSize (${poolSize})`, poolMin);
  return {
    url: options.url,
    schema: checkIdentifier('schema', options.schema ?? 'public'),
    poolSize,
    poolMin,
    idleTimeoutMs: positiveInteger('idleTimeoutMs', options.idleTimeoutMs, 10_000),
    connectTimeoutMs: positiveInteger('connectTimeoutMs', options.connectTimeoutMs, 5000),
    queryTimeoutMs:
      options.queryTimeoutMs === undefined
        ? undefined
        : positiveInteger('queryTimeoutMs', options.queryTimeoutMs, 0),
    clock: options.clock ?? systemClock,
    backoffInitialMs: positiveInteger('listenerBackoff.initialMs', options.listenerBackoff?.initialMs, 100),
    backoffMaxMs: positiveInteger('listenerBackoff.maxMs', options.listenerBackoff?.maxMs, 5000),
    applicationName: options.applicationName ?? 'keel',
    preparedStatements: booleanOption('preparedStatements', options.preparedStatements, true),
    checkNestedUse: booleanOption('checkNestedUse', options.checkNestedUse, false),
    server: describeServer(options.url),
  };
}

/**
 * Runs one statement on the pool; a registered one with parameters goes as its named prepared
 * statement when `prepare` is on. Like PGlite, a script of several statements answers with its
 * last statement's result.
 */
function run(
  pool: pg.Pool,
  sql: string,
  params: readonly unknown[] | undefined,
  prepare: boolean,
): Promise<QueryResult> {
  const name = prepare && params !== undefined ? preparedStatementName(sql) : undefined;
  return answer(
    name === undefined
      ? pool.query(sql, params as unknown[] | undefined)
      : pool.query({ name, text: sql, values: params as unknown[] }),
  );
}

/** A statement's answer as keel's `QueryResult` (a script's: its last statement's); its failure with the caller's stack. */
async function answer(sent: Promise<pg.QueryResult | pg.QueryResult[]>): Promise<QueryResult> {
  let result: pg.QueryResult | pg.QueryResult[];
  try {
    result = await sent;
  } catch (error) {
    throw withCallerStack(error);
  }
  const last = Array.isArray(result) ? result.at(-1) : result;
  if (last === undefined) return { rows: [], rowCount: 0 };
  return { rows: last.rows as Row[], rowCount: last.rowCount ?? 0 };
}

/** Where a checked-out connection's 'error' goes: the transaction holding it. */
const checkedOutErrors = new WeakMap<pg.PoolClient, (error: Error) => void>();

function transactionAborted(): Error {
  // The same error PGlite raises when COMMIT turns into ROLLBACK: a statement failed inside the
  // transaction and the callback swallowed it. The server silently rolls back; keel refuses to
  // report that as a commit.
  return abortedTransactionError('Transaction was rolled back instead of committed');
}

/**
 * How long past `queryTimeoutMs` keel waits for a statement's answer before it gives up on the
 * connection: the server cancels at the bound, and its answer saying so needs a moment to arrive.
 */
const unansweredGraceMs = 1000;

/** The production `Db`: a node-postgres pool against a PostgreSQL server. */
export class PgDb implements Db {
  readonly dialect = 'pg' as const;
  readonly schema: string;
  readonly #pool: pg.Pool;
  readonly #listener: PgListener;
  readonly #options: ResolvedPgDbOptions;
  #closed: Promise<void> | undefined;
  readonly #pendingNotifications = new Map<string, { channel: string; payload: string }>();
  /** The running send of pending wake-ups, if any. */
  #flushing: Promise<void> | undefined;

  private constructor(pool: pg.Pool, options: ResolvedPgDbOptions) {
    this.#pool = pool;
    this.#options = options;
    this.schema = options.schema;
    this.#listener = new PgListener({
      connect: () => this.#newClient(`${options.applicationName}:listen`),
      clock: options.clock,
      backoffInitialMs: options.backoffInitialMs,
      backoffMaxMs: options.backoffMaxMs,
    });
  }

  /** Opens the pool, checks the server answers, and creates the schema if it is missing. */
  static async open(options: PgDbOptions): Promise<PgDb> {
    const resolved = resolveOptions(options);
    const pool = new pg.Pool({
      ...PgDb.#connectionConfig(resolved, resolved.applicationName),
      max: resolved.poolSize,
      min: resolved.poolMin,
      idleTimeoutMillis: resolved.idleTimeoutMs,
      // Queries go out as they are made, not after the previous answer: keel's transactions send
      // BEGIN with their first statement and writes nobody waits for with their COMMIT.
      pipeline: true,
      // Idle pooled connections never keep a process alive that has nothing else to do.
      allowExitOnIdle: true,
    });
    // An idle pooled connection that drops emits 'error' on the pool; unhandled, it kills the process.
    pool.on('error', () => undefined);
    // A checked-out one emits it on itself: one listener per connection for its whole life, which
    // tells the transaction holding it, instead of one added and removed per transaction.
    pool.on('connect', (client) => client.on('error', (error) => checkedOutErrors.get(client)?.(error)));
    const db = new PgDb(pool, resolved);
    try {
      await db.#createSchema();
    } catch (error) {
      await pool.end().catch(() => undefined);
      throw error;
    }
    return db;
  }

  static #connectionConfig(options: ResolvedPgDbOptions, applicationName: string): pg.ClientConfig {
    return {
      connectionString: options.url,
      connectionTimeoutMillis: options.connectTimeoutMs,
      // node-postgres' read timeout, for a server that cannot cancel: in pipeline mode it closes
      // the connection of a statement left unanswered, so what was sent behind it fails too.
      ...(options.queryTimeoutMs === undefined
        ? {}
        : { query_timeout: options.queryTimeoutMs + unansweredGraceMs }),
      // An idle connection to a host gone silent (the LISTEN connection above all) is found dead
      // by the kernel's keepalive probes instead of never.
      keepAlive: true,
      keepAliveInitialDelayMillis: 10_000,
      application_name: applicationName,
      // A startup parameter, so every connection the pool ever opens resolves names in the schema.
      options:
        `-c search_path=${options.schema}` +
        (options.queryTimeoutMs === undefined ? '' : ` -c statement_timeout=${options.queryTimeoutMs}`),
    };
  }

  async #createSchema(): Promise<void> {
    try {
      // Checked first: CREATE SCHEMA IF NOT EXISTS needs the CREATE privilege even when the schema
      // exists, which a production role often lacks.
      const { rowCount } = await this.#pool.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [
        this.schema,
      ]);
      if (rowCount === 0)
        await this.#pool.query(`CREATE SCHEMA IF NOT EXISTS ${quoteIdentifier(this.schema)}`);
    } catch (error) {
      // Two processes creating the same schema at once: one wins, the other sees a unique violation.
      if ((error as { code?: unknown }).code === '23505') return;
      throw this.#translate(error);
    }
  }

  async #newClient(applicationName: string): Promise<pg.Client> {
    const client = new pg.Client(PgDb.#connectionConfig(this.#options, applicationName));
    try {
      await client.connect();
    } catch (error) {
      await client.end().catch(() => undefined);
      throw unavailable(this.#options.server, error);
    }
    return client;
  }

  async query<R = Row>(sql: string, params?: readonly unknown[]): Promise<QueryResult<R>> {
    this.#assertUsable('query');
    try {
      return (await run(this.#pool, sql, params, this.#options.preparedStatements)) as QueryResult<R>;
    } catch (error) {
      throw this.#translate(error);
    }
  }

  async transaction<T>(fn: (tx: Tx) => Promise<T>, options: TransactionOptions = {}): Promise<T> {
    this.#assertUsable('transaction');
    const isolation = checkIsolation(options.isolation);
    let client: pg.PoolClient;
    try {
      client = await this.#pool.connect();
    } catch (error) {
      throw this.#translate(error);
    }
    let discard: Error | undefined;
    // A checked-out connection that drops emits 'error' on the client, not the pool. The query in
    // flight rejects anyway, so recording it is enough.
    checkedOutErrors.set(client, (error) => {
      discard ??= error;
    });
    try {
      // Pipelined: BEGIN travels with the first statements, behind one Sync with them, instead of
      // costing a round trip. Its answer is checked before the transaction reports anything.
      const sender = new PgTransactionSender(client, { prepare: this.#options.preparedStatements });
      const send = (sql: string, params?: readonly unknown[]): Promise<QueryResult> =>
        answer(sender.send(sql, params));
      const begun = answer(
        sender.send(
          isolation === undefined ? 'BEGIN' : `BEGIN ISOLATION LEVEL ${isolation.toUpperCase()}`,
          undefined,
          true,
        ),
      );
      begun.catch(() => undefined);
      const tx = new ScopedTx(send);
      let result: T;
      try {
        result = this.#options.checkNestedUse
          ? await runInTransactionScope(this, tx, () => fn(tx))
          : await fn(tx);
      } catch (error) {
        tx.end();
        tx.dropReadsAfterCommit();
        const rollback = send('ROLLBACK');
        const cause = await tx.causeOf(error);
        try {
          await rollback;
        } catch (rollbackError) {
          discard = rollbackError as Error;
        }
        throw cause;
      }
      tx.end();
      // COMMIT follows the statements sent without waiting on the wire; if one of them failed, the
      // server has rolled back and COMMIT answers ROLLBACK.
      sender.flush();
      const readWithCommit = tx.takeReadForCommit();
      const commit = commitWithRead(client, readWithCommit?.sql);
      commit.catch(() => undefined);
      let reportCommit: (committed: boolean) => void = () => undefined;
      const readsAfterCommit = tx.sendReadsAfterCommit(
        send,
        new Promise<boolean>((resolve) => (reportCommit = resolve)),
      );
      try {
        try {
          await begun;
        } catch (error) {
          discard = error as Error;
          throw error;
        }
        const unansweredFailure = await tx.unansweredFailure();
        let committed: CommitAnswer;
        try {
          committed = await commit;
        } catch (error) {
          throw withCallerStack(error);
        }
        // COMMIT answering COMMIT after a statement sent without waiting failed: the callback rolled
        // back to a savepoint made before it, so its failure was undone, as the server agrees.
        if (committed.command === 'ROLLBACK') throw unansweredFailure ?? transactionAborted();
        readWithCommit?.deliver(committed.read);
        reportCommit(true);
      } finally {
        readWithCommit?.deliver(undefined);
        reportCommit(false);
        // Answered with the commit: the connection goes back to the pool with nothing in flight.
        await readsAfterCommit;
      }
      this.#notifySoon(tx.notifications);
      return result;
    } catch (error) {
      if (isConnectionError(error)) discard ??= error as Error;
      throw this.#translate(error);
    } finally {
      // A connection that failed mid-transaction is destroyed, not returned to the pool half-open.
      checkedOutErrors.delete(client);
      client.release(discard);
    }
  }

  async listen(channel: string, onNotify: (payload: string) => void): Promise<Unlisten> {
    this.#assertUsable('listen');
    checkIdentifier('channel', channel);
    return this.#listener.add(channel, onNotify);
  }

  /** Ends the pool (after its checked-out connections are released) and the listener. Idempotent. */
  close(): Promise<void> {
    this.#closed ??= (async () => {
      await this.#flushing;
      await Promise.all([this.#listener.close(), this.#pool.end()]);
    })();
    return this.#closed;
  }

  /**
   * Wake-ups of committed transactions, sent together a moment later on any pooled connection:
   * the transaction returns at its commit, and under load one NOTIFY covers many commits — at
   * most one is in flight, and what commits meanwhile goes with the next. Best effort, like every
   * wake-up: one lost (an error, a crash) only delays a poller.
   */
  #notifySoon(notifications: ReadonlyMap<string, { channel: string; payload: string }>): void {
    if (notifications.size === 0) return;
    for (const [key, notification] of notifications) this.#pendingNotifications.set(key, notification);
    this.#flushing ??= new Promise<void>((resolve) => setImmediate(resolve)).then(() =>
      this.#flushNotifications(),
    );
  }

  async #flushNotifications(): Promise<void> {
    while (this.#pendingNotifications.size > 0) {
      const batch = new Map(this.#pendingNotifications);
      this.#pendingNotifications.clear();
      await sendNotifications(
        (sql, params) => run(this.#pool, sql, params, this.#options.preparedStatements),
        batch,
      ).catch(() => undefined);
    }
    this.#flushing = undefined;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  /** The LISTEN connection: whether it is up, its backend pid, how often it reconnected. For health checks and tests. */
  get listenerState(): { connected: boolean; backendPid: number | undefined; reconnects: number } {
    return {
      connected: this.#listener.connected,
      backendPid: this.#listener.backendPid,
      reconnects: this.#listener.reconnects,
    };
  }

  /** Connections the pool holds and how many are idle or waited for; for health checks and tests. */
  get poolStats(): { total: number; idle: number; waiting: number } {
    return { total: this.#pool.totalCount, idle: this.#pool.idleCount, waiting: this.#pool.waitingCount };
  }

  #assertUsable(method: string): void {
    if (this.#closed !== undefined) {
      throw new KeelError('KEEL_SERVICE_STATE', `db.${method}() was called after the database was closed`);
    }
    if (this.#options.checkNestedUse) assertOutsideTransaction(this, method);
  }

  #translate(error: unknown): unknown {
    const { server, queryTimeoutMs } = this.#options;
    if (queryTimeoutMs !== undefined && isStatementTimeout(error)) {
      return new KeelError(
        'KEEL_TIMEOUT',
        `${server.label} cancelled a statement that ran past queryTimeoutMs (${queryTimeoutMs} ms)`,
        { cause: error, details: { queryTimeoutMs } },
      );
    }
    if (!isConnectionError(error)) return error;
    if (isReadTimeout(error)) {
      return new KeelError(
        'KEEL_DB_UNAVAILABLE',
        `${server.label} did not answer a statement within queryTimeoutMs (${queryTimeoutMs} ms) and ${unansweredGraceMs} ms more: its connection was closed`,
        { cause: error, details: { host: server.host, port: server.port, queryTimeoutMs } },
      );
    }
    const pool = this.#pool;
    if (error instanceof Error && /timeout exceeded when trying to connect/.test(error.message)) {
      if (pool.totalCount >= this.#options.poolSize) {
        // Not the server: every pooled connection is busy. Without the nested-call check, a db
        // call inside a transaction callback is a likely cause: it waits on its own transaction.
        const causes = this.#options.checkNestedUse
          ? 'long transactions, or a leak'
          : 'long transactions, a leak, or db.query/db.transaction called inside a db.transaction callback, which waits for its own transaction (use its tx; checkNestedUse refuses such calls)';
        return new KeelError(
          'KEEL_DB_UNAVAILABLE',
          `${this.#options.server.label}: no pooled connection became free within ${this.#options.connectTimeoutMs} ms (all ${this.#options.poolSize} busy, ${pool.waitingCount} callers waiting): ${causes}`,
          { cause: error, details: { host: this.#options.server.host, port: this.#options.server.port } },
        );
      }
    }
    return unavailable(this.#options.server, error);
  }
}

/** Opens a node-postgres-backed `Db`; fails with `KEEL_DB_UNAVAILABLE` naming host:port when the server does not answer. */
export function openPgDb(options: PgDbOptions): Promise<PgDb> {
  return PgDb.open(options);
}
