// How stored offsets are told to be of another topic than the one of that name now. Against a
// real Kafka: kafka-projection-recreated.test.ts.
import { describe, expect, it } from 'vitest';
import {
  foreignTopic,
  KafkaTopicRecreatedError,
  otherTopic,
  type StoredOffset,
} from './topic-incarnation.ts';

const oldId = '744a5ee3-31c4-4211-bab6-3567ba834644';
const newId = '00a11bb4-b249-496b-918c-12de449c601f';
const stored = (entries: [number, bigint, string | null][]): Map<number, StoredOffset> =>
  new Map(entries.map(([partition, next, topicId]) => [partition, { next, topicId }]));

describe('foreignTopic', () => {
  it('names the other topic id and every partition stored with it', () => {
    const offsets = stored([
      [0, 3n, oldId],
      [1, 0n, null],
      [2, 7n, oldId],
    ]);
    expect(foreignTopic(offsets, newId)).toEqual({ topicId: oldId, partitions: [0, 2] });
  });

  it('offsets of the topic, offsets without an id (stored before 0002) and none at all are not foreign', () => {
    expect(foreignTopic(stored([[0, 3n, newId]]), newId)).toBeUndefined();
    expect(foreignTopic(stored([[0, 3n, null]]), newId)).toBeUndefined();
    expect(foreignTopic(stored([]), newId)).toBeUndefined();
  });

  it('a broker without topic ids gives nothing to compare against', () => {
    expect(foreignTopic(stored([[0, 3n, oldId]]), null)).toBeUndefined();
  });
});

describe('otherTopic', () => {
  const current = { id: newId, partitions: 2 };

  it('offsets stored with another id: that topic, as foreignTopic says', () => {
    expect(otherTopic(stored([[0, 3n, oldId]]), current)).toEqual({ topicId: oldId, partitions: [0] });
  });

  it('offsets without an id (stored before 0002), one of a partition the topic lacks: all of them, of a topic with no id', () => {
    const offsets = stored([
      [0, 3n, null],
      [1, 0n, newId],
      [2, 7n, null],
    ]);
    expect(otherTopic(offsets, current)).toEqual({ topicId: null, partitions: [0, 2] });
  });

  it('offsets without an id, each of a partition the topic has: nothing to tell them apart by', () => {
    expect(
      otherTopic(
        stored([
          [0, 3n, null],
          [1, 9n, null],
        ]),
        current,
      ),
    ).toBeUndefined();
    expect(
      otherTopic(
        stored([
          [0, 3n, newId],
          [1, 9n, null],
        ]),
        current,
      ),
    ).toBeUndefined();
  });

  it('a partition the topic lacks counts only for offsets without an id, and not on a broker without ids', () => {
    // An id of the topic on a partition it lacks: metadata older than the partition, not another topic.
    expect(otherTopic(stored([[2, 3n, newId]]), current)).toBeUndefined();
    expect(otherTopic(stored([[2, 3n, null]]), { id: null, partitions: 2 })).toBeUndefined();
  });
});

describe('KafkaTopicRecreatedError', () => {
  it('is KEEL_STREAM_REPLACED (409), naming the topic, both ids and the partitions, its details JSON', () => {
    const error = new KafkaTopicRecreatedError('orders', oldId, newId, [0, 2]);
    expect(error).toMatchObject({ code: 'KEEL_STREAM_REPLACED', status: 409, topic: 'orders' });
    expect(error.message).toContain(`stored for topic id ${oldId}, the topic's id is now ${newId}`);
    expect(JSON.parse(JSON.stringify(error.details))).toEqual({
      topic: 'orders',
      storedTopicId: oldId,
      currentTopicId: newId,
      partitions: [0, 2],
    });
  });

  it('of offsets stored before topic ids: no stored id, and the message says how it was told', () => {
    const error = new KafkaTopicRecreatedError('orders', null, newId, [0, 1, 2], 2);
    expect(error).toMatchObject({ code: 'KEEL_STREAM_REPLACED', storedTopicId: null, partitions: [0, 1, 2] });
    expect(error.message).toContain(
      `stored before topic ids were (migration keel_kafka_projection_0002_topic_id), for partitions ` +
        `0, 1, 2, and the topic (id ${newId}) has 2 partitions now`,
    );
    expect(error.details).toMatchObject({ storedTopicId: null, currentTopicId: newId });
  });
});
