import type { Db } from '../../../src/db/index.ts';
import { KeelError } from '../../../src/errors/index.ts';
import { PgQueue, withDestinationPrefix, type MessageBroker } from '../../../src/messaging/index.ts';
import type { Clock } from '../../../src/time/index.ts';
import type { BrokerConfig } from './broker-config.ts';

/**
 * Opens the broker the configuration names. Each adapter is imported only when chosen, so a
 * deployment needs the client package of its own broker alone (amqplib, @platformatic/kafka,
 * @nats-io/*, ioredis). The broker's own defaults apply: per-key ordering where the engine has
 * it, dead letters at `<destination>.dead-letter`.
 */
export async function openBroker(
  config: BrokerConfig,
  deps: { db: Db; clock: Clock },
): Promise<MessageBroker> {
  const broker = await open(config, deps);
  return config.prefix === undefined ? broker : withDestinationPrefix(broker, config.prefix);
}

async function open(config: BrokerConfig, { db, clock }: { db: Db; clock: Clock }): Promise<MessageBroker> {
  switch (config.kind) {
    case 'postgres':
      return new PgQueue(db, { clock });
    case 'rabbitmq': {
      const { RabbitMqBroker } = await importAdapter(
        () => import('../../../src/messaging/adapters/rabbitmq/index.ts'),
        'amqplib',
      );
      return new RabbitMqBroker({ url: config.url, name: 'shop' });
    }
    case 'kafka': {
      const { KafkaBroker } = await importAdapter(
        () => import('../../../src/messaging/adapters/kafka/index.ts'),
        '@platformatic/kafka',
      );
      return new KafkaBroker({ brokers: config.url.split(','), clientId: 'shop', clock });
    }
    case 'nats': {
      const { NatsJetStreamBroker } = await importAdapter(
        () => import('../../../src/messaging/adapters/nats/index.ts'),
        '@nats-io/transport-node and @nats-io/jetstream',
      );
      return new NatsJetStreamBroker({ servers: config.url.split(','), name: 'shop', clock });
    }
    case 'redis': {
      const { RedisStreamsBroker } = await importAdapter(
        () => import('../../../src/messaging/adapters/redis/index.ts'),
        'ioredis',
      );
      const url = new URL(config.url);
      return new RedisStreamsBroker({
        redis: {
          host: url.hostname,
          port: Number(url.port || 6379),
          ...(url.password ? { password: decodeURIComponent(url.password) } : {}),
          ...(url.username ? { username: decodeURIComponent(url.username) } : {}),
          ...(url.pathname.length > 1 ? { db: Number(url.pathname.slice(1)) } : {}),
          ...(url.protocol === 'rediss:' ? { tls: {} } : {}),
          connectionName: 'shop',
        },
        clock,
      });
    }
  }
}

/** A broker's client package is an optional peer: its absence is named, with the fix. */
export async function importAdapter<M>(load: () => Promise<M>, packages: string): Promise<M> {
  try {
    return await load();
  } catch (error) {
    if ((error as { code?: unknown }).code !== 'ERR_MODULE_NOT_FOUND') throw error;
    throw new KeelError(
      'KEEL_BROKER_UNAVAILABLE',
      `this broker needs ${packages}, which is not installed: npm install ${packages.replace(' and ', ' ')}`,
      { cause: error, details: { packages } },
    );
  }
}
