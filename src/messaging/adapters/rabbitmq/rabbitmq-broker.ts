import { InvalidArgumentError } from '../../../errors/index.ts';
import type { BrokerCapabilities, MessageBroker, PublishOptions, SourceOptions } from '../../broker.ts';
import { assertEnvelopeList, redriveLimit } from '../../broker-arguments.ts';
import type { Envelope } from '../../envelope.ts';
import type { Handler } from '../../handler.ts';
import { PublishError } from '../../publisher.ts';
import { QueueConsumer, type QueueConsumerOptions } from '../../queue-consumer.ts';
import { encode } from './codec.ts';
import { BrokerConnections } from './broker-connections.ts';
import { Confirmer, type Outgoing } from './confirm-channel.ts';
import {
  resolveConnectionOptions,
  type RabbitMqConnectionOptions,
  type ResolvedConnectionOptions,
} from './connection-options.ts';
import { assertPartitions, partitionOf, partitionQueueName, partitionQueueNames } from './partitions.ts';
import { redriveQueue } from './queue-redrive.ts';
import { defaultRuntimePrefetch, RabbitMqSource } from './rabbitmq-source.ts';
import { assertDestination, delayBucket, Topology, type QueueType } from './topology.ts';

export interface RabbitMqBrokerOptions extends RabbitMqConnectionOptions {
  /**
   * `quorum` (default): replicated, fsynced before confirming, counts deliveries exactly, and
   * measured faster here than classic. `classic`: for brokers without quorum queues; attempts
   * after a crash are approximate (see docs/rabbitmq.md). Fixed per queue name: RabbitMQ refuses
   * to redeclare a queue with another type.
   */
  queueType?: QueueType;
  /**
   * Unacknowledged messages per consumer (per partition queue with `ordering: 'per-key'`): the
   * AMQP prefetch. Default: what the consumer holds at most, its `concurrency` plus its
   * `prefetch` (whose default on RabbitMQ is 64: 65 for a consumer with no options); with
   * `ordering: 'per-key'`, 64.
   */
  prefetch?: number;
  /**
   * `per-key`: messages with the same key are handled one at a time, in publish order, even
   * across retries, by one consumer instance at a time; other keys in parallel. Each destination
   * becomes `partitions` queues `<destination>.p<i>` (a key goes to partition FNV-1a(key) mod
   * `partitions`) with `x-single-active-consumer`; retries wait in the consumer, holding their
   * key, instead of going through delay queues. Needs no server plugin. Default `none`.
   */
  ordering?: 'none' | 'per-key';
  /**
   * Partition queues per destination with `ordering: 'per-key'`, 1 to 256. Default 4. Every
   * publisher and consumer of a destination must use the same number: changing it moves keys
   * to other partitions, and order holds again only once the old partitions are empty.
   */
  partitions?: number;
}

interface Resolved extends ResolvedConnectionOptions {
  queueType: QueueType;
  prefetch: number | undefined;
  /** Per-key mode's partition count; undefined without per-key ordering. */
  partitions: number | undefined;
}

function resolveOptions(options: RabbitMqBrokerOptions): Resolved {
  const connection = resolveConnectionOptions(options);
  const queueType = options.queueType ?? 'quorum';
  if (queueType !== 'quorum' && queueType !== 'classic') {
    throw new InvalidArgumentError('queueType', "'quorum' or 'classic'", queueType);
  }
  const prefetch = options.prefetch;
  if (prefetch !== undefined && (!Number.isInteger(prefetch) || prefetch < 1 || prefetch > 65_535)) {
    throw new InvalidArgumentError('prefetch', 'an integer from 1 to 65535', prefetch);
  }
  const ordering = options.ordering ?? 'none';
  if (ordering !== 'none' && ordering !== 'per-key') {
    throw new InvalidArgumentError('ordering', "'none' or 'per-key'", ordering);
  }
  let partitions: number | undefined;
  if (ordering === 'per-key') {
    partitions = options.partitions ?? 4;
    assertPartitions(partitions);
  } else if (options.partitions !== undefined) {
    throw new InvalidArgumentError(
      'partitions',
      "undefined unless ordering is 'per-key'",
      options.partitions,
    );
  }
  return {
    ...connection,
    queueType,
    prefetch: prefetch ?? (partitions === undefined ? undefined : 64),
    partitions,
  };
}

/**
 * RabbitMQ behind keel's `MessageBroker`: durable queues (quorum by default), persistent
 * messages, publisher confirms, prefetch, retries and delayed delivery through per-delay TTL
 * queues that dead-letter back, a `<destination>.dead-letter` queue, and redrive. With
 * `ordering: 'per-key'`, every destination is partition queues with a single active consumer
 * and retries wait in the consumer (docs/rabbitmq.md, "Per-key ordering").
 *
 * Publishing uses one connection and consumers another, so the broker's flow control on a busy
 * publisher never stalls acks. A publish while RabbitMQ is unreachable rejects with
 * `PublishError`; consumers reconnect with backoff and consume again.
 */
export class RabbitMqBroker implements MessageBroker {
  readonly name = 'rabbitmq';
  readonly capabilities: BrokerCapabilities;
  readonly #o: Resolved;
  readonly #connections: BrokerConnections;
  readonly #publishTopology: Topology;
  readonly #consumeTopology: Topology;
  #closed = false;

  constructor(options: RabbitMqBrokerOptions = {}) {
    this.#o = resolveOptions(options);
    this.capabilities = {
      // Competing consumers, prefetch and delay-queue retries reorder, unless per-key.
      ordering: this.#o.partitions === undefined ? 'none' : 'per-key',
      replayable: false,
      consumerGroups: false,
      // Retries come back because the consumer publishes a copy (or, per-key, holds the message).
      redeliversOnNack: false,
      delayedDelivery: true,
    };
    const singleActiveConsumer = this.#o.partitions !== undefined;
    this.#publishTopology = new Topology(this.#o.queueType, this.#o.clock, { singleActiveConsumer });
    this.#consumeTopology = new Topology(this.#o.queueType, this.#o.clock, { singleActiveConsumer });
    this.#connections = new BrokerConnections({
      url: this.#o.url,
      connectTimeoutMs: this.#o.connectTimeoutMs,
      heartbeatSeconds: this.#o.heartbeatSeconds,
      name: this.#o.name,
      clock: this.#o.clock,
      confirmTimeoutMs: this.#o.confirmTimeoutMs,
      publishTopology: this.#publishTopology,
      consumeTopology: this.#consumeTopology,
    });
  }

  /** Partition queues per destination with `ordering: 'per-key'`; undefined otherwise. */
  get partitions(): number | undefined {
    return this.#o.partitions;
  }

  /** The queues behind `destination`: itself, or its partition queues in per-key mode. */
  queuesOf(destination: string): string[] {
    assertDestination(destination);
    const partitions = this.#o.partitions;
    return partitions === undefined ? [destination] : partitionQueueNames(destination, partitions);
  }

  /** The queue type this broker declares. */
  get queueType(): QueueType {
    return this.#o.queueType;
  }

  /** Every queue this broker declared so far: destinations, dead-letter and delay queues. */
  declaredQueues(): string[] {
    return [...new Set([...this.#publishTopology.names, ...this.#consumeTopology.names])];
  }

  /**
   * Publishes persistently and resolves when RabbitMQ confirmed every message. With
   * `availableAt` in the future, the messages wait in a delay queue first (rounded up to two
   * significant digits of delay). Rejects with `PublishError` naming the unconfirmed ids.
   */
  async publish(
    destination: string,
    messages: readonly Envelope[],
    options: PublishOptions = {},
  ): Promise<void> {
    assertDestination(destination);
    assertEnvelopeList(messages);
    if (options.availableAt !== undefined && !Number.isFinite(options.availableAt)) {
      throw new InvalidArgumentError('availableAt', 'a time in ms since the epoch', options.availableAt);
    }
    if (messages.length === 0) return;
    const ids = messages.map((m) => m.id);
    if (this.#closed) throw new PublishError(destination, ids, new Error('broker closed'));
    const now = this.#o.clock.now();
    let confirmer: Confirmer;
    const groups = this.#route(destination, messages);
    const targets = new Map<string, string>();
    try {
      confirmer = await this.#connections.publishChannel();
      const bucket = delayBucket((options.availableAt ?? now) - now);
      for (const queue of groups.keys()) {
        await this.#publishTopology.queue(confirmer.channel, queue);
        targets.set(
          queue,
          bucket === 0 ? queue : await this.#publishTopology.delayQueue(confirmer.channel, queue, bucket),
        );
      }
    } catch (error) {
      throw new PublishError(destination, ids, error);
    }
    // Partitions go out together on one channel, each in its publish order (a channel keeps it),
    // and one wait covers every confirm: a wait per partition made per-key publishing slower.
    const failures = (
      await Promise.all(
        [...groups].map(async ([queue, group]) => {
          const target = targets.get(queue) ?? queue;
          const outgoing: Outgoing[] = group.map((envelope) => ({
            id: envelope.id,
            ...encode(envelope, now),
          }));
          const failed = await confirmer.publish(target, outgoing);
          if (failed.some((f) => f.unroutable === true)) {
            this.#publishTopology.forget(queue);
            this.#publishTopology.forget(target);
          }
          return failed;
        }),
      )
    ).flat();
    if (failures.length > 0) {
      throw new PublishError(
        destination,
        failures.map((f) => f.id),
        failures[0]?.error,
      );
    }
  }

  source(destination: string, options: SourceOptions = {}): RabbitMqSource {
    return this.#source(destination, options, undefined);
  }

  consumer(
    destination: string,
    handler: Handler,
    options: QueueConsumerOptions & SourceOptions = {},
  ): QueueConsumer {
    // What the runtime will hold at most, so the AMQP prefetch is set from it, not guessed from
    // the first claim: its concurrency (the runtime's default 1) plus its prefetch (this
    // source's default). Bad values are refused by the runtime below, before anything opens.
    const capacity = (options.concurrency ?? 1) + (options.prefetch ?? defaultRuntimePrefetch);
    const source = this.#source(destination, options, capacity);
    return new QueueConsumer(source, handler, { clock: this.#o.clock, ...options });
  }

  #source(destination: string, options: SourceOptions, capacity: number | undefined): RabbitMqSource {
    assertDestination(destination);
    if (options.group !== undefined) {
      throw new InvalidArgumentError(
        'group',
        'undefined: RabbitMQ queues have no consumer groups here',
        options.group,
      );
    }
    const deadLetterDestination = options.deadLetterDestination ?? `${destination}.dead-letter`;
    assertDestination(deadLetterDestination, 'deadLetterDestination');
    // leaseMs has no meaning here: RabbitMQ holds a message while its channel lives.
    return new RabbitMqSource(destination, {
      connection: this.#connections.consume,
      topology: this.#consumeTopology,
      clock: this.#o.clock,
      queueType: this.#o.queueType,
      deadLetterDestination,
      prefetch: this.#o.prefetch,
      capacity,
      reconnectBackoff: this.#o.reconnectBackoff,
      confirmTimeoutMs: this.#o.confirmTimeoutMs,
      onError: this.#o.onError,
      partitions: this.#o.partitions,
    });
  }

  /**
   * Moves dead letters back: get a batch, publish each (confirmed) to `to` or to the queue it
   * was dead-lettered from with a fresh attempt count, then ack the batch. A crash in between
   * duplicates, never loses. Messages with no known source and no `to` stay where they are.
   */
  async redrive(
    deadLetterDestination: string,
    options: { to?: string; limit?: number } = {},
  ): Promise<number> {
    assertDestination(deadLetterDestination, 'deadLetterDestination');
    if (options.to !== undefined) assertDestination(options.to, 'to');
    const limit = redriveLimit(options.limit);
    const connection = await this.#connections.publish.get();
    const confirmer = new Confirmer(
      await connection.createConfirmChannel(),
      this.#o.clock,
      this.#o.confirmTimeoutMs,
    );
    const context = {
      confirmer,
      topology: this.#publishTopology,
      clock: this.#o.clock,
      partitions: this.#o.partitions,
    };
    let moved = 0;
    try {
      for (const source of this.queuesOf(deadLetterDestination)) {
        if (moved >= limit) break;
        moved += await redriveQueue(context, source, options.to, limit - moved);
      }
    } finally {
      await confirmer.close();
    }
    return moved;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#connections.close();
  }

  /** The messages for each queue behind `destination`, in publish order. */
  #route(destination: string, messages: readonly Envelope[]): Map<string, Envelope[]> {
    const partitions = this.#o.partitions;
    if (partitions === undefined) return new Map([[destination, [...messages]]]);
    const groups = new Map<string, Envelope[]>();
    for (const envelope of messages) {
      const queue = partitionQueueName(destination, partitionOf(envelope, partitions));
      const group = groups.get(queue);
      if (group === undefined) groups.set(queue, [envelope]);
      else group.push(envelope);
    }
    return groups;
  }
}
