// How an OFFSET_OUT_OF_RANGE answer is told apart, from the partitions' ranges Kafka gives after
// it. Against a real Kafka: kafka-projection-trimmed.test.ts.
import { describe, expect, it } from 'vitest';
import { isKeelError } from '../../../errors/index.ts';
import { KafkaOffsetPastEndError, KafkaPartitionTrimmedError, resumePlan } from './offset-out-of-range.ts';
import type { PartitionRange } from './topic-fetcher.ts';

const cause = new Error('OFFSET_OUT_OF_RANGE');
const ranges: PartitionRange[] = [
  { partition: 0, start: 5n, end: 9n },
  { partition: 1, start: 0n, end: 4n },
  { partition: 2, start: 3n, end: 3n },
];
const offsets = (entries: [number, bigint][]): Map<number, bigint> => new Map(entries);

describe('resumePlan', () => {
  it('a stored offset below the first retained one: KafkaPartitionTrimmedError by default, naming the offsets', () => {
    const from = offsets([
      [0, 2n],
      [1, 4n],
    ]);
    const plan = (): unknown => resumePlan('orders', from, from, ranges, 'throw', cause);
    expect(plan).toThrow(KafkaPartitionTrimmedError);
    expect(plan).toThrow(
      expect.objectContaining({
        code: 'KEEL_STREAM_TRIMMED',
        topic: 'orders',
        partition: 0,
        next: 2n,
        earliest: 5n,
      }),
    );
  });

  it('names every partition trimmed, the first one in the fields', () => {
    const from = offsets([
      [0, 2n],
      [2, 1n],
    ]);
    expect(() => resumePlan('orders', from, from, ranges, 'throw', cause)).toThrow(
      /partition 0: .*; partitions 2 too/,
    );
  });

  it("with 'resume' moves each trimmed partition to its first retained offset and lists what it passes over", () => {
    const from = offsets([
      [0, 2n],
      [1, 4n],
      [2, 0n],
    ]);
    expect(resumePlan('orders', from, from, ranges, 'resume', cause)).toEqual({
      from: offsets([
        [0, 5n],
        [1, 4n],
        [2, 3n],
      ]),
      skipped: [
        { partition: 0, from: 2n, to: 5n, count: 3 },
        { partition: 2, from: 0n, to: 3n, count: 3 },
      ],
    });
  });

  it('a stored offset past the end is KafkaOffsetPastEndError, whatever onTrimmed says, before any trim', () => {
    const from = offsets([
      [0, 2n],
      [1, 7n],
    ]);
    for (const onTrimmed of ['throw', 'resume'] as const) {
      const plan = (): unknown => resumePlan('orders', from, from, ranges, onTrimmed, cause);
      expect(plan).toThrow(KafkaOffsetPastEndError);
      expect(plan).toThrow(
        expect.objectContaining({ code: 'KEEL_STREAM_AHEAD', partition: 1, next: 7n, end: 4n }),
      );
    }
  });

  it('a partition with no stored offset moves to its first retained offset silently, either way', () => {
    const from = offsets([
      [0, 2n],
      [1, 9n],
    ]);
    const stored = offsets([]);
    expect(resumePlan('orders', from, stored, ranges, 'throw', cause)).toEqual({
      from: offsets([
        [0, 5n],
        [1, 0n],
      ]),
      skipped: [],
    });
  });

  it('every offset within its range now: a broker failure to retry, carrying the answer', () => {
    const from = offsets([
      [0, 5n],
      [1, 4n],
      [7, 1n],
    ]);
    let failure: unknown;
    try {
      resumePlan('orders', from, from, ranges, 'resume', cause);
    } catch (error) {
      failure = error;
    }
    expect(isKeelError(failure, 'KEEL_BROKER_UNAVAILABLE')).toBe(true);
    expect((failure as Error).cause).toBe(cause);
  });

  it('renders its details as JSON: offsets as strings', () => {
    const error = new KafkaPartitionTrimmedError('orders', 3, 10n, 12n);
    expect(JSON.parse(JSON.stringify(error.details))).toEqual({
      topic: 'orders',
      partition: 3,
      next: '10',
      earliest: '12',
    });
    expect(error.status).toBe(410);
    expect(new KafkaOffsetPastEndError('orders', 0, 3n, 1n).status).toBe(409);
  });
});
