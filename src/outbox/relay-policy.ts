import { InvalidArgumentError } from '../errors/index.ts';
import type { Envelope } from '../messaging/envelope.ts';
import { CircuitBreakerPolicy, isRetryable } from '../resilience/index.ts';
import type { Clock } from '../time/index.ts';

/** What both relays (the table's and the WAL's) do about a publish that fails. */
export interface RelayPolicyOptions {
  /**
   * Failed publishes of a message, counted only while the breaker was closed, before it is
   * parked — a row of `keel_outbox` with `parked_at` set — for an operator (`keel outbox
   * retry`). `maxAttempts: 10` means ten calls. Default 10.
   */
  maxAttempts?: number;
  /** Delay before a failed publish is tried again. Default: 1 s doubling to 60 s. */
  retryDelay?: (attempt: number) => number;
  /**
   * The circuit breaker every publish goes through. While it is open the relay publishes
   * nothing and no message's attempts grow, so an outage of the broker does not park the
   * backlog. Default: a breaker that opens after 5 consecutive failed publishes, for 10 s, on
   * the relay's clock.
   */
  breaker?: CircuitBreakerPolicy;
  clock?: Clock;
  name?: string;
}

/** The events both relays emit about publishing. */
export interface RelayPublishEvents {
  /** Messages the broker accepted (parked ones are not among them). */
  published: { destination: string; messages: readonly Envelope[] };
  /** A publish failed; `charged` is false when it did not count towards parking (breaker not closed). */
  'publish-failed': { destination: string; messages: readonly Envelope[]; error: unknown; charged: boolean };
  /** A message given up on: a row of `keel_outbox` with `parked_at` set, for `keel outbox retry`. */
  parked: { message: Envelope; error: unknown };
}

export interface RelayPolicy {
  readonly maxAttempts: number;
  readonly retryDelay: (attempt: number) => number;
  readonly breaker: CircuitBreakerPolicy;
}

/** The options checked, with their defaults; bad ones fail with `KEEL_INVALID_ARGUMENT` naming them. */
export function relayPolicy(options: RelayPolicyOptions, clock: Clock): RelayPolicy {
  const maxAttempts = positiveInteger('maxAttempts', options.maxAttempts ?? 10);
  const retryDelay = options.retryDelay ?? ((attempt: number) => Math.min(60_000, 1000 * 2 ** (attempt - 1)));
  if (typeof retryDelay !== 'function') {
    throw new InvalidArgumentError('retryDelay', 'a function of the attempt number', options.retryDelay);
  }
  if (options.breaker !== undefined && !(options.breaker instanceof CircuitBreakerPolicy)) {
    throw new InvalidArgumentError('breaker', 'a CircuitBreakerPolicy', options.breaker);
  }
  const breaker =
    options.breaker ??
    new CircuitBreakerPolicy({
      threshold: { kind: 'consecutive', failures: 5 },
      openMs: 10_000,
      // A message the broker refuses for what it is says nothing about the broker's health.
      handle: (error) => !isPermanentPublishError(error),
      clock,
    });
  return { maxAttempts, retryDelay, breaker };
}

/** No retry can fix it: keel's argument or validation errors, also as the cause of a `PublishError`. */
export function isPermanentPublishError(error: unknown): boolean {
  if (!isRetryable(error)) return true;
  const cause = (error as { cause?: unknown } | null)?.cause;
  return cause !== undefined && !isRetryable(cause);
}

export function positiveInteger(field: string, value: number): number {
  if (!Number.isInteger(value) || value < 1) throw new InvalidArgumentError(field, 'an integer >= 1', value);
  return value;
}
