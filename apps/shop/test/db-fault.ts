import type { Db } from '../../../src/db/index.ts';
import { defaultDatabaseUrl } from '../../../src/db/index.ts';
import { describeServer, unavailable } from '../../../src/db/pg-errors.ts';

/**
 * A switch over a shop's database, for tests of what the API answers when it fails: wrap the
 * shop's `Db` with `wrap` (openTestShop's `db` option), and while `during` runs every query and
 * every transaction begun through it rejects with the given error, as they would against a
 * database that went away or broke under a running shop. Statements of a transaction begun
 * before stay as they are: the fault is at the door, not mid-transaction.
 */
export class DbFault {
  #error: unknown;
  #failing = false;
  #statements: RegExp | undefined;

  wrap(db: Db): Db {
    return beforeEachCall(db, (call) => {
      if (!this.#failing) return;
      if (this.#statements === undefined || (call.sql !== undefined && this.#statements.test(call.sql)))
        throw this.#error;
    });
  }

  /**
   * Runs `fn` with every new call failing with `error`; the database answers again after, whatever
   * `fn` did. With `statements`, only the queries whose SQL it matches fail (no transaction does):
   * one table's fault, or one part's, while the rest of the shop reaches its database.
   */
  async during<T>(error: unknown, fn: () => Promise<T>, statements?: RegExp): Promise<T> {
    this.#error = error;
    this.#failing = true;
    this.#statements = statements;
    try {
      return await fn();
    } finally {
      this.#failing = false;
      this.#error = undefined;
      this.#statements = undefined;
    }
  }
}

/**
 * A gate over a shop's database, for tests that need a request to stay in flight: wrap the shop's
 * `Db` with `wrap`, and while `hold` is set every new query and transaction begun through it
 * waits (in `held`) until `release`.
 */
export class HeldDb {
  hold = false;
  readonly held: (() => void)[] = [];

  wrap(db: Db): Db {
    return beforeEachCall(db, async () => {
      if (this.hold) await new Promise<void>((resolve) => this.held.push(resolve));
    });
  }

  /** Lets every held call go on, and stops holding new ones. */
  release(): void {
    this.hold = false;
    for (const resume of this.held.splice(0)) resume();
  }
}

/** What keel's PostgreSQL `Db` rejects with when its server refuses connections (`KEEL_DB_UNAVAILABLE`). */
export function databaseUnreachable(): Error {
  const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' });
  return unavailable(describeServer(defaultDatabaseUrl), refused);
}

/**
 * What a statement that fails for a reason of its own — not the connection's — rejects with: the
 * driver's error with its SQLSTATE (here XX001, data corrupted), which no handler expects.
 */
export function statementFailed(): Error {
  return Object.assign(
    new Error('could not read block 7 in file "base/16384/16402": read only 0 of 8192 bytes'),
    { code: 'XX001' },
  );
}

/** A call `beforeEachCall` runs ahead of: a query with its SQL, or a transaction begun. */
export type DbCall = { method: 'query'; sql: string } | { method: 'transaction'; sql?: undefined };

/**
 * A view of `db` that runs `before` ahead of every query and every transaction begun through it
 * (a throw fails the call, a wait holds it); statements inside a transaction are not touched.
 */
export function beforeEachCall(db: Db, before: (call: DbCall) => void | Promise<void>): Db {
  return new Proxy(db, {
    get(target, property, receiver) {
      const value: unknown = Reflect.get(target, property, receiver);
      if (typeof value !== 'function') return value;
      const method = (value as (...args: unknown[]) => unknown).bind(target);
      if (property !== 'query' && property !== 'transaction') return method;
      return async (...args: unknown[]) => {
        await before(
          property === 'query' ? { method: 'query', sql: String(args[0]) } : { method: 'transaction' },
        );
        return method(...args);
      };
    },
  });
}
