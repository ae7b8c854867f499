import { KeelError } from '../errors/index.ts';
import type { CircuitState } from './circuit-state.ts';

/**
 * A breaker refused the call without running it. `retryAfterMs` is how long until the breaker
 * lets a probe through (undefined when it is half-open and its probe slots are taken): retry
 * honours it, so a retry outside a breaker waits for the half-open instant instead of
 * hammering an open circuit.
 */
export class BrokenCircuitError extends KeelError {
  readonly retryAfterMs: number | undefined;
  constructor(state: CircuitState, retryAfterMs: number | undefined) {
    super('KEEL_BROKEN_CIRCUIT', `circuit is ${state.status}; the call was not made`, {
      details: retryAfterMs === undefined ? { state: state.status } : { state: state.status, retryAfterMs },
    });
    this.retryAfterMs = retryAfterMs;
  }
}

/** A breaker was isolated by hand and refuses every call until `reset()`. Retrying cannot help. */
export class IsolatedCircuitError extends KeelError {
  constructor() {
    super('KEEL_CIRCUIT_ISOLATED', 'circuit is isolated; the call was not made');
  }
}

export class BulkheadRejectedError extends KeelError {
  constructor(maxConcurrent: number, maxQueue: number) {
    super('KEEL_BULKHEAD_REJECTED', `bulkhead is full (${maxConcurrent} running, ${maxQueue} queued)`, {
      details: { maxConcurrent, maxQueue },
    });
  }
}

/**
 * Work did not finish within `timeoutMs`. In aggressive mode the work may still be running
 * when this is thrown: `settled` resolves when it has stopped, and a bulkhead outside the
 * timeout keeps its slot until then.
 */
export class TimeoutError extends KeelError {
  readonly timeoutMs: number;
  readonly settled: Promise<void> | undefined;
  constructor(timeoutMs: number, options: { cause?: unknown; settled?: Promise<void> } = {}) {
    super('KEEL_TIMEOUT', `timed out after ${timeoutMs} ms`, {
      cause: options.cause,
      details: { timeoutMs },
    });
    this.timeoutMs = timeoutMs;
    this.settled = options.settled;
  }
}

/** A rate limiter had no token. `retryAfterMs` is when the next token is due. */
export class RateLimitedError extends KeelError {
  readonly retryAfterMs: number;
  constructor(retryAfterMs: number) {
    super('KEEL_RATE_LIMITED', `rate limited; retry after ${Math.ceil(retryAfterMs)} ms`, {
      details: { retryAfterMs: Math.ceil(retryAfterMs) },
    });
    this.retryAfterMs = retryAfterMs;
  }
}

/**
 * The delay an error asks for before the next try, if any: a numeric `retryAfterMs` property,
 * which keel's own errors carry and an HTTP client can set from a `Retry-After` header.
 */
export function retryAfterOf(error: unknown): number | undefined {
  if (typeof error !== 'object' || error === null) return undefined;
  const value = (error as { retryAfterMs?: unknown }).retryAfterMs;
  return typeof value === 'number' && Number.isFinite(value) && value >= 0 ? value : undefined;
}
