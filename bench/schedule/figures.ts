// What bench/schedule reads from the effects: lateness per tick, and how fast a burst was fired.
import type { Effect, EffectLog } from './effect.ts';

/** The first effect of each schedule for `tick` (a duplicate, if any, is counted apart). */
export function firstPerSchedule(log: EffectLog, tick: number): Effect[] {
  const first = new Map<string, Effect>();
  for (const effect of log.forTick(tick)) {
    const seen = first.get(effect.schedule);
    if (seen === undefined || effect.committedAt < seen.committedAt) first.set(effect.schedule, effect);
  }
  return [...first.values()];
}

export function median(values: readonly number[]): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

export interface Burst {
  /** Schedules whose effect for the tick committed within the budget. */
  fired: number;
  expected: number;
  /** From the tick to the last effect's commit, or to the end of the budget when some never came. */
  spanMs: number;
  firstMs: number;
  p50Ms: number;
  /** fired / span. */
  perSecond: number;
  /** Effects per scheduler, where several fired. */
  split: Map<number, number>;
}

/** The burst of `expected` schedules due at `tick`, as far as it got by `budgetEnd`. */
export function burstOf(log: EffectLog, tick: number, expected: number, budgetEnd: number): Burst {
  const effects = firstPerSchedule(log, tick);
  const late = effects.map((effect) => effect.committedAt - tick);
  const spanMs = effects.length < expected ? budgetEnd - tick : Math.max(...late);
  const split = new Map<number, number>();
  for (const effect of effects)
    if (effect.by !== undefined) split.set(effect.by, (split.get(effect.by) ?? 0) + 1);
  return {
    fired: effects.length,
    expected,
    spanMs,
    firstMs: late.length === 0 ? NaN : Math.min(...late),
    p50Ms: median(late),
    perSecond: effects.length / (spanMs / 1000),
    split,
  };
}

export const fmt = (n: number, digits = 0): string =>
  Number.isFinite(n)
    ? n.toLocaleString('en', { maximumFractionDigits: digits, minimumFractionDigits: digits })
    : 'n/a';

/** A duration in ms as printed: a decimal below 100 ms, whole ms above. */
export const ms = (n: number): string => fmt(n, Math.abs(n) < 100 ? 1 : 0);
