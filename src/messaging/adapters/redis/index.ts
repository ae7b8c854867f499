// keel/messaging/redis: Redis Streams behind keel's MessageBroker. The only place keel imports
// ioredis for messaging.
export { RedisStreamsBroker, type RedisStreamsBrokerOptions } from './redis-streams-broker.ts';
export { RedisStreamsSource, type RedisStreamDelivery } from './redis-streams-source.ts';
export type { DestinationStats, ReplayedEntry, ReplayOptions } from './stream-inspection.ts';
