import type { GetMessage } from 'amqplib';
import { InvalidArgumentError } from '../../../errors/index.ts';
import { exponentialBackoff, systemClock, type Backoff, type Clock } from '../../../time/index.ts';
import type { BrokerCapabilities, MessageBroker, PublishOptions, SourceOptions } from '../../broker.ts';
import type { Envelope } from '../../envelope.ts';
import type { Handler } from '../../handler.ts';
import { PublishError } from '../../publisher.ts';
import { QueueConsumer, type QueueConsumerOptions } from '../../queue-consumer.ts';
import { decode, encode } from './codec.ts';
import { Confirmer, type Outgoing } from './confirm-channel.ts';
import { LazyConnection } from './connection.ts';
import { RabbitMqSource } from './rabbitmq-source.ts';
import { assertDestination, delayBucket, Topology, type QueueType } from './topology.ts';

export interface RabbitMqBrokerOptions {
  /** AMQP URL. Default `KEEL_RABBITMQ_URL`, else `amqp://guest:guest@127.0.0.1:5672`. */
  url?: string;
  /**
   * `quorum` (default): replicated, fsynced before confirming, counts deliveries exactly, and
   * measured faster here than classic. `classic`: for brokers without quorum queues; attempts
   * after a crash are approximate (see docs/rabbitmq.md). Fixed per queue name: RabbitMQ refuses
   * to redeclare a queue with another type.
   */
  queueType?: QueueType;
  /** Unacknowledged messages per consumer. Default: the consumer's concurrency. */
  prefetch?: number;
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
  /** Waits between a consumer's reconnect attempts. Default 100 ms doubling to 10 s, full jitter. */
  reconnectBackoff?: Backoff;
  /** Timestamps (AMQP timestamp, failure times) and reconnect timers. Default the system clock. */
  clock?: Clock;
  /** Shown as the connection name in RabbitMQ. Default `keel`. */
  name?: string;
  /** Errors that nobody awaits (a reconnect that failed, an undecodable message not parked). */
  onError?: (error: unknown) => void;
}

interface Resolved {
  url: string;
  queueType: QueueType;
  prefetch: number | undefined;
  connectTimeoutMs: number;
  confirmTimeoutMs: number;
  heartbeatSeconds: number;
  reconnectBackoff: Backoff;
  clock: Clock;
  name: string;
  onError: (error: unknown) => void;
}

function resolveOptions(options: RabbitMqBrokerOptions): Resolved {
  const url = options.url ?? process.env['KEEL_RABBITMQ_URL'] ?? 'amqp://guest:guest@127.0.0.1:5672';
  if (typeof url !== 'string' || !/^amqps?:\/\//.test(url)) {
    throw new InvalidArgumentError('url', 'an amqp:// or amqps:// URL', url);
  }
  const queueType = options.queueType ?? 'quorum';
  if (queueType !== 'quorum' && queueType !== 'classic') {
    throw new InvalidArgumentError('queueType', "'quorum' or 'classic'", queueType);
  }
  const prefetch = options.prefetch;
  if (prefetch !== undefined && (!Number.isInteger(prefetch) || prefetch < 1 || prefetch > 65_535)) {
    throw new InvalidArgumentError('prefetch', 'an integer from 1 to 65535', prefetch);
  }
  const connectTimeoutMs = options.connectTimeoutMs ?? 5000;
  if (!Number.isFinite(connectTimeoutMs) || connectTimeoutMs <= 0) {
    throw new InvalidArgumentError('connectTimeoutMs', 'a number > 0', connectTimeoutMs);
  }
  const confirmTimeoutMs = options.confirmTimeoutMs ?? 30_000;
  if (!Number.isFinite(confirmTimeoutMs) || confirmTimeoutMs <= 0) {
    throw new InvalidArgumentError('confirmTimeoutMs', 'a number > 0', confirmTimeoutMs);
  }
  const heartbeatSeconds = options.heartbeatSeconds ?? 10;
  if (!Number.isInteger(heartbeatSeconds) || heartbeatSeconds < 0) {
    throw new InvalidArgumentError('heartbeatSeconds', 'an integer >= 0', heartbeatSeconds);
  }
  return {
    url,
    queueType,
    prefetch,
    connectTimeoutMs,
    confirmTimeoutMs,
    heartbeatSeconds,
    reconnectBackoff: options.reconnectBackoff ?? exponentialBackoff({ initialMs: 100, maxMs: 10_000 }),
    clock: options.clock ?? systemClock,
    name: options.name ?? 'keel',
    onError: options.onError ?? (() => {}),
  };
}

/** Every x-dead-letter-* header keel sets, stripped again on redrive. */
const deadLetterHeader = /^x-dead-letter-/;

/**
 * RabbitMQ behind keel's `MessageBroker`: durable queues (quorum by default), persistent
 * messages, publisher confirms, prefetch, retries and delayed delivery through per-delay TTL
 * queues that dead-letter back, a `<destination>.dead-letter` queue, and redrive.
 *
 * Publishing uses one connection and consumers another, so the broker's flow control on a busy
 * publisher never stalls acks. A publish while RabbitMQ is unreachable rejects with
 * `PublishError`; consumers reconnect with backoff and consume again.
 */
export class RabbitMqBroker implements MessageBroker {
  readonly name = 'rabbitmq';
  readonly capabilities: BrokerCapabilities = {
    ordering: 'none',
    replayable: false,
    consumerGroups: false,
    redeliversOnNack: false,
    delayedDelivery: true,
  };
  readonly #o: Resolved;
  readonly #publishConnection: LazyConnection;
  readonly #consumeConnection: LazyConnection;
  readonly #publishTopology: Topology;
  readonly #consumeTopology: Topology;
  #publisher: Promise<Confirmer> | undefined;
  #closed = false;

  constructor(options: RabbitMqBrokerOptions = {}) {
    this.#o = resolveOptions(options);
    const settings = {
      url: this.#o.url,
      connectTimeoutMs: this.#o.connectTimeoutMs,
      heartbeatSeconds: this.#o.heartbeatSeconds,
    };
    this.#publishConnection = new LazyConnection({ ...settings, name: `${this.#o.name} publish` });
    this.#consumeConnection = new LazyConnection({ ...settings, name: `${this.#o.name} consume` });
    this.#publishTopology = new Topology(this.#o.queueType, this.#o.clock);
    this.#consumeTopology = new Topology(this.#o.queueType, this.#o.clock);
    this.#publishConnection.onLost(() => {
      this.#publisher = undefined;
      this.#publishTopology.reset();
    });
    this.#consumeConnection.onLost(() => this.#consumeTopology.reset());
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
    const list: unknown = messages;
    if (!Array.isArray(list)) {
      throw new InvalidArgumentError('messages', 'an array of envelopes', messages);
    }
    if (options.availableAt !== undefined && !Number.isFinite(options.availableAt)) {
      throw new InvalidArgumentError('availableAt', 'a time in ms since the epoch', options.availableAt);
    }
    if (messages.length === 0) return;
    const ids = messages.map((m) => m.id);
    if (this.#closed) throw new PublishError(destination, ids, new Error('broker closed'));
    const now = this.#o.clock.now();
    let confirmer: Confirmer;
    let queue: string;
    try {
      confirmer = await this.#publishChannel();
      await this.#publishTopology.queue(confirmer.channel, destination);
      const bucket = delayBucket((options.availableAt ?? now) - now);
      queue =
        bucket === 0
          ? destination
          : await this.#publishTopology.delayQueue(confirmer.channel, destination, bucket);
    } catch (error) {
      throw new PublishError(destination, ids, error);
    }
    const outgoing: Outgoing[] = messages.map((envelope) => ({ id: envelope.id, ...encode(envelope, now) }));
    const failures = await confirmer.publish(queue, outgoing);
    if (failures.some((f) => f.unroutable === true)) {
      this.#publishTopology.forget(destination);
      this.#publishTopology.forget(queue);
    }
    if (failures.length > 0) {
      throw new PublishError(
        destination,
        failures.map((f) => f.id),
        failures[0]?.error,
      );
    }
  }

  source(destination: string, options: SourceOptions = {}): RabbitMqSource {
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
      connection: this.#consumeConnection,
      topology: this.#consumeTopology,
      clock: this.#o.clock,
      queueType: this.#o.queueType,
      deadLetterDestination,
      prefetch: this.#o.prefetch,
      reconnectBackoff: this.#o.reconnectBackoff,
      confirmTimeoutMs: this.#o.confirmTimeoutMs,
      onError: this.#o.onError,
    });
  }

  consumer(
    destination: string,
    handler: Handler,
    options: QueueConsumerOptions & SourceOptions = {},
  ): QueueConsumer {
    const source = this.source(destination, options);
    return new QueueConsumer(source, handler, { clock: this.#o.clock, ...options });
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
    const limit = options.limit ?? Infinity;
    if (limit !== Infinity && (!Number.isInteger(limit) || limit < 0)) {
      throw new InvalidArgumentError('limit', 'an integer >= 0', limit);
    }
    const connection = await this.#publishConnection.get();
    const confirmer = new Confirmer(
      await connection.createConfirmChannel(),
      this.#o.clock,
      this.#o.confirmTimeoutMs,
    );
    const topology = this.#publishTopology;
    let moved = 0;
    try {
      await topology.queue(confirmer.channel, deadLetterDestination);
      while (moved < limit) {
        const batch: GetMessage[] = [];
        while (batch.length < Math.min(500, limit - moved)) {
          const message = await confirmer.channel.get(deadLetterDestination, { noAck: false });
          if (message === false) break;
          batch.push(message);
        }
        if (batch.length === 0) break;
        const byTarget = new Map<string, { message: GetMessage; outgoing: Outgoing }[]>();
        for (const message of batch) {
          let target: string | undefined = options.to;
          let outgoing: Outgoing | undefined;
          try {
            const { envelope } = decode(message);
            target ??= envelope.headers['x-dead-letter-source'];
            const headers = Object.fromEntries(
              Object.entries(envelope.headers).filter(([name]) => !deadLetterHeader.test(name)),
            );
            outgoing = { id: envelope.id, ...encode({ ...envelope, headers }, this.#o.clock.now()) };
          } catch {
            outgoing = undefined;
          }
          // Not ours to move: it stays unacked until the channel closes, then returns to the queue.
          if (outgoing === undefined || target === undefined) continue;
          const group = byTarget.get(target) ?? [];
          group.push({ message, outgoing });
          byTarget.set(target, group);
        }
        // Unacked on this channel, the unmovable ones are not handed out again: go on to the next batch.
        if (byTarget.size === 0) continue;
        for (const [target, group] of byTarget) {
          await topology.queue(confirmer.channel, target);
          const failures = await confirmer.publish(
            target,
            group.map((g) => g.outgoing),
          );
          const failed = new Set(failures.map((f) => f.id));
          for (const { message, outgoing } of group) {
            if (failed.has(outgoing.id)) continue;
            confirmer.channel.ack(message);
            moved++;
          }
          if (failures.length > 0) {
            throw new PublishError(
              target,
              failures.map((f) => f.id),
              failures[0]?.error,
            );
          }
        }
      }
    } finally {
      await confirmer.close();
    }
    return moved;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const publisher = this.#publisher;
    this.#publisher = undefined;
    await (await publisher?.catch(() => undefined))?.close();
    await this.#publishConnection.close();
    await this.#consumeConnection.close();
  }

  #publishChannel(): Promise<Confirmer> {
    const existing = this.#publisher;
    if (existing !== undefined) return existing;
    const opening = (async () => {
      const connection = await this.#publishConnection.get();
      const channel = await connection.createConfirmChannel();
      const confirmer = new Confirmer(channel, this.#o.clock, this.#o.confirmTimeoutMs);
      channel.on('close', () => {
        if (this.#publisher === opening) this.#publisher = undefined;
      });
      return confirmer;
    })();
    void opening.catch(() => {
      if (this.#publisher === opening) this.#publisher = undefined;
    });
    this.#publisher = opening;
    return opening;
  }
}
