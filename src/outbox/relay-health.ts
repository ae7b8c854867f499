// What both relays (the table's and the WAL's) record for `health()`: the outcome of each of their
// own calls to a dependency, and which failed publishes say the broker is failing. The record
// itself is the service's HealthRecord (src/service/service-health.ts).
import type { HealthRecord } from '../service/index.ts';
import { BrokenCircuitError, IsolatedCircuitError, type CircuitBreakerPolicy } from '../resilience/index.ts';
import { isPermanentPublishError } from './relay-policy.ts';

/** The table relay's dependencies. */
export type OutboxRelayDependency = 'database' | 'broker';

/** The WAL relay's dependencies: its replication stream is a connection of its own. */
export type WalOutboxRelayDependency = 'replication' | 'broker' | 'database';

/** What a relay's parts report to: the relay's HealthRecord, or any part of its dependencies. */
export type RelayHealth<D extends string> = Pick<
  HealthRecord<D>,
  'succeeded' | 'failed' | 'track' | 'calling'
>;

/**
 * Records a publish that failed, unless it failed for what the messages are: a permanent error
 * (keel's argument or validation errors, also as a `PublishError`'s cause; the breaker ignores
 * them too) is the message's problem, and says nothing about the broker. A call the breaker
 * refused (open, isolated) counts: no publish gets through.
 */
export function publishFailed(health: RelayHealth<'broker'>, error: unknown): void {
  if (isBreakerRefusal(error) || !isPermanentPublishError(error)) health.failed('broker', error, 'publish');
}

/**
 * The error a call through `breaker` would fail with at `now`, when it refuses calls (open before its
 * time is up, or isolated by hand); undefined when it lets calls through. A relay that publishes
 * nothing because of it records it, so a breaker opened elsewhere (a shared state store) or
 * isolated by an operator makes the broker failing too, not only the failures that opened it here.
 */
export function breakerRefusal(breaker: CircuitBreakerPolicy, now: number): Error | undefined {
  const state = breaker.state;
  if (state.status === 'isolated') return new IsolatedCircuitError();
  if (state.status === 'open') return new BrokenCircuitError(state, Math.max(0, state.until - now));
  return undefined;
}

function isBreakerRefusal(error: unknown): boolean {
  return error instanceof BrokenCircuitError || error instanceof IsolatedCircuitError;
}
