/**
 * The longest delay Node's timers take: a longer one (2^31 ms, ~24.8 days, and above) is cut to
 * 1 ms with a TimeoutOverflowWarning, so a 30-day deadline would fire at once.
 */
export const maxTimerMs = 2 ** 31 - 1;

/**
 * A timer longer than Node's timers go: it waits in steps of at most `stepMs`, and calls `fn`
 * once the full delay has passed by the wall clock. `ref()` and `unref()` apply to every step,
 * as they would to one Node timer; an endless delay (Infinity) never fires.
 */
export class LongTimer {
  readonly #fn: () => void;
  readonly #dueAt: number;
  readonly #stepMs: number;
  #timer: NodeJS.Timeout | undefined;
  #refed = true;

  constructor(fn: () => void, ms: number, stepMs = maxTimerMs) {
    this.#fn = fn;
    this.#dueAt = Date.now() + ms;
    this.#stepMs = stepMs;
    this.#arm();
  }

  ref(): this {
    this.#refed = true;
    this.#timer?.ref();
    return this;
  }

  unref(): this {
    this.#refed = false;
    this.#timer?.unref();
    return this;
  }

  clear(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #arm(): void {
    const left = this.#dueAt - Date.now();
    if (left <= 0) {
      this.#timer = undefined;
      this.#fn();
      return;
    }
    this.#timer = setTimeout(() => this.#arm(), Math.min(left, this.#stepMs));
    if (!this.#refed) this.#timer.unref();
  }
}
