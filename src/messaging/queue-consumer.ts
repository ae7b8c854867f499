import { InvalidArgumentError, KeelError } from '../errors/index.ts';
import type { HybridLogicalClock } from '../ordering/index.ts';
import { ServiceBase } from '../service/index.ts';
import { systemClock, type Clock, type TimerHandle } from '../time/index.ts';
import type { Delivery, DeliverySource } from './delivery-source.ts';
import type { Envelope } from './envelope.ts';
import {
  LeaseLostError,
  PermanentError,
  type DeliveryContext,
  type Handler,
  type LeaseLossReason,
} from './handler.ts';
import type { MessageRegistry } from './message-registry.ts';

export interface QueueConsumerOptions {
  /** Messages handled at once. Default 1. */
  concurrency?: number;
  /**
   * Messages claimed ahead of free handler slots and held in memory, so that a finished handler
   * finds its next message without a round trip to the engine, and claims bring many messages at
   * once (see `QueueConsumer` for when the buffer is refilled). Their leases are renewed with the
   * others' (see `heartbeatMs`); per-key ordering is unaffected (an engine hands out one message
   * per key at a time). On stop they are released unhandled, without counting an attempt. Default: the
   * source's `defaultPrefetch` — 16 on the PostgreSQL queue (a handful of round trips per hundred
   * messages instead of two per message), else 0. Set 0 when handlers are slow (seconds) and
   * several consumers share the queue, so that work spreads across them instead of waiting in
   * one consumer's buffer.
   */
  prefetch?: number;
  /** Deliveries (counting the first) before a message is dead-lettered. Default 5. */
  maxAttempts?: number;
  /** Delay before redelivery after attempt `attempt` failed. Default: 1 s doubling to 60 s. */
  retryDelay?: (attempt: number) => number;
  /** How often to look for work when no wake-up arrives. Default 1 000 ms. */
  pollIntervalMs?: number;
  /**
   * How often the leases of every held message (claimed ahead, being handled, awaiting its ack)
   * are renewed, in one call, for sources with leases (`leaseMs` and `extend`): a handler slower
   * than the lease keeps its message, and a crashed consumer's messages come back one lease after
   * its last renewal. A renewal that finds a message taken aborts its handler's `ctx.signal` with
   * a `LeaseLostError`. Must be below the lease. Default `leaseMs / 3`; `false`: never renew (a
   * handler slower than the lease has its message delivered again while it runs). Ignored for
   * sources without leases.
   */
  heartbeatMs?: number | false;
  /** Validates each envelope before the handler sees it; an invalid one is dead-lettered at once. */
  registry?: MessageRegistry;
  /**
   * This process's hybrid logical clock: every received envelope's stamp is merged into it
   * (the receive event), so what this process stamps next is ordered after what it consumed.
   */
  hlc?: HybridLogicalClock;
  clock?: Clock;
  name?: string;
}

export interface QueueConsumerEvents {
  /** The handler resolved: its effects are committed; the ack follows. */
  handled: { message: Envelope; attempt: number };
  acked: { messages: readonly Envelope[] };
  retried: { message: Envelope; attempt: number; delayMs: number; error: unknown };
  'dead-lettered': { message: Envelope; attempt: number; error: unknown };
  /** Drain deadline passed: the message was handed back unacknowledged. */
  released: { message: Envelope };
  /**
   * The consumer no longer holds the message: a renewal or the ack found another consumer (or
   * the reaper) had taken it, or its lease ran out while renewals failed. Its handler's signal
   * aborted with `error`; nothing of it is acknowledged, and it will be delivered again.
   */
  'lease-lost': { message: Envelope; attempt: number; error: LeaseLostError };
  /**
   * An ack call failed: these messages were handled but are not acknowledged. Their leases are
   * no longer renewed, so they are delivered again when the lease runs out (the inbox absorbs
   * the duplicates). An `error` event (`during: 'ack'`) carries the same error.
   */
  'ack-failed': { messages: readonly Envelope[]; error: unknown };
  /** A claim returned messages; `held` counts every message held after it (see `stats`). */
  claimed: { count: number; held: number };
}

/** What a consumer holds in memory, by stage. `held` never exceeds `concurrency + prefetch`. */
export interface QueueConsumerStats {
  /** Claimed ahead, waiting for a free handler slot. */
  readonly buffered: number;
  /** Being handled, or being retried, dead-lettered or released after its handler failed. */
  readonly inFlight: number;
  /** Handled, waiting for its ack to be written. */
  readonly awaitingAck: number;
  /** All of the above. */
  readonly held: number;
}

const defaultRetryDelay = (attempt: number): number => Math.min(60_000, 1000 * 2 ** (attempt - 1));

interface Resolved {
  concurrency: number;
  prefetch: number;
  maxAttempts: number;
  retryDelay: (attempt: number) => number;
  pollIntervalMs: number;
  registry: MessageRegistry | undefined;
  hlc: HybridLogicalClock | undefined;
  /** The source's lease, when it has one the runtime renews. */
  leaseMs: number | undefined;
  heartbeatMs: number | undefined;
  /** The fewest messages worth a claim while every handler slot has work (see `#claimSize`). */
  lowWater: number;
}

function resolveOptions(options: QueueConsumerOptions, source: DeliverySource<Delivery>): Resolved {
  const concurrency = options.concurrency ?? 1;
  if (!Number.isInteger(concurrency) || concurrency < 1) {
    throw new InvalidArgumentError('concurrency', 'an integer >= 1', concurrency);
  }
  const prefetch = options.prefetch ?? source.defaultPrefetch ?? 0;
  if (!Number.isInteger(prefetch) || prefetch < 0) {
    throw new InvalidArgumentError('prefetch', 'an integer >= 0', prefetch);
  }
  const maxAttempts = options.maxAttempts ?? 5;
  if (!Number.isInteger(maxAttempts) || maxAttempts < 1) {
    throw new InvalidArgumentError('maxAttempts', 'an integer >= 1', maxAttempts);
  }
  const pollIntervalMs = options.pollIntervalMs ?? 1000;
  if (!Number.isFinite(pollIntervalMs) || pollIntervalMs <= 0) {
    throw new InvalidArgumentError('pollIntervalMs', 'a number > 0', pollIntervalMs);
  }
  const leaseMs = source.extend === undefined ? undefined : source.leaseMs;
  let heartbeatMs: number | undefined;
  if (leaseMs !== undefined && options.heartbeatMs !== false) {
    heartbeatMs = options.heartbeatMs ?? leaseMs / 3;
    if (!Number.isFinite(heartbeatMs) || heartbeatMs <= 0 || heartbeatMs >= leaseMs) {
      throw new InvalidArgumentError('heartbeatMs', `a number > 0 and < leaseMs (${leaseMs})`, heartbeatMs);
    }
  }
  return {
    leaseMs,
    heartbeatMs,
    concurrency,
    prefetch,
    lowWater: Math.max(1, Math.min(Math.ceil((concurrency + prefetch) / 4), Math.ceil(prefetch / 2))),
    maxAttempts,
    pollIntervalMs,
    retryDelay: options.retryDelay ?? defaultRetryDelay,
    registry: options.registry,
    hlc: options.hlc,
  };
}

/** Where a held message is: claimed ahead, being handled, handled (awaiting its ack), settling. */
type Stage = 'buffered' | 'running' | 'handled' | 'settling';

/** One message the consumer holds, from its claim until it is settled or its lease is lost. */
interface Held<D> {
  readonly delivery: D;
  stage: Stage;
  /** When the lease runs out as far as this process knows (its clock): claim or renewal + lease. */
  until: number;
  /** The message the handler saw (parsed by the registry); set once handled. */
  message: Envelope | undefined;
  lost: boolean;
  /** The handler's context, from the moment the message is handed to the handler. */
  context: MessageContext | undefined;
  /** Holds a handler slot: being handled, or its failure being settled. */
  busy: boolean;
}

/**
 * What the handler is given for one message. Its `AbortController` is made only when the
 * handler reads `signal`: one per message cost several µs (with the garbage it leaves) in a
 * runtime whose own work per message is a few µs, and most handlers never look. An abort before
 * the first read is kept and handed over as an already-aborted signal.
 */
class MessageContext implements DeliveryContext {
  readonly destination: string;
  readonly attempt: number;
  #controller: AbortController | undefined = undefined;
  #aborted = false;
  #reason: unknown = undefined;

  constructor(destination: string, attempt: number) {
    this.destination = destination;
    this.attempt = attempt;
  }

  get signal(): AbortSignal {
    if (this.#controller === undefined) {
      this.#controller = new AbortController();
      if (this.#aborted) this.#controller.abort(this.#reason);
    }
    return this.#controller.signal;
  }

  /** True once the message was given up (drain deadline, lost lease), read or not. */
  get aborted(): boolean {
    return this.#aborted;
  }

  abort(reason: unknown): void {
    if (this.#aborted) return;
    this.#aborted = true;
    this.#reason = reason;
    this.#controller?.abort(reason);
  }
}

/**
 * Runs a handler over a `DeliverySource`: claims up to `concurrency + prefetch` messages, calls
 * the handler, acks after it resolves, retries with backoff or dead-letters when it throws.
 *
 * Acks are batched: a handler that resolves while an ack call is running has its message acked
 * by the next call, together with every other that resolved meanwhile (one round trip, one
 * commit, for all of them). Messages held (claimed, being handled, or handled and awaiting
 * their ack) never exceed `concurrency + prefetch`, so memory stays bounded.
 *
 * Claims are batched too. A handler slot that would wait for work is filled at once, with as
 * many as there is room for. While every slot has work, the prefetch buffer is refilled once it
 * is half empty and room has grown to a quarter of `concurrency + prefetch` (or half the
 * prefetch, if less): one claim for many messages, not one per finished handler. Wake-ups (a
 * notify, a pushed message, a finished handler, an ack) are taken together once per turn of
 * the event loop, so messages an engine pushes in one read are taken in one claim.
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
 */
export class QueueConsumer<D extends Delivery = Delivery> extends ServiceBase<QueueConsumerEvents> {
  readonly #source: DeliverySource<D>;
  readonly #handler: Handler;
  readonly #options: Resolved;
  /** Every message held, from claim to settle; its size is what counts against the bound. */
  readonly #held = new Set<Held<D>>();
  /** Handler slots taken (`busy` messages). */
  #running = 0;
  /** Claimed, not yet handed to the handler (prefetch); `#next` is the head. */
  #buffer: Held<D>[] = [];
  #next = 0;
  /** Handled, waiting for the next ack call. */
  #acks: Held<D>[] = [];
  #flushing: Promise<void> | undefined;
  #loop: Promise<void> | undefined;
  /** Resolves the loop's current pause; set only while it pauses. */
  #resume: (() => void) | undefined;
  /** When the current pause ends if nothing wakes the loop first. */
  #pollAt = 0;
  /**
   * One poll timer, kept across pauses: a pause moves `#pollAt` and a timer that fires early
   * sets itself again for the rest, instead of a timer set and cleared for every pause (under
   * load, several per claim).
   */
  #pollTimer: TimerHandle | undefined;
  #pollTimerAt = 0;
  /** A wake-up came since the loop last looked: look again. */
  #pending = false;
  /** The pause ends at the next turn of the event loop, for every wake-up of this one. */
  #resuming = false;
  #stopping = false;
  #idle: Promise<void> | undefined;
  #settleIdle: (() => void) | undefined;
  #heartbeat: TimerHandle | undefined;
  #beating: Promise<void> | undefined;
  #heartbeatStopped = false;

  constructor(source: DeliverySource<D>, handler: Handler, options: QueueConsumerOptions = {}) {
    super(options.name ?? `consumer(${source.destination})`, options.clock ?? systemClock);
    this.#source = source;
    this.#handler = handler;
    this.#options = resolveOptions(options, source);
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

  protected override async onStart(): Promise<void> {
    await this.#source.open(() => this.#wake());
    this.#heartbeatStopped = false;
    this.#scheduleHeartbeat();
    this.#loop = this.#run();
  }

  protected override async onStop(drain: AbortSignal): Promise<void> {
    this.#stopping = true;
    this.#wake();
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
      await this.#stopHeartbeat();
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
          await this.#source.release(held.delivery);
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

  #wake(): void {
    this.#pending = true;
    if (this.#resume !== undefined) this.#resumeNextTurn();
  }

  #resumeNextTurn(): void {
    if (this.#resuming) return;
    this.#resuming = true;
    setImmediate(this.#onNextTurn);
  }

  readonly #onNextTurn = (): void => {
    this.#resuming = false;
    this.#resumeLoop();
  };

  #resumeLoop(): void {
    const resume = this.#resume;
    this.#resume = undefined;
    resume?.();
  }

  /**
   * How many messages to claim now: 0 when there is no room, or when every handler slot has
   * work and the room is too small for a claim to pay.
   */
  #claimSize(): number {
    const { concurrency, prefetch, lowWater } = this.#options;
    const free = concurrency + prefetch - this.#held.size;
    if (free <= 0) return 0;
    const buffered = this.#buffer.length - this.#next;
    // A handler slot would wait for work: fill it, however little the claim brings.
    if (this.#running + buffered < concurrency) return free;
    return buffered <= prefetch / 2 && free >= lowWater ? free : 0;
  }

  async #run(): Promise<void> {
    let failures = 0;
    while (!this.#stopping) {
      // Wake-ups from here on call for another look.
      this.#pending = false;
      const max = this.#claimSize();
      if (max === 0) {
        // A finishing handler or ack wakes us. Never spin here: a loop of resolved promises
        // would starve the event loop that the handlers need.
        await this.#pause(this.#options.pollIntervalMs);
        continue;
      }
      let batch: D[] = [];
      // Read before the claim: the lease began no later than this.
      const claimedAt = this.clock.now();
      try {
        batch = await this.#source.claim(max);
        failures = 0;
      } catch (error) {
        failures++;
        this.events.emit('error', { error, during: 'claim' });
        // The backoff is not cut short by what woke us during the failed claim.
        this.#pending = false;
        await this.#pause(Math.min(30_000, this.#options.pollIntervalMs * 2 ** Math.min(failures, 5)));
        continue;
      }
      const until = claimedAt + (this.#options.leaseMs ?? Number.POSITIVE_INFINITY);
      for (const delivery of batch) {
        const held: Held<D> = {
          delivery,
          stage: 'buffered',
          until,
          message: undefined,
          lost: false,
          context: undefined,
          busy: false,
        };
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
      await this.#pause(this.#options.pollIntervalMs);
    }
    this.#stopPolling();
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

  /** Waits for a wake-up (a notify, a freed slot, an ack, stop) or `ms`. */
  #pause(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      this.#resume = resolve;
      if (this.#stopping) this.#resumeLoop();
      else if (this.#pending) this.#resumeNextTurn();
      else this.#pollIn(ms);
    });
  }

  /** Ends the current pause `ms` from now, unless a wake-up ends it first. */
  #pollIn(ms: number): void {
    const at = this.clock.now() + ms;
    this.#pollAt = at;
    if (this.#pollTimer !== undefined) {
      // Due no later: when it fires it sets itself again for what is left.
      if (this.#pollTimerAt <= at) return;
      this.clock.clearTimeout(this.#pollTimer);
    }
    this.#pollTimerAt = at;
    this.#pollTimer = this.clock.setTimeout(this.#onPollTimer, ms);
  }

  readonly #onPollTimer = (): void => {
    this.#pollTimer = undefined;
    // Not pausing: the loop is at work, and its next pause sets a timer again.
    if (this.#resume === undefined) return;
    const left = this.#pollAt - this.clock.now();
    if (left > 0) {
      this.#pollTimerAt = this.#pollAt;
      this.#pollTimer = this.clock.setTimeout(this.#onPollTimer, left);
      return;
    }
    this.#resumeLoop();
  };

  #stopPolling(): void {
    if (this.#pollTimer !== undefined) this.clock.clearTimeout(this.#pollTimer);
    this.#pollTimer = undefined;
  }

  #waitIdle(): Promise<void> {
    this.#idle ??= new Promise<void>((resolve) => (this.#settleIdle = resolve));
    return this.#idle;
  }

  /** Runs the handler on a message that took a slot (`#running` counts it), then frees the slot. */
  async #work(held: Held<D>): Promise<void> {
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
      this.#wake();
    }
  }

  /** The handler resolved: the message joins the next ack batch. */
  #handled(held: Held<D>, message: Envelope): void {
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
      for (const held of batch) held.stage = 'settling';
      try {
        const refused = (await this.#source.ack(batch.map((held) => held.delivery))) ?? [];
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
        this.events.emit('ack-failed', { messages: batch.map((held) => held.delivery.envelope), error });
        this.events.emit('error', { error, during: 'ack' });
      } finally {
        for (const held of batch) this.#held.delete(held);
        this.#wake();
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

  async #fail(held: Held<D>, error: unknown, context: MessageContext): Promise<void> {
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
        await this.#source.release(delivery);
        this.events.emit('released', { message: envelope });
      } else if (isPermanent(error) || attempt >= this.#options.maxAttempts) {
        await this.#source.deadLetter(delivery, error);
        this.events.emit('dead-lettered', { message: envelope, attempt, error });
      } else {
        const delayMs = this.#options.retryDelay(attempt);
        await this.#source.retry(delivery, delayMs, error);
        this.events.emit('retried', { message: envelope, attempt, delayMs, error });
      }
    } catch (failure) {
      // The message stays leased and comes back when the lease expires: nothing is lost.
      this.events.emit('error', { error: failure, during: 'settle' });
    } finally {
      this.#held.delete(held);
    }
  }

  #scheduleHeartbeat(): void {
    const every = this.#options.heartbeatMs;
    if (every === undefined || this.#heartbeatStopped) return;
    this.#heartbeat = this.clock.setTimeout(() => {
      this.#heartbeat = undefined;
      this.#beating = this.#beat().finally(() => {
        this.#beating = undefined;
        this.#scheduleHeartbeat();
      });
    }, every);
  }

  async #stopHeartbeat(): Promise<void> {
    this.#heartbeatStopped = true;
    if (this.#heartbeat !== undefined) this.clock.clearTimeout(this.#heartbeat);
    this.#heartbeat = undefined;
    await this.#beating;
  }

  /** Renews every held lease in one call; gives up the messages it finds taken. */
  async #beat(): Promise<void> {
    const leaseMs = this.#options.leaseMs;
    if (this.#source.extend === undefined || leaseMs === undefined) return;
    // Messages being settled are on their way out; the settle itself checks the lease.
    const renewing = [...this.#held].filter((held) => held.stage !== 'settling');
    if (renewing.length === 0) return;
    const startedAt = this.clock.now();
    let taken: readonly D[];
    try {
      taken = await this.#source.extend(renewing.map((held) => held.delivery));
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
  #loseLease(held: Held<D>, reason: LeaseLossReason): void {
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
    this.#wake();
  }

  #reportLost(held: Held<D>, reason: LeaseLossReason): LeaseLostError {
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
