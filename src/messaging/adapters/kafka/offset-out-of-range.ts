import { MultipleErrors } from '@platformatic/kafka';
import { KeelError } from '../../../errors/index.ts';
import type { PartitionRange } from './topic-fetcher.ts';

/**
 * How a fetch was refused for its offsets: `'OFFSET_OUT_OF_RANGE'`, Kafka's answer; or
 * `'OUT_OF_BOUNDS'`, the Kafka client's "Out of bounds." failing to read the answer, which a
 * partition's leader in the midst of its switch-over (leadership moving, its topic recreated a
 * moment ago) gives as well as the first (projection-test-support.ts, `untilLeadersServe`).
 */
export type OutOfRangeAnswer = 'OFFSET_OUT_OF_RANGE' | 'OUT_OF_BOUNDS';

/**
 * Which out-of-range answer a failed fetch holds, if any: Kafka's OFFSET_OUT_OF_RANGE for one
 * of its partitions, or a response the client could not read ("Out of bounds.", the client's
 * `OUT_OF_BOUNDS`). Either way only the partitions' ranges (ListOffsets) tell what it means:
 * `resumePlan`. Looks into every error a `MultipleErrors` holds, as the client's `findBy` does.
 */
export function outOfRangeAnswer(failure: unknown): OutOfRangeAnswer | undefined {
  if (!(failure instanceof Error)) return undefined;
  if (MultipleErrors.isMultipleErrors(failure)) {
    const errors: unknown[] = failure.errors;
    const answers = errors.map(outOfRangeAnswer);
    return answers.includes('OFFSET_OUT_OF_RANGE') ? 'OFFSET_OUT_OF_RANGE' : answers.find(Boolean);
  }
  const { apiId, code } = failure as { apiId?: unknown; code?: unknown };
  if (apiId === 'OFFSET_OUT_OF_RANGE') return 'OFFSET_OUT_OF_RANGE';
  // @platformatic/dynamic-buffer's OutOfBoundsError, thrown as it is by the client's response parser.
  return code === 'OUT_OF_BOUNDS' ? 'OUT_OF_BOUNDS' : undefined;
}

/**
 * A fetch was refused as out of range (`answer`), yet every offset it asked for is within what
 * its partition holds, by the ranges Kafka gave right after (ListOffsets): the answer came from
 * a broker whose view of a partition is behind, in the midst of its switch-over (its leadership
 * moving, its topic deleted and created again a moment ago). A stale-leader failure
 * (`staleLeaderAnswers` in stale-leader.ts): the runner and its one-shot calls look again after
 * `retryDelayMs` on fresh metadata, quietly, within `staleLeaderLimitMs`; past it reported as
 * `KEEL_BROKER_UNAVAILABLE`, the answer as its `cause`.
 */
export class KafkaStaleOutOfRangeError extends KeelError {
  readonly topic: string;
  readonly answer: OutOfRangeAnswer;
  constructor(topic: string, from: ReadonlyMap<number, bigint>, answer: OutOfRangeAnswer, cause: unknown) {
    const asked = [...from].map(([p, o]) => `${p}@${o}`).join(', ');
    super(
      'KEEL_BROKER_UNAVAILABLE',
      answer === 'OFFSET_OUT_OF_RANGE'
        ? `Kafka answered a fetch of topic ${topic} with OFFSET_OUT_OF_RANGE, yet each offset asked for ` +
            `(${asked}) is within what its partition holds now`
        : `Kafka's answer to a fetch of topic ${topic} could not be read (Out of bounds.), and each offset ` +
            `asked for (${asked}) is within what its partition holds now`,
      { cause, details: { topic, answer } },
    );
    this.topic = topic;
    this.answer = answer;
  }
}

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
 * What a fetch refused as out of range (`outOfRangeAnswer`: OFFSET_OUT_OF_RANGE, or an answer
 * the client could not read) comes to. Kafka fails the whole fetch and does not say which way,
 * so `ranges` are the partitions as Kafka holds them after the answer (ListOffsets), and they
 * alone decide. `from`: the offsets fetched from; `stored`: those the projection stored (a
 * partition without one was fetched from its first retained offset as last seen).
 *
 * A stored offset past its partition's end throws `KafkaOffsetPastEndError`; one below the first
 * retained offset throws `KafkaPartitionTrimmedError` with `onTrimmed: 'throw'`, and with
 * `'resume'` moves there, listed in `skipped`. A partition with no stored offset moves to its
 * first retained offset silently: nothing was applied there, so nothing is passed over. When
 * every offset is within its range now (a broker behind a partition's switch-over answered),
 * throws `KafkaStaleOutOfRangeError`, a stale-leader failure retried quietly for a while; when
 * some partition has no range now (the topic deleted, or recreated with fewer partitions, under
 * the fetch) and none is out of its range, `KEEL_BROKER_UNAVAILABLE`, retried and reported as any
 * failed fetch is, and the next look finds what the topic is now.
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
  if (moved.size === 0) {
    const answer = outOfRangeAnswer(cause) ?? 'OFFSET_OUT_OF_RANGE';
    const unranged = [...from.keys()].filter((partition) => !byPartition.has(partition));
    if (unranged.length === 0) throw new KafkaStaleOutOfRangeError(topic, from, answer, cause);
    throw new KeelError(
      'KEEL_BROKER_UNAVAILABLE',
      `Kafka refused a fetch of topic ${topic} as out of range (${answer}), and it now has no ` +
        `partition ${unranged.join(', ')}; each other offset asked for is within its partition`,
      { cause, details: { topic, answer } },
    );
  }
  return { from: new Map([...from, ...moved]), skipped: trimmed };
}

function alsoIn(partitions: readonly number[]): string {
  return partitions.length === 0 ? '' : `; partitions ${partitions.join(', ')} too`;
}
