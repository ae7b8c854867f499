import { resumePlan, type SkippedRecords } from './offset-out-of-range.ts';
import type { FetchedPartition, PartitionRange, TopicFetcher, TopicIncarnation } from './topic-fetcher.ts';

/**
 * What a look asks of Kafka: a `TopicFetcher`'s reads, or the same made through the running
 * loop's record of its calls (`brokerCalls` in kafka-projection-health.ts).
 */
export type TopicReads = Pick<TopicFetcher, 'topic' | 'current' | 'ranges' | 'fetch'>;

/**
 * Each partition's first retained offset as Kafka last gave it: where a partition with no stored
 * offset starts. Kept from look to look, so that a runner idle on a topic does not ask Kafka for
 * them at every look; forgotten after a failure, a rebuild or a restart.
 */
export class FirstRetainedOffsets {
  #starts: bigint[] | undefined;

  /** Partition `partition`'s, asking Kafka when none are known for a topic of `partitions`. */
  async of(fetcher: TopicReads, partitions: number, partition: number): Promise<bigint> {
    if (this.#starts === undefined || this.#starts.length < partitions)
      this.#starts = (await fetcher.ranges()).map((range) => range.start);
    return this.#starts[partition] ?? 0n;
  }

  /** Keeps the starts of `ranges`, as Kafka answered them. */
  remember(ranges: readonly PartitionRange[]): void {
    this.#starts = ranges.map((range) => range.start);
  }

  forget(): void {
    this.#starts = undefined;
  }
}

/** What the fetch of one look came to. */
export type LookFetch =
  /**
   * `topicId`: the topic the records are of. `skipped`: the trimmed partitions it resumed at
   * their first retained offset (`onTrimmed: 'resume'`), to store with the batch that takes each on.
   */
  | {
      kind: 'fetched';
      topicId: string | null;
      partitions: FetchedPartition[];
      skipped: Map<number, SkippedRecords>;
    }
  /**
   * The topic was deleted under the fetch (perhaps created again: the fetch found another topic
   * id than the look checked), or records were deleted past the first retained offset again
   * meanwhile: nothing to apply, the next look starts over.
   */
  | { kind: 'stale' };

export interface LookFetchOptions {
  onTrimmed: 'throw' | 'resume';
  maxWaitMs: number;
}

/**
 * Fetches every partition of `topic` from `positions` (the stored offsets; a partition without
 * one from its first retained offset). An offset Kafka refuses as out of range is resolved by
 * `resumePlan`: a trimmed partition throws `KafkaPartitionTrimmedError` or, with `onTrimmed:
 * 'resume'`, is fetched again from its first retained offset; one past its partition's end
 * throws `KafkaOffsetPastEndError`.
 */
export async function fetchForLook(
  fetcher: TopicReads,
  topic: TopicIncarnation,
  positions: ReadonlyMap<number, bigint>,
  earliest: FirstRetainedOffsets,
  options: LookFetchOptions,
): Promise<LookFetch> {
  let from = new Map<number, bigint>();
  for (let partition = 0; partition < topic.partitions; partition++)
    from.set(
      partition,
      positions.get(partition) ?? (await earliest.of(fetcher, topic.partitions, partition)),
    );
  let outcome = await fetcher.fetch(from, options.maxWaitMs);
  let skipped = new Map<number, SkippedRecords>();
  if (outcome.kind === 'out-of-range') {
    const plan = resumePlan(fetcher.topic, from, positions, outcome.ranges, options.onTrimmed, outcome.cause);
    earliest.remember(outcome.ranges);
    from = plan.from;
    skipped = new Map(plan.skipped.map((skip) => [skip.partition, skip]));
    outcome = await fetcher.fetch(from, options.maxWaitMs);
  }
  // A look applies only records of the topic it checked the stored offsets against: the client's
  // metadata may have moved on to a topic created again since (another id, perhaps fewer partitions).
  if (outcome.kind !== 'fetched' || outcome.topicId !== topic.id) {
    earliest.forget();
    return { kind: 'stale' };
  }
  return { kind: 'fetched', topicId: outcome.topicId, partitions: outcome.partitions, skipped };
}
