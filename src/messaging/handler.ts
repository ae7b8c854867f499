import { KeelError, type KeelErrorOptions } from '../errors/index.ts';
import type { Envelope } from './envelope.ts';

export interface DeliveryContext {
  /** The queue, topic or stream the message came from. */
  readonly destination: string;
  /** 1 on the first delivery, 2 on the first redelivery, and so on. */
  readonly attempt: number;
  /**
   * Aborts when the message must be given up: the consumer's drain deadline passed or its lease
   * was lost. Pass it to every I/O call; work done after it aborts may be done twice.
   *
   * The consumer makes it when the handler first reads it (read after the message was given
   * up, it is already aborted, with the same reason), so a handler that never reads it does not
   * pay for it. Read it from the context itself: a copy made by spreading the context (`{ ...ctx }`)
   * has no `signal`.
   */
  readonly signal: AbortSignal;
}

/**
 * Handles one message. Resolving acknowledges it, after the handler's effects are committed:
 * so commit before resolving. Throwing retries it with backoff, or dead-letters it after the
 * consumer's `maxAttempts`; throwing `PermanentError` dead-letters it at once.
 *
 * Delivery is at-least-once: the same message can arrive twice. Make effects idempotent, or
 * record `message.id` in the same transaction as the effects (the inbox).
 */
export type Handler<P = unknown> = (message: Envelope<P>, context: DeliveryContext) => Promise<void>;

/**
 * A failure that retrying cannot fix (bad data, a rule violated): a message handler's message is
 * dead-lettered without retrying, a saga step fails for good at once and its saga compensates
 * (keel/saga exports the same class); keel's retry policies never retry it (`isRetryable`), and
 * an outbox relay parks a message whose publish fails with it.
 */
export class PermanentError extends KeelError {
  constructor(message: string, options: KeelErrorOptions = {}) {
    super('KEEL_PERMANENT_FAILURE', message, options);
  }
}

/** Why a lease was lost: another consumer holds the message now, or this one's lease ran out. */
export type LeaseLossReason = 'taken' | 'expired';

/**
 * The reason `ctx.signal` aborts with when the consumer no longer holds the message: renewing
 * its lease found it taken by another consumer (or reaped), or the lease ran out while the
 * renewal failed. The message will be (or is being) delivered again; nothing this handler does
 * from here is acknowledged, so stop and commit nothing more.
 */
export class LeaseLostError extends KeelError {
  readonly reason: LeaseLossReason;
  constructor(destination: string, messageId: string, reason: LeaseLossReason) {
    super(
      'KEEL_LEASE_LOST',
      reason === 'taken'
        ? `the lease on message ${messageId} of ${destination} was lost: another consumer holds it now`
        : `the lease on message ${messageId} of ${destination} ran out while it could not be renewed`,
      { details: { destination, messageId, reason } },
    );
    this.reason = reason;
  }
}
