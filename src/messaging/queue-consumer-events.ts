import type { Envelope } from './envelope.ts';
import type { LeaseLostError } from './handler.ts';

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
