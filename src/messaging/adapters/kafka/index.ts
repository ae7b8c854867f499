export { KafkaBroker, defaultGroup, type RecordPosition, type ReplayOptions } from './kafka-broker.ts';
export type { KafkaBrokerOptions } from './kafka-options.ts';
export type { KafkaDelivery, KafkaSource } from './kafka-source.ts';
export { keelHeaders as kafkaKeelHeaders } from './record-codec.ts';
export type { AppliedRange } from './batch-offsets.ts';
export {
  KafkaProjectionRunner,
  type KafkaProjection,
  type KafkaProjectionRunnerEvents,
  type KafkaProjectionRunnerOptions,
  type PartitionProgress,
} from './kafka-projection.ts';
export { kafkaProjectionMigrations } from './kafka-projection-schema.ts';
export {
  KafkaOffsetPastEndError,
  KafkaPartitionTrimmedError,
  KafkaStaleOutOfRangeError,
  type OutOfRangeAnswer,
  type SkippedRecords,
} from './offset-out-of-range.ts';
export type { KafkaEntry, PartitionRange } from './topic-fetcher.ts';
export { KafkaTopicRecreatedError, type TopicRestart } from './topic-incarnation.ts';
export { KafkaTopicRanges, type KafkaTopicRangesOptions } from './topic-ranges.ts';
