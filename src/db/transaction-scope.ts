import { AsyncLocalStorage } from 'node:async_hooks';
import { KeelError } from '../errors/index.ts';
import type { QueryResult, Row, Tx } from './db.ts';
import type { NotifiesAfterCommit } from './notify-after-commit.ts';
import type { ReadsAfterCommit } from './read-after-commit.ts';
import type { SendsWithoutWaiting } from './send-without-waiting.ts';

interface Scope {
  /** The connection (PGlite session) or pool the transaction belongs to. */
  readonly owner: object;
  readonly tx: ScopedTx;
}

const scopes = new AsyncLocalStorage<Scope>();

/** Runs a transaction callback so that `assertOutsideTransaction` can recognise calls made from it. */
export function runInTransactionScope<T>(owner: object, tx: ScopedTx, fn: () => Promise<T>): Promise<T> {
  return scopes.run({ owner, tx }, fn);
}

/**
 * Refuses `db.query` / `db.transaction` called from inside a still-open transaction callback of
 * the same database. On PGlite (one connection) that call waits for the transaction, which waits
 * for the call: it would hang forever. On pg it would run outside the transaction, which is never
 * what the author meant. Both backends refuse it alike, so a test on either catches the bug.
 */
export function assertOutsideTransaction(owner: object, method: string): void {
  const scope = scopes.getStore();
  if (scope !== undefined && scope.owner === owner && scope.tx.open) {
    throw new KeelError(
      'KEEL_DB_IN_TRANSACTION',
      `db.${method}() was called inside a db.transaction() callback; use the tx handle the callback received`,
    );
  }
}

/**
 * The error to report for one caught inside a transaction: when it is only the 25P02 that a
 * statement sent without waiting caused by failing, that statement's error.
 */
export async function causeOfFailure(tx: Tx, error: unknown): Promise<unknown> {
  return tx instanceof ScopedTx ? tx.causeOf(error) : error;
}

/** Calls `fn` outside any transaction scope: notification callbacks must not inherit the scope of the query that delivered them. */
export function outsideTransactionScope<T>(fn: () => T): T {
  return scopes.exit(fn);
}

/**
 * The `Tx` handed to a transaction callback; refuses use after its transaction ended. Collects
 * the NOTIFYs to send once it has committed (`notifyAfterCommit`) and the statements sent
 * without waiting, whose answers the backend checks before it commits (`unanswered`).
 */
export class ScopedTx implements Tx, NotifiesAfterCommit, SendsWithoutWaiting, ReadsAfterCommit {
  #open = true;
  readonly notifications = new Map<string, { channel: string; payload: string }>();
  /**
   * The last statement sent without waiting, observed: both backends answer a connection's
   * statements in the order sent, so once it settled every earlier one has too.
   */
  #lastUnanswered: Promise<void> | undefined;
  /** The first of those statements to fail, in the order sent. */
  #unansweredFailure: Error | undefined;
  readonly #readsAfterCommit: {
    sql: string;
    params: readonly unknown[] | undefined;
    deliver: (result: QueryResult | undefined) => void;
  }[] = [];
  readonly #run: (sql: string, params: readonly unknown[] | undefined) => Promise<QueryResult>;

  constructor(run: (sql: string, params: readonly unknown[] | undefined) => Promise<QueryResult>) {
    this.#run = run;
  }

  get open(): boolean {
    return this.#open;
  }

  end(): void {
    this.#open = false;
  }

  notifyAfterCommit(channel: string, payload = ''): void {
    if (!this.#open) {
      throw new KeelError('KEEL_SERVICE_STATE', 'notifyAfterCommit was called after the transaction ended');
    }
    this.notifications.set(`${channel}\u0000${payload}`, { channel, payload });
  }

  sendWithoutWaiting(sql: string, params: readonly unknown[]): void {
    if (!this.#open) {
      throw new KeelError('KEEL_SERVICE_STATE', 'sendWithoutWaiting was called after the transaction ended');
    }
    // Observed here so a failure is never an unhandled rejection; `unansweredFailure` reports it.
    this.#lastUnanswered = this.#run(sql, params).then(undefined, (error: unknown) => {
      // The drivers reject with Error objects (pg's DatabaseError, PGlite's).
      this.#unansweredFailure ??= error as Error;
    });
  }

  /** The first failure among the statements sent without waiting, once all answered; undefined if none failed. */
  async unansweredFailure(): Promise<Error | undefined> {
    await this.#lastUnanswered;
    return this.#unansweredFailure;
  }

  readAfterCommit<R = Row>(sql: string, params?: readonly unknown[]): Promise<QueryResult<R> | undefined> {
    if (!this.#open) {
      throw new KeelError('KEEL_SERVICE_STATE', 'readAfterCommit was called after the transaction ended');
    }
    return new Promise((resolve) => {
      this.#readsAfterCommit.push({
        sql,
        params,
        deliver: resolve as (result: QueryResult | undefined) => void,
      });
    });
  }

  /**
   * The queued read that can travel in the COMMIT's own message — the only one, and without
   * parameters (a simple-protocol message carries none) — taken out of the queue; deliver its
   * result (or undefined) yourself.
   */
  takeReadForCommit(): { sql: string; deliver: (result: QueryResult | undefined) => void } | undefined {
    const reads = this.#readsAfterCommit;
    if (reads.length !== 1 || (reads[0]!.params?.length ?? 0) > 0) return undefined;
    return reads.pop();
  }

  /**
   * Sends the queued reads, each in a read-only transaction, through `run` (on pg right behind the
   * COMMIT, before its answer); `committed` settles whether their results are delivered. Resolves
   * once every read was delivered.
   */
  sendReadsAfterCommit(
    run: (sql: string, params: readonly unknown[] | undefined) => Promise<QueryResult>,
    committed: Promise<boolean>,
  ): Promise<void> {
    const delivered = this.#readsAfterCommit.splice(0).map(async (read) => {
      let answered: Promise<QueryResult>;
      if (read.params === undefined || read.params.length === 0) {
        // One message: a script runs as one implicit transaction, which SET LOCAL makes read-only.
        answered = run(`SET LOCAL transaction_read_only = on; ${read.sql}`, undefined);
      } else {
        const begun = run('BEGIN READ ONLY', undefined);
        const answer = run(read.sql, read.params);
        const ended = run('COMMIT', undefined);
        answered = Promise.all([begun, answer, ended]).then(([, result]) => result);
      }
      const [answer, commit] = await Promise.allSettled([answered, committed]);
      const ok = commit.status === 'fulfilled' && commit.value;
      read.deliver(ok && answer.status === 'fulfilled' ? answer.value : undefined);
    });
    return Promise.all(delivered).then(() => undefined);
  }

  /** Delivers `undefined` to every queued read: the transaction did not commit. */
  dropReadsAfterCommit(): void {
    for (const read of this.#readsAfterCommit.splice(0)) read.deliver(undefined);
  }

  /**
   * What to report for an error the callback threw: a statement sent without waiting that failed
   * aborted the transaction, so the callback's next query failed with 25P02; the cause is that
   * statement's error.
   */
  async causeOf(error: unknown): Promise<unknown> {
    const failure = await this.unansweredFailure();
    return failure !== undefined && (error as { code?: unknown } | null)?.code === '25P02' ? failure : error;
  }

  async query<R = Row>(sql: string, params?: readonly unknown[]): Promise<QueryResult<R>> {
    if (!this.#open) {
      throw new KeelError(
        'KEEL_SERVICE_STATE',
        'a transaction handle was used after its transaction ended; keep its use inside the callback and await every query',
      );
    }
    return (await this.#run(sql, params)) as QueryResult<R>;
  }
}
