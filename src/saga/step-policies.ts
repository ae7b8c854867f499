import {
  pipeline,
  retry,
  timeout,
  type Policy,
  type RetryOptions,
  type TimeoutPolicy,
} from '../resilience/index.ts';
import { exponentialBackoff, type Clock } from '../time/index.ts';
import type { SagaStep } from './definition.ts';

const defaultActionRetry: RetryOptions = { maxAttempts: 3 };
const defaultCompensationRetry: RetryOptions = {
  maxAttempts: 10,
  backoff: exponentialBackoff({ initialMs: 100, maxMs: 30_000 }),
};
const defaultTimeoutMs = 30_000;

/**
 * The policies of each step, built once per runner on its clock: retry outermost, a timeout per
 * attempt, then the step's own policy (a shared breaker).
 */
export class StepPolicies {
  readonly #clock: Clock;
  readonly #built = new WeakMap<SagaStep<unknown>, { action: Policy; compensation: Policy }>();
  readonly #timeouts: TimeoutPolicy[] = [];

  constructor(clock: Clock) {
    this.#clock = clock;
  }

  of(step: SagaStep<unknown>): { action: Policy; compensation: Policy } {
    let policies = this.#built.get(step);
    if (policies === undefined) {
      policies = {
        action: this.#build(step, step.retry, defaultActionRetry, step.timeoutMs),
        compensation: this.#build(
          step,
          step.compensationRetry,
          defaultCompensationRetry,
          step.compensationTimeoutMs,
        ),
      };
      this.#built.set(step, policies);
    }
    return policies;
  }

  /**
   * Clears the timeout policies' timers (a timeout policy keeps one armed after its last call).
   * The policies stay usable: a call after it arms its policy's timer again.
   */
  dispose(): void {
    for (const policy of this.#timeouts) policy.dispose();
  }

  #build(
    step: SagaStep<unknown>,
    options: Omit<RetryOptions, 'clock'> | undefined,
    fallback: RetryOptions,
    ms: number | undefined,
  ): Policy {
    const bound = timeout(ms ?? defaultTimeoutMs, { clock: this.#clock });
    this.#timeouts.push(bound);
    const chain: Policy[] = [retry({ ...fallback, ...options, clock: this.#clock }), bound];
    if (step.policy !== undefined) chain.push(step.policy);
    return pipeline(...chain);
  }
}
