import { KeelError } from '../../../errors/index.ts';

/**
 * A projection's stored offsets are of another topic than the one of that name now: the topic id
 * stored with them (KIP-516: Kafka gives each topic a UUID at its creation) is not the topic's id,
 * so the topic was deleted and created again (or the brokers are another cluster's) since they
 * were stored. Or, for offsets stored before topic ids were (migration
 * `keel_kafka_projection_0002_topic_id`, `storedTopicId` null), one is of a partition the topic
 * does not have: Kafka adds partitions to a topic but never removes one, so the topic they were
 * stored for is gone. Its offsets say nothing about the new topic, whether it holds fewer records
 * than they say or more: resuming from them would skip the new topic's first records and apply
 * the rest to a model built from the old one. Code `KEEL_STREAM_REPLACED` (409). Decide:
 * `rebuild()` the projection (empties the model, replays the new topic), or `onRecreated:
 * 'restart'` (keeps the model, applies the new topic from its earliest records).
 */
export class KafkaTopicRecreatedError extends KeelError {
  readonly topic: string;
  /**
   * The id stored with the projection's offsets: the topic they were of. `null`: stored before
   * topic ids were, and told apart by a partition the topic does not have.
   */
  readonly storedTopicId: string | null;
  /** The topic's id as Kafka has it now. */
  readonly currentTopicId: string;
  /** The partitions whose stored offset is of the old topic. */
  readonly partitions: readonly number[];
  /**
   * `topicPartitions`: how many partitions the topic has now, named in the message when
   * `storedTopicId` is null.
   */
  constructor(
    topic: string,
    storedTopicId: string | null,
    currentTopicId: string,
    partitions: readonly number[],
    topicPartitions?: number,
  ) {
    const stored =
      storedTopicId === null
        ? `they were stored before topic ids were (migration keel_kafka_projection_0002_topic_id), ` +
          `for partitions ${partitions.join(', ')}, and the topic (id ${currentTopicId}) has ` +
          `${topicPartitions ?? 'fewer'} partition${topicPartitions === 1 ? '' : 's'} now: Kafka never ` +
          `removes a topic's partitions, so it was deleted and created again`
        : `they were stored for topic id ${storedTopicId}, the topic's id is now ${currentTopicId} ` +
          `(deleted and created again)`;
    super(
      'KEEL_STREAM_REPLACED',
      `Kafka topic ${topic} is not the topic the projection's offsets are of: ${stored}; rebuild() ` +
        `replays the new topic, onRecreated: 'restart' applies it from its earliest records into ` +
        `the model as it is`,
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
  /**
   * `null`: the offsets were stored before topic ids were, and one was of a partition the topic
   * does not have (see `KafkaTopicRecreatedError`).
   */
  storedTopicId: string | null;
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

/** The topic stored offsets are of, where it can be told to be another than the one of that name now. */
export interface OtherTopic {
  /** The id stored with them; `null`: stored before topic ids were (see `otherTopic`). */
  topicId: string | null;
  /** The partitions whose stored offset is of it. */
  partitions: number[];
}

/**
 * Stored offsets that are of another topic than `current` (its id and partition count), as far
 * as that can be decided: those stored with another id (`foreignTopic`); else, when offsets
 * stored without an id (before migration 0002) include one of a partition `current` does not
 * have, all of those. Kafka adds partitions to a topic but never removes one, so that partition
 * was another topic's. Pass a partition count from fresh metadata before acting on it: a cached
 * one may predate partitions added since.
 *
 * What cannot be decided: offsets without an id, each on a partition the topic has, fit the
 * topic and equally one deleted and created again with as many partitions (its offsets restart
 * at 0, so it soon holds every offset they name). Kafka keeps no trace of a deleted topic's id,
 * and the rows hold nothing else of the records applied. Those are taken for the topic's
 * (undefined); an offset past its partition's end is refused by the fetch
 * (`KafkaOffsetPastEndError`: recreated, or records lost, which nothing tells apart either).
 */
export function otherTopic(
  stored: ReadonlyMap<number, StoredOffset>,
  current: { readonly id: string | null; readonly partitions: number },
): OtherTopic | undefined {
  const foreign = foreignTopic(stored, current.id);
  if (foreign !== undefined || current.id === null) return foreign;
  const withoutId = [...stored].filter(([, offset]) => offset.topicId === null).map(([p]) => p);
  if (!withoutId.some((partition) => partition >= current.partitions)) return undefined;
  return { topicId: null, partitions: withoutId };
}
