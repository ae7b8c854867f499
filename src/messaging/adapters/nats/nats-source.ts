import type { Consumer, ConsumerMessages, JsMsg } from '@nats-io/jetstream';
import { headers as natsHeaders } from '@nats-io/transport-node';
import { KeelError } from '../../../errors/index.ts';
import type { TimerHandle } from '../../../time/index.ts';
import { deadLetterEnvelope } from '../../dead-letter-envelope.ts';
import type { ConnectionLoss, Delivery, DeliverySource } from '../../delivery-source.ts';
import { describeErrorOnOneLine } from '../../describe-error.ts';
import type { Envelope } from '../../envelope.ts';
import { decode, encode } from './codec.ts';
import type { JetStreamContext } from './jetstream-context.ts';

export interface NatsDelivery extends Delivery {
  /** The JetStream message, acknowledged through its reply subject. */
  readonly message: JsMsg;
  /** Where it sits in its stream. */
  readonly sequence: number;
  /** Carried by a handed-back copy; otherwise known from failures in this process. */
  readonly firstFailedAt: string | undefined;
}

/** Pull requests one source keeps waiting on the server at most. */
const maxPulls = 4;
/** After a failed pull request, the wait before the stream and consumer are declared again. */
const pullRetryMs = 1000;

export interface NatsSourceSettings {
  readonly context: JetStreamContext;
  readonly group: string;
  readonly leaseMs: number;
  readonly deadLetterDestination: string;
}

/**
 * One consumer of a destination's stream in a group, driven by the consumer runtime: a member of
 * the group's durable pull consumer. `claim` hands out what a background pull request brought
 * and asks for as many more as the runtime has room for, so nothing is pulled ahead of free
 * slots. Settlements (ack, NAK with delay, TERM) wait for the server's reply.
 *
 * Attempts are the server's delivery count (crashes and expired leases included), plus the
 * attempts a handed-back copy carries. A failed message is NAKed with the retry delay: it stays
 * in the stream and JetStream delivers it again when the delay is over.
 */
export class NatsSource implements DeliverySource<NatsDelivery> {
  readonly destination: string;
  /** The group's `ack_wait` is at least this; the runtime renews held messages within it (`extend`). */
  readonly leaseMs: number;
  /**
   * A pull request brings only what the runtime has room for: without a prefetch, a consumer of
   * concurrency 1 would pay a pull round trip per message (768 against 2 208 msg/s here).
   */
  readonly defaultPrefetch = 16;
  readonly #s: NatsSourceSettings;
  #consumer: Consumer | undefined;
  /** Pulled, not yet claimed; `#head` is the first. A claim takes from the head without copying the rest. */
  #buffer: NatsDelivery[] = [];
  #head = 0;
  /** Pull requests waiting on the server, with how many messages each may still bring. */
  readonly #pulls = new Map<Promise<void>, { messages: ConsumerMessages | undefined; left: number }>();
  /** Messages asked for and not arrived yet, over all pull requests. */
  #requested = 0;
  #wake: () => void = () => {};
  #closed = false;
  /**
   * A pull request failed: the stream or the durable consumer may be gone (deleted, a memory
   * stream after a server restart). The next claim declares both again before pulling.
   */
  #stale = false;
  #retryTimer: TimerHandle | undefined;

  constructor(destination: string, settings: NatsSourceSettings) {
    this.destination = destination;
    this.#s = settings;
    this.leaseMs = settings.leaseMs;
  }

  async open(wake: () => void): Promise<void> {
    this.#wake = wake;
    this.#consumer = await this.#s.context.ensureConsumer(this.destination, this.#s.group, this.#s.leaseMs);
  }

  /**
   * The broker's connection is down and the client reconnecting: pull requests wait meanwhile
   * (failing nothing), so claims answer from what was pulled before.
   */
  connectionLost(): ConnectionLoss | undefined {
    return this.#closed ? undefined : this.#s.context.connectionLost();
  }

  async claim(max: number): Promise<NatsDelivery[]> {
    if (this.#consumer === undefined) {
      throw new KeelError('KEEL_SERVICE_STATE', `source ${this.destination} is not open`);
    }
    if (this.#stale && this.#retryTimer === undefined && !this.#closed) {
      // Throws while NATS refuses: the runtime reports it and backs off.
      this.#s.context.forgetStream(this.destination);
      this.#consumer = await this.#s.context.ensureConsumer(this.destination, this.#s.group, this.#s.leaseMs);
      this.#stale = false;
    }
    const end = Math.min(this.#buffer.length, this.#head + max);
    const taken = this.#buffer.slice(this.#head, end);
    this.#head = end;
    if (this.#head === this.#buffer.length) {
      this.#buffer = [];
      this.#head = 0;
    }
    // Room left after this claim that no request covers yet: ask the server for that many. A few
    // requests may wait at once, so slots freed one by one are not each a round trip apart.
    const room = max - taken.length - (this.#buffer.length - this.#head) - this.#requested;
    if (room > 0 && this.#pulls.size < maxPulls && !this.#closed && !this.#stale) {
      this.#startPull(this.#consumer, room);
    }
    return taken;
  }

  async ack(deliveries: readonly NatsDelivery[]): Promise<void> {
    try {
      await this.#s.context.ackAll(deliveries.map((d) => d.message));
    } catch (error) {
      throw new KeelError(
        'KEEL_BROKER_UNAVAILABLE',
        `NATS did not confirm the ack of ${deliveries.length} message(s) of ${this.destination}; they come back after their lease`,
        { cause: error, details: { destination: this.destination } },
      );
    }
    for (const delivery of deliveries) {
      if (delivery.attempt > 1 || delivery.firstFailedAt !== undefined) {
        this.#s.context.firstFailures.delete(this.#key(delivery));
      }
    }
  }

  /**
   * `+WPI` (work in progress) for each message, then one flush: JetStream restarts each one's
   * `ack_wait`. JetStream does not say whether another member holds a message by now, so none
   * is reported taken; a message whose lease ran out before the renewal is handled twice.
   */
  async extend(deliveries: readonly NatsDelivery[]): Promise<readonly NatsDelivery[]> {
    await this.#s.context.progress(deliveries.map((d) => d.message));
    return [];
  }

  async retry(delivery: NatsDelivery, delayMs: number, error: unknown): Promise<void> {
    void error;
    const now = new Date(this.#s.context.o.clock.now()).toISOString();
    this.#s.context.firstFailures.note(this.#key(delivery), delivery.firstFailedAt ?? now);
    const delay = Math.max(0, Math.round(delayMs)) * 1_000_000;
    await this.#s.context.settle(delivery.message, `-NAK {"delay":${delay}}`);
  }

  async deadLetter(delivery: NatsDelivery, error: unknown): Promise<void> {
    const context = this.#s.context;
    const now = new Date(context.o.clock.now()).toISOString();
    const key = this.#key(delivery);
    const failed = {
      envelope: delivery.envelope,
      attempt: delivery.attempt,
      firstFailedAt: context.firstFailures.get(key) ?? delivery.firstFailedAt,
    };
    const envelope = deadLetterEnvelope(failed, this.destination, error, now, describeErrorOnOneLine);
    // Copy first, then TERM: a crash in between leaves a duplicate, never a loss. The id makes a
    // second copy of the same delivery a duplicate JetStream drops.
    await this.#copy(this.#s.deadLetterDestination, envelope, {}, `${envelope.id}:dead:${delivery.sequence}`);
    await context.settle(delivery.message, '+TERM');
    context.firstFailures.delete(key);
  }

  async release(delivery: NatsDelivery): Promise<void> {
    // A NAK would count as a delivery: hand back a copy that carries the attempts made so far, then
    // ack the original. If the copy cannot be stored, NAK (counted, but back at once).
    const id = `${delivery.envelope.id}:back:${delivery.sequence}:${delivery.message.info.deliveryCount}`;
    const first = this.#s.context.firstFailures.get(this.#key(delivery)) ?? delivery.firstFailedAt;
    try {
      await this.#copy(
        this.destination,
        delivery.envelope,
        { attempt: delivery.attempt - 1, ...(first === undefined ? {} : { firstFailedAt: first }) },
        id,
      );
    } catch (error) {
      await this.#s.context.settle(delivery.message, '-NAK');
      throw error;
    }
    await this.#s.context.settle(delivery.message, '+ACK');
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#retryTimer !== undefined) this.#s.context.o.clock.clearTimeout(this.#retryTimer);
    this.#retryTimer = undefined;
    for (const pull of this.#pulls.values()) pull.messages?.stop();
    await Promise.allSettled(this.#pulls.keys());
    // Pulled but never handed to a handler: not attempted, so handed back uncounted.
    const buffered = this.#buffer.slice(this.#head);
    this.#buffer = [];
    this.#head = 0;
    await Promise.allSettled(buffered.map((delivery) => this.release(delivery)));
  }

  #key(delivery: NatsDelivery): string {
    return `${delivery.message.info.stream}:${delivery.sequence}`;
  }

  async #copy(
    destination: string,
    envelope: Envelope,
    carried: { attempt?: number; firstFailedAt?: string },
    msgID: string,
  ): Promise<void> {
    try {
      await this.#s.context.publish(destination, encode(envelope, carried), msgID);
    } catch (error) {
      this.#s.context.forgetStream(destination);
      throw new KeelError('KEEL_PUBLISH_FAILED', `could not copy message ${envelope.id} to ${destination}`, {
        cause: error,
        details: { destination, failedIds: [envelope.id] },
      });
    }
  }

  #startPull(consumer: Consumer, count: number): void {
    const state = { messages: undefined as ConsumerMessages | undefined, left: count };
    this.#requested += count;
    const pulling = (async () => {
      const messages = await consumer.fetch({
        max_messages: count,
        expires: this.#s.context.o.pullExpiresMs,
      });
      state.messages = messages;
      if (this.#closed) messages.stop();
      for await (const message of messages) {
        state.left--;
        this.#requested--;
        this.#receive(message);
      }
    })().then(
      () => {
        this.#pullEnded(pulling, state.left);
        // The runtime claims again: either to take what came, or to ask again.
        if (!this.#closed) this.#wake();
      },
      (error: unknown) => {
        this.#pullEnded(pulling, state.left);
        if (this.#closed) return;
        this.#s.context.o.onError(error);
        // Not at once: a stream that stays gone would otherwise be asked for in a tight loop.
        this.#stale = true;
        this.#retryTimer ??= this.#s.context.o.clock.setTimeout(() => {
          this.#retryTimer = undefined;
          this.#wake();
        }, pullRetryMs);
      },
    );
    this.#pulls.set(pulling, state);
  }

  /** Expired, stopped or failed: what the request did not bring is no longer asked for. */
  #pullEnded(pulling: Promise<void>, left: number): void {
    this.#requested -= left;
    this.#pulls.delete(pulling);
  }

  #receive(message: JsMsg): void {
    let decoded;
    try {
      decoded = decode(message);
    } catch (error) {
      void this.#deadLetterUndecodable(message, error);
      return;
    }
    // After close too: close hands the buffer back once the requests have ended.
    this.#buffer.push(this.#delivery(message, decoded));
    if (!this.#closed) this.#wake();
  }

  #delivery(message: JsMsg, decoded: ReturnType<typeof decode>): NatsDelivery {
    return {
      envelope: decoded.envelope,
      attempt: decoded.carriedAttempts + message.info.deliveryCount,
      message,
      sequence: message.seq,
      firstFailedAt: decoded.firstFailedAt,
    };
  }

  /** A message that is not a keel envelope cannot be handled: park it, raw, in the dead-letter stream. */
  async #deadLetterUndecodable(message: JsMsg, error: unknown): Promise<void> {
    const context = this.#s.context;
    try {
      const now = new Date(context.o.clock.now()).toISOString();
      const h = natsHeaders();
      for (const name of message.headers?.keys() ?? []) h.set(name, message.headers!.get(name));
      h.set('x-dead-letter-source', this.destination);
      h.set('x-dead-letter-error', `undecodable: ${describeErrorOnOneLine(error)}`);
      h.set('x-dead-letter-attempts', String(message.info.deliveryCount));
      h.set('x-dead-letter-first-failed-at', now);
      h.set('x-dead-letter-last-failed-at', now);
      await context.publish(
        this.#s.deadLetterDestination,
        { headers: h, data: message.data },
        `raw:${message.info.stream}:${message.seq}`,
      );
      await context.settle(message, '+TERM');
    } catch (failure) {
      context.o.onError(failure);
    }
  }
}
