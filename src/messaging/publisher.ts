import { KeelError } from '../errors/index.ts';
import type { Envelope } from './envelope.ts';

/**
 * Sends messages to a destination (a queue, topic, subject or stream, as the engine names it).
 *
 * `publish` resolves only when the engine has durably accepted every message: committed to
 * the table, confirmed by the broker, acknowledged by the stream. Otherwise it rejects with a
 * `PublishError` naming the messages that were not accepted; some of the others may have been,
 * so a caller that retries must tolerate duplicates (consumers deduplicate on `Envelope.id`).
 *
 * Concurrency: safe to call concurrently. After `close()`, calls reject.
 */
export interface Publisher {
  publish(destination: string, messages: readonly Envelope[]): Promise<void>;
}

export class PublishError extends KeelError {
  /** Ids of the messages the engine did not confirm. */
  readonly failedIds: readonly string[];
  constructor(destination: string, failedIds: readonly string[], cause?: unknown) {
    super(
      'KEEL_PUBLISH_FAILED',
      `${failedIds.length} message(s) to ${destination} were not accepted: ${failedIds.slice(0, 5).join(', ')}${
        failedIds.length > 5 ? ', …' : ''
      }`,
      { cause, details: { destination, failedIds } },
    );
    this.failedIds = failedIds;
  }
}
