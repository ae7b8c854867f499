// Which failures a projection runner retries quietly, on errors built as the Kafka client builds
// them, and for how long, on a manual clock. The runner doing so against a real Kafka:
// test/integration/kafka-projection.test.ts.
import { MultipleErrors, NetworkError } from '@platformatic/kafka';
import { describe, expect, it } from 'vitest';
import { KeelError } from '../../../errors/index.ts';
import { ManualClock } from '../../../time/index.ts';
import { answered, fetchApi, listOffsetsApi, outOfBounds, wrapped } from './kafka-answers-test-support.ts';
import { KafkaStaleOutOfRangeError } from './offset-out-of-range.ts';
import { staleLeaderAnswers, staleLeaderLimitMs, StaleLeaderRun } from './stale-leader.ts';

describe('staleLeaderAnswers', () => {
  it('takes the client’s hasStaleMetadata answers, from a fetch, wrapped as the fetcher wraps them', () => {
    for (const id of [
      'NOT_LEADER_OR_FOLLOWER',
      'LEADER_NOT_AVAILABLE',
      'FENCED_LEADER_EPOCH',
      'UNKNOWN_TOPIC_OR_PARTITION',
    ])
      expect(staleLeaderAnswers(wrapped(answered(fetchApi, id)))).toEqual([id]);
  });

  it('and those the Java consumer also refreshes metadata for that the client leaves out', () => {
    for (const id of ['UNKNOWN_LEADER_EPOCH', 'OFFSET_NOT_AVAILABLE', 'UNKNOWN_TOPIC_ID'])
      expect(staleLeaderAnswers(wrapped(answered(fetchApi, id)))).toEqual([id]);
  });

  it('looks through ListOffsets’ nesting (one MultipleErrors per leader, inside one for the call), naming each answer once', () => {
    const listing = new MultipleErrors('Listing offsets failed.', [
      new MultipleErrors('Listing offsets failed.', [
        answered(listOffsetsApi, 'UNKNOWN_LEADER_EPOCH', 'NOT_LEADER_OR_FOLLOWER', 'NOT_LEADER_OR_FOLLOWER'),
      ]),
    ]);
    expect(staleLeaderAnswers(wrapped(listing))).toEqual(['UNKNOWN_LEADER_EPOCH', 'NOT_LEADER_OR_FOLLOWER']);
    // Unwrapped too: the client's own error.
    expect(staleLeaderAnswers(listing)).toEqual(['UNKNOWN_LEADER_EPOCH', 'NOT_LEADER_OR_FOLLOWER']);
  });

  it('takes a fetch refused as out of range for offsets the ranges show valid, either answer', () => {
    const from = new Map([[0, 3n]]);
    const refused = answered(fetchApi, 'OFFSET_OUT_OF_RANGE');
    expect(
      staleLeaderAnswers(new KafkaStaleOutOfRangeError('orders', from, 'OFFSET_OUT_OF_RANGE', refused)),
    ).toEqual(['OFFSET_OUT_OF_RANGE']);
    expect(
      staleLeaderAnswers(new KafkaStaleOutOfRangeError('orders', from, 'OUT_OF_BOUNDS', outOfBounds())),
    ).toEqual(['OUT_OF_BOUNDS']);
    // Beside a leader that moved, in one failure: both stale.
    const both = new MultipleErrors('Listing offsets failed.', [
      answered(listOffsetsApi, 'NOT_LEADER_OR_FOLLOWER'),
      new KafkaStaleOutOfRangeError('orders', from, 'OFFSET_OUT_OF_RANGE', refused),
    ]);
    expect(staleLeaderAnswers(both)).toEqual(['NOT_LEADER_OR_FOLLOWER', 'OFFSET_OUT_OF_RANGE']);
  });

  it('is undefined when anything else is in the failure: that is reported as it is', () => {
    // One partition's leader moved, another's records are gone: the trimmed partition must be heard of.
    expect(
      staleLeaderAnswers(wrapped(answered(fetchApi, 'NOT_LEADER_OR_FOLLOWER', 'OFFSET_OUT_OF_RANGE'))),
    ).toBeUndefined();
    const leaderAndNetwork = new MultipleErrors('Listing offsets failed.', [
      answered(listOffsetsApi, 'NOT_LEADER_OR_FOLLOWER'),
      new NetworkError('Connection closed'),
    ]);
    expect(staleLeaderAnswers(wrapped(leaderAndNetwork))).toBeUndefined();
    expect(staleLeaderAnswers(wrapped(new NetworkError('Connection refused')))).toBeUndefined();
    expect(staleLeaderAnswers(wrapped(answered(fetchApi, 'TOPIC_AUTHORIZATION_FAILED')))).toBeUndefined();
    // A broker's disk failing is retriable for the Java consumer, but an operator must hear of it at once.
    expect(staleLeaderAnswers(wrapped(answered(fetchApi, 'KAFKA_STORAGE_ERROR')))).toBeUndefined();
    // Out of range, or unreadable, as it comes: only the ranges asked after it can say it is stale.
    expect(staleLeaderAnswers(wrapped(answered(fetchApi, 'OFFSET_OUT_OF_RANGE')))).toBeUndefined();
    expect(staleLeaderAnswers(wrapped(outOfBounds()))).toBeUndefined();
    expect(staleLeaderAnswers(new MultipleErrors('nothing', []))).toBeUndefined();
    expect(staleLeaderAnswers(new KeelError('KEEL_BROKER_UNAVAILABLE', 'no cause'))).toBeUndefined();
    expect(staleLeaderAnswers(new Error('the model refused the batch'))).toBeUndefined();
    expect(staleLeaderAnswers('NOT_LEADER_OR_FOLLOWER')).toBeUndefined();
    expect(staleLeaderAnswers(undefined)).toBeUndefined();
  });
});

describe('StaleLeaderRun', () => {
  const stale = wrapped(answered(fetchApi, 'NOT_LEADER_OR_FOLLOWER'));
  const down = wrapped(new NetworkError('Connection refused'));

  it('keeps stale-leader failures quiet for 30 s from the first, then reports them until a look goes through', async () => {
    const clock = new ManualClock();
    const run = new StaleLeaderRun(clock);
    expect(staleLeaderLimitMs).toBe(30_000);
    expect(run.quiet(stale)).toBe(true);
    await clock.advance(staleLeaderLimitMs - 1);
    expect(run.quiet(stale)).toBe(true);
    await clock.advance(1);
    expect(run.quiet(stale)).toBe(false);
    await clock.advance(60_000);
    expect(run.quiet(stale)).toBe(false);
    // A look went through: the next leader to move has its 30 s again.
    run.end();
    expect(run.quiet(stale)).toBe(true);
    await clock.advance(staleLeaderLimitMs - 1);
    expect(run.quiet(stale)).toBe(true);
  });

  it('reports other failures at once; they neither begin a run nor end one', async () => {
    const clock = new ManualClock();
    const run = new StaleLeaderRun(clock, 10_000);
    expect(run.quiet(down)).toBe(false);
    await clock.advance(5_000);
    // The run begins at the first stale-leader failure, not at the failure before it.
    expect(run.quiet(stale)).toBe(true);
    await clock.advance(9_000);
    expect(run.quiet(down)).toBe(false);
    expect(run.quiet(stale)).toBe(true);
    await clock.advance(1_000);
    // No look went through in between: 10 s since the first.
    expect(run.quiet(stale)).toBe(false);
  });
});
