import { describeError } from './describe-error.ts';
import type { Envelope } from './envelope.ts';

/** What failed for good, as the dead-letter copy reports it. */
export interface Failed {
  readonly envelope: Envelope;
  /** The attempt that failed last. */
  readonly attempt: number;
  /** When the first attempt failed (ISO 8601); undefined when this was the first. */
  readonly firstFailedAt: string | undefined;
}

/**
 * The dead-letter copy of a message: its envelope with `x-dead-letter-source` (the destination
 * it came from, where redrive sends it back), `-error`, `-attempts`, `-first-failed-at` and
 * `-last-failed-at` (`now`, ISO 8601). One place for these headers, because every adapter's
 * redrive and the conformance suite read them. `describe` states the error (a transport whose
 * headers cannot hold a line break passes `describeErrorOnOneLine`).
 */
export function deadLetterEnvelope(
  failed: Failed,
  source: string,
  error: unknown,
  now: string,
  describe: (error: unknown) => string = describeError,
): Envelope {
  return {
    ...failed.envelope,
    headers: {
      ...failed.envelope.headers,
      'x-dead-letter-source': source,
      'x-dead-letter-error': describe(error),
      'x-dead-letter-attempts': String(failed.attempt),
      'x-dead-letter-first-failed-at': failed.firstFailedAt ?? now,
      'x-dead-letter-last-failed-at': now,
    },
  };
}
