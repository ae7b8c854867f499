import type { NatsConnection, Status } from '@nats-io/transport-node';
import { KeelError } from '../../../errors/index.ts';
import type { Clock } from '../../../time/index.ts';
import type { ConnectionLoss } from '../../delivery-source.ts';

/**
 * Whether a NATS connection is up, from the client's status events. The client reconnects on
 * its own (for as long as the broker lives), and meanwhile nothing a source calls need fail: a
 * pull request just waits for the link to come back (the client even stops watching its
 * heartbeats), so claims answer from memory. Only these events tell.
 *
 * The client says when each reconnect attempt begins, not why the last one failed: a failed
 * attempt is counted when the next begins, and the error stays the loss's.
 */
export class ConnectionWatch {
  readonly #clock: Clock;
  readonly #statuses: AsyncIterable<Status>;
  #loss: ConnectionLoss | undefined;
  /** A reconnect attempt has begun and not ended yet. */
  #dialing = false;
  #stopped = false;

  constructor(nc: NatsConnection, clock: Clock) {
    this.#clock = clock;
    this.#statuses = nc.status();
    void this.#watch();
  }

  /** Since when the connection is down, until the client reconnects; undefined while it is up. */
  get loss(): ConnectionLoss | undefined {
    return this.#loss;
  }

  /** Stops listening (the broker is closing: the close that follows is no loss). */
  stop(): void {
    this.#stopped = true;
    this.#loss = undefined;
    (this.#statuses as Partial<{ stop(): void }>).stop?.();
  }

  async #watch(): Promise<void> {
    try {
      for await (const status of this.#statuses) {
        if (this.#stopped) return;
        this.#note(status);
      }
    } catch {
      // The iterator ends with the connection; nothing to watch any more.
    }
  }

  #note(status: Status): void {
    switch (status.type) {
      case 'disconnect':
        this.#dialing = false;
        this.#loss ??= this.#lost(`lost the connection to NATS at ${status.server}; reconnecting`);
        return;
      case 'reconnecting': {
        const loss = this.#loss;
        if (loss !== undefined && this.#dialing) this.#loss = { ...loss, attempts: loss.attempts + 1 };
        this.#dialing = true;
        return;
      }
      case 'reconnect':
        this.#dialing = false;
        this.#loss = undefined;
        return;
      case 'close':
        // Closed under the broker (a connection the application owns, or reconnects given up):
        // it does not come back.
        this.#loss ??= this.#lost('the NATS connection closed');
        return;
      default:
    }
  }

  #lost(message: string): ConnectionLoss {
    return {
      since: this.#clock.now(),
      attempts: 0,
      error: new KeelError('KEEL_BROKER_UNAVAILABLE', message),
    };
  }
}
