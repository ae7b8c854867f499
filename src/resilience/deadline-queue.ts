import type { Clock, TimerHandle } from '../time/index.ts';

/** One bounded piece of work: `expire()` runs if it is still pending at its deadline. */
export interface Deadline {
  readonly at: number;
  /** Set by the owner when the work settles; the queue then skips it. */
  done: boolean;
  expire(): void;
}

/**
 * Deadlines of one timeout policy, all of the same length, so they fall due in the order they
 * were added: a FIFO with ONE clock timer for the earliest, instead of a timer per call.
 * Setting and clearing a Node timer per call costs more than a whole retry; here a call only
 * appends to an array, and a sequential caller's entry is removed again as it completes.
 */
export class DeadlineQueue {
  readonly #clock: Clock;
  #items: Deadline[] = [];
  #head = 0;
  #timer: TimerHandle | undefined;
  readonly #fire = (): void => this.#expire();

  constructor(clock: Clock) {
    this.#clock = clock;
  }

  add(deadline: Deadline): void {
    this.#items.push(deadline);
    if (this.#timer === undefined) this.#arm(deadline.at);
  }

  /** Drops completed entries from the front, so sequential traffic leaves nothing behind. */
  compact(): void {
    const items = this.#items;
    while (this.#head < items.length && items[this.#head]!.done) this.#head++;
    if (this.#head === items.length) {
      // Reuse the array: no garbage for the common case of one call at a time.
      items.length = 0;
      this.#head = 0;
    } else if (this.#head > 1024 && this.#head * 2 > items.length) {
      this.#items = items.slice(this.#head);
      this.#head = 0;
    }
  }

  get size(): number {
    return this.#items.length - this.#head;
  }

  #arm(at: number): void {
    this.#timer = this.#clock.setTimeout(this.#fire, at - this.#clock.now());
  }

  #expire(): void {
    this.#timer = undefined;
    const now = this.#clock.now();
    const items = this.#items;
    while (this.#head < items.length) {
      const item = items[this.#head]!;
      if (!item.done && item.at > now) break;
      this.#head++;
      if (!item.done) {
        item.done = true;
        item.expire();
      }
    }
    this.compact();
    if (this.#head < this.#items.length) this.#arm(this.#items[this.#head]!.at);
  }

  /** Stops the timer; pending deadlines will not fire. */
  dispose(): void {
    if (this.#timer !== undefined) this.#clock.clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}
