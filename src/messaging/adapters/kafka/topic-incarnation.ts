import { KeelError } from '../../../errors/index.ts';

/**
 * A projection's stored offsets are of another topic than the one of that name now: the topic id
 * stored with them (KIP-516: Kafka gives each topic a UUID at its creation) is not the topic's id,
 * so the topic was deleted and created again (or the brokers are another cluster's) since they
 * were stored. Its offsets say nothing about the new topic, whether it holds fewer records than
 * they say or more: resuming from them would skip the new topic's first records and apply the
 * rest to a model built from the old one. Code `KEEL_STREAM_REPLACED` (409). Decide: `rebuild()`
 * the projection (empties the model, replays the new topic), or `onRecreated: 'restart'` (keeps
 * the model, applies the new topic from its earliest records).
 */
export class KafkaTopicRecreatedError extends KeelError {
  readonly topic: string;
  /** The id stored with the projection's offsets: the topic they were of. */
  readonly storedTopicId: string;
  /** The topic's id as Kafka has it now. */
  readonly currentTopicId: string;
  /** The partitions whose stored offset is of the old topic. */
  readonly partitions: readonly number[];
  constructor(topic: string, storedTopicId: string, currentTopicId: string, partitions: readonly number[]) {
    super(
      'KEEL_STREAM_REPLACED',
      `Kafka topic ${topic} is not the topic the projection's offsets are of: they were stored for ` +
        `topic id ${storedTopicId}, the topic's id is now ${currentTopicId} (deleted and created ` +
        `again); rebuild() replays the new topic, onRecreated: 'restart' applies it from its ` +
        `earliest records into the model as it is`,
      { details: { topic, storedTopicId, currentTopicId, partitions: [...partitions] } },
    );
    this.topic = topic;
    this.storedTopicId = storedTopicId;
    this.currentTopicId = currentTopicId;
    this.partitions = partitions;
  }
}

/**
 * `onRecreated: 'restart'`: the stored offsets were of the topic `storedTopicId`, deleted since;
 * they were dropped, and the projection applies the topic `topicId` from its earliest records.
 */
export interface TopicRestart {
  storedTopicId: string;
  topicId: string;
  /** The offsets dropped: where the projection was in each partition of the old topic. */
  dropped: { partition: number; next: bigint }[];
}

/** A stored offset and the topic id stored with it (`null`: stored before ids were, or by a broker without them). */
export interface StoredOffset {
  next: bigint;
  topicId: string | null;
}

/**
 * The id of another topic than `current` that stored offsets are of, with the partitions they
 * are stored for; undefined when each is of `current` or has no id. Nothing to compare against
 * when `current` is `null` (a broker without topic ids).
 */
export function foreignTopic(
  stored: ReadonlyMap<number, StoredOffset>,
  current: string | null,
): { topicId: string; partitions: number[] } | undefined {
  if (current === null) return undefined;
  let found: { topicId: string; partitions: number[] } | undefined;
  for (const [partition, { topicId }] of stored) {
    if (topicId === null || topicId === current) continue;
    found ??= { topicId, partitions: [] };
    found.partitions.push(partition);
  }
  return found;
}
