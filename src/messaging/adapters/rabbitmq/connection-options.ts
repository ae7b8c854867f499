import { InvalidArgumentError } from '../../../errors/index.ts';
import { exponentialBackoff, systemClock, type Backoff, type Clock } from '../../../time/index.ts';
import { resolveRabbitMqUrl } from './broker-connections.ts';

/** How either RabbitMQ broker (queues or streams) reaches the server and recovers from losing it. */
export interface RabbitMqConnectionOptions {
  /** AMQP URL. Default `KEEL_RABBITMQ_URL`, else `amqp://guest:guest@127.0.0.1:5672`. */
  url?: string;
  /** Budget for opening a connection, ms. Default 5 000. */
  connectTimeoutMs?: number;
  /**
   * How long a publish waits for the broker's confirms before rejecting the unconfirmed
   * messages with `PublishError`, ms. Default 30 000. A connection blocked by a memory or disk
   * alarm confirms nothing until the alarm clears.
   */
  confirmTimeoutMs?: number;
  /** AMQP heartbeat, seconds. Default 10. */
  heartbeatSeconds?: number;
  /** Waits between a consumer's (or reader's) reconnect attempts. Default 100 ms doubling to 10 s, full jitter. */
  reconnectBackoff?: Backoff;
  /** Timestamps (AMQP timestamp, failure times) and reconnect timers. Default the system clock. */
  clock?: Clock;
  /** Shown as the connection name in RabbitMQ. Default `keel`. */
  name?: string;
  /** Errors that nobody awaits (a reconnect that failed, an undecodable message not parked). */
  onError?: (error: unknown) => void;
}

export type ResolvedConnectionOptions = Required<RabbitMqConnectionOptions>;

/** The options with their defaults, each checked: a bad one is named in `InvalidArgumentError`. */
export function resolveConnectionOptions(options: RabbitMqConnectionOptions): ResolvedConnectionOptions {
  const positive = (field: string, value: number): number => {
    if (!Number.isFinite(value) || value <= 0) throw new InvalidArgumentError(field, 'a number > 0', value);
    return value;
  };
  const heartbeatSeconds = options.heartbeatSeconds ?? 10;
  if (!Number.isInteger(heartbeatSeconds) || heartbeatSeconds < 0) {
    throw new InvalidArgumentError('heartbeatSeconds', 'an integer >= 0', heartbeatSeconds);
  }
  return {
    url: resolveRabbitMqUrl(options.url),
    connectTimeoutMs: positive('connectTimeoutMs', options.connectTimeoutMs ?? 5000),
    confirmTimeoutMs: positive('confirmTimeoutMs', options.confirmTimeoutMs ?? 30_000),
    heartbeatSeconds,
    reconnectBackoff: options.reconnectBackoff ?? exponentialBackoff({ initialMs: 100, maxMs: 10_000 }),
    clock: options.clock ?? systemClock,
    name: options.name ?? 'keel',
    onError: options.onError ?? (() => {}),
  };
}
