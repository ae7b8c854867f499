import type { Queryable } from '../../../db/db.ts';
import { readStored, type ProjectionKey } from './projection-offsets.ts';
import type { TopicFetcher } from './topic-fetcher.ts';
import { otherTopic } from './topic-incarnation.ts';

/** How far a projection has applied one partition. */
export interface PartitionProgress {
  partition: number;
  /** The offset it applies next: the stored one, else the partition's first retained record. */
  next: bigint;
  /** The partition's first retained offset. */
  start: bigint;
  /** The offset the partition's next record takes. */
  end: bigint;
  /**
   * Records from `next` to `end` (when `'trimmed'`, the deleted ones too: they were never
   * applied; when `'recreated'`, every record from `start`: none of the new topic's were).
   */
  lag: number;
  /**
   * `next` against what the partition holds: `'recreated'` when `next` is of another topic of
   * this name (the topic id stored with it is not the topic's, or it was stored before topic ids
   * were and another such offset is of a partition the topic does not have: deleted and created
   * again; the
   * runner fails with `KafkaTopicRecreatedError` until a rebuild, or starts the new topic at its
   * earliest records with `onRecreated: 'restart'`); else `'trimmed'` below `start` (records were
   * deleted before the projection applied them: `KafkaPartitionTrimmedError` until a rebuild, or
   * resumes at `start` with `onTrimmed: 'resume'`); `'past-end'` beyond `end` (the topic holds
   * fewer records than were applied: `KafkaOffsetPastEndError` until a rebuild); else `'in-range'`.
   */
  state: 'in-range' | 'trimmed' | 'past-end' | 'recreated';
}

/**
 * Each partition of the topic as Kafka has it now, against the offsets the projection stored:
 * what `KafkaProjectionRunner.progress()` reports.
 */
export async function readProgress(
  queryable: Queryable,
  key: ProjectionKey,
  fetcher: TopicFetcher,
): Promise<PartitionProgress[]> {
  // Offsets first: the ends read after them are never behind them.
  const stored = await readStored(queryable, key);
  let topic = await fetcher.current();
  // The client's metadata may be older than an id another runner stored, or than partitions
  // added since: ask Kafka before saying so.
  if (topic !== undefined && otherTopic(stored, topic) !== undefined) topic = await fetcher.current(true);
  const ranges = await fetcher.ranges();
  const recreated = new Set(topic === undefined ? [] : otherTopic(stored, topic)?.partitions);
  return ranges.map(({ partition, start, end }): PartitionProgress => {
    const next = stored.get(partition)?.next ?? start;
    if (recreated.has(partition))
      return { partition, next, start, end, lag: Number(end - start), state: 'recreated' };
    const state = next < start ? 'trimmed' : next > end ? 'past-end' : 'in-range';
    return { partition, next, start, end, lag: end > next ? Number(end - next) : 0, state };
  });
}
