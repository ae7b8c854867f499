/**
 * A breaker's state as plain JSON-able data: a store can save it, another process can load
 * it, a dashboard can print it. Times are epoch milliseconds on the breaker's clock.
 */
export type CircuitState =
  /** Calls flow; outcomes are counted. */
  | { readonly status: 'closed'; readonly since: number }
  /** Calls fail fast until `until`; then the next call finds the breaker half-open. */
  | { readonly status: 'open'; readonly since: number; readonly until: number; readonly reason: OpenReason }
  /** Up to `halfOpenProbes` calls run as probes; every other call fails fast. */
  | { readonly status: 'half-open'; readonly since: number }
  /** Opened by hand; stays open until `reset()`. */
  | { readonly status: 'isolated'; readonly since: number };

export type CircuitStatus = CircuitState['status'];

export type OpenReason = 'consecutive-failures' | 'failure-rate' | 'slow-call-rate' | 'probe-failed';

const reasons: ReadonlySet<string> = new Set([
  'consecutive-failures',
  'failure-rate',
  'slow-call-rate',
  'probe-failed',
]);

/** Checks data loaded from a store before a breaker adopts it. */
export function isCircuitState(value: unknown): value is CircuitState {
  if (typeof value !== 'object' || value === null) return false;
  const v = value as Record<string, unknown>;
  if (typeof v.since !== 'number' || !Number.isFinite(v.since)) return false;
  switch (v.status) {
    case 'closed':
    case 'half-open':
    case 'isolated':
      return true;
    case 'open':
      return (
        typeof v.until === 'number' &&
        v.until >= v.since &&
        typeof v.reason === 'string' &&
        reasons.has(v.reason)
      );
    default:
      return false;
  }
}
