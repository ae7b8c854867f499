import { InvalidArgumentError } from '../errors/index.ts';
import type { Clock, TimerHandle } from './clock.ts';

interface ManualTimer {
  readonly at: number;
  readonly seq: number;
  readonly fn: () => void;
}

/** A fixed reference instant, so tests that print times print the same ones every run. */
export const referenceInstant = Date.UTC(2026, 0, 1);

/**
 * A clock that moves only when a test says so. `advance(ms)` fires every timer that falls due
 * in order of due time (ties in the order they were set), and lets promise continuations run
 * between timers, so code that awaits a timer and then sets the next one behaves as it would
 * in real time.
 */
export class ManualClock implements Clock {
  #now: number;
  #seq = 0;
  #timers: ManualTimer[] = [];

  constructor(start: number = referenceInstant) {
    this.#now = start;
  }

  now(): number {
    return this.#now;
  }

  setTimeout(fn: () => void, ms: number): TimerHandle {
    const timer: ManualTimer = { at: this.#now + Math.max(0, ms), seq: this.#seq++, fn };
    this.#timers.push(timer);
    return timer;
  }

  clearTimeout(handle: TimerHandle): void {
    const index = this.#timers.indexOf(handle as ManualTimer);
    if (index >= 0) this.#timers.splice(index, 1);
  }

  /** Timers set and not yet fired or cleared. */
  get pendingTimers(): number {
    return this.#timers.length;
  }

  /** Milliseconds until the next timer is due, or undefined when none is set. */
  nextTimerIn(): number | undefined {
    const next = this.#next();
    return next === undefined ? undefined : next.at - this.#now;
  }

  /** Moves time forward by `ms`, firing due timers in order and settling promises after each. */
  async advance(ms: number): Promise<void> {
    if (!Number.isFinite(ms) || ms < 0) throw new InvalidArgumentError('ms', 'a finite number >= 0', ms);
    const target = this.#now + ms;
    await settle();
    for (;;) {
      const next = this.#next();
      if (next === undefined || next.at > target) break;
      this.#timers.splice(this.#timers.indexOf(next), 1);
      this.#now = Math.max(this.#now, next.at);
      next.fn();
      await settle();
    }
    this.#now = target;
    await settle();
  }

  /** Advances to the next due timer and fires it (and any due at the same instant). */
  async advanceToNext(): Promise<boolean> {
    const wait = this.nextTimerIn();
    if (wait === undefined) return false;
    await this.advance(wait);
    return true;
  }

  /**
   * Fires timers until none is left, up to `limit` of them: for code whose total delay is not
   * known in advance. Throws when the limit is hit, since that means a timer loop never ends.
   */
  async runAll(limit = 10_000): Promise<void> {
    for (let fired = 0; fired < limit; fired++) {
      if (!(await this.advanceToNext())) return;
    }
    throw new Error(`ManualClock.runAll: still ${this.#timers.length} timers after firing ${limit}`);
  }

  #next(): ManualTimer | undefined {
    let next: ManualTimer | undefined;
    for (const timer of this.#timers) {
      if (next === undefined || timer.at < next.at || (timer.at === next.at && timer.seq < next.seq))
        next = timer;
    }
    return next;
  }
}

/** Lets every queued promise continuation run: one macrotask turn drains the microtask queue. */
function settle(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
