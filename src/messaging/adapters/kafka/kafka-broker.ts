import { randomUUID } from 'node:crypto';
import {
  Admin,
  compatibilityPartitioner,
  Consumer,
  Producer,
  type Message,
  type MessageToProduce,
} from '@platformatic/kafka';
import { InvalidArgumentError, KeelError } from '../../../errors/index.ts';
import { systemClock, type Clock } from '../../../time/index.ts';
import type { BrokerCapabilities, MessageBroker, PublishOptions, SourceOptions } from '../../broker.ts';
import type { Envelope } from '../../envelope.ts';
import type { Handler } from '../../handler.ts';
import { PublishError } from '../../publisher.ts';
import { QueueConsumer, type QueueConsumerOptions } from '../../queue-consumer.ts';
import { describeError } from '../postgres/pg-queue-source.ts';
import { forceClose, KafkaSource, type KafkaSourceContext } from './kafka-source.ts';
import { decodeRecord, encodeEnvelope, keelHeaders, type EncodedRecord } from './record-codec.ts';

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

export interface ReplayOptions {
  /** Where to start: the topic's first retained record, or the first record at or after a time. */
  from: 'earliest' | Date;
  /** Stops the replay between records; the promise rejects with the signal's reason. */
  signal?: AbortSignal;
}

/** Where a replayed record sits in its topic. */
export interface RecordPosition {
  readonly partition: number;
  readonly offset: bigint;
  readonly timestamp: Date;
}

interface Resolved {
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

const topicName = /^[a-zA-Z0-9._-]{1,249}$/;

function resolveOptions(options: KafkaBrokerOptions): Resolved {
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

/** The consumer group a source joins when it names none: one per destination. */
export function defaultGroup(destination: string): string {
  return `keel.${destination}`;
}

/**
 * Apache Kafka behind keel's `MessageBroker`, over `@platformatic/kafka`.
 *
 * - A destination is a topic, created on first use (`partitions`, `replicationFactor`).
 * - `publish` sends with acks=all from an idempotent producer, keyed by the envelope's key with
 *   the Java client's partitioner (murmur2), so keel and Java producers agree on a key's partition.
 * - A source is a member of a consumer group (default `keel.<destination>`); offsets are
 *   committed only after the handler's effects are, as the end of each partition's finished prefix.
 * - Retries wait inside the source (the offset stays uncommitted), keeping per-key order;
 *   dead letters go to the `<destination>.dead-letter` topic.
 */
export class KafkaBroker implements MessageBroker {
  readonly name = 'kafka';
  readonly capabilities: BrokerCapabilities = {
    ordering: 'per-key',
    replayable: true,
    consumerGroups: true,
    redeliversOnNack: true,
    delayedDelivery: true,
  };
  readonly #options: Resolved;
  readonly #topics = new Map<string, Promise<void>>();
  #admin: Admin | undefined;
  #producer: Producer<Buffer, Buffer, Buffer, Buffer> | undefined;
  #roundRobin = 0;
  #closed = false;

  constructor(options: KafkaBrokerOptions = {}) {
    this.#options = resolveOptions(options);
  }

  /** Topics this broker made sure exist (created or found), for cleanup by tests and tools. */
  ensuredTopics(): string[] {
    return [...this.#topics.keys()];
  }

  /** The bootstrap servers this broker talks to. */
  get brokers(): readonly string[] {
    return this.#options.brokers;
  }

  async publish(
    destination: string,
    messages: readonly Envelope[],
    options: PublishOptions = {},
  ): Promise<void> {
    this.#assertOpen();
    assertTopic('destination', destination);
    if (messages.length === 0) return;
    const extra: Record<string, string> =
      options.availableAt === undefined ? {} : { [keelHeaders.availableAt]: String(options.availableAt) };
    try {
      await this.#withTimeout(
        (async () => {
          await this.#ensureTopic(destination);
          await this.#send(
            destination,
            messages.map((m) => encodeEnvelope(m, extra)),
          );
        })(),
        `Kafka did not acknowledge within ${this.#options.publishTimeoutMs} ms`,
      );
    } catch (error) {
      throw new PublishError(
        destination,
        messages.map((m) => m.id),
        error,
      );
    }
  }

  source(destination: string, options: SourceOptions = {}): KafkaSource {
    this.#assertOpen();
    assertTopic('destination', destination);
    const deadLetterDestination = options.deadLetterDestination ?? `${destination}.dead-letter`;
    assertTopic('deadLetterDestination', deadLetterDestination);
    const sessionTimeoutMs = options.leaseMs ?? this.#options.sessionTimeoutMs;
    if (!Number.isInteger(sessionTimeoutMs) || sessionTimeoutMs < 1) {
      throw new InvalidArgumentError(
        'leaseMs',
        'an integer >= 1 (the group session timeout)',
        options.leaseMs,
      );
    }
    return new KafkaSource(destination, this.#context(), {
      group: options.group ?? defaultGroup(destination),
      deadLetterDestination,
      sessionTimeoutMs,
      heartbeatIntervalMs: Math.max(100, Math.min(1000, Math.floor(sessionTimeoutMs / 3))),
      maxBuffered: this.#options.maxBuffered,
      maxWaitMs: this.#options.maxWaitMs,
      awaitCommit: this.#options.awaitCommit,
    });
  }

  consumer(
    destination: string,
    handler: Handler,
    options: QueueConsumerOptions & SourceOptions = {},
  ): QueueConsumer {
    return new QueueConsumer(this.source(destination, options), handler, options);
  }

  /**
   * Copies dead letters back to where they came from (or `to`), without their dead-letter
   * headers and with a fresh attempt count, then commits them in the dead-letter topic's group
   * (default `keel.<deadLetterDestination>`, the group a source over it joins): from that
   * group's committed offset up to the end of the topic as it was when redrive started.
   * A record is committed only after its copy is acknowledged, so a crash repeats, never loses.
   */
  async redrive(
    deadLetterDestination: string,
    options: { to?: string; limit?: number; group?: string } = {},
  ): Promise<number> {
    this.#assertOpen();
    assertTopic('deadLetterDestination', deadLetterDestination);
    if (options.to !== undefined) assertTopic('to', options.to);
    const limit = options.limit ?? Number.POSITIVE_INFINITY;
    if (limit !== Number.POSITIVE_INFINITY && (!Number.isInteger(limit) || limit < 0)) {
      throw new InvalidArgumentError('limit', 'an integer >= 0', options.limit);
    }
    if (limit === 0) return 0;
    await this.#ensureTopic(deadLetterDestination);
    let moved = 0;
    await this.#readToEnd(
      deadLetterDestination,
      { group: options.group ?? defaultGroup(deadLetterDestination), mode: 'committed' },
      async (messages) => {
        const take = messages.slice(0, Math.min(messages.length, limit - moved));
        const byTarget = new Map<string, EncodedRecord[]>();
        for (const message of take) {
          const { envelope } = decodeRecord(
            message.key,
            message.value,
            message.headers,
            message.timestamp,
            `kafka-${message.topic}-${message.partition}-${message.offset}`,
          );
          const target = options.to ?? envelope.headers['x-dead-letter-source'];
          if (target === undefined || !topicName.test(target)) {
            throw new KeelError(
              'KEEL_INVALID_ARGUMENT',
              `dead letter ${envelope.id} in ${deadLetterDestination} names no valid source; pass \`to\``,
            );
          }
          const headers = Object.fromEntries(
            Object.entries(envelope.headers).filter(([name]) => !name.startsWith('x-dead-letter-')),
          );
          const list = byTarget.get(target) ?? [];
          list.push(encodeEnvelope({ ...envelope, headers }));
          byTarget.set(target, list);
        }
        for (const [target, records] of byTarget) {
          await this.#ensureTopic(target);
          await this.#withTimeout(
            this.#send(target, records),
            `Kafka did not acknowledge within ${this.#options.publishTimeoutMs} ms`,
          );
        }
        // The last message of each partition covers the ones before it.
        const last = new Map<number, Message<Buffer, Buffer, Buffer, Buffer>>();
        for (const message of take) last.set(message.partition, message);
        for (const message of last.values()) await message.commit();
        moved += take.length;
        return moved < limit;
      },
    );
    return moved;
  }

  /**
   * Reads `destination` from the start (`'earliest'`) or from a time up to its end as it was when
   * the replay began, calling `handler` for each record in order per partition, one at a time.
   * Joins no shared group and commits nothing: replays never disturb consumers. Resolves with
   * the number of records read.
   */
  async replay(
    destination: string,
    options: ReplayOptions,
    handler: (envelope: Envelope, position: RecordPosition) => Promise<void> | void,
  ): Promise<number> {
    this.#assertOpen();
    assertTopic('destination', destination);
    if (
      options.from !== 'earliest' &&
      !(options.from instanceof Date && Number.isFinite(options.from.getTime()))
    ) {
      throw new InvalidArgumentError('from', "'earliest' or a valid Date", options.from);
    }
    await this.#ensureTopic(destination);
    let count = 0;
    await this.#readToEnd(
      destination,
      { group: `keel.replay.${randomUUID()}`, mode: options.from },
      async (messages) => {
        for (const message of messages) {
          options.signal?.throwIfAborted();
          const { envelope } = decodeRecord(
            message.key,
            message.value,
            message.headers,
            message.timestamp,
            `kafka-${message.topic}-${message.partition}-${message.offset}`,
          );
          await handler(envelope, {
            partition: message.partition,
            offset: message.offset,
            timestamp: new Date(Number(message.timestamp)),
          });
          count++;
        }
        return true;
      },
      options.signal,
    );
    return count;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await Promise.all([this.#producer?.close(), this.#admin?.close()]);
  }

  /**
   * Reads a topic from a start position to the end offsets it had at the start, in batches, with a
   * consumer of its own in `group`; `onBatch` returns false to stop early.
   */
  async #readToEnd(
    topic: string,
    start: { group: string; mode: 'committed' | 'earliest' | Date },
    onBatch: (messages: Message<Buffer, Buffer, Buffer, Buffer>[]) => Promise<boolean>,
    signal?: AbortSignal,
  ): Promise<void> {
    const consumer = new Consumer<Buffer, Buffer, Buffer, Buffer>({
      clientId: this.#options.clientId,
      bootstrapBrokers: this.#options.brokers,
      groupId: start.group,
      autocommit: false,
      maxWaitTime: this.#options.maxWaitMs,
      sessionTimeout: 10_000,
      heartbeatInterval: 1000,
    });
    try {
      const ends = (await consumer.listOffsets({ topics: [topic] })).get(topic) ?? [];
      let offsets: { topic: string; partition: number; offset: bigint }[] | undefined;
      if (start.mode instanceof Date || start.mode === 'earliest') {
        const at = start.mode === 'earliest' ? -2n : BigInt(start.mode.getTime());
        const begins = (await consumer.listOffsets({ topics: [topic], timestamp: at })).get(topic) ?? [];
        // No record at or after the time: that partition starts at its end.
        offsets = begins.map((offset, partition) => ({
          topic,
          partition,
          offset: offset < 0n ? ends[partition]! : offset,
        }));
      }
      const stream = await consumer.consume({
        topics: [topic],
        autocommit: false,
        ...(offsets === undefined
          ? { mode: 'committed' as const, fallbackMode: 'earliest' as const }
          : { mode: 'manual' as const, offsets }),
      });
      try {
        // Partitions still to read, and where each ends.
        const remaining = new Map<number, bigint>();
        const firsts = offsets ?? [];
        ends.forEach((end, partition) => {
          const from = firsts.find((o) => o.partition === partition)?.offset ?? -1n;
          if (end > 0n && from < end) remaining.set(partition, end);
        });
        if (offsets === undefined) {
          const committed =
            (
              await consumer.listCommittedOffsets({ topics: [{ topic, partitions: [...remaining.keys()] }] })
            ).get(topic) ?? [];
          committed.forEach((offset, partition) => {
            if (offset >= 0n && offset >= (remaining.get(partition) ?? 0n)) remaining.delete(partition);
          });
        }
        if (remaining.size === 0) return;
        const batch: Message<Buffer, Buffer, Buffer, Buffer>[] = [];
        for await (const message of stream as AsyncIterable<Message<Buffer, Buffer, Buffer, Buffer>>) {
          signal?.throwIfAborted();
          const end = remaining.get(message.partition);
          if (end === undefined || message.offset >= end) continue;
          batch.push(message);
          if (message.offset >= end - 1n) remaining.delete(message.partition);
          if (batch.length >= 500 || remaining.size === 0 || stream.readableLength === 0) {
            const more = await onBatch(batch.splice(0));
            if (!more || remaining.size === 0) break;
          }
        }
      } finally {
        await stream.close().catch(() => undefined);
      }
    } finally {
      await consumer.close().catch(() => forceClose(consumer));
    }
  }

  #context(): KafkaSourceContext {
    return {
      clock: this.#options.clock,
      bootstrapBrokers: this.#options.brokers,
      clientId: this.#options.clientId,
      ensureTopic: (topic) => this.#ensureTopic(topic),
      send: (topic, records) =>
        this.#withTimeout(
          this.#send(topic, records),
          `Kafka did not acknowledge within ${this.#options.publishTimeoutMs} ms`,
        ),
    };
  }

  /** Creates a topic once; concurrent callers share the attempt, a failed one is tried again. */
  #ensureTopic(topic: string): Promise<void> {
    let created = this.#topics.get(topic);
    if (created === undefined) {
      created = this.#createTopic(topic);
      this.#topics.set(topic, created);
      created.catch(() => this.#topics.delete(topic));
    }
    return created;
  }

  async #createTopic(topic: string): Promise<void> {
    const admin = (this.#admin ??= new Admin({
      clientId: this.#options.clientId,
      bootstrapBrokers: this.#options.brokers,
    }));
    if ((await admin.listTopics()).includes(topic)) return;
    try {
      await admin.createTopics({
        topics: [topic],
        partitions: this.#options.partitions,
        replicas: this.#options.replicationFactor,
      });
    } catch (error) {
      // Another process created it first: as good as our own.
      if ((await admin.listTopics().catch((): string[] => [])).includes(topic)) return;
      throw new KeelError(
        'KEEL_BROKER_UNAVAILABLE',
        `could not create Kafka topic ${topic}: ${describeError(error)}`,
        {
          cause: error,
        },
      );
    }
  }

  async #send(topic: string, records: EncodedRecord[]): Promise<void> {
    const producer = (this.#producer ??= new Producer<Buffer, Buffer, Buffer, Buffer>({
      clientId: this.#options.clientId,
      bootstrapBrokers: this.#options.brokers,
      idempotent: true,
      acks: -1,
      // Keyed records: the Java client's partition, so per-key order holds across producers.
      // Unkeyed ones spread round-robin (the compatible partitioner would put them all on 0).
      partitioner: (message, key) =>
        key === undefined ? this.#roundRobin++ & 0x7fffffff : compatibilityPartitioner(message, key),
    }));
    const messages: MessageToProduce<Buffer, Buffer, Buffer, Buffer>[] = records.map((r) => ({
      topic,
      ...(r.key === undefined ? {} : { key: r.key }),
      value: r.value,
      headers: r.headers,
    }));
    await producer.send({ messages });
  }

  #withTimeout<T>(work: Promise<T>, message: string): Promise<T> {
    const clock = this.#options.clock;
    let timer: ReturnType<Clock['setTimeout']> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = clock.setTimeout(
        () => reject(new KeelError('KEEL_BROKER_UNAVAILABLE', message)),
        this.#options.publishTimeoutMs,
      );
    });
    // The work goes on after a timeout; its late failure must not surface as an unhandled rejection.
    work.catch(() => undefined);
    return Promise.race([work, timeout]).finally(() => {
      if (timer !== undefined) clock.clearTimeout(timer);
    });
  }

  #assertOpen(): void {
    if (this.#closed) throw new KeelError('KEEL_BROKER_UNAVAILABLE', 'the Kafka broker client is closed');
  }
}

function assertTopic(field: string, name: string): void {
  if (typeof name !== 'string' || !topicName.test(name) || name === '.' || name === '..') {
    throw new InvalidArgumentError(field, 'a Kafka topic name: 1-249 of [a-zA-Z0-9._-]', name);
  }
}
