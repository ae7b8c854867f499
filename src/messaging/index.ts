export { createEnvelope, headerNames, type Envelope, type EnvelopeInit, type Headers } from './envelope.ts';
export {
  defineMessage,
  MessageInvalidError,
  UnknownMessageTypeError,
  type MessageType,
} from './message-type.ts';
export { MessageRegistry } from './message-registry.ts';
export { PublishError, type Publisher } from './publisher.ts';
export {
  LeaseLostError,
  PermanentError,
  type Handler,
  type DeliveryContext,
  type LeaseLossReason,
} from './handler.ts';
export type { ConnectionLoss, Delivery, DeliverySource } from './delivery-source.ts';
export {
  QueueConsumer,
  type QueueConsumerOptions,
  type QueueConsumerEvents,
  type QueueConsumerStats,
} from './queue-consumer.ts';
export { PgQueue, type PgQueueOptions } from './adapters/postgres/pg-queue.ts';
export { MemoryBroker } from './adapters/memory/index.ts';
export type { BrokerCapabilities, MessageBroker, PublishOptions, SourceOptions } from './broker.ts';
export { withDestinationPrefix } from './prefixed-broker.ts';
export { pgQueueMigrations, pgQueueChannel } from './adapters/postgres/schema.ts';
export {
  PgStream,
  StreamTrimmedError,
  type AppendResult,
  type ReadOptions,
  type StreamBounds,
  type StreamEntry,
} from './adapters/postgres/pg-stream.ts';
export type { TrimBounds, TrimHeldBy, TrimOptions, TrimOutcome } from './adapters/postgres/pg-stream-trim.ts';
export {
  PgStreamRetention,
  type PgStreamRetentionEvents,
  type PgStreamRetentionOptions,
  type StreamRetentionRule,
} from './adapters/postgres/pg-stream-retention.ts';
export { pgStreamMigrations, pgStreamChannel } from './adapters/postgres/pg-stream-schema.ts';
export {
  ProjectionNotFoundError,
  type ForgottenProjection,
  type ProjectionPosition,
  type StreamProjections,
} from './adapters/postgres/pg-stream-projection-admin.ts';
export {
  ProjectionRunner,
  type Projection,
  type ProjectionRunnerEvents,
  type ProjectionRunnerOptions,
} from './adapters/postgres/pg-stream-projection.ts';
