// How an OFFSET_OUT_OF_RANGE answer (or one the client cannot read) is told apart, from the
// partitions' ranges Kafka gives after it. Against a real Kafka: kafka-projection-trimmed.test.ts,
// and kafka-projection-stale-leader.test.ts for an answer about offsets that are valid.
import { MultipleErrors, NetworkError } from '@platformatic/kafka';
import { describe, expect, it } from 'vitest';
import { isKeelError } from '../../../errors/index.ts';
import { answered, fetchApi, outOfBounds, wrapped } from './kafka-answers-test-support.ts';
import {
  KafkaOffsetPastEndError,
  KafkaPartitionTrimmedError,
  KafkaStaleOutOfRangeError,
  outOfRangeAnswer,
  resumePlan,
} from './offset-out-of-range.ts';
import { staleLeaderAnswers } from './stale-leader.ts';
import type { PartitionRange } from './topic-fetcher.ts';

const cause = answered(fetchApi, 'OFFSET_OUT_OF_RANGE');
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

  it('every offset within its range now (a broker behind a switch-over answered): a stale-leader failure, carrying the answer', () => {
    const from = offsets([
      [0, 5n],
      [1, 4n],
      [2, 3n],
    ]);
    for (const answer of [cause, outOfBounds()]) {
      let failure: unknown;
      try {
        resumePlan('orders', from, from, ranges, 'resume', answer);
      } catch (error) {
        failure = error;
      }
      expect(failure).toBeInstanceOf(KafkaStaleOutOfRangeError);
      expect(isKeelError(failure, 'KEEL_BROKER_UNAVAILABLE')).toBe(true);
      expect((failure as Error).cause).toBe(answer);
      expect((failure as Error).message).toContain('(0@5, 1@4, 2@3)');
      expect(staleLeaderAnswers(failure)).toEqual([
        answer === cause ? 'OFFSET_OUT_OF_RANGE' : 'OUT_OF_BOUNDS',
      ]);
    }
  });

  it('a partition with no range now and none out of its range: a broker failure reported as such, not a stale-leader one', () => {
    const from = offsets([
      [0, 5n],
      [7, 1n],
    ]);
    let failure: unknown;
    try {
      resumePlan('orders', from, from, ranges, 'resume', cause);
    } catch (error) {
      failure = error;
    }
    expect(isKeelError(failure, 'KEEL_BROKER_UNAVAILABLE')).toBe(true);
    expect(failure).not.toBeInstanceOf(KafkaStaleOutOfRangeError);
    expect((failure as Error).message).toContain('has no partition 7');
    expect((failure as Error).cause).toBe(cause);
    expect(staleLeaderAnswers(failure)).toBeUndefined();
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

describe('outOfRangeAnswer', () => {
  it('finds OFFSET_OUT_OF_RANGE among a fetch’s answers, and the client’s Out of bounds., as the client throws them', () => {
    expect(outOfRangeAnswer(cause)).toBe('OFFSET_OUT_OF_RANGE');
    expect(outOfRangeAnswer(answered(fetchApi, 'NOT_LEADER_OR_FOLLOWER', 'OFFSET_OUT_OF_RANGE'))).toBe(
      'OFFSET_OUT_OF_RANGE',
    );
    expect(outOfRangeAnswer(outOfBounds())).toBe('OUT_OF_BOUNDS');
    expect(
      outOfRangeAnswer(
        new MultipleErrors('fetch failed 2 times.', [new NetworkError('closed'), outOfBounds()]),
      ),
    ).toBe('OUT_OF_BOUNDS');
  });

  it('is undefined for anything else, and for a failure already wrapped: the fetcher asks it of the client’s', () => {
    expect(outOfRangeAnswer(answered(fetchApi, 'NOT_LEADER_OR_FOLLOWER'))).toBeUndefined();
    expect(outOfRangeAnswer(new NetworkError('Connection refused'))).toBeUndefined();
    expect(outOfRangeAnswer(new Error('Out of bounds.'))).toBeUndefined();
    expect(outOfRangeAnswer(wrapped(cause))).toBeUndefined();
    expect(outOfRangeAnswer('OFFSET_OUT_OF_RANGE')).toBeUndefined();
    expect(outOfRangeAnswer(undefined)).toBeUndefined();
  });
});
