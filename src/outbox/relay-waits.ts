// A relay's waits, one at a time: each ends when its time is up, on a wake-up, or at once when
// the relay stops. Both relays wait on it: the table relay's loop through RelayWakeUps
// (outbox-relay-wake-ups.ts), the WAL relay's publisher and its stream's reconnects directly.
import type { Clock, TimerHandle } from '../time/index.ts';

export class RelayWaits {
  protected readonly clock: Clock;
  #stopping = false;
  #wakeUp: (() => void) | undefined;

  constructor(clock: Clock) {
    this.clock = clock;
  }

  /** The relay is stopping: every wait from now on ends at once. */
  get stopping(): boolean {
    return this.#stopping;
  }

  /** Ends the wait in progress, if any. */
  wake(): void {
    this.#wakeUp?.();
  }

  /** Ends the wait in progress, and every wait after it at once. */
  stop(): void {
    this.#stopping = true;
    this.wake();
  }

  /** Until `ms` have passed, or a wake-up or a stop comes first. */
  wait(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      let timer: TimerHandle | undefined = undefined;
      const done = (): void => {
        // Forgets only its own wake-up, should a later wait have taken its place.
        if (this.#wakeUp === done) this.#wakeUp = undefined;
        if (timer !== undefined) this.clock.clearTimeout(timer);
        resolve();
      };
      this.#wakeUp = done;
      timer = this.clock.setTimeout(done, ms);
      if (this.#stopping) done();
    });
  }
}
