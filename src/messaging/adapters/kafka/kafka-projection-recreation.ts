import type { TopicReads } from './kafka-projection-fetch.ts';
import type { TopicIncarnation } from './topic-fetcher.ts';
import {
  KafkaTopicRecreatedError,
  otherTopic,
  type StoredOffset,
  type TopicRestart,
} from './topic-incarnation.ts';

/** A restart on a recreated topic that a look's batch stores, with the rows it found (`seen`). */
export type PendingRestart = TopicRestart & { seen: ReadonlyMap<number, StoredOffset> };

/** The topic a look applies, and the restart its first batch stores, if any. */
export interface CheckedTopic {
  topic: TopicIncarnation;
  restart: PendingRestart | undefined;
}

/**
 * Checks the stored offsets against the topic of that name now (`cached`: as the client's
 * metadata has it), by `otherTopic`. Offsets of another topic throw `KafkaTopicRecreatedError`,
 * or with `onRecreated: 'restart'` come back as the restart to store. Undefined when the topic
 * is gone.
 */
export async function checkRecreation(
  fetcher: TopicReads,
  cached: TopicIncarnation,
  stored: ReadonlyMap<number, StoredOffset>,
  onRecreated: 'throw' | 'restart',
): Promise<CheckedTopic | undefined> {
  let topic: TopicIncarnation | undefined = cached;
  // The client's metadata may be older than an id another runner stored, or than partitions
  // added since: ask Kafka before deciding.
  if (otherTopic(stored, topic) !== undefined) {
    topic = await fetcher.current(true);
    if (topic === undefined) return undefined;
  }
  return { topic, restart: restartOrThrow(fetcher.topic, stored, topic, onRecreated) };
}

/**
 * Stored offsets of another topic than `topic`: throws `KafkaTopicRecreatedError`, or with
 * `onRecreated: 'restart'` says what the restart drops.
 */
function restartOrThrow(
  name: string,
  stored: ReadonlyMap<number, StoredOffset>,
  topic: TopicIncarnation,
  onRecreated: 'throw' | 'restart',
): PendingRestart | undefined {
  const other = otherTopic(stored, topic);
  if (other === undefined || topic.id === null) return undefined;
  if (onRecreated === 'throw')
    throw new KafkaTopicRecreatedError(name, other.topicId, topic.id, other.partitions, topic.partitions);
  const dropped = [...stored].map(([partition, { next }]) => ({ partition, next }));
  return { storedTopicId: other.topicId, topicId: topic.id, dropped, seen: stored };
}
