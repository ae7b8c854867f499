// How a look checks the stored offsets against the topic of that name, on a stand-in for the
// client's metadata: cached, and fresh when asked. Against a real Kafka:
// kafka-projection-recreated.test.ts and kafka-projection-before-topic-ids.test.ts.
import { describe, expect, it } from 'vitest';
import { checkRecreation } from './kafka-projection-recreation.ts';
import type { TopicFetcher, TopicIncarnation } from './topic-fetcher.ts';
import { KafkaTopicRecreatedError, type StoredOffset } from './topic-incarnation.ts';

const oldId = '744a5ee3-31c4-4211-bab6-3567ba834644';
const newId = '00a11bb4-b249-496b-918c-12de449c601f';
const stored = (entries: [number, bigint, string | null][]): Map<number, StoredOffset> =>
  new Map(entries.map(([partition, next, topicId]) => [partition, { next, topicId }]));

/** Metadata as the client caches it, and as Kafka has it when asked afresh; counts the asks. */
function metadata(
  cached: TopicIncarnation,
  fresh: TopicIncarnation | undefined,
): { fetcher: TopicFetcher; asked: () => number } {
  let asked = 0;
  const fetcher = {
    topic: 'orders',
    current: async (ask = false) => (ask ? (asked++, fresh) : cached),
  } as unknown as TopicFetcher;
  return { fetcher, asked: () => asked };
}

describe('checkRecreation', () => {
  it('offsets of the topic: the cached metadata is enough, nothing to restart', async () => {
    const { fetcher, asked } = metadata({ id: newId, partitions: 2 }, undefined);
    const offsets = stored([
      [0, 3n, newId],
      [1, 1n, null],
    ]);
    expect(await checkRecreation(fetcher, { id: newId, partitions: 2 }, offsets, 'throw')).toEqual({
      topic: { id: newId, partitions: 2 },
      restart: undefined,
    });
    expect(asked()).toBe(0);
  });

  it('an offset without an id on a partition the cached metadata lacks: asks Kafka, which knows the partition added since', async () => {
    const cached = { id: newId, partitions: 1 };
    const { fetcher, asked } = metadata(cached, { id: newId, partitions: 2 });
    const offsets = stored([
      [0, 3n, newId],
      [1, 1n, null],
    ]);
    expect(await checkRecreation(fetcher, cached, offsets, 'throw')).toEqual({
      topic: { id: newId, partitions: 2 },
      restart: undefined,
    });
    expect(asked()).toBe(1);
  });

  it('offsets without an id on a partition the topic lacks, fresh metadata too: KafkaTopicRecreatedError with no stored id', async () => {
    const topic = { id: newId, partitions: 2 };
    const { fetcher, asked } = metadata(topic, topic);
    const offsets = stored([
      [0, 3n, null],
      [1, 2n, null],
      [2, 2n, null],
    ]);
    const failure = await checkRecreation(fetcher, topic, offsets, 'throw').catch((e: unknown) => e);
    expect(failure).toBeInstanceOf(KafkaTopicRecreatedError);
    expect(failure).toMatchObject({ storedTopicId: null, currentTopicId: newId, partitions: [0, 1, 2] });
    expect((failure as Error).message).toContain('has 2 partitions now');
    expect(asked()).toBe(1);
  });

  it("with onRecreated: 'restart', the restart drops every stored offset, whichever way they were told apart", async () => {
    const topic = { id: newId, partitions: 1 };
    const { fetcher } = metadata(topic, topic);
    const withoutIds = stored([
      [0, 3n, null],
      [1, 2n, null],
    ]);
    expect((await checkRecreation(fetcher, topic, withoutIds, 'restart'))?.restart).toEqual({
      storedTopicId: null,
      topicId: newId,
      dropped: [
        { partition: 0, next: 3n },
        { partition: 1, next: 2n },
      ],
      seen: withoutIds,
    });
    const withOldId = stored([[0, 3n, oldId]]);
    expect((await checkRecreation(fetcher, topic, withOldId, 'restart'))?.restart).toMatchObject({
      storedTopicId: oldId,
      topicId: newId,
    });
  });

  it('the topic gone when Kafka is asked afresh: undefined, nothing decided', async () => {
    const cached = { id: newId, partitions: 1 };
    const { fetcher } = metadata(cached, undefined);
    expect(await checkRecreation(fetcher, cached, stored([[0, 3n, oldId]]), 'throw')).toBeUndefined();
  });
});
