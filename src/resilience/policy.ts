import { AbortedError } from '../errors/index.ts';
import { RootContext, type ExecuteContext, type PolicyContext } from './context.ts';

/** The work a policy runs. It may return a value or a promise, or throw. */
export type Operation<T> = (context: ExecuteContext) => T | PromiseLike<T>;

/**
 * The rest of a chain of policies, as an object rather than a closure so that composing
 * policies allocates nothing per call. The last link calls the operation itself.
 */
export interface Next {
  call<T>(fn: Operation<T>, context: PolicyContext): T | PromiseLike<T>;
}

export const callOperation: Next = {
  call: <T>(fn: Operation<T>, context: PolicyContext): T | PromiseLike<T> => fn(context),
};

/**
 * Starts the rest of the chain as a promise: a synchronous throw or a plain value from `fn`
 * becomes a rejected or resolved promise. Hot paths chain `.then` on it instead of awaiting
 * in an async function, which saves one promise and one microtask hop per call.
 */
export function start<T>(next: Next, fn: Operation<T>, context: PolicyContext): Promise<T> {
  try {
    return Promise.resolve(next.call(fn, context));
  } catch (error) {
    // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- what fn threw, unchanged
    return Promise.reject(error);
  }
}

/** The internal entry point of a policy; `pipeline` chains policies through it. */
export const runPolicy: unique symbol = Symbol('keel.runPolicy');

/**
 * One call shape for every policy: `execute(fn, signal?)`. `R` is what the policy may return
 * instead of `fn`'s result (a fallback value); `never` for every other policy.
 */
export abstract class Policy<R = never> {
  /** Type only, never set: what the policy may answer instead of the function's result. */
  declare readonly alternative: R;

  /**
   * Runs `fn` under this policy. `fn` gets a context with an `AbortSignal` (aborted when
   * `signal` aborts, a timeout fires or a hedge won) and the attempt number.
   * Rejects at once with `AbortedError` when `signal` is already aborted.
   */
  execute<T>(fn: Operation<T>, signal?: AbortSignal): Promise<T | R> {
    if (signal?.aborted === true) return Promise.reject(new AbortedError('execute', signal.reason));
    return this[runPolicy](fn, new RootContext(signal), callOperation);
  }

  /** @internal Runs `next.call(fn, ...)` under this policy. */
  abstract [runPolicy]<T>(fn: Operation<T>, context: PolicyContext, next: Next): Promise<T | R>;
}
