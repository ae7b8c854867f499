import type { ConfirmChannel, Options } from 'amqplib';
import type { Clock } from '../../../time/index.ts';
import { ChannelAcks } from './channel-acks.ts';

export interface Outgoing {
  /** The envelope id, also the AMQP messageId: failures are reported by it. */
  id: string;
  content: Buffer;
  options: Options.Publish;
}

export interface Failure {
  id: string;
  error: unknown;
  /** Returned by the broker: no queue of that name exists (any more). */
  unroutable?: boolean;
}

/**
 * A confirm-mode channel that publishes a batch and waits for every broker confirm at once
 * (waiting for each confirm alone caps publishing at ~1.5k msg/s). A message counts as
 * accepted only when the broker acked it and did not return it as unroutable.
 */
export class Confirmer {
  readonly channel: ConfirmChannel;
  /**
   * Settles what a consumer on this channel receives (acks in runs, see `ChannelAcks`); written
   * out before `close`. Publishing never goes through it.
   */
  readonly acks: ChannelAcks;
  #open = true;
  readonly #returned = new Set<string>();
  readonly #drainWaiters = new Set<() => void>();

  readonly #clock: Clock;
  readonly #timeoutMs: number;

  constructor(channel: ConfirmChannel, clock: Clock, timeoutMs: number) {
    this.channel = channel;
    this.#clock = clock;
    this.#timeoutMs = timeoutMs;
    this.acks = new ChannelAcks(channel, { clock });
    channel.on('return', (message: { properties: { messageId?: unknown } }) => {
      if (typeof message.properties.messageId === 'string') this.#returned.add(message.properties.messageId);
    });
    channel.on('drain', () => this.#releaseDrainWaiters());
    channel.on('close', () => {
      this.#open = false;
      this.acks.discard();
      this.#releaseDrainWaiters();
    });
    // A channel error (a refused declaration, a bad ack) closes it; 'close' follows.
    channel.on('error', () => {});
  }

  get open(): boolean {
    return this.#open;
  }

  /**
   * Publishes to `queue` through the default exchange; resolves with the messages not accepted:
   * nacked, returned as unroutable, lost with the channel, or unconfirmed after `timeoutMs` (a
   * connection blocked by a resource alarm would otherwise hang the caller for good).
   */
  async publish(queue: string, messages: readonly Outgoing[]): Promise<Failure[]> {
    const outcome: (Failure | true | undefined)[] = new Array<Failure | true | undefined>(messages.length);
    let pending = messages.length;
    let allSettled: () => void = () => {};
    const settledAll = new Promise<void>((resolve) => (allSettled = resolve));
    const settle = (index: number, failure: Failure | true): void => {
      if (outcome[index] !== undefined) return;
      outcome[index] = failure;
      if (--pending === 0) allSettled();
    };
    for (const [index, message] of messages.entries()) {
      if (!this.#open) {
        settle(index, { id: message.id, error: new Error('channel closed') });
        continue;
      }
      let writable = true;
      try {
        writable = this.channel.publish('', queue, message.content, message.options, (error: unknown) =>
          settle(index, error === null || error === undefined ? true : { id: message.id, error }),
        );
      } catch (error) {
        // Thrown synchronously: the channel is closed, or the headers do not encode.
        settle(index, { id: message.id, error });
      }
      // Respect the socket's backpressure instead of buffering a whole batch in memory.
      if (!writable) await this.#waitForDrain();
    }
    if (pending > 0) {
      const timer = this.#clock.setTimeout(() => {
        const error = new Error(
          `no confirm within ${this.#timeoutMs} ms (a resource alarm blocking publishers?)`,
        );
        messages.forEach((message, index) => settle(index, { id: message.id, error }));
      }, this.#timeoutMs);
      await settledAll;
      this.#clock.clearTimeout(timer);
    }
    const failures: Failure[] = [];
    for (const [index, message] of messages.entries()) {
      const result = outcome[index];
      if (result !== true && result !== undefined) failures.push(result);
      else if (this.#returned.delete(message.id)) {
        failures.push({
          id: message.id,
          error: new Error(`unroutable: no queue named ${queue}`),
          unroutable: true,
        });
      }
    }
    return failures;
  }

  async close(): Promise<void> {
    if (!this.#open) return;
    // Acks still waiting for the end of the tick go out first, or the close would requeue them.
    this.acks.flush();
    this.#open = false;
    await this.channel.close().catch(() => undefined);
  }

  #waitForDrain(): Promise<void> {
    if (!this.#open) return Promise.resolve();
    return new Promise<void>((resolve) => this.#drainWaiters.add(resolve));
  }

  #releaseDrainWaiters(): void {
    for (const resolve of this.#drainWaiters) resolve();
    this.#drainWaiters.clear();
  }
}
