import { InvalidArgumentError } from '../../../errors/index.ts';
import { systemClock, type Clock } from '../../../time/index.ts';

export interface KafkaBrokerOptions {
  /** Bootstrap servers, `host:port`. Default: `KEEL_KAFKA_BROKERS` (comma-separated), else `127.0.0.1:9092`. */
  brokers?: readonly string[];
  /** Client id sent to Kafka, seen in its logs and quotas. Default `keel`. */
  clientId?: string;
  /** Partitions of each topic the adapter creates. Default 3. */
  partitions?: number;
  /** Replication factor of each topic the adapter creates. Default -1: the cluster's `default.replication.factor`. */
  replicationFactor?: number;
  /**
   * Group session timeout when a source gives no `leaseMs`: how long a crashed consumer's
   * partitions stay with it before the group hands them to another member. Default 10 000 ms.
   */
  sessionTimeoutMs?: number;
  /** Records a source holds fetched but unfinished; the fetch pauses at this many. Default 1 000. */
  maxBuffered?: number;
  /** Longest a fetch waits on the broker for new records. Default 500 ms. */
  maxWaitMs?: number;
  /**
   * Whether an ack resolves only once Kafka has acknowledged the offset commit (default true,
   * the `DeliverySource` contract). The runtime holds a concurrency slot until the ack resolves,
   * so consuming is bounded by concurrency ÷ commit round trip. `false`: an ack resolves when the
   * record is settled in the source, and commits run in the background, folded together (still
   * only through the finished prefix). Nothing is ever lost either way; after a crash, records
   * finished in the last commit round trip are delivered again.
   */
  awaitCommit?: boolean;
  /**
   * Longest `publish` waits for Kafka's acknowledgement before it rejects with a `PublishError`.
   * The idempotent producer retries without end while the cluster is unreachable, so the
   * records may still be written after the rejection (a retry by the caller then duplicates
   * them; consumers deduplicate on the id). Default 30 000 ms.
   */
  publishTimeoutMs?: number;
  clock?: Clock;
}

export interface Resolved {
  brokers: string[];
  clientId: string;
  partitions: number;
  replicationFactor: number;
  sessionTimeoutMs: number;
  maxBuffered: number;
  maxWaitMs: number;
  awaitCommit: boolean;
  publishTimeoutMs: number;
  clock: Clock;
}

export const topicName = /^[a-zA-Z0-9._-]{1,249}$/;

export function resolveOptions(options: KafkaBrokerOptions): Resolved {
  const fromEnv = process.env['KEEL_KAFKA_BROKERS']
    ?.split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  const brokers = [...(options.brokers ?? (fromEnv?.length ? fromEnv : ['127.0.0.1:9092']))];
  if (brokers.length === 0 || brokers.some((b) => !/^[^:\s]+:\d+$/.test(b))) {
    throw new InvalidArgumentError('brokers', 'a non-empty list of host:port', options.brokers);
  }
  const int = (field: string, value: number, min: number): number => {
    if (!Number.isInteger(value) || value < min)
      throw new InvalidArgumentError(field, `an integer >= ${min}`, value);
    return value;
  };
  const replicationFactor = options.replicationFactor ?? -1;
  if (replicationFactor !== -1) int('replicationFactor', replicationFactor, 1);
  return {
    brokers,
    clientId: options.clientId ?? 'keel',
    partitions: int('partitions', options.partitions ?? 3, 1),
    replicationFactor,
    sessionTimeoutMs: int('sessionTimeoutMs', options.sessionTimeoutMs ?? 10_000, 1),
    maxBuffered: int('maxBuffered', options.maxBuffered ?? 1000, 1),
    maxWaitMs: int('maxWaitMs', options.maxWaitMs ?? 500, 0),
    awaitCommit: options.awaitCommit ?? true,
    publishTimeoutMs: int('publishTimeoutMs', options.publishTimeoutMs ?? 30_000, 1),
    clock: options.clock ?? systemClock,
  };
}

export function assertTopic(field: string, name: string): void {
  if (typeof name !== 'string' || !topicName.test(name) || name === '.' || name === '..') {
    throw new InvalidArgumentError(field, 'a Kafka topic name: 1-249 of [a-zA-Z0-9._-]', name);
  }
}
