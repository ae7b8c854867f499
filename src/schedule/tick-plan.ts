import type { Schedule } from './schedule-definition.ts';

/** What a scheduler does with a due schedule whose next tick is `nextTick`, at `now`. */
export type TickPlan =
  /** Fire `tick`; ticks from `nextTick` up to it, if any, are passed over. */
  | { kind: 'fire'; tick: number }
  /** Every due tick is older than the catch-up window: move on to `nextTick` without firing. */
  | { kind: 'skip'; nextTick: number };

/**
 * The catch-up rules in one place. Due ticks older than the window are skipped; of those within
 * it, `'each'` fires the oldest (the next pass fires the one after), `'latest'` the newest.
 * `nextTick` is a tick of the schedule's own timing: it was planned by it.
 */
export function planTick(schedule: Schedule, nextTick: number, now: number): TickPlan {
  const windowStart = now - schedule.catchUpWindowMs;
  const first = nextTick >= windowStart ? nextTick : schedule.nextTickAfter(windowStart - 1);
  if (first > now) return { kind: 'skip', nextTick: first };
  return { kind: 'fire', tick: schedule.catchUp === 'latest' ? schedule.lastTickAtOrBefore(now) : first };
}
