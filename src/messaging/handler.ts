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

/** A failure that retrying cannot fix (bad data, a rule violated): dead-letter without retrying. */
export class PermanentError extends KeelError {
  constructor(message: string, options: KeelErrorOptions = {}) {
    super('KEEL_PERMANENT_FAILURE', message, options);
  }
}
