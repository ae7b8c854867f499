import type { ConsumeMessage } from 'amqplib';
import { KeelError } from '../../../errors/index.ts';
import type { Backoff, Clock, TimerHandle } from '../../../time/index.ts';
import type { ConnectionLoss } from '../../delivery-source.ts';
import { Confirmer } from './confirm-channel.ts';
import type { LazyConnection } from './connection.ts';
import type { Topology } from './topology.ts';

export interface QueueSubscriptionSettings {
  connection: LazyConnection;
  topology: Topology;
  clock: Clock;
  /** The queues consumed on the one channel: a destination, or its partitions. */
  queues: readonly string[];
  /** The AMQP prefetch per queue; undefined until `subscribe` says it. */
  prefetch: number | undefined;
  reconnectBackoff: Backoff;
  confirmTimeoutMs: number;
  /** A reconnect attempt that failed (another follows). */
  onError: (error: unknown) => void;
  /** A message pushed on the current channel. */
  onMessage: (confirmer: Confirmer, message: ConsumeMessage) => void;
  /** The current channel closed under the consumer: RabbitMQ requeues everything it delivered. */
  onLost: () => void;
  /** Consuming again after a loss. */
  onBack: () => void;
}

/**
 * The channel a `RabbitMqSource` consumes on, and its life: opened (its queues declared) by
 * `open`, subscribed once the prefetch is known, opened and subscribed again with backoff when
 * it is lost (a broker restart, a server-side close, the queue deleted), cancelled for good on
 * shutdown. What the messages become is the source's business.
 */
export class QueueSubscription {
  readonly #s: QueueSubscriptionSettings;
  #confirmer: Confirmer | undefined;
  /** The consumer tags while consuming; undefined when not consuming. */
  #tags: string[] | undefined;
  #prefetch: number | undefined;
  /** Consumption was cancelled for good: the source is shutting down. */
  #stopped = false;
  #closed = false;
  #reconnects = 0;
  #reconnectTimer: TimerHandle | undefined;
  #connecting: Promise<void> | undefined;
  /** The channel was lost under the consumer and is not back yet. */
  #loss: ConnectionLoss | undefined;

  constructor(settings: QueueSubscriptionSettings) {
    this.#s = settings;
    this.#prefetch = settings.prefetch;
  }

  /** The channel messages come from now; undefined while reconnecting or after `detach`. */
  get current(): Confirmer | undefined {
    return this.#confirmer;
  }

  /**
   * Since when the channel is lost and how the reconnects went, until one succeeds; undefined
   * while it lives (or after `close`). Meanwhile the source's claims answer from memory.
   */
  get loss(): ConnectionLoss | undefined {
    return this.#loss;
  }

  /** Opens the channel and declares the queues; consumes at once when the prefetch is known. */
  async open(): Promise<void> {
    await this.#connect();
  }

  /**
   * Consumes, if it does not yet, with `prefetch` unless one was set: the max of a runtime's
   * first claim, which asks for everything it can hold.
   */
  async subscribe(prefetch: number): Promise<void> {
    const confirmer = this.#confirmer;
    if (
      this.#stopped ||
      this.#tags !== undefined ||
      confirmer?.open !== true ||
      this.#connecting !== undefined
    ) {
      return;
    }
    this.#prefetch ??= prefetch;
    this.#connecting = this.#consume(confirmer, this.#prefetch).finally(() => (this.#connecting = undefined));
    await this.#connecting;
  }

  /** Cancels consuming for good (shutdown): once it resolves, nothing more arrives. */
  async stop(): Promise<void> {
    this.#stopped = true;
    const tags = this.#tags;
    this.#tags = undefined;
    const confirmer = this.#confirmer;
    if (tags === undefined || confirmer?.open !== true) return;
    for (const tag of tags) await confirmer.channel.cancel(tag).catch(() => undefined);
  }

  /**
   * Reconnects no more, and waits for an attempt in progress. Resolves with the current channel,
   * left open for the caller to settle on and close (its close is no loss).
   */
  async close(): Promise<Confirmer | undefined> {
    this.#closed = true;
    this.#loss = undefined;
    if (this.#reconnectTimer !== undefined) this.#s.clock.clearTimeout(this.#reconnectTimer);
    this.#reconnectTimer = undefined;
    await this.#connecting?.catch(() => undefined);
    return this.#confirmer;
  }

  /** Forgets the current channel: what it still pushes is ignored (its close requeues it). */
  detach(): void {
    this.#confirmer = undefined;
  }

  async #connect(): Promise<void> {
    const connection = await this.#s.connection.get();
    const channel = await connection.createConfirmChannel();
    const confirmer = new Confirmer(channel, this.#s.clock, this.#s.confirmTimeoutMs);
    // A server-side channel close says why in an 'error' first; a lost connection says nothing.
    let cause: unknown;
    channel.on('error', (error: unknown) => (cause = error));
    channel.on('close', () => this.#onChannelClosed(confirmer, cause));
    try {
      // Always declared on (re)connect: the queue may have been deleted while keel was away.
      for (const queue of this.#s.queues) await this.#s.topology.queue(channel, queue, { force: true });
    } catch (error) {
      await confirmer.close();
      throw error;
    }
    this.#confirmer = confirmer;
    this.#tags = undefined;
    if (this.#prefetch !== undefined && !this.#stopped) await this.#consume(confirmer, this.#prefetch);
  }

  async #consume(confirmer: Confirmer, prefetch: number): Promise<void> {
    const channel = confirmer.channel;
    // Per consumer (global false): in per-key mode every partition queue gets the whole window.
    await channel.prefetch(prefetch);
    // Acks behind a slower handler may wait for it (to go in one run) while they hold back at
    // most half of the window: the other half keeps messages coming. A small window has no half
    // to spare: a held ack would idle a handler slot.
    const window = prefetch * this.#s.queues.length;
    confirmer.acks.holdLimit = window >= 16 ? window / 2 : 0;
    const tags: string[] = [];
    for (const queue of this.#s.queues) {
      const { consumerTag } = await channel.consume(queue, (message) => {
        if (message === null) {
          // The broker cancelled the consumer (queue deleted): start over on a new channel.
          void confirmer.close();
          return;
        }
        // Every delivery, before anything else: acks go in runs only while all are known.
        confirmer.acks.delivered(message);
        // From a channel already given up: its close requeues the message.
        if (confirmer === this.#confirmer) this.#s.onMessage(confirmer, message);
      });
      tags.push(consumerTag);
    }
    this.#tags = tags;
  }

  #onChannelClosed(confirmer: Confirmer, cause: unknown): void {
    if (this.#closed || confirmer !== this.#confirmer) return;
    this.#confirmer = undefined;
    this.#tags = undefined;
    this.#loss = {
      since: this.#s.clock.now(),
      attempts: 0,
      error: new KeelError(
        'KEEL_BROKER_UNAVAILABLE',
        `the channel consuming ${this.#s.queues.join(', ')} closed; reconnecting`,
        { cause },
      ),
    };
    this.#s.onLost();
    this.#scheduleReconnect();
  }

  #scheduleReconnect(): void {
    // A broker closed under a running consumer: nothing to reconnect to.
    if (this.#closed || this.#reconnectTimer !== undefined || this.#s.connection.closed) return;
    this.#reconnects++;
    const delay = this.#s.reconnectBackoff.delay(this.#reconnects, 0);
    this.#reconnectTimer = this.#s.clock.setTimeout(() => {
      this.#reconnectTimer = undefined;
      if (this.#closed) return;
      this.#connecting = this.#connect()
        .then(() => {
          this.#reconnects = 0;
          this.#loss = undefined;
          this.#s.onBack();
        })
        .catch((error: unknown) => {
          const loss = this.#loss;
          if (loss !== undefined && !this.#closed)
            this.#loss = { ...loss, attempts: loss.attempts + 1, error };
          this.#s.onError(error);
          this.#scheduleReconnect();
        })
        .finally(() => (this.#connecting = undefined));
    }, delay);
  }
}
