import { InvalidArgumentError } from '../../../errors/index.ts';
import type { Backoff, Clock } from '../../../time/index.ts';
import type { BrokerCapabilities, MessageBroker, PublishOptions, SourceOptions } from '../../broker.ts';
import { assertEnvelopeList, redriveLimit } from '../../broker-arguments.ts';
import type { Envelope } from '../../envelope.ts';
import type { Handler } from '../../handler.ts';
import { PublishError } from '../../publisher.ts';
import { QueueConsumer, type QueueConsumerOptions } from '../../queue-consumer.ts';
import { encode } from './codec.ts';
import { BrokerConnections } from './broker-connections.ts';
import type { Confirmer, Outgoing } from './confirm-channel.ts';
import { resolveConnectionOptions, type RabbitMqConnectionOptions } from './connection-options.ts';
import { RabbitMqStreamSource, type StreamPosition } from './rabbitmq-stream-source.ts';
import { StreamTopology, type StreamRetention } from './stream-topology.ts';
import { assertDestination } from './topology.ts';

export interface RabbitMqStreamBrokerOptions extends RabbitMqConnectionOptions {
  /** Unacknowledged messages a group's reader gets ahead (`basic.qos`; streams need one). Default 100. */
  prefetch?: number;
  /** Where a group without a committed offset starts. Default `'first'`: the whole stream. */
  startFrom?: StreamPosition;
  /** How often a standby instance of a group tries to take it over, ms. Default 1 000. */
  standbyRetryMs?: number;
  /** Retention of the streams this broker declares. Default: keep everything. */
  retention?: StreamRetention;
}

/** `source()` options of a stream broker: a group, and where to (re)start reading. */
export interface StreamSourceOptions extends SourceOptions {
  /**
   * Start here instead of the group's committed offset: a replay from `'first'`, an offset, or
   * a time (`Date`, whole seconds). The group commits from there on as usual.
   */
  from?: StreamPosition;
}

const groupName = /^[A-Za-z0-9_:-]{1,100}$/;

function assertPosition(value: unknown, field: string): asserts value is StreamPosition {
  const ok =
    value === 'first' ||
    value === 'last' ||
    value === 'next' ||
    (typeof value === 'number' && Number.isInteger(value) && value >= 0) ||
    (value instanceof Date && Number.isFinite(value.getTime()));
  if (!ok) throw new InvalidArgumentError(field, "'first', 'last', 'next', an offset >= 0 or a Date", value);
}

function positive(value: number, field: string, integer = false): number {
  if (!Number.isFinite(value) || value <= 0 || (integer && !Number.isInteger(value))) {
    throw new InvalidArgumentError(field, integer ? 'an integer > 0' : 'a number > 0', value);
  }
  return value;
}

/** The redrive's own group on a dead-letter stream: what it moved once it does not move again. */
const redriveGroup = 'keel-redrive';
/** A redrive takes a dead-letter stream for read to its end after this long without a message. */
const redriveIdleMs = 1500;

/**
 * RabbitMQ streams (`x-queue-type: stream`, RabbitMQ 3.9+) behind keel's `MessageBroker`, over
 * AMQP 0.9.1: an append-only log that keeps its messages, read by consumer groups that each keep
 * their own committed offset (in a small queue per group, see `OffsetStore`), replay from the
 * start, an offset or a time, and a dead-letter stream. See docs/rabbitmq.md, "Streams".
 */
export class RabbitMqStreamBroker implements MessageBroker {
  readonly name = 'rabbitmq-streams';
  readonly capabilities: BrokerCapabilities = {
    // Concurrency and in-place retries reorder within a group.
    ordering: 'none',
    replayable: true,
    consumerGroups: true,
    // A failed message comes back because the reader holds it and hands it out again.
    redeliversOnNack: false,
    // A stream has no TTL or dead-lettering to delay with.
    delayedDelivery: false,
  };
  readonly #prefetch: number;
  readonly #startFrom: StreamPosition;
  readonly #standbyRetryMs: number;
  readonly #confirmTimeoutMs: number;
  readonly #reconnectBackoff: Backoff;
  readonly #clock: Clock;
  readonly #onError: (error: unknown) => void;
  readonly #connections: BrokerConnections;
  readonly #publishTopology: StreamTopology;
  readonly #consumeTopology: StreamTopology;
  #closed = false;

  constructor(options: RabbitMqStreamBrokerOptions = {}) {
    const connection = resolveConnectionOptions(options);
    this.#prefetch = positive(options.prefetch ?? 100, 'prefetch', true);
    if (this.#prefetch > 65_535)
      throw new InvalidArgumentError('prefetch', 'an integer from 1 to 65535', this.#prefetch);
    this.#startFrom = options.startFrom ?? 'first';
    assertPosition(this.#startFrom, 'startFrom');
    this.#standbyRetryMs = positive(options.standbyRetryMs ?? 1000, 'standbyRetryMs');
    this.#confirmTimeoutMs = connection.confirmTimeoutMs;
    this.#reconnectBackoff = connection.reconnectBackoff;
    this.#clock = connection.clock;
    this.#onError = connection.onError;
    this.#publishTopology = new StreamTopology(options.retention);
    this.#consumeTopology = new StreamTopology(options.retention);
    this.#connections = new BrokerConnections({
      url: connection.url,
      connectTimeoutMs: connection.connectTimeoutMs,
      heartbeatSeconds: connection.heartbeatSeconds,
      name: connection.name,
      clock: this.#clock,
      confirmTimeoutMs: this.#confirmTimeoutMs,
      publishTopology: this.#publishTopology,
      consumeTopology: this.#consumeTopology,
    });
  }

  /** Every queue this broker declared: streams, dead-letter streams, group lock and offset queues. */
  declaredQueues(): string[] {
    return [...new Set([...this.#publishTopology.names, ...this.#consumeTopology.names])];
  }

  /** Appends to the stream; resolves when RabbitMQ confirmed every message. */
  async publish(
    destination: string,
    messages: readonly Envelope[],
    options: PublishOptions = {},
  ): Promise<void> {
    assertDestination(destination);
    assertEnvelopeList(messages);
    if (options.availableAt !== undefined) {
      throw new InvalidArgumentError(
        'availableAt',
        'undefined: streams have no delayed delivery',
        options.availableAt,
      );
    }
    if (messages.length === 0) return;
    const ids = messages.map((m) => m.id);
    if (this.#closed) throw new PublishError(destination, ids, new Error('broker closed'));
    let confirmer: Confirmer;
    try {
      confirmer = await this.#connections.publishChannel();
      await this.#publishTopology.stream(confirmer.channel, destination);
    } catch (error) {
      throw new PublishError(destination, ids, error);
    }
    const now = this.#clock.now();
    const outgoing: Outgoing[] = messages.map((envelope) => ({ id: envelope.id, ...encode(envelope, now) }));
    const failures = await confirmer.publish(destination, outgoing);
    if (failures.some((f) => f.unroutable === true)) this.#publishTopology.reset();
    if (failures.length > 0) {
      throw new PublishError(
        destination,
        failures.map((f) => f.id),
        failures[0]?.error,
      );
    }
  }

  /**
   * A reader for `group` (default `default`): one instance of a group reads at a time, the others
   * stand by. `leaseMs` has no meaning here (the channel holds the group).
   */
  source(destination: string, options: StreamSourceOptions = {}): RabbitMqStreamSource {
    assertDestination(destination);
    const group = options.group ?? 'default';
    if (typeof group !== 'string' || !groupName.test(group)) {
      throw new InvalidArgumentError('group', 'a name of [A-Za-z0-9_:-], 1-100 chars', group);
    }
    const deadLetterDestination = options.deadLetterDestination ?? `${destination}.dead-letter`;
    assertDestination(deadLetterDestination, 'deadLetterDestination');
    if (options.from !== undefined) assertPosition(options.from, 'from');
    return new RabbitMqStreamSource(destination, {
      connection: this.#connections.consume,
      topology: this.#consumeTopology,
      clock: this.#clock,
      group,
      deadLetterDestination,
      prefetch: this.#prefetch,
      from: options.from,
      startFrom: this.#startFrom,
      standbyRetryMs: this.#standbyRetryMs,
      reconnectBackoff: this.#reconnectBackoff,
      confirmTimeoutMs: this.#confirmTimeoutMs,
      onError: this.#onError,
    });
  }

  consumer(
    destination: string,
    handler: Handler,
    options: QueueConsumerOptions & StreamSourceOptions = {},
  ): QueueConsumer {
    const source = this.source(destination, options);
    return new QueueConsumer(source, handler, { clock: this.#clock, ...options });
  }

  /**
   * Appends dead letters again to `to` or to the stream each came from, with the
   * `x-dead-letter-*` headers removed and a fresh attempt count. A stream cannot delete: the
   * redrive reads the dead-letter stream as its own group (`keel-redrive`) and commits how far
   * it got, so a letter is moved once (twice if a crash comes between the append and the commit).
   */
  async redrive(
    deadLetterDestination: string,
    options: { to?: string; limit?: number } = {},
  ): Promise<number> {
    assertDestination(deadLetterDestination, 'deadLetterDestination');
    if (options.to !== undefined) assertDestination(options.to, 'to');
    const limit = redriveLimit(options.limit);
    if (limit === 0) return 0;
    const reader = this.source(deadLetterDestination, {
      group: redriveGroup,
      deadLetterDestination: `${deadLetterDestination}.unmovable`,
    });
    let arrived: () => void = () => {};
    await reader.open(() => arrived());
    let moved = 0;
    try {
      while (moved < limit) {
        let batch = await reader.claim(Math.min(500, limit - moved));
        if (batch.length === 0) {
          // Nothing more arrives within the idle time: the end of the dead-letter stream.
          const woke = await new Promise<boolean>((resolve) => {
            const timer = this.#clock.setTimeout(() => resolve(false), redriveIdleMs);
            arrived = () => {
              this.#clock.clearTimeout(timer);
              resolve(true);
            };
          });
          arrived = () => {};
          if (!woke) break;
          batch = await reader.claim(Math.min(500, limit - moved));
          if (batch.length === 0) continue;
        }
        const movable = batch.filter(
          (d) => (options.to ?? d.envelope.headers['x-dead-letter-source']) !== undefined,
        );
        const byTarget = new Map<string, Envelope[]>();
        for (const delivery of movable) {
          const target = (options.to ?? delivery.envelope.headers['x-dead-letter-source'])!;
          const headers = Object.fromEntries(
            Object.entries(delivery.envelope.headers).filter(([name]) => !name.startsWith('x-dead-letter-')),
          );
          byTarget.set(target, [...(byTarget.get(target) ?? []), { ...delivery.envelope, headers }]);
        }
        for (const [target, envelopes] of byTarget) await this.publish(target, envelopes);
        // Letters with no known source and no `to` are passed over (they stay in the stream).
        await reader.ack(batch);
        moved += movable.length;
      }
    } finally {
      await reader.close();
    }
    return moved;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#connections.close();
  }
}
