import { InvalidArgumentError } from '../errors/index.ts';
import { retry, type ExecuteContext, type RetryPolicy } from '../resilience/index.ts';
import { exponentialBackoff, type Backoff, type Clock } from '../time/index.ts';
import { VersionConflictError } from './version-conflict-error.ts';

// SQLSTATE serialization_failure (a REPEATABLE READ / SERIALIZABLE write that lost a race, or a
// standby query cancelled by replay) and deadlock_detected: PostgreSQL's own optimistic-concurrency
// failures, which the same re-read-and-re-apply fixes.
const conflictStates = new Set(['40001', '40P01']);

/**
 * True for the failures that re-reading and re-applying fixes: `VersionConflictError`, and
 * PostgreSQL's serialization failure (40001) and deadlock (40P01). False for everything else,
 * `NotFoundError` included: the row is gone, a new attempt would find it gone again.
 */
export function isConflict(error: unknown): boolean {
  if (error instanceof VersionConflictError) return true;
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' && conflictStates.has(code);
}

export interface RetryOnConflictOptions {
  /**
   * Calls of the function in total, the first included: `5` means at most four retries. When
   * every call conflicted, the last conflict is rethrown unchanged. `Infinity` retries until
   * success, another error or the signal. Default 10.
   */
  maxAttempts?: number;
  /**
   * Wait before each retry. Default `exponentialBackoff({ initialMs: 10, maxMs: 1000 })` with full
   * jitter, so writers that collided once do not collide again in lock-step.
   */
  backoff?: Backoff;
  /** What counts as a conflict. Default `isConflict`. */
  isConflict?: (error: unknown) => boolean;
  /** Stops the retrying at once, also during a backoff, with `AbortedError`. Default: none. */
  signal?: AbortSignal;
  /** Times the backoff. Default the system clock. */
  clock?: Clock;
}

const defaultBackoff = exponentialBackoff({ initialMs: 10, maxMs: 1000, jitter: 'full' });

/**
 * The retry policy `retryOnConflict` runs: keel's resilience `retry`, classifying only conflicts
 * as retryable. Build it once and `execute` many times, or compose it in a `pipeline`.
 */
export function conflictRetry(options: Omit<RetryOnConflictOptions, 'signal'> = {}): RetryPolicy {
  if (options === null || typeof options !== 'object') {
    throw new InvalidArgumentError('options', 'an options object', options);
  }
  const classify = options.isConflict ?? isConflict;
  if (typeof classify !== 'function') throw new InvalidArgumentError('isConflict', 'a function', classify);
  return retry({
    maxAttempts: options.maxAttempts ?? 10,
    backoff: options.backoff ?? defaultBackoff,
    handle: (error) => classify(error),
    // A conflict never asks for a delay of its own: the backoff alone decides.
    retryAfter: () => undefined,
    ...(options.clock === undefined ? {} : { clock: options.clock }),
  });
}

/**
 * Runs a read-modify-write and runs it again when it conflicts. `fn` must read the current state
 * itself on every call (never reuse what an earlier attempt read) and write it with
 * `updateIfVersion`, usually in one `db.transaction`:
 *
 * ```ts
 * await retryOnConflict(async () => {
 *   const current = await accounts.read(db, id);
 *   await db.transaction((tx) => accounts.update(tx, id, current.version, { balance: current.row.balance + 10 }));
 * });
 * ```
 *
 * Errors other than conflicts are rethrown at once. `fn` gets the attempt number and the signal.
 */
export function retryOnConflict<T>(
  fn: (context: ExecuteContext) => Promise<T>,
  options: RetryOnConflictOptions = {},
): Promise<T> {
  if (typeof fn !== 'function') throw new InvalidArgumentError('fn', 'a function', fn);
  return conflictRetry(options).execute(fn, options.signal);
}
