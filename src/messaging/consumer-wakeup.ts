import type { Clock, TimerHandle } from '../time/index.ts';

/**
 * How the consumer runtime's loop waits for something to do: `pause(ms)` resolves on the first
 * `wake()` (a notify, a pushed message, a finished handler, an ack), on `stop()`, or after `ms`.
 *
 * Wake-ups are taken together once per turn of the event loop: a pause a wake-up ends resolves
 * at the next turn (`setImmediate`, not a timer: no time passes and no clock is read), so
 * messages an engine pushes in one read, or handlers finishing together, lead to one claim. A
 * wake-up while the loop is at work is remembered (`pending`), and its next pause ends at the
 * next turn.
 */
export class ConsumerWakeup {
  readonly #clock: Clock;
  /** Resolves the loop's current pause; set only while it pauses. */
  #resume: (() => void) | undefined;
  /** A wake-up came since the loop last looked: look again. */
  #pending = false;
  /** The pause ends at the next turn of the event loop, for every wake-up of this one. */
  #resuming = false;
  #stopped = false;
  /** When the current pause ends if nothing wakes the loop first. */
  #pollAt = 0;
  /**
   * One poll timer, kept across pauses: a pause moves `#pollAt` and a timer that fires early
   * sets itself again for the rest, instead of a timer set and cleared for every pause (under
   * load, several per claim).
   */
  #pollTimer: TimerHandle | undefined;
  #pollTimerAt = 0;

  constructor(clock: Clock) {
    this.#clock = clock;
  }

  /** The loop is about to look for work: wake-ups from here on call for another look. */
  looking(): void {
    this.#pending = false;
  }

  wake(): void {
    this.#pending = true;
    if (this.#resume !== undefined) this.#resumeNextTurn();
  }

  /** Ends the current pause now, and every later one at once; clears the poll timer. */
  stop(): void {
    this.#stopped = true;
    this.#resumeNow();
    if (this.#pollTimer !== undefined) this.#clock.clearTimeout(this.#pollTimer);
    this.#pollTimer = undefined;
  }

  /** Waits for a wake-up (or one that came while the loop worked), `stop()`, or `ms`. */
  pause(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      this.#resume = resolve;
      if (this.#stopped) this.#resumeNow();
      else if (this.#pending) this.#resumeNextTurn();
      else this.#pollIn(ms);
    });
  }

  #resumeNextTurn(): void {
    if (this.#resuming) return;
    this.#resuming = true;
    setImmediate(this.#onNextTurn);
  }

  readonly #onNextTurn = (): void => {
    this.#resuming = false;
    this.#resumeNow();
  };

  #resumeNow(): void {
    const resume = this.#resume;
    this.#resume = undefined;
    resume?.();
  }

  /** Ends the current pause `ms` from now, unless a wake-up ends it first. */
  #pollIn(ms: number): void {
    const at = this.#clock.now() + ms;
    this.#pollAt = at;
    if (this.#pollTimer !== undefined) {
      // Due no later: when it fires it sets itself again for what is left.
      if (this.#pollTimerAt <= at) return;
      this.#clock.clearTimeout(this.#pollTimer);
    }
    this.#pollTimerAt = at;
    this.#pollTimer = this.#clock.setTimeout(this.#onPollTimer, ms);
  }

  readonly #onPollTimer = (): void => {
    this.#pollTimer = undefined;
    // Not pausing: the loop is at work, and its next pause sets a timer again.
    if (this.#resume === undefined) return;
    const left = this.#pollAt - this.#clock.now();
    if (left > 0) {
      this.#pollTimerAt = this.#pollAt;
      this.#pollTimer = this.#clock.setTimeout(this.#onPollTimer, left);
      return;
    }
    this.#resumeNow();
  };
}
