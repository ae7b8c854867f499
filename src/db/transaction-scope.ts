import { AsyncLocalStorage } from 'node:async_hooks';
import { KeelError } from '../errors/index.ts';
import type { QueryResult, Row, Tx } from './db.ts';
import type { NotifiesAfterCommit } from './notify-after-commit.ts';

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

/** Calls `fn` outside any transaction scope: notification callbacks must not inherit the scope of the query that delivered them. */
export function outsideTransactionScope<T>(fn: () => T): T {
  return scopes.exit(fn);
}

/**
 * The `Tx` handed to a transaction callback; refuses use after its transaction ended. Collects
 * the NOTIFYs to send once it has committed (`notifyAfterCommit`).
 */
export class ScopedTx implements Tx, NotifiesAfterCommit {
  #open = true;
  readonly notifications = new Map<string, { channel: string; payload: string }>();
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
