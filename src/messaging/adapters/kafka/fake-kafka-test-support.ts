// Kafka faked at its client, for unit tests of a KafkaProjectionRunner on a manual clock: the
// Consumer's metadata, listOffsets and fetch are spied on its prototype and answered from one
// topic held in memory, as the client answers them (records in RecordsBatch form, an offset
// outside a partition refused with OFFSET_OUT_OF_RANGE), so that the whole runner runs, its
// TopicFetcher included, without a broker. Not part of the public door.
import { randomUUID } from 'node:crypto';
import { Consumer, type RecordsBatch } from '@platformatic/kafka';
import { vi } from 'vitest';
import type { Clock } from '../../../time/index.ts';
import { answered, fetchApi } from './kafka-answers-test-support.ts';

export interface FakeKafka {
  readonly topic: string;
  readonly topicId: string;
  /**
   * Each partition's first retained offset and end: records `start` to `end - 1`, each the JSON
   * `{"partition":p,"offset":o}` written without keel's headers. Change them to trim or to grow.
   */
  readonly partitions: { start: bigint; end: bigint }[];
  /** What the next Fetch requests throw instead of answering, one each, in order. */
  readonly fetchFailures: unknown[];
  /** Fetch requests answered or failed so far. */
  fetches(): number;
}

/**
 * Fakes `topic` with `partitions` for every Kafka client until the test's `vi.restoreAllMocks()`.
 * A Fetch that finds nothing waits its `maxWaitTime` on `clock`, as a broker holds it, and then
 * answers with what the partitions hold then.
 */
export function fakeKafka(
  topic: string,
  partitions: { start: bigint; end: bigint }[],
  clock: Clock,
): FakeKafka {
  const topicId = randomUUID();
  const fetchFailures: unknown[] = [];
  let fetches = 0;
  vi.spyOn(Consumer.prototype, 'metadata').mockImplementation(
    async () =>
      ({
        topics: new Map([
          [
            topic,
            {
              id: topicId,
              partitionsCount: partitions.length,
              partitions: partitions.map(() => ({ leader: 1, leaderEpoch: 0, replicas: [1], isr: [1] })),
            },
          ],
        ]),
      }) as never,
  );
  vi.spyOn(Consumer.prototype, 'listOffsets').mockImplementation(
    async (options: { timestamp?: bigint }) =>
      new Map([[topic, partitions.map((p) => (options.timestamp === -2n ? p.start : p.end))]]),
  );
  type Asked = { partition: number; fetchOffset: bigint };
  const answer = (asked: readonly Asked[]): unknown => {
    for (const { partition, fetchOffset } of asked) {
      const range = partitions[partition]!;
      if (fetchOffset < range.start || fetchOffset > range.end)
        throw answered(fetchApi, 'OFFSET_OUT_OF_RANGE');
    }
    return {
      responses: [
        {
          topicId,
          partitions: asked.map(({ partition, fetchOffset }) => ({
            partitionIndex: partition,
            records: recordsOf(partition, fetchOffset, partitions[partition]!.end),
          })),
        },
      ],
    };
  };
  vi.spyOn(Consumer.prototype, 'fetch').mockImplementation((async (options: {
    maxWaitTime?: number;
    topics: { partitions: Asked[] }[];
  }) => {
    fetches++;
    if (fetchFailures.length > 0) throw fetchFailures.shift();
    const asked = options.topics.flatMap((t) => t.partitions);
    const holds = asked.some(({ partition, fetchOffset }) => partitions[partition]!.end !== fetchOffset);
    if (!holds && (options.maxWaitTime ?? 0) > 0)
      await new Promise<void>((resolve) => clock.setTimeout(resolve, options.maxWaitTime!));
    return answer(asked);
  }) as never);
  return { topic, topicId, partitions, fetchFailures, fetches: () => fetches };
}

/** Partition `partition`'s records `from` to `end - 1`, as one batch. */
function recordsOf(partition: number, from: bigint, end: bigint): RecordsBatch[] {
  if (from >= end) return [];
  const count = Number(end - from);
  return [
    {
      firstOffset: from,
      length: 0,
      partitionLeaderEpoch: 0,
      magic: 2,
      crc: 0,
      attributes: 0,
      lastOffsetDelta: count - 1,
      firstTimestamp: 1_700_000_000_000n,
      maxTimestamp: 1_700_000_000_000n,
      producerId: -1n,
      producerEpoch: -1,
      firstSequence: -1,
      records: Array.from({ length: count }, (_, i) => ({
        length: 0,
        attributes: 0,
        timestampDelta: 0n,
        offsetDelta: i,
        key: null,
        value: Buffer.from(JSON.stringify({ partition, offset: Number(from) + i })),
        headers: [],
      })),
    },
  ];
}
