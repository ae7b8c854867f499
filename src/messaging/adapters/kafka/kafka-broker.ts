import { randomUUID } from 'node:crypto';
import {
  Admin,
  compatibilityPartitioner,
  Producer,
  type Message,
  type MessageToProduce,
} from '@platformatic/kafka';
import { InvalidArgumentError, KeelError } from '../../../errors/index.ts';
import type { Clock } from '../../../time/index.ts';
import type { BrokerCapabilities, MessageBroker, PublishOptions, SourceOptions } from '../../broker.ts';
import { redriveLimit } from '../../broker-arguments.ts';
import type { Envelope } from '../../envelope.ts';
import type { Handler } from '../../handler.ts';
import { PublishError } from '../../publisher.ts';
import { QueueConsumer, type QueueConsumerOptions } from '../../queue-consumer.ts';
import { describeError } from '../../describe-error.ts';
import {
  assertTopic,
  resolveOptions,
  topicName,
  type KafkaBrokerOptions,
  type Resolved,
} from './kafka-options.ts';
import { KafkaSource, type KafkaSourceContext } from './kafka-source.ts';
import { readToEnd, type ReaderClient } from './topic-reader.ts';
import { decodeMessage, encodeEnvelope, keelHeaders, type EncodedRecord } from './record-codec.ts';

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
    const limit = redriveLimit(options.limit);
    if (limit === 0) return 0;
    await this.#ensureTopic(deadLetterDestination);
    let moved = 0;
    await readToEnd(
      this.#client(),
      deadLetterDestination,
      { group: options.group ?? defaultGroup(deadLetterDestination), mode: 'committed' },
      async (messages) => {
        const take = messages.slice(0, Math.min(messages.length, limit - moved));
        const byTarget = new Map<string, EncodedRecord[]>();
        for (const message of take) {
          const { envelope } = decodeMessage(message);
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
    await readToEnd(
      this.#client(),
      destination,
      { group: `keel.replay.${randomUUID()}`, mode: options.from },
      async (messages) => {
        for (const message of messages) {
          options.signal?.throwIfAborted();
          const { envelope } = decodeMessage(message);
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

  #client(): ReaderClient {
    return {
      clientId: this.#options.clientId,
      brokers: this.#options.brokers,
      maxWaitMs: this.#options.maxWaitMs,
    };
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
    let listed = false;
    try {
      if ((await admin.listTopics()).includes(topic)) return;
      listed = true;
      await admin.createTopics({
        topics: [topic],
        partitions: this.#options.partitions,
        replicas: this.#options.replicationFactor,
      });
    } catch (error) {
      // Another process created it first: as good as our own.
      if (listed && (await admin.listTopics().catch((): string[] => [])).includes(topic)) return;
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
      // A produce to a topic created a moment ago is refused now and then (its partitions have
      // leaders, not yet logs), and the client's default is three retries 1 s apart: one first
      // publish in three took over a second. Short, doubling waits instead: 50 ms, 100, … 1 s,
      // about 4.5 s in all, inside publishTimeoutMs.
      retries: 8,
      retryDelay: (_client, _operation, attempt) => Math.min(1000, 25 * 2 ** attempt),
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
        () => reject(new KeelError('KEEL_TIMEOUT', message)),
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
    if (this.#closed) throw new KeelError('KEEL_SERVICE_STATE', 'the Kafka broker is closed');
  }
}
