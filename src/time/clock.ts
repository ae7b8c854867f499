import { LongTimer, maxTimerMs } from './long-timer.ts';

/** An opaque handle for a timer set through a `Clock`. */
export type TimerHandle = { readonly __timer: unique symbol } | object;

/**
 * The only way keel reads time or waits. Production code takes a `Clock`; tests pass a
 * `ManualClock` and advance it, so every timing path is deterministic and nothing sleeps.
 */
export interface Clock {
  /** Milliseconds since the Unix epoch. */
  now(): number;
  /** Calls `fn` once after `ms` milliseconds (0 when negative). */
  setTimeout(fn: () => void, ms: number): TimerHandle;
  /** Cancels a timer; a no-op for a timer that already fired or was cleared. */
  clearTimeout(handle: TimerHandle): void;
}

/**
 * The wall clock and Node's timers. Timers keep the process alive, as Node's do: a worker whose
 * only pending work is its next poll must not exit. Services clear their timers on stop. A delay
 * longer than Node's timers take (~24.8 days: a saga's month-long reply deadline) waits in steps
 * instead of firing at once, as Node would make it.
 */
export class SystemClock implements Clock {
  now(): number {
    return Date.now();
  }

  setTimeout(fn: () => void, ms: number): TimerHandle {
    return ms > maxTimerMs ? new LongTimer(fn, ms) : setTimeout(fn, Math.max(0, ms));
  }

  clearTimeout(handle: TimerHandle): void {
    if (handle instanceof LongTimer) handle.clear();
    else clearTimeout(handle as NodeJS.Timeout);
  }
}

export const systemClock: Clock = new SystemClock();
