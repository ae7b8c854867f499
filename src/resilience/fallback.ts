import { TypedEvents, type Listener, type ListenerHandle } from '../service/typed-events.ts';
import type { ExecuteContext, PolicyContext } from './context.ts';
import { requireFunction, requireObject } from './options.ts';
import { Policy, runPolicy, type Next, type Operation } from './policy.ts';

export interface FallbackOptions<F> {
  /** Produces the substitute from the error (or failing result). May be async. */
  fallback: (outcome: { error: unknown; result: unknown }, context: ExecuteContext) => F | PromiseLike<F>;
  /** Which errors to replace. Default: all, except when the caller's own signal aborted. */
  handle?: (error: unknown) => boolean;
  /** Which results to replace. Default: none. */
  handleResult?: (result: unknown) => boolean;
}

export interface FallbackEvents {
  fallback: { error: unknown; result: unknown };
}

/**
 * Serves a substitute when the work fails: a cached value, a default, a degraded answer.
 * Outermost in a pipeline, so it sees what every other policy finally gave up on.
 */
export class FallbackPolicy<F> extends Policy<F> {
  readonly events = new TypedEvents<FallbackEvents>();
  readonly #fallback: FallbackOptions<F>['fallback'];
  readonly #handle: ((error: unknown) => boolean) | undefined;
  readonly #handleResult: ((result: unknown) => boolean) | undefined;

  constructor(options: FallbackOptions<F>) {
    super();
    requireObject('options', options);
    if (typeof options.fallback !== 'function') requireFunction('fallback', options.fallback ?? null);
    this.#fallback = options.fallback;
    this.#handle = requireFunction('handle', options.handle);
    this.#handleResult = requireFunction('handleResult', options.handleResult);
  }

  on<K extends keyof FallbackEvents>(name: K, listener: Listener<FallbackEvents[K]>): ListenerHandle {
    return this.events.on(name, listener);
  }

  async [runPolicy]<T>(fn: Operation<T>, context: PolicyContext, next: Next): Promise<T | F> {
    let result: T;
    try {
      result = await next.call(fn, context);
    } catch (error) {
      const replace = !context.aborted && (this.#handle === undefined || this.#handle(error));
      if (!replace) throw error;
      return this.#substitute(error, undefined, context);
    }
    if (this.#handleResult !== undefined && this.#handleResult(result))
      return this.#substitute(undefined, result, context);
    return result;
  }

  async #substitute(error: unknown, result: unknown, context: PolicyContext): Promise<F> {
    if (this.events.has('fallback')) this.events.emit('fallback', { error, result });
    return this.#fallback({ error, result }, context);
  }
}

export function fallback<F>(options: FallbackOptions<F>): FallbackPolicy<F> {
  return new FallbackPolicy(options);
}
