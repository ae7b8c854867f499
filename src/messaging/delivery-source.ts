import type { Envelope } from './envelope.ts';

/** One claimed message, as an adapter hands it to the consumer runtime. */
export interface Delivery {
  readonly envelope: Envelope;
  /** 1 on first delivery. */
  readonly attempt: number;
}

/** A source's own connection to its engine, lost: what `DeliverySource.connectionLost` says. */
export interface ConnectionLoss {
  /** When the source noticed the loss (ms, the source's clock). */
  readonly since: number;
  /** Reconnect attempts that have failed since; 0 before the first has ended. */
  readonly attempts: number;
  /** The last failed attempt's error; before any, what ended the connection (when known). */
  readonly error: unknown;
}

/**
 * What a broker adapter provides so the consumer runtime can do the rest (concurrency,
 * retries, dead-lettering, drain) the same way for every engine.
 *
 * Calls come from one runtime at a time per source; `claim` is never called concurrently with
 * itself, while `ack`, `retry`, `deadLetter` and `release` may run concurrently with `claim`.
 */
export interface DeliverySource<D extends Delivery = Delivery> {
  readonly destination: string;
  /** Connects and subscribes; `wake` is called whenever new work may be there (a NOTIFY, a push). */
  open(wake: () => void): Promise<void>;
  /** Claims up to `max` ready messages under a lease. Resolves with none when there is no work. */
  claim(max: number): Promise<D[]>;
  /**
   * How long a claim holds a message before the engine may give it to another consumer. With
   * `extend`, the runtime renews the lease of every message it holds (claimed ahead, being
   * handled, awaiting its ack) every `leaseMs / 3`. Absent: the engine holds a message by other
   * means (a channel, a session) for as long as the consumer lives.
   */
  readonly leaseMs?: number;
  /**
   * The consumer's `prefetch` when it sets none: how far ahead claiming pays on this engine.
   * The PostgreSQL queue says 16 (a round trip per claim is its main cost); engines with a read-
   * ahead of their own (a channel prefetch, a fetch buffer) leave it out, for 0.
   */
  readonly defaultPrefetch?: number;
  /**
   * Acknowledges handled messages: they are never delivered again. Resolves when durable, with
   * the deliveries it did not acknowledge because this consumer no longer holds them (the lease
   * ran out and another consumer took the message, or it was reaped): the holder settles those.
   * Adapters that cannot tell resolve with nothing.
   */
  ack(deliveries: readonly D[]): Promise<readonly D[] | void>;
  /**
   * Renews the lease of messages this consumer holds, in one call, to `leaseMs` from now.
   * Resolves with the deliveries it no longer holds (taken by another consumer, or reaped); the
   * runtime aborts their handlers and applies nothing of theirs. May run concurrently with
   * `claim`, `ack` and the settles; never with itself.
   */
  extend?(deliveries: readonly D[]): Promise<readonly D[]>;
  /**
   * Gives a failed message back to be delivered again after `delayMs`. This and the other two
   * settles resolve with `false` when they changed nothing because this consumer no longer holds
   * the message (its lease ran out and it was reaped or taken): the runtime then reports the
   * lease lost, not the settle. Adapters that cannot tell resolve with nothing.
   */
  retry(delivery: D, delayMs: number, error: unknown): Promise<boolean | void>;
  /** Moves a message to the dead-letter destination with the error, attempts and failure times. */
  deadLetter(delivery: D, error: unknown): Promise<boolean | void>;
  /** Hands an unfinished message back at once, without counting the attempt (shutdown). */
  release(delivery: D): Promise<boolean | void>;
  /**
   * Whether the connection (or channel, or subscription) this source holds of its own is lost
   * right now and not yet back; undefined while it is up. For sources the engine pushes into:
   * while the link is down their `claim` answers from memory (nothing, or what was buffered)
   * without asking the engine, and reconnects happen in the background, so no call of the
   * runtime fails and only this can tell. Sources that ask the engine on every claim leave it
   * out. Read by the runtime in `health()`, and after a claim that found nothing (not an answer
   * while lost), never per message: a read of memory.
   */
  connectionLost?(): ConnectionLoss | undefined;
  /** Stops subscriptions and closes what `open` opened. */
  close(): Promise<void>;
}
