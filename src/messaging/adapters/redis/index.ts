// keel/messaging/redis: Redis Streams behind keel's MessageBroker. The only place keel imports
// ioredis for messaging.
export {
  RedisStreamsBroker,
  type DestinationStats,
  type RedisStreamsBrokerOptions,
  type ReplayedEntry,
  type ReplayOptions,
} from './redis-streams-broker.ts';
export { RedisStreamsSource, type RedisStreamDelivery } from './redis-streams-source.ts';
