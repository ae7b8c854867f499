/**
 * Jitter spreads retries from many clients over time, so a dependency that comes back is not
 * hit by every client at the same instant (the thundering herd). Each function takes the
 * random source as a parameter, so tests and property checks can pin it.
 *
 * `random` returns a number in [0, 1), like `Math.random`.
 */
export type Random = () => number;

export type JitterKind = 'none' | 'full' | 'equal' | 'decorrelated';

/** Full jitter: uniform in [0, delay). The widest spread; AWS's recommended default. */
export function fullJitter(delay: number, random: Random = Math.random): number {
  return random() * delay;
}

/** Equal jitter: uniform in [delay / 2, delay). Keeps at least half the wait, still spreads. */
export function equalJitter(delay: number, random: Random = Math.random): number {
  const half = delay / 2;
  // min(): with tiny (subnormal) delays the rounding of half + half can exceed delay.
  return Math.min(delay, half + random() * half);
}

/**
 * Decorrelated jitter: uniform in [base, previous × 3), capped at `cap`. Each wait depends on
 * the previous one rather than on the attempt number, so clients drift apart over time.
 * `previous` is the last delay returned (use `base` before the first retry).
 */
export function decorrelatedJitter(
  previous: number,
  base: number,
  cap: number,
  random: Random = Math.random,
): number {
  const high = Math.max(base, previous * 3);
  return Math.min(cap, base + random() * (high - base));
}
