import { InvalidArgumentError } from '../errors/index.ts';
import { decorrelatedJitter, equalJitter, fullJitter, type JitterKind, type Random } from './jitter.ts';

/**
 * How long to wait before each retry. Stateless: the caller passes the retry number and the
 * previous delay, so one `Backoff` serves any number of concurrent executions without
 * allocating per call.
 */
export interface Backoff {
  /**
   * Milliseconds to wait before retry number `retry` (1 for the first retry, that is the wait
   * after the first failed attempt). `previous` is the delay this backoff returned for the
   * previous retry of the same execution, 0 before the first.
   */
  delay(retry: number, previous: number): number;
}

/** The same wait before every retry. */
export function constantBackoff(delayMs: number): Backoff {
  requireNonNegative('delayMs', delayMs);
  return { delay: () => delayMs };
}

export interface ExponentialBackoffOptions {
  /** Wait before the first retry, in ms. Default 100. */
  initialMs?: number;
  /** Each wait is the previous one times `factor` (before jitter). Default 2. */
  factor?: number;
  /** No wait is longer than this, in ms, jitter included. Default 30 000. */
  maxMs?: number;
  /** How to spread the waits: see `jitter.ts`. Default 'full'. */
  jitter?: JitterKind;
  /** Random source in [0, 1). Default `Math.random`. */
  random?: Random;
}

/**
 * Exponential backoff: `min(maxMs, initialMs × factor^(retry − 1))`, then jitter. With
 * 'decorrelated' jitter the wait is drawn from [initialMs, previous × 3) instead, capped at maxMs.
 */
export function exponentialBackoff(options: ExponentialBackoffOptions = {}): Backoff {
  const initialMs = options.initialMs ?? 100;
  const factor = options.factor ?? 2;
  const maxMs = options.maxMs ?? 30_000;
  const jitter = options.jitter ?? 'full';
  const random = options.random ?? Math.random;
  requireNonNegative('initialMs', initialMs);
  if (!Number.isFinite(factor) || factor < 1)
    throw new InvalidArgumentError('factor', 'a finite number >= 1', factor);
  if (!(maxMs >= initialMs) || Number.isNaN(maxMs)) {
    throw new InvalidArgumentError('maxMs', `a number >= initialMs (${initialMs})`, maxMs);
  }
  if (!['none', 'full', 'equal', 'decorrelated'].includes(jitter)) {
    throw new InvalidArgumentError('jitter', "'none', 'full', 'equal' or 'decorrelated'", jitter);
  }
  if (typeof random !== 'function')
    throw new InvalidArgumentError('random', 'a function returning [0, 1)', random);

  // 0 × Infinity is NaN: a zero initial wait stays zero however many retries there were.
  const capped = (retry: number): number =>
    initialMs === 0 ? 0 : Math.min(maxMs, initialMs * Math.pow(factor, Math.max(0, retry - 1)));
  switch (jitter) {
    case 'none':
      return { delay: capped };
    case 'full':
      return { delay: (retry) => fullJitter(capped(retry), random) };
    case 'equal':
      return { delay: (retry) => equalJitter(capped(retry), random) };
    case 'decorrelated':
      return {
        delay: (_retry, previous) =>
          decorrelatedJitter(previous > 0 ? previous : initialMs, initialMs, maxMs, random),
      };
  }
}

function requireNonNegative(field: string, value: number): void {
  if (!Number.isFinite(value) || value < 0)
    throw new InvalidArgumentError(field, 'a finite number >= 0', value);
}
