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
 * writes a slot, and a sequential caller's slot is freed again as it completes.
 *
 * The timer is not cleared when the queue empties (that would cost a clear and a set per
 * call); it fires once, finds nothing and is not re-armed. `dispose()` clears it.
 *
 * A Node timer is unref'd, as Node's own `AbortSignal.timeout()` is: a deadline bounds other
 * work, which keeps the process alive while it runs; otherwise a script's last call would hold
 * the process open for a whole timeout after it finished.
 */
export class DeadlineQueue {
  readonly #clock: Clock;
  /** Slots [head, tail) are live; the array is reused, its length only grows (or resets when large). */
  #items: (Deadline | undefined)[] = [];
  #head = 0;
  #tail = 0;
  #timer: TimerHandle | undefined;
  readonly #fire = (): void => this.#expire();

  constructor(clock: Clock) {
    this.#clock = clock;
  }

  add(deadline: Deadline): void {
    if (this.#tail < this.#items.length) this.#items[this.#tail] = deadline;
    else this.#items.push(deadline);
    this.#tail++;
    if (this.#timer === undefined) this.#arm(deadline.at);
  }

  /** Frees completed entries at the front, so sequential traffic leaves nothing behind. */
  compact(): void {
    const items = this.#items;
    let head = this.#head;
    while (head < this.#tail && items[head]!.done) items[head++] = undefined;
    if (head === this.#tail) {
      head = 0;
      this.#tail = 0;
      // Setting length costs more than the rest of a call: only shrink a large array.
      if (items.length > 1024) items.length = 0;
    } else if (head > 1024 && head * 2 > this.#tail) {
      this.#items = items.slice(head, this.#tail);
      this.#tail -= head;
      head = 0;
    }
    this.#head = head;
  }

  /** Live entries, settled ones behind a pending one included. */
  get size(): number {
    return this.#tail - this.#head;
  }

  /** Stops the timer; pending deadlines will not fire. */
  dispose(): void {
    if (this.#timer !== undefined) this.#clock.clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #arm(at: number): void {
    const timer = this.#clock.setTimeout(this.#fire, at - this.#clock.now());
    // Other clocks' handles (the manual clock's) have no unref.
    (timer as { unref?: () => unknown }).unref?.();
    this.#timer = timer;
  }

  #expire(): void {
    this.#timer = undefined;
    const now = this.#clock.now();
    const items = this.#items;
    while (this.#head < this.#tail) {
      const item = items[this.#head]!;
      if (!item.done && item.at > now) break;
      items[this.#head++] = undefined;
      if (!item.done) {
        item.done = true;
        item.expire();
      }
    }
    this.compact();
    if (this.#head < this.#tail) this.#arm(items[this.#head]!.at);
  }
}
