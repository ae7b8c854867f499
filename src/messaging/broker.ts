import type { DeliverySource } from './delivery-source.ts';
import type { Envelope } from './envelope.ts';
import type { Handler } from './handler.ts';
import type { Publisher } from './publisher.ts';
import type { QueueConsumer, QueueConsumerOptions } from './queue-consumer.ts';

/**
 * What an engine guarantees, named after what a user observes. Every adapter declares these;
 * the conformance suite tests each claim and states why it skips a scenario.
 */
export interface BrokerCapabilities {
  /**
   * `per-key`: messages with the same key are handled one at a time, in publish order, even
   * across retries; other keys go on in parallel. `total`: one at a time overall. `none`: no promise.
   */
  readonly ordering: 'none' | 'per-key' | 'total';
  /** Consumed messages stay and can be read again from an earlier position. */
  readonly replayable: boolean;
  /** Several independent groups each receive every message of a destination. */
  readonly consumerGroups: boolean;
  /** A failed message comes back by itself after a delay, without the consumer republishing it. */
  readonly redeliversOnNack: boolean;
  /** A message can be published to be delivered no earlier than a given time. */
  readonly delayedDelivery: boolean;
}

export interface PublishOptions {
  /** Deliver no earlier than this instant (ms since epoch). Needs `delayedDelivery`. */
  availableAt?: number;
}

export interface SourceOptions {
  /** How long a claimed message is held before it is given to another consumer. Adapter default. */
  leaseMs?: number;
  /** Where messages go after their last attempt. Default `<destination>.dead-letter`. */
  deadLetterDestination?: string;
  /** Consumer group, for engines with `consumerGroups`. Default: one shared group per destination. */
  group?: string;
}

/**
 * One engine behind keel's messaging interfaces: a publisher, and sources that the consumer
 * runtime drives. Adapters import their driver only in their own folder.
 */
export interface MessageBroker extends Publisher {
  readonly name: string;
  readonly capabilities: BrokerCapabilities;
  publish(destination: string, messages: readonly Envelope[], options?: PublishOptions): Promise<void>;
  /** A source for one consumer instance. Each call is a new consumer identity. */
  source(destination: string, options?: SourceOptions): DeliverySource;
  /** A consumer running `handler` over a new source. Start it to begin. */
  consumer(
    destination: string,
    handler: Handler,
    options?: QueueConsumerOptions & SourceOptions,
  ): QueueConsumer;
  /**
   * Moves up to `limit` (default all) dead letters back to `to` (default: the destination each
   * was dead-lettered from), with a fresh attempt count. Returns how many moved.
   */
  redrive(deadLetterDestination: string, options?: { to?: string; limit?: number }): Promise<number>;
  /** Closes connections. Consumers must be stopped first. */
  close(): Promise<void>;
}
