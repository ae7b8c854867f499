import { KeelError } from '../../../errors/index.ts';
import type { PartitionRange } from './topic-fetcher.ts';

/**
 * A projection's stored offset for a partition is below the partition's first retained offset:
 * records `next` to `earliest - 1` were deleted (by retention, or the admin DeleteRecords call)
 * before the projection applied them. Kafka's form of `StreamTrimmedError`, with its code
 * (`KEEL_STREAM_TRIMMED`, 410). Decide about the records never applied: `rebuild()` the
 * projection (it replays what the topic holds), or resume at `earliest` (`onTrimmed: 'resume'`).
 */
export class KafkaPartitionTrimmedError extends KeelError {
  readonly topic: string;
  readonly partition: number;
  /** The stored offset: the next record the projection applies. */
  readonly next: bigint;
  /** The partition's first retained offset when the fetch ran. */
  readonly earliest: bigint;
  constructor(topic: string, partition: number, next: bigint, earliest: bigint, others: number[] = []) {
    super(
      'KEEL_STREAM_TRIMMED',
      `Kafka topic ${topic} partition ${partition}: records ${next} to ${earliest - 1n} were deleted ` +
        `before the projection applied them; it now starts at ${earliest}${alsoIn(others)}`,
      // Offsets as strings: details are rendered as JSON, which has no bigint.
      { details: { topic, partition, next: String(next), earliest: String(earliest) } },
    );
    this.topic = topic;
    this.partition = partition;
    this.next = next;
    this.earliest = earliest;
  }
}

/**
 * A projection's stored offset for a partition is past the partition's end: the topic holds
 * fewer records than the projection has applied, so it is not the log the model was built from
 * (the topic was deleted and recreated, records were lost in an unclean leader election, or the
 * brokers are another cluster's). Nothing was trimmed and there is nothing to resume from:
 * `onTrimmed` does not apply. `rebuild()` replays what the topic holds. Code
 * `KEEL_STREAM_AHEAD` (409): the stored offsets and the topic disagree.
 */
export class KafkaOffsetPastEndError extends KeelError {
  readonly topic: string;
  readonly partition: number;
  /** The stored offset: the next record the projection applies. */
  readonly next: bigint;
  /** The partition's end when the fetch ran: the offset its next record takes. */
  readonly end: bigint;
  constructor(topic: string, partition: number, next: bigint, end: bigint, others: number[] = []) {
    super(
      'KEEL_STREAM_AHEAD',
      `Kafka topic ${topic} partition ${partition} ends at offset ${end}, but the projection has ` +
        `applied it up to offset ${next}: the topic is not the one the model was built from ` +
        `(recreated, or records lost); rebuild() replays what it holds${alsoIn(others)}`,
      { details: { topic, partition, next: String(next), end: String(end) } },
    );
    this.topic = topic;
    this.partition = partition;
    this.next = next;
    this.end = end;
  }
}

/** Offsets of a partition a projection moved past without applying them (`onTrimmed: 'resume'`). */
export interface SkippedRecords {
  partition: number;
  /** The stored offset it moved from: the first offset passed over. */
  from: bigint;
  /** The first retained offset it moved to. */
  to: bigint;
  /** Offsets passed over, `to - from` (transaction markers among them take offsets too). */
  count: number;
}

/** Where to fetch from after an out-of-range answer, and which stored offsets that passes over. */
export interface ResumePlan {
  from: Map<number, bigint>;
  skipped: SkippedRecords[];
}

/**
 * What a fetch that Kafka answered with OFFSET_OUT_OF_RANGE comes to. Kafka fails the whole
 * fetch and does not say which way, so `ranges` are the partitions as Kafka holds them after
 * the answer (ListOffsets). `from`: the offsets fetched from; `stored`: those the projection
 * stored (a partition without one was fetched from its first retained offset as last seen).
 *
 * A stored offset past its partition's end throws `KafkaOffsetPastEndError`; one below the first
 * retained offset throws `KafkaPartitionTrimmedError` with `onTrimmed: 'throw'`, and with
 * `'resume'` moves there, listed in `skipped`. A partition with no stored offset moves to its
 * first retained offset silently: nothing was applied there, so nothing is passed over. When
 * every offset is within its range now (the answer was about a moment that has passed), throws
 * `KEEL_BROKER_UNAVAILABLE`, and the fetch is retried as any failed one is.
 */
export function resumePlan(
  topic: string,
  from: ReadonlyMap<number, bigint>,
  stored: ReadonlyMap<number, bigint>,
  ranges: readonly PartitionRange[],
  onTrimmed: 'throw' | 'resume',
  cause: unknown,
): ResumePlan {
  const byPartition = new Map(ranges.map((range) => [range.partition, range]));
  const pastEnd: { partition: number; next: bigint; end: bigint }[] = [];
  const trimmed: SkippedRecords[] = [];
  const moved = new Map<number, bigint>();
  for (const [partition, offset] of from) {
    const range = byPartition.get(partition);
    if (range === undefined || (offset >= range.start && offset <= range.end)) continue;
    if (!stored.has(partition)) moved.set(partition, range.start);
    else if (offset > range.end) pastEnd.push({ partition, next: offset, end: range.end });
    else trimmed.push({ partition, from: offset, to: range.start, count: Number(range.start - offset) });
  }
  const [firstPastEnd, ...morePastEnd] = pastEnd;
  if (firstPastEnd !== undefined)
    throw new KafkaOffsetPastEndError(
      topic,
      firstPastEnd.partition,
      firstPastEnd.next,
      firstPastEnd.end,
      morePastEnd.map((p) => p.partition),
    );
  const [firstTrimmed, ...moreTrimmed] = trimmed;
  if (firstTrimmed !== undefined && onTrimmed === 'throw')
    throw new KafkaPartitionTrimmedError(
      topic,
      firstTrimmed.partition,
      firstTrimmed.from,
      firstTrimmed.to,
      moreTrimmed.map((p) => p.partition),
    );
  for (const skip of trimmed) moved.set(skip.partition, skip.to);
  if (moved.size === 0)
    throw new KeelError(
      'KEEL_BROKER_UNAVAILABLE',
      `Kafka answered a fetch of topic ${topic} with OFFSET_OUT_OF_RANGE, yet each offset asked for ` +
        `(${[...from].map(([p, o]) => `${p}@${o}`).join(', ')}) is within what its partition holds now`,
      { cause, details: { topic } },
    );
  return { from: new Map([...from, ...moved]), skipped: trimmed };
}

function alsoIn(partitions: readonly number[]): string {
  return partitions.length === 0 ? '' : `; partitions ${partitions.join(', ')} too`;
}
