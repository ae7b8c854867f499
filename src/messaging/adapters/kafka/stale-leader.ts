// Which failed looks a projection runner retries without reporting them: Kafka's answers that
// the client's metadata is stale because a partition's leader moved or is being elected, for a
// bounded time.
import { GenericError, MultipleErrors } from '@platformatic/kafka';
import type { Clock } from '../../../time/index.ts';
import { KafkaStaleOutOfRangeError } from './offset-out-of-range.ts';

/**
 * How long looks may keep failing on stale-leader answers alone before the failure is reported,
 * by default (the runner's `staleLeaderLimitMs` option): 30 s. Leaders that move in the normal
 * course of things are back well within it: a controlled shutdown or a reassignment moves a
 * leader in under a second, a new topic's partitions get theirs in moments, and a crashed
 * broker's partitions get new leaders once the controller fences it, after
 * `broker.session.timeout.ms` (9 s by default in KRaft; 18 s, a ZooKeeper session, on older
 * clusters). Past that the leader is not moving but missing (every replica of a partition down),
 * which must be heard of. Measured in time, not in looks: an election takes time, not attempts,
 * and a look's length depends on `retryDelayMs` and on Kafka's round trips.
 */
export const staleLeaderLimitMs = 30_000;

/**
 * Answers the Java consumer also retries after a metadata refresh (its Fetch and ListOffsets
 * handlers) that the client's `hasStaleMetadata` leaves out; that one covers
 * UNKNOWN_TOPIC_OR_PARTITION, LEADER_NOT_AVAILABLE, NOT_LEADER_OR_FOLLOWER and
 * FENCED_LEADER_EPOCH. Each of these is a leader that moved, or is not ready yet.
 */
const alsoStale: ReadonlySet<string> = new Set([
  // ListOffsets carries the leader epoch of the client's metadata: a broker that has not yet
  // applied its own election finds it newer than its own.
  'UNKNOWN_LEADER_EPOCH',
  // A leader just elected answers ListOffsets with it until it knows its high watermark (KIP-207).
  'OFFSET_NOT_AVAILABLE',
  // A Fetch names the topic by id (v13+): a leader that has not yet applied the creation of a
  // topic a moment old answers this, where a Fetch by name answered UNKNOWN_TOPIC_OR_PARTITION.
  'UNKNOWN_TOPIC_ID',
]);

/**
 * The Kafka answers (`NOT_LEADER_OR_FOLLOWER`, …) of a failure when every one of them says the
 * client's metadata is stale: a leader moved or is being elected. Undefined when the failure
 * holds anything else (a network error, another answer): that is reported as it is. Follows
 * `cause` from keel's wrapping errors to the Kafka client's, and every error a
 * `MultipleErrors` holds (the client fails a whole request when one partition's answer is an error).
 *
 * Also a fetch refused as out of range (OFFSET_OUT_OF_RANGE, or an answer the client could not
 * read: `OUT_OF_BOUNDS`) for offsets that the partitions' ranges asked right after show valid
 * (`KafkaStaleOutOfRangeError`): a broker behind a partition's switch-over. Not such an answer on
 * its own: told apart by the ranges (`resumePlan`), it is as often records trimmed, which must be
 * heard of at once.
 */
export function staleLeaderAnswers(failure: unknown): string[] | undefined {
  const answers: string[] = [];
  const visit = (error: unknown): boolean => {
    if (!(error instanceof Error)) return false;
    if (error instanceof KafkaStaleOutOfRangeError) {
      answers.push(error.answer);
      return true;
    }
    if (MultipleErrors.isMultipleErrors(error)) {
      // As the client's own `findBy` does, passing over the holes of requests that succeeded.
      const errors: unknown[] = error.errors.filter(Boolean);
      return errors.length > 0 && errors.every(visit);
    }
    if (!GenericError.isGenericError(error)) return visit(error.cause);
    const { apiId, hasStaleMetadata } = error as { apiId?: unknown; hasStaleMetadata?: unknown };
    if (typeof apiId !== 'string' || (hasStaleMetadata !== true && !alsoStale.has(apiId))) return false;
    answers.push(apiId);
    return true;
  };
  return visit(failure) ? [...new Set(answers)] : undefined;
}

/**
 * A projection runner's run of looks that failed on stale-leader answers alone, none through
 * since (its loop's run; each one-shot call has a run of its own: stale-leader-retry.ts): each is
 * retried quietly (after the runner's `retryDelayMs`, on metadata asked of Kafka afresh) until
 * `limitMs` has passed since the first, and from then on reported as any failure is. Other
 * failures are reported at once and do not end the run: no look went through.
 *
 * One run for the whole topic, not one per partition: the client fails a whole fetch when one
 * partition's answer is an error, so while one partition's leader is stale no partition moves,
 * and a count per partition would let leaders moving one after another stop the projection for
 * longer than the limit unreported. A partition stale for the limit is reported all the same.
 */
export class StaleLeaderRun {
  readonly #clock: Clock;
  readonly #limitMs: number;
  /** When the first look of the run failed; undefined when the last look went through. */
  #since: number | undefined;

  constructor(clock: Clock, limitMs: number = staleLeaderLimitMs) {
    this.#clock = clock;
    this.#limitMs = limitMs;
  }

  /**
   * A look failed with `failure`: true to retry it without reporting it, that is when it is a
   * stale-leader failure (`staleLeaderAnswers`) and less than `limitMs` has passed since the
   * first of the run.
   */
  quiet(failure: unknown): boolean {
    if (staleLeaderAnswers(failure) === undefined) return false;
    const now = this.#clock.now();
    this.#since ??= now;
    return now - this.#since < this.#limitMs;
  }

  /** A look's fetch went through (or it found no topic to fetch from): the run is over. */
  end(): void {
    this.#since = undefined;
  }
}
