import { InvalidArgumentError } from '../../../src/errors/index.ts';
import {
  circuitBreaker,
  pipeline,
  retry,
  timeout,
  type CircuitBreakerPolicy,
  type ExecuteContext,
  type FailureThreshold,
  type Pipeline,
  type RetryPolicy,
  type TimeoutPolicy,
} from '../../../src/resilience/index.ts';
import {
  exponentialBackoff,
  systemClock,
  type Backoff,
  type Clock,
  type Random,
} from '../../../src/time/index.ts';
import type { ChargeRequest } from '../application/payment-provider.ts';
import type { NamedBreaker, Payments } from '../application/payments.ts';
import type { Payment } from '../storage/payments-store.ts';
import { chargesPath, refundsPath } from './provider-contract.ts';
import { chargeOutcome, fetchFailure, isProviderFailure, refundOutcome } from './provider-outcome.ts';

export interface HttpPaymentProviderOptions {
  /** The provider service's base URL, `http://host:port`. Required. */
  url: string;
  /** Bound on each attempt, in ms; the attempt's request is aborted at it. Default 2 000. */
  timeoutMs?: number;
  /** Calls in total per charge or refund, the first included: 3 means at most two retries. Default 3. */
  maxAttempts?: number;
  /** Wait before each retry. Default: 100 ms doubling to 2 s, full jitter drawn from `random`. */
  backoff?: Backoff;
  /** Random source in [0, 1) of the default backoff's jitter. Default `Math.random`. */
  random?: Random;
  /** When the breaker opens. Default: 5 failed attempts in a row. */
  threshold?: FailureThreshold;
  /** How long an open breaker fails calls fast before one probe goes through, in ms. Default 5 000. */
  openMs?: number;
  /** The breaker's name for dashboards and metrics. Default `payment-provider`. */
  name?: string;
  clock?: Clock;
  /** Default: Node's `fetch`. */
  fetch?: typeof fetch;
}

/** The client's policies, for `instrumentPolicies` (keel/observability) and an operator's `isolate()`. */
export interface PaymentPolicies {
  readonly retry: RetryPolicy;
  readonly breaker: CircuitBreakerPolicy;
  readonly timeout: TimeoutPolicy;
}

/**
 * The payment provider service's client (`provider-app.ts`), with the in-process provider's
 * contract. Every call runs through retry (only a 5xx, a timeout, a broken connection or an
 * unreadable answer; never a 4xx) → circuit breaker → timeout per attempt, and carries the
 * caller's idempotency key as `Idempotency-Key` on every attempt, so the provider charges once
 * however many attempts reach it. An open breaker fails the call at once with
 * `BrokenCircuitError` (`KEEL_BROKEN_CIRCUIT`, `retryAfterMs`): the saga's step backs off.
 */
export class HttpPaymentProvider implements Payments {
  readonly policies: PaymentPolicies;
  readonly breaker: NamedBreaker;
  readonly #policy: Pipeline;
  readonly #base: URL;
  readonly #fetch: typeof fetch;
  readonly #name: string;

  constructor(options: HttpPaymentProviderOptions) {
    if (options === null || typeof options !== 'object')
      throw new InvalidArgumentError('options', 'an options object', options);
    this.#base = baseUrl(options.url);
    this.#name = options.name ?? 'payment-provider';
    if (typeof this.#name !== 'string' || this.#name === '')
      throw new InvalidArgumentError('name', 'a non-empty string', this.#name);
    this.#fetch = options.fetch ?? fetch;
    if (typeof this.#fetch !== 'function')
      throw new InvalidArgumentError('fetch', 'a fetch function', this.#fetch);
    const clock = options.clock ?? systemClock;
    const policies: PaymentPolicies = {
      retry: retry({
        maxAttempts: options.maxAttempts ?? 3,
        backoff:
          options.backoff ??
          exponentialBackoff({
            initialMs: 100,
            maxMs: 2000,
            jitter: 'full',
            random: options.random ?? Math.random,
          }),
        handle: isProviderFailure,
        clock,
      }),
      breaker: circuitBreaker({
        threshold: options.threshold ?? { kind: 'consecutive', failures: 5 },
        openMs: options.openMs ?? 5000,
        // A refusal (4xx) counts as neither success nor failure: the provider answered.
        handle: isProviderFailure,
        clock,
      }),
      timeout: timeout(options.timeoutMs ?? 2000, { clock }),
    };
    this.policies = policies;
    this.#policy = pipeline(policies.retry, policies.breaker, policies.timeout);
    const name = this.#name;
    this.breaker = {
      name,
      get state() {
        return policies.breaker.state;
      },
    };
  }

  charge(request: ChargeRequest, call: { idempotencyKey: string; signal?: AbortSignal }): Promise<Payment> {
    const { idempotencyKey } = call;
    if (typeof idempotencyKey !== 'string' || idempotencyKey.length === 0 || idempotencyKey.length > 255) {
      return Promise.reject(
        new InvalidArgumentError('idempotencyKey', 'a string of 1 to 255 characters', idempotencyKey),
      );
    }
    const body = JSON.stringify({
      orderId: request.orderId,
      customerId: request.customerId,
      amountCents: request.amountCents,
    });
    return this.#policy.execute(async (context) => {
      const answer = await this.#post(chargesPath, body, context, { 'idempotency-key': idempotencyKey });
      return chargeOutcome(this.#name, answer.status, answer.body);
    }, call.signal);
  }

  refund(chargeKey: string, call: { signal?: AbortSignal } = {}): Promise<boolean> {
    const body = JSON.stringify({ chargeKey });
    return this.#policy.execute(async (context) => {
      const answer = await this.#post(refundsPath, body, context, {});
      return refundOutcome(this.#name, answer.status, answer.body);
    }, call.signal);
  }

  /** Clears the timeout policy's timer (at most one, armed by the last call). */
  dispose(): void {
    this.policies.timeout.dispose();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  /** One attempt: the request and its whole body, both bounded by the attempt's signal. */
  async #post(
    path: string,
    body: string,
    { signal }: ExecuteContext,
    headers: Record<string, string>,
  ): Promise<{ status: number; body: string }> {
    try {
      const response = await this.#fetch(new URL(path, this.#base), {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'application/json', ...headers },
        body,
        signal,
      });
      return { status: response.status, body: await response.text() };
    } catch (error) {
      throw fetchFailure(this.#name, error, signal);
    }
  }
}

function baseUrl(url: unknown): URL {
  let parsed: URL | undefined;
  try {
    parsed = typeof url === 'string' ? new URL(url) : undefined;
  } catch {
    parsed = undefined;
  }
  if (parsed === undefined || (parsed.protocol !== 'http:' && parsed.protocol !== 'https:'))
    throw new InvalidArgumentError('url', 'an http:// or https:// URL of the payment provider', url);
  return parsed;
}
