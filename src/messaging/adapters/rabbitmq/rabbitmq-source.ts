import type { ConsumeMessage } from 'amqplib';
import { KeelError } from '../../../errors/index.ts';
import type { Backoff, Clock, TimerHandle } from '../../../time/index.ts';
import type { Delivery, DeliverySource } from '../../delivery-source.ts';
import type { Envelope } from '../../envelope.ts';
import { decode, deliveryCount, encode } from './codec.ts';
import { Confirmer } from './confirm-channel.ts';
import type { LazyConnection } from './connection.ts';
import { delayBucket, type QueueType, type Topology } from './topology.ts';

export interface RabbitMqDelivery extends Delivery {
  /** The AMQP message, acknowledged on the channel it came from. */
  readonly message: ConsumeMessage;
  /** The channel it came from: after a reconnect the broker has requeued it already. */
  readonly confirmer: Confirmer;
  readonly firstFailedAt: string | undefined;
}

export interface RabbitMqSourceSettings {
  connection: LazyConnection;
  topology: Topology;
  clock: Clock;
  queueType: QueueType;
  deadLetterDestination: string;
  /** Fixed prefetch; undefined: the `max` of the first claim (the consumer's concurrency). */
  prefetch: number | undefined;
  reconnectBackoff: Backoff;
  /** Longest wait for the confirm of a retry, dead-letter or hand-back copy, ms. */
  confirmTimeoutMs: number;
  onError: (error: unknown) => void;
}

/**
 * One consumer of a RabbitMQ queue, driven by the consumer runtime. The broker pushes up to
 * `prefetch` unacknowledged messages into a local buffer; `claim` drains it. Retries and dead
 * letters are published (confirmed) before the original is acked, so a crash in between
 * duplicates a message and never loses one.
 *
 * Attempts: quorum queues count deliveries exactly (`x-delivery-count`); classic queues only say
 * `redelivered`, so a message requeued by crashes counts as at most one extra attempt there.
 */
export class RabbitMqSource implements DeliverySource<RabbitMqDelivery> {
  readonly destination: string;
  readonly #s: RabbitMqSourceSettings;
  #confirmer: Confirmer | undefined;
  #consumerTag: string | undefined;
  #prefetch: number | undefined;
  #buffer: RabbitMqDelivery[] = [];
  #wake: () => void = () => {};
  #closed = false;
  /** Consumption was cancelled for good: the source is shutting down. */
  #stopped = false;
  #reconnects = 0;
  #reconnectTimer: TimerHandle | undefined;
  #connecting: Promise<void> | undefined;

  constructor(destination: string, settings: RabbitMqSourceSettings) {
    this.destination = destination;
    this.#s = settings;
    this.#prefetch = settings.prefetch;
  }

  async open(wake: () => void): Promise<void> {
    this.#wake = wake;
    await this.#connect();
  }

  async claim(max: number): Promise<RabbitMqDelivery[]> {
    if (
      !this.#stopped &&
      this.#consumerTag === undefined &&
      this.#confirmer?.open === true &&
      this.#connecting === undefined
    ) {
      // The first claim tells how many messages the runtime can hold: that is the prefetch.
      this.#prefetch ??= max;
      this.#connecting = this.#consume(this.#confirmer).finally(() => (this.#connecting = undefined));
      await this.#connecting;
    }
    return this.#buffer.splice(0, max);
  }

  async ack(deliveries: readonly RabbitMqDelivery[]): Promise<void> {
    // Ack every one that can be acked before reporting one that cannot: a batch may span a
    // reconnect, and a live message left unacked would hold a prefetch slot for good.
    let lost: RabbitMqDelivery | undefined;
    for (const delivery of deliveries) {
      if (delivery.confirmer.open) delivery.confirmer.channel.ack(delivery.message);
      else lost ??= delivery;
    }
    if (lost !== undefined) this.#live(lost); // throws KEEL_BROKER_UNAVAILABLE
  }

  async retry(delivery: RabbitMqDelivery, delayMs: number, error: unknown): Promise<void> {
    const confirmer = this.#live(delivery);
    const now = this.#s.clock.now();
    const bucket = delayBucket(delayMs);
    const queue =
      bucket === 0
        ? this.destination
        : await this.#s.topology.delayQueue(confirmer.channel, this.destination, bucket);
    const firstFailedAt = delivery.firstFailedAt ?? new Date(now).toISOString();
    await this.#publishThenAck(
      confirmer,
      queue,
      delivery,
      {
        attempt: delivery.attempt,
        firstFailedAt,
      },
      error,
    );
  }

  async deadLetter(delivery: RabbitMqDelivery, error: unknown): Promise<void> {
    const confirmer = this.#live(delivery);
    const now = new Date(this.#s.clock.now()).toISOString();
    const queue = this.#s.deadLetterDestination;
    await this.#s.topology.queue(confirmer.channel, queue);
    const envelope: Envelope = {
      ...delivery.envelope,
      headers: {
        ...delivery.envelope.headers,
        'x-dead-letter-source': this.destination,
        'x-dead-letter-error': describeError(error),
        'x-dead-letter-attempts': String(delivery.attempt),
        'x-dead-letter-first-failed-at': delivery.firstFailedAt ?? now,
        'x-dead-letter-last-failed-at': now,
      },
    };
    await this.#publishThenAck(confirmer, queue, { ...delivery, envelope }, {}, error);
  }

  async release(delivery: RabbitMqDelivery): Promise<void> {
    const confirmer = delivery.confirmer;
    // The channel is gone: the broker has requeued the message already.
    if (!confirmer.open || confirmer !== this.#confirmer) return;
    // Release means shutdown: stop taking messages, or the copy would come straight back here.
    await this.#stopConsuming(confirmer);
    await this.#handBack(confirmer, [delivery]);
  }

  async close(): Promise<void> {
    this.#closed = true;
    if (this.#reconnectTimer !== undefined) this.#s.clock.clearTimeout(this.#reconnectTimer);
    this.#reconnectTimer = undefined;
    await this.#connecting?.catch(() => undefined);
    const confirmer = this.#confirmer;
    if (confirmer === undefined) return;
    // After the cancel is confirmed nothing more arrives; what was pushed here but never claimed
    // was not attempted, so it goes back uncounted.
    await this.#stopConsuming(confirmer);
    this.#confirmer = undefined;
    await this.#handBack(confirmer, this.#buffer.splice(0));
    // Closing the channel hands every other unacknowledged message back to the queue.
    await confirmer.close();
  }

  /**
   * Puts messages back without counting this attempt: a copy carrying the attempts so far, then
   * ack. A plain requeue would count it on a quorum queue, and a service restarted often enough
   * would dead-letter healthy messages. If that fails, the channel's close requeues them (counted).
   */
  async #handBack(confirmer: Confirmer, deliveries: readonly RabbitMqDelivery[]): Promise<void> {
    if (deliveries.length === 0 || !confirmer.open) return;
    const now = this.#s.clock.now();
    const outgoing = deliveries.map((d) => ({
      id: d.envelope.id,
      ...encode(d.envelope, now, { attempt: d.attempt - 1, ...optional(d.firstFailedAt) }),
    }));
    const failed = new Set((await confirmer.publish(this.destination, outgoing)).map((f) => f.id));
    for (const delivery of deliveries) {
      if (confirmer.open && !failed.has(delivery.envelope.id)) confirmer.channel.ack(delivery.message);
    }
  }

  async #stopConsuming(confirmer: Confirmer): Promise<void> {
    this.#stopped = true;
    const tag = this.#consumerTag;
    this.#consumerTag = undefined;
    if (tag === undefined || !confirmer.open) return;
    await confirmer.channel.cancel(tag).catch(() => undefined);
  }

  async #publishThenAck(
    confirmer: Confirmer,
    queue: string,
    delivery: RabbitMqDelivery,
    carried: { attempt?: number; firstFailedAt?: string },
    cause: unknown,
  ): Promise<void> {
    const { content, options } = encode(delivery.envelope, this.#s.clock.now(), carried);
    const failures = await confirmer.publish(queue, [{ id: delivery.envelope.id, content, options }]);
    if (failures.length > 0) {
      if (failures.some((f) => f.unroutable === true)) this.#s.topology.forget(queue);
      // RabbitMQ has no lease to expire: hand the original back now (counted: the attempt
      // failed), or it would sit unacknowledged, holding a prefetch slot, until the channel dies.
      if (confirmer.open) confirmer.channel.nack(delivery.message, false, true);
      throw new KeelError(
        'KEEL_PUBLISH_FAILED',
        `could not move message ${delivery.envelope.id} to ${queue}`,
        {
          cause: failures[0]?.error ?? cause,
          details: { destination: queue, failedIds: [delivery.envelope.id] },
        },
      );
    }
    this.#live(delivery).channel.ack(delivery.message);
  }

  /** The channel to settle `delivery` on; throws when it closed (the broker requeued the message). */
  #live(delivery: RabbitMqDelivery): Confirmer {
    const confirmer = delivery.confirmer;
    if (!confirmer.open) {
      throw new KeelError(
        'KEEL_BROKER_UNAVAILABLE',
        `the channel that delivered ${delivery.envelope.id} closed; RabbitMQ delivers it again`,
        { details: { destination: this.destination, id: delivery.envelope.id } },
      );
    }
    return confirmer;
  }

  async #connect(): Promise<void> {
    const connection = await this.#s.connection.get();
    const channel = await connection.createConfirmChannel();
    const confirmer = new Confirmer(channel, this.#s.clock, this.#s.confirmTimeoutMs);
    channel.on('close', () => this.#onChannelClosed(confirmer));
    try {
      // Always declared on (re)connect: the queue may have been deleted while keel was away.
      await this.#s.topology.queue(channel, this.destination, { force: true });
    } catch (error) {
      await confirmer.close();
      throw error;
    }
    this.#confirmer = confirmer;
    this.#consumerTag = undefined;
    if (this.#prefetch !== undefined && !this.#stopped) await this.#consume(confirmer);
  }

  async #consume(confirmer: Confirmer): Promise<void> {
    const channel = confirmer.channel;
    await channel.prefetch(this.#prefetch ?? 1);
    const { consumerTag } = await channel.consume(this.destination, (message) => {
      if (message === null) {
        // The broker cancelled the consumer (queue deleted): start over on a new channel.
        void confirmer.close();
        return;
      }
      this.#receive(confirmer, message);
    });
    this.#consumerTag = consumerTag;
  }

  #receive(confirmer: Confirmer, message: ConsumeMessage): void {
    // From a channel already given up: its close requeues the message.
    if (confirmer !== this.#confirmer) return;
    let decoded;
    try {
      decoded = decode(message);
    } catch (error) {
      void this.#deadLetterUndecodable(confirmer, message, error);
      return;
    }
    const earlier =
      this.#s.queueType === 'quorum' ? deliveryCount(message) : message.fields.redelivered ? 1 : 0;
    this.#buffer.push({
      envelope: decoded.envelope,
      attempt: decoded.carriedAttempts + earlier + 1,
      message,
      confirmer,
      firstFailedAt: decoded.firstFailedAt,
    });
    this.#wake();
  }

  /** A body that is not a keel envelope cannot be handled: park it, raw, in the dead-letter queue. */
  async #deadLetterUndecodable(confirmer: Confirmer, message: ConsumeMessage, error: unknown): Promise<void> {
    try {
      const queue = this.#s.deadLetterDestination;
      await this.#s.topology.queue(confirmer.channel, queue);
      const now = new Date(this.#s.clock.now()).toISOString();
      const id =
        typeof message.properties.messageId === 'string' ? message.properties.messageId : `raw-${now}`;
      const headers = {
        ...(message.properties.headers ?? {}),
        'x-dead-letter-source': this.destination,
        'x-dead-letter-error': `undecodable: ${describeError(error)}`,
        'x-dead-letter-attempts': '1',
        'x-dead-letter-first-failed-at': now,
        'x-dead-letter-last-failed-at': now,
      };
      const options = { ...message.properties, headers, persistent: true, mandatory: true, messageId: id };
      const failures = await confirmer.publish(queue, [{ id, content: message.content, options }]);
      if (failures.length === 0 && confirmer.open) confirmer.channel.ack(message);
    } catch (failure) {
      this.#s.onError(failure);
    }
  }

  #onChannelClosed(confirmer: Confirmer): void {
    if (this.#closed || confirmer !== this.#confirmer) return;
    // The broker requeues whatever this channel held; what is buffered here is void.
    this.#confirmer = undefined;
    this.#consumerTag = undefined;
    this.#buffer = [];
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
          this.#wake();
        })
        .catch((error: unknown) => {
          this.#s.onError(error);
          this.#scheduleReconnect();
        })
        .finally(() => (this.#connecting = undefined));
    }, delay);
  }
}

function optional(firstFailedAt: string | undefined): { firstFailedAt?: string } {
  return firstFailedAt === undefined ? {} : { firstFailedAt };
}

export function describeError(error: unknown): string {
  const text = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
  return text.length > 2000 ? text.slice(0, 2000) + '…' : text;
}
