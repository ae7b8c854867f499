import { trace, type Meter } from '@opentelemetry/api';
import {
  BulkheadPolicy,
  CircuitBreakerPolicy,
  RateLimiterPolicy,
  RetryPolicy,
  TimeoutPolicy,
  type CircuitStatus,
} from '../resilience/index.ts';
import type { ListenerHandle } from '../service/index.ts';
import { keelAttributes, metricNames, spanEvents } from './names.ts';

/** The policies to watch, each under a name that becomes the `keel.policy` attribute. */
export type NamedPolicies = Readonly<
  Record<string, RetryPolicy | CircuitBreakerPolicy | TimeoutPolicy | BulkheadPolicy | RateLimiterPolicy>
>;

/** Breaker state as a number, for the `keel.breaker.state` gauge. */
export const breakerStateValue: Readonly<Record<CircuitStatus, number>> = {
  closed: 0,
  'half-open': 1,
  open: 2,
  isolated: 3,
};

/**
 * Attaches to resilience policies' events (the policies know nothing of OpenTelemetry):
 * `keel.policy.retries`, `keel.policy.rejections` (breaker open, bulkhead full, rate limited),
 * `keel.policy.timeouts`, `keel.breaker.transitions` (by `keel.breaker.state` entered) and the
 * `keel.breaker.state` gauge (0 closed, 1 half-open, 2 open, 3 isolated), all by `keel.policy`.
 * A rejection is an expected outcome: counted, never an error.
 *
 * On the caller's active span (when there is one): a `keel.retry` event per retry, a
 * `keel.timeout` event per timeout, and `keel.breaker.state` when a breaker rejects the call.
 */
export function instrumentPolicies(policies: NamedPolicies, meter: Meter): ListenerHandle {
  const retries = meter.createCounter(metricNames.policyRetries, { description: 'Retries scheduled' });
  const rejections = meter.createCounter(metricNames.policyRejections, {
    description: 'Calls failed fast without running: breaker open, bulkhead full, rate limited',
  });
  const timeouts = meter.createCounter(metricNames.policyTimeouts, {
    description: 'Calls that hit their timeout',
  });
  const transitions = meter.createCounter(metricNames.breakerTransitions, {
    description: 'Circuit breaker state changes, by the state entered',
  });
  const state = meter.createObservableGauge(metricNames.breakerState, {
    description: 'Circuit breaker state: 0 closed, 1 half-open, 2 open, 3 isolated',
  });
  const handles: ListenerHandle[] = [];
  const breakers: [string, CircuitBreakerPolicy][] = [];
  for (const [name, policy] of Object.entries(policies)) {
    const attributes = { [keelAttributes.policy]: name };
    if (policy instanceof RetryPolicy) {
      handles.push(
        policy.events.on('retry', ({ attempt, delayMs }) => {
          retries.add(1, attributes);
          // Emitted inside the caller's execute(): the active span is the call being retried.
          trace.getActiveSpan()?.addEvent(spanEvents.retry, {
            ...attributes,
            [keelAttributes.attempt]: attempt,
            'keel.delay_ms': delayMs,
          });
        }),
      );
    } else if (policy instanceof CircuitBreakerPolicy) {
      breakers.push([name, policy]);
      handles.push(
        policy.events.on('rejected', ({ state }) => {
          rejections.add(1, attributes);
          // An open breaker is an expected outcome: an attribute on the caller's span, not an error.
          trace
            .getActiveSpan()
            ?.setAttributes({ ...attributes, [keelAttributes.breakerState]: state.status });
        }),
      );
      handles.push(
        policy.events.on('stateChange', ({ to }) =>
          transitions.add(1, { ...attributes, [keelAttributes.breakerState]: to.status }),
        ),
      );
    } else if (policy instanceof TimeoutPolicy) {
      handles.push(
        policy.events.on('timeout', ({ timeoutMs }) => {
          timeouts.add(1, attributes);
          trace
            .getActiveSpan()
            ?.addEvent(spanEvents.timeout, { ...attributes, 'keel.timeout_ms': timeoutMs });
        }),
      );
    } else if (policy instanceof BulkheadPolicy || policy instanceof RateLimiterPolicy) {
      handles.push(policy.events.on('rejected', () => rejections.add(1, attributes)));
    }
  }
  const observe = (result: { observe(value: number, attributes: Record<string, string>): void }): void => {
    for (const [name, breaker] of breakers) {
      result.observe(breakerStateValue[breaker.state.status], { [keelAttributes.policy]: name });
    }
  };
  if (breakers.length > 0) state.addCallback(observe);
  const dispose = (): void => {
    for (const handle of handles) handle.dispose();
    state.removeCallback(observe);
  };
  return { dispose, [Symbol.dispose]: dispose };
}
