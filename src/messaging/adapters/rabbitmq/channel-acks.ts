import type { Channel, Message } from 'amqplib';
import type { Clock, TimerHandle } from '../../../time/index.ts';

/** What `ChannelAcks` writes to: an amqplib channel. */
export type AckChannel = Pick<Channel, 'ack' | 'nack'>;

/** Runs `flush` once the current burst of work is over; `setImmediate` by default. */
export type FlushScheduler = (flush: () => void) => void;

export interface ChannelAcksOptions {
  /** Timers for holding acks behind an unsettled delivery. */
  clock: Clock;
  /**
   * Longest wait, ms, for acks behind an unsettled delivery before they are written one by one.
   * Default 20: handlers that finish a few ms apart still get their acks into one run.
   */
  holdMs?: number;
  /** Ends of the tick: tests pass their own. Default `setImmediate`. */
  schedule?: FlushScheduler;
}

/**
 * Settles the deliveries of one consuming channel with as few frames as AMQP 0.9.1 allows.
 *
 * Acks wait until the end of the tick; then the longest run of acked deliveries at the head of
 * the channel's unsettled ones goes in one `basic.ack` with `multiple` (a frame and a socket
 * write per ack were a fifth of a consumer's CPU). `multiple` settles every unsettled delivery up
 * to the tag it names, so an ack behind a delivery still unsettled (a slower handler) never goes
 * in a run: an unhandled message acked is a message lost. Such acks wait for the gap to close
 * (then they join the run), for at most `holdMs` and while they are at most `holdLimit`, so the
 * credit they hold back stays small; past either they are written one by one. Nacks are written
 * at once, for their delivery alone (retries, hand-backs and dead letters stay exact).
 *
 * Exactness rests on knowing every delivery of the channel, so every settle on it goes through
 * here. RabbitMQ numbers a channel's deliveries 1, 2, 3… without gaps: a tag that skips some
 * means deliveries not reported yet (a `basic.get` answered on this channel, whose caller
 * resumes after the consumer saw later deliveries). Those count as unsettled, so no run passes
 * them, until they are reported or settled. (A gap of more than 1 024 tags gives up runs: every
 * ack is then written alone, at once.)
 *
 * Who calls: the source that consumes on the channel, from the event loop (not concurrent).
 * On close: `flush` before the channel closes writes everything pending; `discard` after the
 * channel closed forgets it (RabbitMQ has requeued every unsettled delivery).
 */
export class ChannelAcks {
  readonly #channel: AckChannel;
  readonly #clock: Clock;
  readonly #holdMs: number;
  readonly #schedule: FlushScheduler;
  /**
   * Deliveries not yet settled on the wire, by tag; insertion order is tag order. Undefined: a
   * tag skipped, not yet reported.
   */
  readonly #unsettled = new Map<number, Message | undefined>();
  /** Tags acked and not yet written (all of them in `#unsettled`). */
  readonly #acked = new Set<number>();
  #lastTag = 0;
  /** Every tag of the channel is known here: runs may be acked at once. */
  #exact = true;
  #scheduled = false;
  /** Acks held behind an unsettled delivery are written one by one when this fires. */
  #holdTimer: TimerHandle | undefined;
  #discarded = false;
  /** Most acks held behind an unsettled delivery; see `holdLimit`. */
  #holdLimit = 0;
  readonly #endOfTick = (): void => this.#write(false);

  constructor(channel: AckChannel, options: ChannelAcksOptions) {
    this.#channel = channel;
    this.#clock = options.clock;
    this.#holdMs = options.holdMs ?? 20;
    this.#schedule = options.schedule ?? setImmediate;
  }

  /**
   * Most acks held behind an unsettled delivery before they are written one by one. Default 0
   * (none held); the consumer sets half its prefetch window, so the other half keeps flowing.
   */
  get holdLimit(): number {
    return this.#holdLimit;
  }

  set holdLimit(limit: number) {
    this.#holdLimit = Math.max(0, Math.floor(limit));
  }

  /** Deliveries received and not yet settled on the wire (acks not yet written count). */
  get unsettled(): number {
    return this.#unsettled.size;
  }

  /** Acks not yet written. */
  get pending(): number {
    return this.#acked.size;
  }

  /** Whether acks still go in runs (false after a gap of more than 1 024 tags). */
  get exact(): boolean {
    return this.#exact;
  }

  /**
   * A delivery arrived on the channel. A consumer calls it for each, as it arrives; a `basic.get`
   * caller may call it later (or settle without it).
   */
  delivered(message: Message): void {
    if (this.#discarded || !this.#exact) return;
    const tag = message.fields.deliveryTag;
    if (tag <= this.#lastTag) {
      // A skipped tag, reported now (or a delivery reported twice).
      if (this.#unsettled.has(tag) && this.#unsettled.get(tag) === undefined)
        this.#unsettled.set(tag, message);
      return;
    }
    if (tag - this.#lastTag > 1025) {
      // Too many unknown: write what is pending while every tag below is still known.
      this.flush();
      this.#exact = false;
      this.#unsettled.clear();
      return;
    }
    // Tags skipped stand for deliveries not reported yet: unsettled, so no run passes them.
    for (let skipped = this.#lastTag + 1; skipped < tag; skipped++) this.#unsettled.set(skipped, undefined);
    this.#lastTag = tag;
    this.#unsettled.set(tag, message);
  }

  /** Acknowledges `message`: written at the end of the tick, in a run where it can be. */
  ack(message: Message): void {
    if (this.#discarded) return;
    const tag = message.fields.deliveryTag;
    if (!this.#exact) {
      this.#channel.ack(message);
      return;
    }
    // Settled without being reported first (a `basic.get` caller may): it is known from now on.
    if (tag > this.#lastTag) this.delivered(message);
    // Settled already: a second settle would close the channel (PRECONDITION_FAILED).
    if (!this.#unsettled.has(tag) || this.#acked.has(tag)) return;
    this.#unsettled.set(tag, message);
    this.#acked.add(tag);
    this.#scheduleWrite();
  }

  /** Rejects `message` alone, at once: requeued (`requeue`) or dropped / dead-lettered by the queue. */
  nack(message: Message, requeue: boolean): void {
    if (this.#discarded) return;
    const tag = message.fields.deliveryTag;
    if (this.#exact) {
      if (tag > this.#lastTag) this.delivered(message);
      if (!this.#unsettled.has(tag) || this.#acked.has(tag)) return;
      this.#unsettled.delete(tag);
      // It may have been the gap that held acks back: they can go in a run now.
      if (this.#acked.size > 0) this.#scheduleWrite();
    }
    this.#channel.nack(message, false, requeue);
  }

  /** Writes every pending ack now: a run at the head in one frame, the others one by one. */
  flush(): void {
    this.#write(true);
  }

  /** The channel closed: forget everything, settle nothing more. */
  discard(): void {
    this.#discarded = true;
    this.#unsettled.clear();
    this.#acked.clear();
    this.#clearHold();
  }

  #scheduleWrite(): void {
    if (this.#scheduled) return;
    this.#scheduled = true;
    this.#schedule(this.#endOfTick);
  }

  /** Writes the run at the head; then the acks behind a gap too, if `all` or past their hold. */
  #write(all: boolean): void {
    this.#scheduled = false;
    if (this.#discarded || this.#acked.size === 0) {
      this.#clearHold();
      return;
    }
    let last: Message | undefined;
    let run = 0;
    for (const [tag, message] of this.#unsettled) {
      // Acked entries always hold their message (`ack` sets it).
      if (!this.#acked.has(tag) || message === undefined) break;
      this.#unsettled.delete(tag);
      this.#acked.delete(tag);
      last = message;
      run++;
    }
    try {
      if (last !== undefined) this.#channel.ack(last, run > 1);
      if (this.#acked.size === 0) {
        this.#clearHold();
        return;
      }
      if (!all && this.#acked.size <= this.#holdLimit) {
        // Behind a slower handler: wait a little for it, so these join its run.
        this.#holdTimer ??= this.#clock.setTimeout(() => {
          this.#holdTimer = undefined;
          this.#write(true);
        }, this.#holdMs);
        return;
      }
      this.#clearHold();
      for (const tag of this.#acked) {
        const message = this.#unsettled.get(tag)!;
        this.#unsettled.delete(tag);
        this.#channel.ack(message, false);
      }
      this.#acked.clear();
    } catch {
      // The channel closed under us: RabbitMQ requeues whatever it held, acks lost included.
      this.discard();
    }
  }

  #clearHold(): void {
    if (this.#holdTimer === undefined) return;
    this.#clock.clearTimeout(this.#holdTimer);
    this.#holdTimer = undefined;
  }
}
