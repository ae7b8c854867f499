import type { Db, TransactionOptions, Tx } from '../db/db.ts';
import { systemClock } from '../time/index.ts';

/**
 * The statements of this process's test databases still on their way to the server and back.
 * `advanceUntil` moves a manual clock only once none is: otherwise, on a loaded machine, a
 * claim's 30 s lease runs out on the manual clock while the claim's own round trip takes 20 ms.
 */
let inFlight = 0;
let whenNoneInFlight: Array<() => void> = [];

/** Counts `statement` as in flight until it settles. */
export function trackStatement<T>(statement: () => Promise<T>): Promise<T> {
  const done = startStatement();
  let result: Promise<T>;
  try {
    result = statement();
  } catch (error) {
    done();
    throw error;
  }
  return result.finally(done);
}

/**
 * Counts a transaction as in flight while its BEGIN, its statements and its COMMIT are: not while
 * its callback awaits anything else, which may be the manual clock itself.
 */
export function trackTransaction<T>(
  run: (fn: (tx: Tx) => Promise<T>) => Promise<T>,
  fn: (tx: Tx) => Promise<T>,
): Promise<T> {
  let done = startStatement();
  return run(async (tx) => {
    done();
    try {
      return await fn(trackedTx(tx));
    } finally {
      // The COMMIT or ROLLBACK, until `run` settles.
      done = startStatement();
    }
  }).finally(() => done());
}

/**
 * Resolves once no statement is in flight, and none started in the turn of the event loop after:
 * the code a statement's answer resumes often sends the next one a few promise hops later. Or
 * after `boundMs` of real time: a statement that waits for a lock held by a transaction that waits
 * for the clock would otherwise wait forever.
 */
export async function statementsSettled(boundMs = 2000): Promise<void> {
  const deadline = performance.now() + boundMs;
  while (inFlight > 0 && performance.now() < deadline) {
    await noneInFlight(deadline - performance.now());
    await new Promise((resolve) => setImmediate(resolve));
  }
}

function noneInFlight(boundMs: number): Promise<void> {
  if (inFlight === 0) return Promise.resolve();
  return new Promise<void>((resolve) => {
    const timer = systemClock.setTimeout(finish, Math.max(0, boundMs));
    function finish(): void {
      systemClock.clearTimeout(timer);
      whenNoneInFlight = whenNoneInFlight.filter((waiter) => waiter !== finish);
      resolve();
    }
    whenNoneInFlight.push(finish);
  });
}

/**
 * `db` with its statements and transactions tracked, as a test database's are: for a database a
 * test opened otherwise (a shop's store) that it drives with `advanceUntil`.
 */
export function trackedDb(db: Db): Db {
  return new Proxy(db, {
    get(target, property) {
      if (property === 'query') {
        return (sql: string, params?: readonly unknown[]) => trackStatement(() => target.query(sql, params));
      }
      if (property === 'transaction') {
        return <T>(fn: (tx: Tx) => Promise<T>, options?: TransactionOptions) =>
          trackTransaction((tracked) => target.transaction(tracked, options), fn);
      }
      const value: unknown = Reflect.get(target, property, target);
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
    },
  });
}

/** `tx` with its statements tracked; its other abilities (`sendWithoutWaiting`, ...) kept. */
function trackedTx(tx: Tx): Tx {
  return new Proxy(tx, {
    get(target, property) {
      if (property === 'query' || property === 'readAfterCommit') {
        const method = Reflect.get(target, property, target) as (...args: unknown[]) => Promise<unknown>;
        return (...args: unknown[]) => trackStatement(() => method.apply(target, args));
      }
      const value: unknown = Reflect.get(target, property, target);
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
    },
  });
}

function startStatement(): () => void {
  inFlight += 1;
  let settled = false;
  return () => {
    if (settled) return;
    settled = true;
    inFlight -= 1;
    if (inFlight === 0) for (const waiter of whenNoneInFlight.splice(0)) waiter();
  };
}
