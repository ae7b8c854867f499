// When a started relay's loop runs its next round: at once on a NOTIFY of the outbox channel (a
// row committed) or a stop; else after the poll interval, the fallback for rows no NOTIFY
// announces (a retry coming due, a lapsed claim) and for a NOTIFY lost, or sooner when the open
// breaker lets a probe through; after a backoff when a round failed. A stop (`stopping`) ends the
// loop after the round in hand. The waits themselves, and the stop, are RelayWaits' (relay-waits.ts).
import type { Db, Unlisten } from '../db/db.ts';
import type { CircuitBreakerPolicy } from '../resilience/index.ts';
import type { Clock } from '../time/index.ts';
import { RelayWaits } from './relay-waits.ts';
import { outboxChannel } from './schema.ts';

export class RelayWakeUps extends RelayWaits {
  readonly #pollIntervalMs: number;
  readonly #breaker: CircuitBreakerPolicy;
  #unlisten: Unlisten | undefined;
  #pending = false;

  constructor(clock: Clock, pollIntervalMs: number, breaker: CircuitBreakerPolicy) {
    super(clock);
    this.#pollIntervalMs = pollIntervalMs;
    this.#breaker = breaker;
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

  /** Ends the wait in progress; the wake-up stays pending for the round in hand (a stop's too). */
  override wake(): void {
    this.#pending = true;
    super.wake();
  }

  /** Until the next poll, or until the breaker lets a probe through if that comes first. */
  idle(): Promise<void> {
    return this.wait(this.#idleMs());
  }

  /** After `failures` rounds in a row failed: the poll interval doubled per failure (5 times at most), 30 s at most. */
  backOff(failures: number): Promise<void> {
    return this.wait(Math.min(30_000, this.#pollIntervalMs * 2 ** Math.min(failures, 5)));
  }

  #idleMs(): number {
    const state = this.#breaker.state;
    if (state.status !== 'open') return this.#pollIntervalMs;
    return Math.max(1, Math.min(this.#pollIntervalMs, state.until - this.clock.now()));
  }
}
