import type { ConsumeMessage } from 'amqplib';
import { KeelError } from '../../../errors/index.ts';
import type { Backoff, Clock, TimerHandle } from '../../../time/index.ts';
import { deadLetterEnvelope } from '../../dead-letter-envelope.ts';
import type { ConnectionLoss, Delivery, DeliverySource } from '../../delivery-source.ts';
import { decode, encode } from './codec.ts';
import { Confirmer } from './confirm-channel.ts';
import type { LazyConnection } from './connection.ts';
import { undecodableCopy } from './dead-letters.ts';
import { groupQueueNames, OffsetStore } from './stream-offsets.ts';
import { StreamProgress } from './stream-progress.ts';
import type { StreamTopology } from './stream-topology.ts';

/** Where a group starts reading: `x-stream-offset`. A `Date` is whole seconds on the server. */
export type StreamPosition = 'first' | 'last' | 'next' | number | Date;

export interface RabbitMqStreamDelivery extends Delivery {
  /** The message's offset in the stream. */
  readonly offset: number;
  readonly message: ConsumeMessage;
  readonly confirmer: Confirmer;
  readonly firstFailedAt: string | undefined;
}

export interface RabbitMqStreamSourceSettings {
  connection: LazyConnection;
  topology: StreamTopology;
  clock: Clock;
  group: string;
  deadLetterDestination: string;
  /** Unacknowledged messages the server sends ahead (`basic.qos`, required on streams). */
  prefetch: number;
  /** Start here even if the group committed an offset (a replay). */
  from: StreamPosition | undefined;
  /** Where a group without a committed offset starts. */
  startFrom: StreamPosition;
  /** How often a standby instance tries to take the group over. */
  standbyRetryMs: number;
  reconnectBackoff: Backoff;
  confirmTimeoutMs: number;
  onError: (error: unknown) => void;
}

/**
 * One consumer instance of a consumer group over a RabbitMQ stream (`x-queue-type: stream`).
 *
 * A stream keeps its messages; each group keeps its own position. One instance of a group reads
 * at a time: it holds an exclusive consumer on the group's lock queue (the others are standbys
 * that retry every `standbyRetryMs` and take over when its channel closes). It reads the group's
 * committed offset from the group's offsets queue (`OffsetStore`), consumes the stream from the
 * next offset with a prefetch, and commits the end of the longest handled prefix after each ack.
 *
 * Two channels: the group's (the lock and the offset records, held together, so a successor
 * never takes the lock while the records are still held) and the stream's (its acks in runs,
 * which a record held on the same channel would interrupt). Either closing closes the other.
 * A retry stays here until its backoff ends (the offset stays uncommitted), so a crash re-reads
 * from the committed offset: at-least-once. A dead letter is appended to the dead-letter stream.
 */
export class RabbitMqStreamSource implements DeliverySource<RabbitMqStreamDelivery> {
  readonly destination: string;
  readonly #s: RabbitMqStreamSourceSettings;
  /** What this reader holds since the last commit, and how far the group may commit. */
  readonly #progress = new StreamProgress<RabbitMqStreamDelivery>();
  /** The stream's channel: deliveries, their acks (credit), dead letters. */
  #confirmer: Confirmer | undefined;
  /** The group's channel: its lock and offset records. */
  #group: Confirmer | undefined;
  #store: OffsetStore | undefined;
  /** Messages below this offset were handled before (a chunk starts earlier than asked). */
  #skipBelow = 0;
  #replay: StreamPosition | undefined;
  /** The commit loop while it runs; `#commitWanted` asks it for one more round. */
  #committing: Promise<void> | undefined;
  #commitWanted = false;
  #wake: () => void = () => {};
  #closed = false;
  #draining = false;
  #reconnects = 0;
  #retryTimer: TimerHandle | undefined;
  #connecting: Promise<void> | undefined;
  readonly #timers = new Set<TimerHandle>();
  /** Reading (or standing by) ended without a goodbye, and no attempt since has reached the server. */
  #loss: ConnectionLoss | undefined;

  constructor(destination: string, settings: RabbitMqStreamSourceSettings) {
    this.destination = destination;
    this.#s = settings;
    this.#replay = settings.from;
  }

  /** Whether this instance holds its group now (the others are standbys). */
  get active(): boolean {
    return this.#confirmer?.open === true;
  }

  async open(wake: () => void): Promise<void> {
    this.#wake = wake;
    // Unreachable server: fail at boot. A group held by another instance: wait as a standby.
    this.#connecting = this.#connect().finally(() => (this.#connecting = undefined));
    await this.#connecting;
  }

  /**
   * The group's channels are lost (or a standby's retries fail) and no attempt since has reached
   * the server: claims meanwhile answer with nothing. A standby that reaches the server and finds
   * the group held is not lost: it waits by design.
   */
  connectionLost(): ConnectionLoss | undefined {
    return this.#loss;
  }

  async claim(max: number): Promise<RabbitMqStreamDelivery[]> {
    if (this.#draining || !this.active) return [];
    return this.#progress.claim(this.#s.clock.now(), max);
  }

  async ack(deliveries: readonly RabbitMqStreamDelivery[]): Promise<void> {
    let lost: RabbitMqStreamDelivery | undefined;
    for (const delivery of deliveries) {
      if (this.#isLive(delivery)) this.#finish(delivery);
      else lost ??= delivery;
    }
    // The offset is committed behind the ack (coalesced, one commit in flight): waiting for a
    // quorum write per ack batch would cap a group at a few hundred messages a second. A crash
    // before the commit reads the handled messages again: at-least-once, as documented.
    this.#requestCommit();
    if (lost !== undefined) throw this.#unavailable(lost);
  }

  async retry(delivery: RabbitMqStreamDelivery, delayMs: number): Promise<void> {
    this.#live(delivery);
    const now = this.#s.clock.now();
    const again: RabbitMqStreamDelivery = {
      ...delivery,
      attempt: delivery.attempt + 1,
      firstFailedAt: delivery.firstFailedAt ?? new Date(now).toISOString(),
    };
    this.#progress.retryAt(delivery, again, now + Math.max(0, delayMs));
    const timer = this.#s.clock.setTimeout(
      () => {
        this.#timers.delete(timer);
        this.#wake();
      },
      Math.max(0, delayMs),
    );
    this.#timers.add(timer);
  }

  async deadLetter(delivery: RabbitMqStreamDelivery, error: unknown): Promise<void> {
    const confirmer = this.#live(delivery);
    const now = new Date(this.#s.clock.now()).toISOString();
    const queue = this.#s.deadLetterDestination;
    await this.#s.topology.stream(confirmer.channel, queue);
    const envelope = deadLetterEnvelope(delivery, this.destination, error, now);
    const { content, options } = encode(envelope, this.#s.clock.now());
    const failures = await confirmer.publish(queue, [{ id: envelope.id, content, options }]);
    if (failures.length > 0) {
      // Not committed past: handed out again (same attempt) a second from now.
      this.#progress.retryAt(delivery, delivery, this.#s.clock.now() + 1000);
      throw new KeelError('KEEL_PUBLISH_FAILED', `could not move message ${envelope.id} to ${queue}`, {
        cause: failures[0]?.error ?? error,
        details: { destination: queue, failedIds: [envelope.id] },
      });
    }
    this.#finish(delivery);
    this.#requestCommit();
  }

  async release(): Promise<void> {
    // Shutting down: hand out nothing more. What is not handled stays past the committed
    // offset, so the group's next reader gets it, with its attempt not counted.
    this.#draining = true;
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#loss = undefined;
    if (this.#retryTimer !== undefined) this.#s.clock.clearTimeout(this.#retryTimer);
    this.#retryTimer = undefined;
    for (const timer of this.#timers) this.#s.clock.clearTimeout(timer);
    this.#timers.clear();
    await this.#connecting?.catch(() => undefined);
    // What was acked is committed before the group is let go.
    this.#requestCommit();
    await this.#committing;
    const confirmer = this.#confirmer;
    const group = this.#group;
    this.#confirmer = undefined;
    this.#group = undefined;
    this.#store = undefined;
    this.#progress.clear();
    await confirmer?.close();
    // Closing releases the group lock and returns the offset records for the next holder.
    await group?.close();
  }

  /** Marks `delivery` handled and returns its credit to the server. */
  #finish(delivery: RabbitMqStreamDelivery): void {
    if (!this.#progress.done(delivery)) return;
    // In a run with the others of the tick where it can be (ChannelAcks).
    if (delivery.confirmer.open) delivery.confirmer.acks.ack(delivery.message);
  }

  /** Commits the end of the handled prefix soon: one commit at a time, the requests coalesced. */
  #requestCommit(): void {
    this.#commitWanted = true;
    this.#committing ??= (async () => {
      try {
        while (this.#commitWanted) {
          this.#commitWanted = false;
          const last = this.#progress.takeHandledPrefix();
          const store = this.#store;
          if (last !== undefined && store !== undefined) await store.commit(last);
        }
      } catch (error) {
        // The channel went (the group is read again from the last commit) or the write failed.
        this.#s.onError(error);
      } finally {
        this.#committing = undefined;
      }
    })();
  }

  /** Held here, from the channel still open: it can be settled. */
  #isLive(delivery: RabbitMqStreamDelivery): boolean {
    return (
      this.#progress.holds(delivery) && delivery.confirmer === this.#confirmer && delivery.confirmer.open
    );
  }

  /** The channel to settle `delivery` on; throws when this reader no longer holds it. */
  #live(delivery: RabbitMqStreamDelivery): Confirmer {
    if (!this.#isLive(delivery)) throw this.#unavailable(delivery);
    return delivery.confirmer;
  }

  #unavailable(delivery: RabbitMqStreamDelivery): KeelError {
    return new KeelError(
      'KEEL_BROKER_UNAVAILABLE',
      `the channel that delivered ${delivery.envelope.id} closed; the group reads it again from its committed offset`,
      { details: { destination: this.destination, id: delivery.envelope.id } },
    );
  }

  async #connect(): Promise<void> {
    const connection = await this.#s.connection.get();
    const { lock, offsets } = groupQueueNames(this.destination, this.#s.group);
    const group = new Confirmer(
      await connection.createConfirmChannel(),
      this.#s.clock,
      this.#s.confirmTimeoutMs,
    );
    try {
      await this.#s.topology.stream(group.channel, this.destination);
      // Declared on every attempt: a lock queue deleted behind keel's back (which cancels its
      // holder, below) must come back, or every instance would stand by on a missing queue.
      await this.#s.topology.groupQueues(group.channel, lock, offsets, { force: true });
    } catch (error) {
      await group.close();
      throw error;
    }
    try {
      // The group's lock: RabbitMQ refuses a second exclusive consumer on a classic queue. The
      // server cancels it when the lock queue is deleted: this instance no longer holds the
      // group (another may take a new lock), so it lets go of it all and tries again.
      await group.channel.consume(
        lock,
        (message) => {
          if (message === null) void group.close();
        },
        { exclusive: true },
      );
    } catch {
      // Another instance holds the group: stand by. (The refusal closed this channel.)
      this.#loss = undefined;
      await group.close();
      this.#scheduleConnect(this.#s.standbyRetryMs);
      return;
    }
    let confirmer: Confirmer | undefined;
    try {
      const store = new OffsetStore(group, offsets);
      const committed = await store.load();
      const start = this.#replay ?? (committed === undefined ? this.#s.startFrom : committed + 1);
      this.#skipBelow = typeof start === 'number' ? start : 0;
      const stream = new Confirmer(
        await connection.createConfirmChannel(),
        this.#s.clock,
        this.#s.confirmTimeoutMs,
      );
      confirmer = stream;
      await stream.channel.prefetch(this.#s.prefetch);
      // Acks may wait for a slower handler to go in one run, holding back at most half the credit.
      stream.acks.holdLimit = this.#s.prefetch >= 16 ? this.#s.prefetch / 2 : 0;
      this.#confirmer = stream;
      this.#group = group;
      this.#store = store;
      // Either channel closing ends the read: the group's lock goes with the group's channel.
      stream.channel.on('close', () => this.#onChannelClosed(stream));
      group.channel.on('close', () => this.#onChannelClosed(stream));
      await stream.channel.consume(this.destination, (message) => this.#receive(stream, message), {
        arguments: { 'x-stream-offset': offsetArgument(start) },
      });
    } catch (error) {
      this.#confirmer = undefined;
      this.#group = undefined;
      this.#store = undefined;
      await confirmer?.close();
      await group.close();
      throw error;
    }
    // A replay starts once; after a reconnect the group goes on from what it committed.
    this.#replay = undefined;
    this.#reconnects = 0;
    this.#loss = undefined;
    this.#wake();
  }

  #receive(confirmer: Confirmer, message: ConsumeMessage | null): void {
    if (message === null) {
      // The server cancelled the consumer (stream deleted): start over on a new channel.
      void confirmer.close();
      return;
    }
    // Every delivery, before anything else: acks go in runs only while all are known.
    confirmer.acks.delivered(message);
    if (confirmer !== this.#confirmer) return;
    const offset = Number((message.properties.headers ?? {})['x-stream-offset']);
    if (!Number.isInteger(offset) || offset < this.#skipBelow) {
      confirmer.acks.ack(message);
      return;
    }
    let decoded;
    try {
      decoded = decode(message);
    } catch (error) {
      void this.#deadLetterUndecodable(confirmer, message, offset, error);
      return;
    }
    const delivery: RabbitMqStreamDelivery = {
      envelope: decoded.envelope,
      attempt: decoded.carriedAttempts + 1,
      offset,
      message,
      confirmer,
      firstFailedAt: decoded.firstFailedAt,
    };
    this.#progress.add(offset, delivery);
    this.#wake();
  }

  async #deadLetterUndecodable(
    confirmer: Confirmer,
    message: ConsumeMessage,
    offset: number,
    error: unknown,
  ): Promise<void> {
    // Held, so the commit waits for it.
    const parked = this.#progress.hold(offset);
    try {
      const queue = this.#s.deadLetterDestination;
      await this.#s.topology.stream(confirmer.channel, queue);
      const now = new Date(this.#s.clock.now()).toISOString();
      const failures = await confirmer.publish(queue, [
        undecodableCopy(message, this.destination, error, now),
      ]);
      if (failures.length > 0) throw failures[0]!.error;
      parked();
      if (confirmer.open) confirmer.acks.ack(message);
      this.#requestCommit();
    } catch (failure) {
      this.#s.onError(failure);
    }
  }

  #onChannelClosed(confirmer: Confirmer): void {
    if (this.#closed || confirmer !== this.#confirmer) return;
    // What was handled but not committed is read again, by whoever takes the group next.
    const group = this.#group;
    this.#confirmer = undefined;
    this.#group = undefined;
    this.#store = undefined;
    this.#progress.clear();
    void confirmer.close();
    void group?.close();
    this.#loss = {
      since: this.#s.clock.now(),
      attempts: 0,
      error: new KeelError(
        'KEEL_BROKER_UNAVAILABLE',
        `the channels reading ${this.destination} for group ${this.#s.group} closed; reconnecting`,
      ),
    };
    this.#reconnects++;
    this.#scheduleConnect(this.#s.reconnectBackoff.delay(this.#reconnects, 0));
  }

  #scheduleConnect(delayMs: number): void {
    if (this.#closed || this.#retryTimer !== undefined || this.#s.connection.closed) return;
    this.#retryTimer = this.#s.clock.setTimeout(() => {
      this.#retryTimer = undefined;
      if (this.#closed) return;
      this.#connecting = this.#connect()
        .catch((error: unknown) => {
          if (!this.#closed) {
            const loss = this.#loss;
            this.#loss = {
              since: loss?.since ?? this.#s.clock.now(),
              attempts: (loss?.attempts ?? 0) + 1,
              error,
            };
          }
          this.#s.onError(error);
          this.#reconnects++;
          this.#scheduleConnect(this.#s.reconnectBackoff.delay(this.#reconnects, 0));
        })
        .finally(() => (this.#connecting = undefined));
    }, delayMs);
  }
}

function offsetArgument(position: StreamPosition): unknown {
  if (position instanceof Date) return { '!': 'timestamp', value: Math.floor(position.getTime() / 1000) };
  return position;
}
