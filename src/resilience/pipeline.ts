import { InvalidArgumentError } from '../errors/index.ts';
import type { PolicyContext } from './context.ts';
import { callOperation, Policy, runPolicy, type Next, type Operation } from './policy.ts';

type Extra<P extends Policy<unknown>> = P['alternative'];

/** Runs the next policy of a chain; built once per pipeline, so a call allocates no closures. */
class Link implements Next {
  constructor(
    readonly policy: Policy<unknown>,
    readonly next: Next,
  ) {}
  call<T>(fn: Operation<T>, context: PolicyContext): Promise<T> {
    // An inner fallback may answer with its own type; the pipeline's type (T | R) says so.
    return this.policy[runPolicy](fn, context, this.next) as Promise<T>;
  }
}

/**
 * Composes policies: the FIRST is outermost and sees the call first and the outcome last.
 * `pipeline(fallback, retry, breaker, timeout)` retries around the breaker, each attempt gets
 * its own timeout, and the fallback answers only once everything else gave up. A nested
 * pipeline is flattened.
 */
export class Pipeline<R = never> extends Policy<R> {
  readonly policies: readonly Policy<unknown>[];
  readonly #head: Policy<unknown>;
  readonly #rest: Next;

  constructor(policies: readonly Policy<unknown>[]) {
    super();
    // Checked here, not found out on the first call as "policy[runPolicy] is not a function".
    policies.forEach((policy, i) => {
      if (typeof (policy as Partial<Policy<unknown>> | undefined)?.[runPolicy] !== 'function')
        throw new InvalidArgumentError(`policies[${i}]`, 'a policy (retry(), timeout(), ...)', policy);
    });
    const flat = policies.flatMap((p) => (p instanceof Pipeline ? p.policies : [p]));
    if (flat.length === 0) throw new InvalidArgumentError('policies', 'at least one policy', flat);
    this.policies = flat;
    this.#rest = chain(flat.slice(1), callOperation);
    this.#head = flat[0]!;
  }

  [runPolicy]<T>(fn: Operation<T>, context: PolicyContext, next: Next): Promise<T | R> {
    // Used inside another chain (rare): build the links for that continuation.
    const rest = next === callOperation ? this.#rest : chain(this.policies.slice(1), next);
    return this.#head[runPolicy](fn, context, rest) as Promise<T | R>;
  }
}

function chain(policies: readonly Policy<unknown>[], last: Next): Next {
  let next = last;
  for (let i = policies.length - 1; i >= 0; i--) next = new Link(policies[i]!, next);
  return next;
}

export function pipeline<P extends Policy<unknown>[]>(...policies: P): Pipeline<Extra<P[number]>> {
  return new Pipeline(policies);
}
