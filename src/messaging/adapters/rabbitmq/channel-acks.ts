import type { Channel, Message } from 'amqplib';

/** What `ChannelAcks` writes to: an amqplib channel. */
export type AckChannel = Pick<Channel, 'ack' | 'nack'>;

/** Runs `flush` once the current burst of work is over; `setImmediate` by default. */
export type FlushScheduler = (flush: () => void) => void;

/**
 * Settles the deliveries of one consuming channel with as few frames as AMQP 0.9.1 allows.
 *
 * Acks wait until the end of the tick; then the longest run of acked deliveries at the head of
 * the channel's unsettled ones goes in one `basic.ack` with `multiple` (a frame and a socket
 * write per ack were a fifth of a consumer's CPU). An ack behind a delivery still unsettled is
 * written alone: `multiple` would settle that delivery too, and an unhandled message acked is a
 * message lost. Nacks are written at once, for their delivery alone (retries, hand-backs and dead
 * letters stay exact).
 *
 * Exactness rests on knowing every delivery of the channel: the consumer calls `delivered` for
 * each, in the order they arrive. RabbitMQ numbers a channel's deliveries 1, 2, 3… without
 * gaps, so a tag that skips one means a delivery went elsewhere (a `basic.get` on this channel);
 * from then on every ack is written alone, at once.
 *
 * Who calls: the source that consumes on the channel, from the event loop (not concurrent).
 * On close: `flush` before the channel closes writes what is pending; `discard` after the channel
 * closed forgets it (RabbitMQ has requeued every unsettled delivery).
 */
export class ChannelAcks {
  readonly #channel: AckChannel;
  readonly #schedule: FlushScheduler;
  /** Deliveries not yet settled on the wire, by tag; insertion order is tag order. */
  readonly #unsettled = new Map<number, Message>();
  /** Tags acked and waiting for the flush (all of them in `#unsettled`). */
  readonly #acked = new Set<number>();
  #lastTag = 0;
  /** Every delivery of the channel went through `delivered`, in order: runs may be acked at once. */
  #exact = true;
  #scheduled = false;
  #discarded = false;
  readonly #flush = (): void => this.flush();

  constructor(channel: AckChannel, schedule: FlushScheduler = setImmediate) {
    this.#channel = channel;
    this.#schedule = schedule;
  }

  /** Deliveries received and not yet settled on the wire (acks waiting for the flush count). */
  get unsettled(): number {
    return this.#unsettled.size;
  }

  /** Whether acks still go in runs (false once a delivery was seen out of sequence). */
  get exact(): boolean {
    return this.#exact;
  }

  /** A delivery arrived on the channel. Call it for every one, in arrival order, before settling it. */
  delivered(message: Message): void {
    if (this.#discarded || !this.#exact) return;
    const tag = message.fields.deliveryTag;
    if (tag !== this.#lastTag + 1) {
      // Some delivery between the last one and this never came through here: a `multiple` ack
      // could settle it unseen. Write what is pending while every tag below is still known.
      this.flush();
      this.#exact = false;
      this.#unsettled.clear();
      return;
    }
    this.#lastTag = tag;
    this.#unsettled.set(tag, message);
  }

  /** Acknowledges `message`, written at the end of the tick with the others. */
  ack(message: Message): void {
    if (this.#discarded) return;
    const tag = message.fields.deliveryTag;
    if (!this.#exact) {
      this.#channel.ack(message);
      return;
    }
    // Unknown, or settled already: a second settle would close the channel (PRECONDITION_FAILED).
    if (!this.#unsettled.has(tag) || this.#acked.has(tag)) return;
    this.#acked.add(tag);
    if (!this.#scheduled) {
      this.#scheduled = true;
      this.#schedule(this.#flush);
    }
  }

  /** Rejects `message` alone, at once: requeued (`requeue`) or dropped / dead-lettered by the queue. */
  nack(message: Message, requeue: boolean): void {
    if (this.#discarded) return;
    const tag = message.fields.deliveryTag;
    if (this.#exact) {
      if (!this.#unsettled.has(tag) || this.#acked.has(tag)) return;
      this.#unsettled.delete(tag);
    }
    this.#channel.nack(message, false, requeue);
  }

  /** Writes the pending acks now: a run at the head in one frame, the others one by one. */
  flush(): void {
    this.#scheduled = false;
    if (this.#discarded || this.#acked.size === 0) return;
    let last: Message | undefined;
    let run = 0;
    for (const [tag, message] of this.#unsettled) {
      if (!this.#acked.has(tag)) break;
      this.#unsettled.delete(tag);
      this.#acked.delete(tag);
      last = message;
      run++;
    }
    try {
      if (last !== undefined) this.#channel.ack(last, run > 1);
      for (const tag of this.#acked) {
        const message = this.#unsettled.get(tag)!;
        this.#unsettled.delete(tag);
        this.#channel.ack(message, false);
      }
    } catch {
      // The channel closed under us: RabbitMQ requeues whatever it held, acks lost included.
      this.discard();
    }
    this.#acked.clear();
  }

  /** The channel closed: forget everything, settle nothing more. */
  discard(): void {
    this.#discarded = true;
    this.#unsettled.clear();
    this.#acked.clear();
  }
}
