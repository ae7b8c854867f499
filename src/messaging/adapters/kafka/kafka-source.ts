import type { MessagesStream } from '@platformatic/kafka';
import { KeelError } from '../../../errors/index.ts';
import type { TimerHandle } from '../../../time/index.ts';
import { deadLetterEnvelope } from '../../dead-letter-envelope.ts';
import type { ConnectionLoss, DeliverySource } from '../../delivery-source.ts';
import { describeError } from '../../describe-error.ts';
import {
  forceClose,
  groupConsumer,
  retire,
  type KafkaConsumer,
  type KafkaSourceContext,
  type KafkaSourceSettings,
} from './kafka-source-client.ts';
import { KafkaSourceCommits, type KafkaMessage } from './kafka-source-commits.ts';
import { KafkaSourceLink } from './kafka-source-link.ts';
import { KafkaSourceRecovery } from './kafka-source-recovery.ts';
import { KafkaSourcePartitions, type KafkaDelivery } from './kafka-source-partitions.ts';
import type { PartitionTracker } from './partition-tracker.ts';
import { encodeEnvelope } from './record-codec.ts';

export { forceClose } from './kafka-source-client.ts';
export type { KafkaSourceContext, KafkaSourceSettings } from './kafka-source-client.ts';
export type { KafkaDelivery } from './kafka-source-partitions.ts';

/**
 * One group member over one topic. Fetched records wait in per-partition trackers (bounded:
 * the fetch pauses at `maxBuffered`); `claim` hands out what the per-key rule allows; an ack
 * commits the partition's finished prefix. A retry keeps the record in its tracker with a due
 * time (nothing is republished, the offset stays uncommitted), so per-key order holds across
 * retries and a crash during the backoff redelivers from the committed offset.
 */
export class KafkaSource implements DeliverySource<KafkaDelivery> {
  readonly destination: string;
  readonly #context: KafkaSourceContext;
  readonly #settings: KafkaSourceSettings;
  readonly #partitions = new KafkaSourcePartitions();
  readonly #timers = new Set<TimerHandle>();
  #consumer: KafkaConsumer | undefined;
  #stream: MessagesStream<Buffer, Buffer, Buffer, Buffer> | undefined;
  #wake: () => void = () => undefined;
  #paused = false;
  #closing = false;
  #streamError: unknown;
  /** What is lost of the link (the stream, the group membership), for `connectionLost()`. */
  readonly #link: KafkaSourceLink;
  /** Gets back what is lost: reopens, rejoins, a new client. */
  readonly #recovery: KafkaSourceRecovery;
  readonly #commits = new KafkaSourceCommits({
    holds: (tracker) => this.#partitions.holds(tracker),
    isAssigned: (topic, partition) => this.#isAssigned(topic, partition),
    consumer: () => this.#consumer,
  });

  constructor(destination: string, context: KafkaSourceContext, settings: KafkaSourceSettings) {
    this.destination = destination;
    this.#context = context;
    this.#settings = settings;
    this.#link = new KafkaSourceLink(context.clock);
    this.#recovery = new KafkaSourceRecovery({
      clock: context.clock,
      link: this.#link,
      destination,
      closing: () => this.#closing,
      hasStream: () => this.#stream !== undefined,
      consumer: () => this.#consumer!,
      openStream: () => this.#openStream(),
      replaceClient: () => this.#replaceClient(),
      streamError: () => this.#streamError,
      wake: () => this.#wake(),
    });
  }

  async open(wake: () => void): Promise<void> {
    this.#wake = wake;
    await this.#context.ensureTopic(this.destination);
    const consumer = this.#newClient();
    try {
      await this.#openStream();
    } catch (error) {
      // No member left behind holding connections (or a group seat) for a source that never opened.
      this.#consumer = undefined;
      await forceClose(consumer);
      throw new KeelError(
        'KEEL_BROKER_UNAVAILABLE',
        `could not join group ${this.#settings.group} on ${this.destination}: ${describeError(error)}`,
        { cause: error },
      );
    }
  }

  /** A client over the source's group, followed while it is the source's. */
  #newClient(): KafkaConsumer {
    const consumer = groupConsumer(this.#context, this.#settings);
    this.#consumer = consumer;
    const current = (): boolean => this.#consumer === consumer;
    consumer.on('consumer:group:join', () => {
      if (current()) this.#onAssignment();
    });
    this.#link.followGroup(
      consumer,
      `the Kafka consumer for ${this.destination} (group ${this.#settings.group})`,
      {
        current,
        failed: (error) => {
          this.#recovery.clientFailed(error);
          this.#recovery.schedule();
        },
        answered: () => this.#recovery.clientAnswered(),
      },
    );
    return consumer;
  }

  /**
   * Closes the stream and the client, whose coordinator is lost (see KafkaSourceRecovery), and
   * builds a new client. The records in hand stay: the new client's stream starts again from the
   * committed offsets and the trackers drop what repeats; a partition it is not given is dropped
   * at its join, as in a rebalance; the rest are committed through it (see KafkaSourceCommits).
   */
  async #replaceClient(): Promise<void> {
    const [stream, consumer] = [this.#stream, this.#consumer!];
    this.#stream = undefined;
    await stream?.close().catch(() => undefined);
    await retire(consumer);
    if (this.#closing) return;
    this.#newClient();
    this.#recovery.clientAnswered();
  }

  async #openStream(): Promise<void> {
    const consumer = this.#consumer!;
    const stream = await consumer.consume({
      topics: [this.destination],
      mode: 'committed',
      fallbackMode: 'earliest',
      autocommit: false,
      highWaterMark: Math.min(1024, this.#settings.maxBuffered),
    });
    this.#stream = stream;
    this.#streamError = undefined;
    this.#link.streamOpened();
    this.#paused = false;
    // A stream closed for a new client is not the source's any more: nothing of it counts.
    stream.on('data', (message) => {
      if (this.#stream === stream) this.#onMessage(message);
    });
    stream.on('error', (error) => {
      if (this.#stream !== stream) return;
      // The client ends the stream on a fetch error (a broker restart, a lost leader):
      // a new one resumes from the committed offsets, and the trackers drop what repeats.
      this.#streamError = error;
      this.#lost(stream);
    });
    stream.on('close', () => {
      if (this.#stream !== stream) return;
      this.#lost(stream);
      this.#stream = undefined;
      // An attempt that found this stream ended but not yet closed left the reopen to now.
      this.#recovery.schedule();
      this.#wake();
    });
    if (this.#partitions.buffered >= this.#settings.maxBuffered) this.#pause();
  }

  /**
   * Lost: the group's heartbeats failed and no join has gone through since (reported at once,
   * paused stream or not), or the stream ended under the consumer and is not open again (nothing
   * is fetched meanwhile; reported at once when the group's heartbeats or a reopen failed too,
   * else only once it has been down for `switchOverMs`: a partition's leader moving ends the
   * stream too, see kafka-source-link.ts). `attempts` counts the reopens that failed, the
   * claims' and the background ones' (see KafkaSourceRecovery), or the rejoins. A read of memory.
   */
  connectionLost(): ConnectionLoss | undefined {
    return this.#closing ? undefined : this.#link.lost();
  }

  /** `stream`, the current one, ended or failed without `close()`: lost from now until reopened. */
  #lost(stream: MessagesStream<Buffer, Buffer, Buffer, Buffer>): void {
    if (this.#closing || this.#stream !== stream || this.#link.streamLost) return;
    this.#link.streamEnded(
      this.#streamError ??
        new KeelError('KEEL_BROKER_UNAVAILABLE', `the Kafka consumer's stream for ${this.destination} ended`),
      // Its connections to the coordinator and for metadata, apart from the stream's own: a
      // read of the client's memory. Down too, it is the link that is lost, not one leader.
      this.#consumer?.isConnected() !== true,
    );
    this.#recovery.schedule();
  }

  async claim(max: number): Promise<KafkaDelivery[]> {
    if (this.#closing) return [];
    if (this.#stream === undefined) await this.#recovery.reopen();
    return this.#partitions.claim(this.#context.clock.now(), max);
  }

  async ack(deliveries: readonly KafkaDelivery[]): Promise<void> {
    const touched = new Set<PartitionTracker<KafkaMessage>>();
    for (const delivery of deliveries) {
      if (this.#settle(delivery)) touched.add(delivery.tracker);
    }
    const commits = [...touched].map((tracker) => this.#commits.commit(tracker));
    if (this.#settings.awaitCommit) await Promise.all(commits);
    // Background commits: a failed one is covered by the next ack's, a rebalance's or close's.
    else for (const commit of commits) void commit.catch(() => undefined);
  }

  async retry(delivery: KafkaDelivery, delayMs: number, _error: unknown): Promise<void> {
    const { record } = delivery;
    if (!this.#owns(delivery)) return;
    const now = this.#context.clock.now();
    record.firstFailedAt ??= now;
    record.attempt++;
    record.dueAt = now + Math.max(0, delayMs);
    record.state = 'waiting';
    this.#wakeAt(record.dueAt);
  }

  async deadLetter(delivery: KafkaDelivery, error: unknown): Promise<void> {
    const { record, envelope } = delivery;
    const now = this.#context.clock.now();
    const target = this.#settings.deadLetterDestination;
    await this.#context.ensureTopic(target);
    const failed = {
      envelope,
      attempt: delivery.attempt,
      firstFailedAt:
        record.firstFailedAt === undefined ? undefined : new Date(record.firstFailedAt).toISOString(),
    };
    const encoded = encodeEnvelope(
      deadLetterEnvelope(failed, this.destination, error, new Date(now).toISOString()),
    );
    await this.#context.send(target, [encoded]);
    await this.ack([delivery]);
  }

  async release(delivery: KafkaDelivery): Promise<void> {
    if (!this.#owns(delivery)) return;
    delivery.record.state = 'waiting';
    delivery.record.dueAt = 0;
    this.#wake();
  }

  async close(): Promise<void> {
    if (this.#closing) return;
    this.#closing = true;
    for (const timer of this.#timers) this.#context.clock.clearTimeout(timer);
    this.#timers.clear();
    this.#recovery.cancel();
    const consumer = this.#consumer;
    if (consumer === undefined) return;
    // Whatever finished is committed before the group hands the partitions to someone else.
    await Promise.all(
      this.#partitions.trackers().map((tracker) => this.#commits.commit(tracker).catch(() => undefined)),
    );
    this.#partitions.clear();
    try {
      await this.#stream?.close();
      await consumer.close();
    } catch {
      // Unreachable broker: the session expires and the group moves on without this member.
      await retire(consumer);
    }
  }

  #onMessage(message: KafkaMessage): void {
    if (this.#closing || !this.#isAssigned(message.topic, message.partition)) return;
    const record = this.#partitions.add(message);
    if (record === undefined) return;
    if (record.dueAt > this.#context.clock.now()) this.#wakeAt(record.dueAt);
    if (this.#partitions.buffered >= this.#settings.maxBuffered) this.#pause();
    this.#wake();
  }

  #isAssigned(topic: string, partition: number): boolean {
    return (
      this.#consumer?.assignments?.some((a) => a.topic === topic && a.partitions.includes(partition)) ?? false
    );
  }

  /** After a rebalance: forget revoked partitions (their records go to their new owner). */
  #onAssignment(): void {
    const { dropped, kept } = this.#partitions.revoke((topic, partition) =>
      this.#isAssigned(topic, partition),
    );
    for (const tracker of dropped) this.#commits.forget(tracker);
    // A commit refused during the rebalance (stale generation) is retried now.
    for (const tracker of kept) void this.#commits.commit(tracker).catch(() => undefined);
    this.#resumeIfRoom();
    this.#wake();
  }

  #owns(delivery: KafkaDelivery): boolean {
    return !this.#closing && this.#partitions.owns(delivery);
  }

  #settle(delivery: KafkaDelivery): boolean {
    if (!this.#owns(delivery)) return false;
    this.#partitions.settle(delivery);
    this.#resumeIfRoom();
    return true;
  }

  #pause(): void {
    if (this.#paused) return;
    this.#paused = true;
    this.#stream?.pause();
  }

  #resumeIfRoom(): void {
    // Resume below half, not at once below the limit: fetching in larger steps.
    if (this.#paused && this.#partitions.buffered <= this.#settings.maxBuffered / 2) {
      this.#paused = false;
      this.#stream?.resume();
    }
  }

  #wakeAt(at: number): void {
    const timer = this.#context.clock.setTimeout(() => {
      this.#timers.delete(timer);
      this.#wake();
    }, at - this.#context.clock.now());
    this.#timers.add(timer);
  }
}
