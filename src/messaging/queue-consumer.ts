import { InvalidArgumentError, KeelError } from '../errors/index.ts';
import type { HybridLogicalClock } from '../ordering/index.ts';
import { ServiceBase } from '../service/index.ts';
import { systemClock, type Clock, type TimerHandle } from '../time/index.ts';
import type { Delivery, DeliverySource } from './delivery-source.ts';
import type { Envelope } from './envelope.ts';
import { PermanentError, type Handler } from './handler.ts';
import type { MessageRegistry } from './message-registry.ts';

export interface QueueConsumerOptions {
  /** Messages handled at once. Default 1. */
  concurrency?: number;
  /**
   * Messages claimed ahead of free handler slots and held in memory, so that a finished handler
   * finds its next message without a round trip to the engine. They are claimed under the same
   * lease as the ones being handled: keep `concurrency + prefetch` messages well within what the
   * handler gets through in one lease. On stop they are released unhandled. Default 0.
   */
  prefetch?: number;
  /** Deliveries (counting the first) before a message is dead-lettered. Default 5. */
  maxAttempts?: number;
  /** Delay before redelivery after attempt `attempt` failed. Default: 1 s doubling to 60 s. */
  retryDelay?: (attempt: number) => number;
  /** How often to look for work when no wake-up arrives. Default 1 000 ms. */
  pollIntervalMs?: number;
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
}

function resolveOptions(options: QueueConsumerOptions): Resolved {
  const concurrency = options.concurrency ?? 1;
  if (!Number.isInteger(concurrency) || concurrency < 1) {
    throw new InvalidArgumentError('concurrency', 'an integer >= 1', concurrency);
  }
  const prefetch = options.prefetch ?? 0;
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
  return {
    concurrency,
    prefetch,
    maxAttempts,
    pollIntervalMs,
    retryDelay: options.retryDelay ?? defaultRetryDelay,
    registry: options.registry,
    hlc: options.hlc,
  };
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
 * Stop: claiming ends at once; prefetched messages not yet handled are released; in-flight
 * handlers get the drain budget and their acks are flushed; past the deadline their signals
 * abort and their messages are released unacknowledged, to be delivered again.
 */
export class QueueConsumer<D extends Delivery = Delivery> extends ServiceBase<QueueConsumerEvents> {
  readonly #source: DeliverySource<D>;
  readonly #handler: Handler;
  readonly #options: Resolved;
  readonly #inFlight = new Map<D, AbortController>();
  /** Claimed, not yet handed to the handler (prefetch); `#next` is the head. */
  #buffer: D[] = [];
  #next = 0;
  /** Handled, waiting for the next ack call. */
  #acks: { delivery: D; message: Envelope }[] = [];
  /** Handled and not yet acked: waiting in `#acks` or in the ack call that is running. */
  #unacked = 0;
  #flushing: Promise<void> | undefined;
  #loop: Promise<void> | undefined;
  #wakeUp: (() => void) | undefined;
  #pending = false;
  #stopping = false;
  #idle: Promise<void> | undefined;
  #settleIdle: (() => void) | undefined;

  constructor(source: DeliverySource<D>, handler: Handler, options: QueueConsumerOptions = {}) {
    super(options.name ?? `consumer(${source.destination})`, options.clock ?? systemClock);
    this.#source = source;
    this.#handler = handler;
    this.#options = resolveOptions(options);
  }

  /** Messages being handled right now. */
  get inFlight(): number {
    return this.#inFlight.size;
  }

  protected override async onStart(): Promise<void> {
    await this.#source.open(() => this.#wake());
    this.#loop = this.#run();
  }

  protected override async onStop(drain: AbortSignal): Promise<void> {
    this.#stopping = true;
    this.#wake();
    await this.#loop;
    const onDeadline = (): void => {
      for (const controller of this.#inFlight.values()) controller.abort(drain.reason);
    };
    drain.addEventListener('abort', onDeadline, { once: true });
    try {
      await this.#releaseBuffered();
      while (this.#inFlight.size > 0) await this.#waitIdle();
      // Handlers have all settled; no ack can be queued any more once this flush ends.
      await this.#flushing;
    } finally {
      drain.removeEventListener('abort', onDeadline);
      await this.#source.close();
    }
  }

  /** Hands back, unhandled and without counting the attempt, what was claimed ahead. */
  async #releaseBuffered(): Promise<void> {
    const buffered = this.#buffer.slice(this.#next);
    this.#buffer = [];
    this.#next = 0;
    await Promise.all(
      buffered.map(async (delivery) => {
        try {
          await this.#source.release(delivery);
          this.events.emit('released', { message: delivery.envelope });
        } catch (error) {
          // Still leased: it comes back when the lease expires.
          this.events.emit('error', { error, during: 'settle' });
        }
      }),
    );
  }

  /** Messages held: claimed ahead, being handled, or handled and awaiting their ack. */
  #held(): number {
    return this.#buffer.length - this.#next + this.#inFlight.size + this.#unacked;
  }

  #wake(): void {
    this.#pending = true;
    this.#wakeUp?.();
  }

  async #run(): Promise<void> {
    let failures = 0;
    while (!this.#stopping) {
      const free = this.#options.concurrency + this.#options.prefetch - this.#held();
      if (free <= 0) {
        // Every slot is busy: a finishing handler or ack wakes us. Never spin here: a loop of
        // resolved promises would starve the event loop that the handlers need.
        await this.#pause(this.#options.pollIntervalMs);
        continue;
      }
      this.#pending = false;
      let batch: D[] = [];
      try {
        batch = await this.#source.claim(free);
        failures = 0;
      } catch (error) {
        failures++;
        this.events.emit('error', { error, during: 'claim' });
        await this.#pause(Math.min(30_000, this.#options.pollIntervalMs * 2 ** Math.min(failures, 5)));
        continue;
      }
      for (const delivery of batch) this.#buffer.push(delivery);
      this.#pump();
      // A full batch means more may be waiting; claim again while there is room.
      if (batch.length === free || this.#pending) continue;
      await this.#pause(this.#options.pollIntervalMs);
    }
  }

  /** Hands claimed messages to free handler slots. */
  #pump(): void {
    while (this.#inFlight.size < this.#options.concurrency && this.#next < this.#buffer.length) {
      const delivery = this.#buffer[this.#next++]!;
      if (this.#next === this.#buffer.length) {
        this.#buffer = [];
        this.#next = 0;
      }
      this.#dispatch(delivery);
    }
  }

  /** Waits for a wake-up (a notify, a freed slot, stop) or the poll interval. */
  #pause(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      let timer: TimerHandle | undefined = undefined;
      const done = (): void => {
        this.#wakeUp = undefined;
        if (timer !== undefined) this.clock.clearTimeout(timer);
        resolve();
      };
      this.#wakeUp = done;
      timer = this.clock.setTimeout(done, ms);
      if (this.#stopping) done();
    });
  }

  #waitIdle(): Promise<void> {
    this.#idle ??= new Promise<void>((resolve) => (this.#settleIdle = resolve));
    return this.#idle;
  }

  #dispatch(delivery: D): void {
    const controller = new AbortController();
    this.#inFlight.set(delivery, controller);
    void this.#handle(delivery, controller.signal).finally(() => {
      this.#inFlight.delete(delivery);
      const settle = this.#settleIdle;
      this.#idle = undefined;
      this.#settleIdle = undefined;
      settle?.();
      if (!this.#stopping) this.#pump();
      this.#wake();
    });
  }

  async #handle(delivery: D, signal: AbortSignal): Promise<void> {
    const { envelope, attempt } = delivery;
    let message: Envelope = envelope;
    this.#mergeStamp(envelope);
    try {
      if (this.#options.registry) message = this.#options.registry.parse(envelope);
      await this.#handler(message, { destination: this.#source.destination, attempt, signal });
    } catch (error) {
      await this.#fail(delivery, error, signal);
      return;
    }
    this.events.emit('handled', { message, attempt });
    this.#acks.push({ delivery, message });
    this.#unacked++;
    this.#flushing ??= this.#flushAcks();
  }

  /** Acks what has been handled, one call per batch, until nothing waits; one flush at a time. */
  async #flushAcks(): Promise<void> {
    while (this.#acks.length > 0) {
      const batch = this.#acks;
      this.#acks = [];
      try {
        await this.#source.ack(batch.map((a) => a.delivery));
        for (const { message } of batch) this.events.emit('acked', { messages: [message] });
      } catch (error) {
        // The effects are committed but the ack is not: the messages come back after their
        // lease, and the inbox (or an idempotent handler) absorbs the duplicates.
        this.events.emit('error', { error, during: 'ack' });
      } finally {
        this.#unacked -= batch.length;
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

  async #fail(delivery: D, error: unknown, signal: AbortSignal): Promise<void> {
    const { envelope, attempt } = delivery;
    try {
      if (signal.aborted) {
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
    }
  }
}

function isPermanent(error: unknown): boolean {
  return (
    error instanceof PermanentError ||
    (error instanceof KeelError &&
      (error.code === 'KEEL_MESSAGE_INVALID' || error.code === 'KEEL_UNKNOWN_MESSAGE_TYPE'))
  );
}
