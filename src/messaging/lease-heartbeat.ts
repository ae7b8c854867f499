import type { Clock, TimerHandle } from '../time/index.ts';

/**
 * Calls `beat` every `everyMs` (measured from the end of the previous beat, so beats never
 * overlap) until stopped. The consumer runtime renews every held lease in one call per beat.
 */
export class LeaseHeartbeat {
  readonly #clock: Clock;
  readonly #everyMs: number | undefined;
  readonly #beat: () => Promise<void>;
  #timer: TimerHandle | undefined;
  #beating: Promise<void> | undefined;
  #stopped = true;

  /** `everyMs` undefined: never beats (a source without leases, or renewal turned off). */
  constructor(clock: Clock, everyMs: number | undefined, beat: () => Promise<void>) {
    this.#clock = clock;
    this.#everyMs = everyMs;
    this.#beat = beat;
  }

  start(): void {
    this.#stopped = false;
    this.#schedule();
  }

  /** No beat starts after this; resolves when a beat under way has ended. */
  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer !== undefined) this.#clock.clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.#beating;
  }

  #schedule(): void {
    const every = this.#everyMs;
    if (every === undefined || this.#stopped) return;
    this.#timer = this.#clock.setTimeout(() => {
      this.#timer = undefined;
      this.#beating = this.#beat().finally(() => {
        this.#beating = undefined;
        this.#schedule();
      });
    }, every);
  }
}
