import { InvalidArgumentError } from '../../../src/errors/index.ts';

/** The engine the shop's queues run on. `postgres`: keel's queue in the shop's own database. */
export type BrokerKind = 'postgres' | 'rabbitmq' | 'kafka' | 'nats' | 'redis';

export interface BrokerConfig {
  kind: BrokerKind;
  /** Where the server is (unused for `postgres`). */
  url: string;
  /** Put before every destination name, so deployments can share one server. */
  prefix?: string;
}

const kinds: readonly BrokerKind[] = ['postgres', 'rabbitmq', 'kafka', 'nats', 'redis'];

const defaultUrls: Record<BrokerKind, string> = {
  postgres: '',
  rabbitmq: 'amqp://guest:guest@127.0.0.1:5672',
  kafka: '127.0.0.1:9092',
  nats: '127.0.0.1:4222',
  redis: 'redis://127.0.0.1:6379',
};

/**
 * - `KEEL_BROKER`: `postgres` (the default: no server beyond the database), `rabbitmq`,
 *   `kafka`, `nats` (JetStream) or `redis` (Streams)
 * - `KEEL_BROKER_URL`: the server — `amqp://…` for RabbitMQ, `host:port[,host:port]` for Kafka
 *   and NATS, `redis://[:password@]host:port[/db]` for Redis; defaults to the local one
 * - `KEEL_BROKER_PREFIX`: put before every destination name (none)
 */
export function brokerConfigFromEnv(env: NodeJS.ProcessEnv = process.env): BrokerConfig {
  const kind = (env.KEEL_BROKER?.trim() || 'postgres') as BrokerKind;
  if (!kinds.includes(kind))
    throw new InvalidArgumentError('KEEL_BROKER', `one of ${kinds.join(', ')}`, kind);
  const url = env.KEEL_BROKER_URL?.trim() || defaultUrls[kind];
  if (kind === 'rabbitmq' && !/^amqps?:\/\//.test(url))
    throw new InvalidArgumentError('KEEL_BROKER_URL', 'amqp://user:password@host:port for RabbitMQ', url);
  if (kind === 'redis' && !/^rediss?:\/\//.test(url))
    throw new InvalidArgumentError('KEEL_BROKER_URL', 'redis://[:password@]host:port[/db] for Redis', url);
  if ((kind === 'kafka' || kind === 'nats') && !/^[^\s,:/]+:\d+(,[^\s,:/]+:\d+)*$/.test(url))
    throw new InvalidArgumentError('KEEL_BROKER_URL', `host:port[,host:port] for ${kind}`, url);
  const prefix = env.KEEL_BROKER_PREFIX?.trim();
  return { kind, url, ...(prefix ? { prefix } : {}) };
}
