// When a started relay's loop runs its next round: at once on a NOTIFY of the outbox channel (a
// row committed) or a stop; else after the poll interval, the fallback for rows no NOTIFY
// announces (a retry coming due, a lapsed claim) and for a NOTIFY lost, or sooner when the open
// breaker lets a probe through; after a backoff when a round failed.
import type { Db, Unlisten } from '../db/db.ts';
import type { CircuitBreakerPolicy } from '../resilience/index.ts';
import type { Clock, TimerHandle } from '../time/index.ts';
import { outboxChannel } from './schema.ts';

export class RelayWakeUps {
  readonly #clock: Clock;
  readonly #pollIntervalMs: number;
  readonly #breaker: CircuitBreakerPolicy;
  #unlisten: Unlisten | undefined;
  #stopping = false;
  #pending = false;
  #wakeUp: (() => void) | undefined;

  constructor(clock: Clock, pollIntervalMs: number, breaker: CircuitBreakerPolicy) {
    this.#clock = clock;
    this.#pollIntervalMs = pollIntervalMs;
    this.#breaker = breaker;
  }

  /** The relay is stopping: the loop ends after the round in hand, and waits no more. */
  get stopping(): boolean {
    return this.#stopping;
  }

  /** A wake-up came since the round began (`beginRound`): the loop goes on without waiting. */
  get pending(): boolean {
    return this.#pending;
  }

  /** Wakes the loop on each NOTIFY of the outbox channel, until `unlisten`. */
  async listen(db: Db): Promise<void> {
    this.#unlisten = await db.listen(outboxChannel, () => this.wake());
  }

  async unlisten(): Promise<void> {
    await this.#unlisten?.();
  }

  /** Forgets the wake-ups so far: the round that begins looks for every row committed before it. */
  beginRound(): void {
    this.#pending = false;
  }

  wake(): void {
    this.#pending = true;
    this.#wakeUp?.();
  }

  /** Ends the wait in progress, and every wait after it at once. */
  stop(): void {
    this.#stopping = true;
    this.wake();
  }

  /** Until the next poll, or until the breaker lets a probe through if that comes first. */
  idle(): Promise<void> {
    return this.#pause(this.#idleMs());
  }

  /** After `failures` rounds in a row failed: the poll interval doubled per failure (5 times at most), 30 s at most. */
  backOff(failures: number): Promise<void> {
    return this.#pause(Math.min(30_000, this.#pollIntervalMs * 2 ** Math.min(failures, 5)));
  }

  #idleMs(): number {
    const state = this.#breaker.state;
    if (state.status !== 'open') return this.#pollIntervalMs;
    return Math.max(1, Math.min(this.#pollIntervalMs, state.until - this.#clock.now()));
  }

  #pause(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      let timer: TimerHandle | undefined = undefined;
      const done = (): void => {
        this.#wakeUp = undefined;
        if (timer !== undefined) this.#clock.clearTimeout(timer);
        resolve();
      };
      this.#wakeUp = done;
      timer = this.#clock.setTimeout(done, ms);
      if (this.#stopping) done();
    });
  }
}
