import { KeelError } from '../errors/index.ts';
import { ServiceBase, type HealthRecord, type ReportsHealth, type ServiceHealth } from '../service/index.ts';
import { systemClock } from '../time/index.ts';
import { ConsumerWakeup } from './consumer-wakeup.ts';
import type { Delivery, DeliverySource } from './delivery-source.ts';
import type { Envelope } from './envelope.ts';
import { LeaseLostError, PermanentError, type Handler, type LeaseLossReason } from './handler.ts';
import { HeldMessage } from './held-message.ts';
import { LeaseHeartbeat } from './lease-heartbeat.ts';
import { MessageContext } from './message-context.ts';
import type { QueueConsumerEvents, QueueConsumerStats } from './queue-consumer-events.ts';
import { consumerHealthRecord, withConnectionLoss } from './queue-consumer-health.ts';
import {
  resolveOptions,
  type QueueConsumerOptions,
  type ResolvedConsumerOptions,
} from './queue-consumer-options.ts';
import { claimSize } from './refill-policy.ts';

export type { QueueConsumerOptions } from './queue-consumer-options.ts';
export type { QueueConsumerEvents, QueueConsumerStats } from './queue-consumer-events.ts';

/**
 * Runs a handler over a `DeliverySource`: claims up to `concurrency + prefetch` messages, calls
 * the handler, acks after it resolves, retries with backoff or dead-letters when it throws.
 *
 * Acks are batched: a handler that resolves while an ack call is running has its message acked
 * by the next call, together with every other that resolved meanwhile (one round trip, one
 * commit, for all of them). The first ack call after a quiet spell waits one turn of the event
 * loop, so that handlers finishing in the same turn share it. Messages held (claimed, being
 * handled, or handled and awaiting their ack) never exceed `concurrency + prefetch`, so memory
 * stays bounded.
 *
 * Claims are batched too: see `refill-policy.ts` for when and how many. Wake-ups (a notify, a
 * pushed message, a finished handler, an ack) are taken together once per turn of the event
 * loop (`consumer-wakeup.ts`), so messages an engine pushes in one read are taken in one claim.
 *
 * Leases: for a source with leases, the runtime renews every held message's lease every
 * `heartbeatMs` in one `extend` call, so a slow handler keeps its message. A message the renewal
 * (or the ack) finds taken is given up: its handler's signal aborts with `LeaseLostError` and
 * nothing of it is acknowledged, retried or released. If renewals fail (the engine is away) past
 * a message's lease, the same happens: another consumer may be handling it already.
 *
 * Stop: claiming ends at once; prefetched messages not yet handled are released; in-flight
 * handlers get the drain budget and their acks are flushed; past the deadline their signals
 * abort and their messages are released unacknowledged, to be delivered again.
 *
 * Health: `health()` reads what the consumer's own calls to the broker found (see there).
 */
export class QueueConsumer<D extends Delivery = Delivery>
  extends ServiceBase<QueueConsumerEvents>
  implements ReportsHealth
{
  readonly #source: DeliverySource<D>;
  readonly #handler: Handler;
  readonly #options: ResolvedConsumerOptions;
  /** Every message held, from claim to settle; its size is what counts against the bound. */
  readonly #held = new Set<HeldMessage<D>>();
  /** Handler slots taken (`busy` messages). */
  #running = 0;
  /** Claimed, not yet handed to the handler (prefetch); `#next` is the head. */
  #buffer: HeldMessage<D>[] = [];
  #next = 0;
  /** Handled, waiting for the next ack call. */
  #acks: HeldMessage<D>[] = [];
  #flushing: Promise<void> | undefined;
  #loop: Promise<void> | undefined;
  readonly #wakeup: ConsumerWakeup;
  readonly #heartbeat: LeaseHeartbeat;
  readonly #health: HealthRecord<'broker'>;
  #stopping = false;
  #idle: Promise<void> | undefined;
  #settleIdle: (() => void) | undefined;

  constructor(source: DeliverySource<D>, handler: Handler, options: QueueConsumerOptions = {}) {
    super(options.name ?? `consumer(${source.destination})`, options.clock ?? systemClock);
    this.#source = source;
    this.#handler = handler;
    this.#options = resolveOptions(options, source);
    this.#wakeup = new ConsumerWakeup(this.clock);
    this.#heartbeat = new LeaseHeartbeat(this.clock, this.#options.heartbeatMs, () => this.#renewLeases());
    this.#health = consumerHealthRecord(this.clock, this.#options);
  }

  /** Messages being handled right now. */
  get inFlight(): number {
    return this.#running;
  }

  /** What the consumer holds in memory right now, by stage. */
  get stats(): QueueConsumerStats {
    let buffered = 0;
    let awaitingAck = 0;
    for (const held of this.#held) {
      if (held.stage === 'buffered') buffered++;
      else if (held.stage === 'handled' || (held.stage === 'settling' && !held.busy)) awaitingAck++;
    }
    return { buffered, inFlight: this.#running, awaitingAck, held: this.#held.size };
  }

  /**
   * Whether the consumer reaches its broker, from the outcome of its own calls to the source
   * (claims, acks, retries, dead-letters, releases, lease renewals): 'failing', with `dependency`
   * `'broker'` and `during` `'claim'`, `'ack'`, `'settle'` or `'heartbeat'`, while they fail;
   * 'ok' again after the next one that succeeds. On a source whose leases it renews, also
   * 'failing' when no call has answered for `leaseMs + pollIntervalMs` (one hangs). A handler
   * that throws is its message's problem, not the consumer's: the retry or dead-letter that
   * follows counts, the throw does not. Also 'failing', `during` `'connect'`, while the source
   * says the connection it holds of its own is lost (`DeliverySource.connectionLost`: a channel
   * or client link an engine pushes into), with every slot busy too: `since` the loss,
   * `failures` its failed reconnect attempts, `lastError` the last one's error (before any, the
   * loss's cause); 'ok' again once the source is connected. The earlier failure wins when both
   * say failing. A read of memory: nothing is called.
   */
  health(): ServiceHealth {
    return withConnectionLoss(this.#health.health(this.state), this.#source.connectionLost?.());
  }

  protected override async onStart(): Promise<void> {
    this.#health.started();
    await this.#source.open(() => this.#wakeup.wake());
    this.#health.succeeded('broker');
    this.#heartbeat.start();
    this.#loop = this.#run();
  }

  protected override async onStop(drain: AbortSignal): Promise<void> {
    this.#stopping = true;
    this.#wakeup.stop();
    await this.#loop;
    const onDeadline = (): void => {
      for (const held of this.#held) if (held.busy) held.context?.abort(drain.reason);
    };
    drain.addEventListener('abort', onDeadline, { once: true });
    try {
      await this.#releaseBuffered();
      while (this.#running > 0) await this.#waitIdle();
      // Handlers have all settled; no ack can be queued any more once this flush ends.
      await this.#flushing;
    } finally {
      drain.removeEventListener('abort', onDeadline);
      // Renewals go on through the drain: a handler finishing its work must keep its message.
      await this.#heartbeat.stop();
      await this.#source.close();
    }
  }

  /** Hands back, unhandled and without counting the attempt, what was claimed ahead. */
  async #releaseBuffered(): Promise<void> {
    const buffered = this.#buffer.slice(this.#next);
    this.#buffer = [];
    this.#next = 0;
    await Promise.all(
      buffered.map(async (held) => {
        held.stage = 'settling';
        try {
          await this.#settle(() => this.#source.release(held.delivery));
          this.events.emit('released', { message: held.delivery.envelope });
        } catch (error) {
          // Still leased: it comes back when the lease expires.
          this.events.emit('error', { error, during: 'settle' });
        } finally {
          this.#held.delete(held);
        }
      }),
    );
  }

  /** How many messages to claim now (see `refill-policy.ts`). */
  #claimSize(): number {
    const { concurrency, prefetch, lowWater } = this.#options;
    return claimSize({
      concurrency,
      prefetch,
      lowWater,
      held: this.#held.size,
      running: this.#running,
      buffered: this.#buffer.length - this.#next,
    });
  }

  async #run(): Promise<void> {
    let failures = 0;
    while (!this.#stopping) {
      this.#wakeup.looking();
      const max = this.#claimSize();
      if (max === 0) {
        // A finishing handler or ack wakes us. Never spin here: a loop of resolved promises
        // would starve the event loop that the handlers need.
        await this.#wakeup.pause(this.#options.pollIntervalMs);
        continue;
      }
      let batch: D[] = [];
      // Read before the claim: the lease began no later than this.
      const claimedAt = this.clock.now();
      // By hand, not `track`: an empty claim is not always an answer (below).
      try {
        batch = await this.#source.claim(max);
      } catch (error) {
        failures++;
        this.#health.failed('broker', error, 'claim');
        this.events.emit('error', { error, during: 'claim' });
        // The backoff is not cut short by what woke us during the failed claim.
        this.#wakeup.looking();
        await this.#wakeup.pause(Math.min(30_000, this.#options.pollIntervalMs * 2 ** Math.min(failures, 5)));
        continue;
      }
      failures = 0;
      // A source that lost its own link answers from memory — nothing, or messages pushed before
      // the loss: no word from the engine either way, and recording it would wipe a failure that
      // began before the loss (`health()` would name the loss's later `since`).
      if (this.#source.connectionLost?.() === undefined) this.#health.succeeded('broker');
      const until = claimedAt + (this.#options.leaseMs ?? Number.POSITIVE_INFINITY);
      for (const delivery of batch) {
        const held = new HeldMessage(delivery, until);
        this.#held.add(held);
        this.#buffer.push(held);
      }
      if (batch.length > 0 && this.events.has('claimed')) {
        this.events.emit('claimed', { count: batch.length, held: this.#held.size });
      }
      this.#pump();
      // A full batch means more may be waiting: claim again if there is room. After a short one,
      // wait for a wake-up (or for the next turn, if one came during the claim).
      if (batch.length === max) continue;
      await this.#wakeup.pause(this.#options.pollIntervalMs);
    }
  }

  /** Hands claimed messages to free handler slots. */
  #pump(): void {
    while (this.#running < this.#options.concurrency && this.#next < this.#buffer.length) {
      const held = this.#buffer[this.#next++]!;
      if (this.#next === this.#buffer.length) {
        this.#buffer = [];
        this.#next = 0;
      }
      this.#running++;
      void this.#work(held);
    }
  }

  #waitIdle(): Promise<void> {
    this.#idle ??= new Promise<void>((resolve) => (this.#settleIdle = resolve));
    return this.#idle;
  }

  /** Runs the handler on a message that took a slot (`#running` counts it), then frees the slot. */
  async #work(held: HeldMessage<D>): Promise<void> {
    const { envelope, attempt } = held.delivery;
    const context = new MessageContext(this.#source.destination, attempt);
    held.context = context;
    held.stage = 'running';
    held.busy = true;
    try {
      let message: Envelope = envelope;
      this.#mergeStamp(envelope);
      try {
        if (this.#options.registry) message = this.#options.registry.parse(envelope);
        await this.#handler(message, context);
      } catch (error) {
        await this.#fail(held, error, context);
        return;
      }
      this.#handled(held, message);
    } finally {
      held.busy = false;
      this.#running--;
      const settle = this.#settleIdle;
      if (settle !== undefined) {
        this.#idle = undefined;
        this.#settleIdle = undefined;
        settle();
      }
      if (!this.#stopping) this.#pump();
      this.#wakeup.wake();
    }
  }

  /** The handler resolved: the message joins the next ack batch. */
  #handled(held: HeldMessage<D>, message: Envelope): void {
    if (held.lost) {
      // Another consumer holds it now; an ack would be refused, and the message is theirs.
      this.#held.delete(held);
      return;
    }
    if (this.events.has('handled')) this.events.emit('handled', { message, attempt: held.delivery.attempt });
    held.stage = 'handled';
    held.message = message;
    this.#acks.push(held);
    this.#flushing ??= this.#flushAcks();
  }

  /** Acks what has been handled, one call per batch, until nothing waits; one flush at a time. */
  async #flushAcks(): Promise<void> {
    // From the next turn of the event loop, so that handlers finishing in this one join the first
    // batch: otherwise the first to finish is acked alone, and the room its ack frees is then
    // claimed alone too.
    await new Promise<void>((resolve) => setImmediate(resolve));
    while (this.#acks.length > 0) {
      const batch = this.#acks;
      this.#acks = [];
      const deliveries: D[] = new Array<D>(batch.length);
      for (let i = 0; i < batch.length; i++) {
        batch[i]!.stage = 'settling';
        deliveries[i] = batch[i]!.delivery;
      }
      // By hand, not `track`: no closure per ack call on this path, and the error is not rethrown.
      try {
        const refused = (await this.#source.ack(deliveries)) ?? [];
        // Refused deliveries are an answer too: the broker says another consumer holds them.
        this.#health.succeeded('broker');
        const fenced = refused.length === 0 ? undefined : new Set(refused);
        const report = this.events.has('acked');
        for (const held of batch) {
          if (fenced?.has(held.delivery)) this.#reportLost(held, 'taken');
          else if (report) this.events.emit('acked', { messages: [held.message ?? held.delivery.envelope] });
        }
      } catch (error) {
        // The effects are committed but the ack is not. The leases are no longer renewed, so the
        // messages come back when they run out, and the inbox (or an idempotent handler) absorbs
        // the duplicates. Nothing is reported acked.
        this.#health.failed('broker', error, 'ack');
        this.events.emit('ack-failed', { messages: batch.map((held) => held.delivery.envelope), error });
        this.events.emit('error', { error, during: 'ack' });
      } finally {
        for (const held of batch) this.#held.delete(held);
        this.#wakeup.wake();
      }
    }
    this.#flushing = undefined;
  }

  #mergeStamp(envelope: Envelope): void {
    const hlc = this.#options.hlc;
    if (hlc === undefined || envelope.hlc === undefined) return;
    try {
      hlc.receive(envelope.hlc);
    } catch (error) {
      // A stamp from a clock far ahead (or malformed) must not move ours, nor stop the message.
      this.events.emit('error', { error, during: 'hlc' });
    }
  }

  async #fail(held: HeldMessage<D>, error: unknown, context: MessageContext): Promise<void> {
    const { delivery } = held;
    const { envelope, attempt } = delivery;
    if (held.lost) {
      // Not ours any more: settling it would be refused, or would settle the new holder's delivery.
      this.#held.delete(held);
      return;
    }
    held.stage = 'settling';
    try {
      if (context.aborted) {
        if ((await this.#settle(() => this.#source.release(delivery))) === false)
          this.#reportLost(held, 'taken');
        else this.events.emit('released', { message: envelope });
      } else if (isPermanent(error) || attempt >= this.#options.maxAttempts) {
        if ((await this.#settle(() => this.#source.deadLetter(delivery, error))) === false)
          this.#reportLost(held, 'taken');
        else this.events.emit('dead-lettered', { message: envelope, attempt, error });
      } else {
        const delayMs = this.#options.retryDelay(attempt);
        if ((await this.#settle(() => this.#source.retry(delivery, delayMs, error))) === false)
          this.#reportLost(held, 'taken');
        else this.events.emit('retried', { message: envelope, attempt, delayMs, error });
      }
    } catch (failure) {
      // The message stays leased and comes back when the lease expires: nothing is lost.
      this.events.emit('error', { error: failure, during: 'settle' });
    } finally {
      this.#held.delete(held);
    }
  }

  /**
   * A retry, dead-letter or release, its outcome kept for `health()`: after a handler failed, that
   * failure was its message's, but this call is the consumer's own, to the broker. `false` (the
   * lease was lost) is an answer too.
   */
  #settle(call: () => Promise<boolean | void>): Promise<boolean | void> {
    return this.#health.track('broker', 'settle', call);
  }

  /** Renews every held lease in one call; gives up the messages it finds taken. */
  async #renewLeases(): Promise<void> {
    const leaseMs = this.#options.leaseMs;
    if (this.#source.extend === undefined || leaseMs === undefined) return;
    // Messages being settled are on their way out; the settle itself checks the lease.
    const renewing = [...this.#held].filter((held) => held.stage !== 'settling');
    if (renewing.length === 0) return;
    const startedAt = this.clock.now();
    const deliveries = renewing.map((held) => held.delivery);
    let taken: readonly D[];
    try {
      taken = await this.#health.track('broker', 'heartbeat', () => this.#source.extend!(deliveries));
    } catch (error) {
      this.events.emit('error', { error, during: 'heartbeat' });
      // Past its lease another consumer may hold the message already: stop before doing it twice.
      const now = this.clock.now();
      for (const held of renewing) if (held.until <= now) this.#loseLease(held, 'expired');
      return;
    }
    const lost = taken.length === 0 ? undefined : new Set(taken);
    for (const held of renewing) {
      if (lost?.has(held.delivery)) this.#loseLease(held, 'taken');
      else held.until = Math.max(held.until, startedAt + leaseMs);
    }
  }

  /** The consumer no longer holds `held`'s message: drop it, or abort its handler. */
  #loseLease(held: HeldMessage<D>, reason: LeaseLossReason): void {
    // Settled (or settling) while the renewal ran: what it found is that settle, not a thief.
    if (held.lost || held.stage === 'settling' || !this.#held.has(held)) return;
    held.lost = true;
    if (held.stage === 'buffered') {
      this.#held.delete(held);
      this.#buffer = this.#buffer.slice(this.#next).filter((other) => other !== held);
      this.#next = 0;
    } else if (held.stage === 'handled') {
      this.#held.delete(held);
      this.#acks = this.#acks.filter((other) => other !== held);
    }
    const error = this.#reportLost(held, reason);
    // A running handler keeps its slot until it returns; its outcome is then dropped.
    if (held.stage === 'running') held.context?.abort(error);
    this.#wakeup.wake();
  }

  #reportLost(held: HeldMessage<D>, reason: LeaseLossReason): LeaseLostError {
    const { envelope, attempt } = held.delivery;
    const error = new LeaseLostError(this.#source.destination, envelope.id, reason);
    this.events.emit('lease-lost', { message: envelope, attempt, error });
    return error;
  }
}

function isPermanent(error: unknown): boolean {
  return (
    error instanceof PermanentError ||
    (error instanceof KeelError &&
      (error.code === 'KEEL_MESSAGE_INVALID' || error.code === 'KEEL_UNKNOWN_MESSAGE_TYPE'))
  );
}
