import { Consumer, type Message, type MessagesStream } from '@platformatic/kafka';
import { KeelError } from '../../../errors/index.ts';
import type { Clock, TimerHandle } from '../../../time/index.ts';
import { deadLetterEnvelope } from '../../dead-letter-envelope.ts';
import type { ConnectionLoss, Delivery, DeliverySource } from '../../delivery-source.ts';
import { describeError } from '../../describe-error.ts';
import { CommitBatcher } from './commit-batcher.ts';
import { KafkaSourceLink } from './kafka-source-link.ts';
import { PartitionTracker, type TrackedRecord } from './partition-tracker.ts';
import { decodeMessage, encodeEnvelope, undecodableEnvelope, type EncodedRecord } from './record-codec.ts';

type KafkaMessage = Message<Buffer, Buffer, Buffer, Buffer>;

/**
 * Background reopens of a lost stream (and rejoins of a lost group): the first after this long,
 * doubling up to `reopenMaxMs`.
 */
const reopenFirstMs = 500;
const reopenMaxMs = 30_000;

export interface KafkaDelivery extends Delivery {
  readonly record: TrackedRecord<KafkaMessage>;
  readonly tracker: PartitionTracker<KafkaMessage>;
}

/** What a source needs from its broker. */
export interface KafkaSourceContext {
  readonly clock: Clock;
  readonly bootstrapBrokers: string[];
  readonly clientId: string;
  ensureTopic(topic: string): Promise<void>;
  /** Produces with acks=all; resolves when every record is acknowledged. */
  send(topic: string, records: EncodedRecord[]): Promise<void>;
}

export interface KafkaSourceSettings {
  group: string;
  deadLetterDestination: string;
  sessionTimeoutMs: number;
  heartbeatIntervalMs: number;
  maxBuffered: number;
  maxWaitMs: number;
  awaitCommit: boolean;
}

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
  readonly #trackers = new Map<string, PartitionTracker<KafkaMessage>>();
  readonly #batchers = new Map<PartitionTracker<KafkaMessage>, CommitBatcher>();
  readonly #timers = new Set<TimerHandle>();
  #consumer: Consumer<Buffer, Buffer, Buffer, Buffer> | undefined;
  #stream: MessagesStream<Buffer, Buffer, Buffer, Buffer> | undefined;
  #wake: () => void = () => undefined;
  #buffered = 0;
  #paused = false;
  #closing = false;
  #streamError: unknown;
  #reopening: Promise<void> | undefined;
  #rejoining: Promise<void> | undefined;
  #rotate = 0;
  /** What is lost of the link (the stream, the group membership), for `connectionLost()`. */
  #link: KafkaSourceLink;
  /** The next reopen or rejoin in the background while something is lost. */
  #recoveryTimer: TimerHandle | undefined;

  constructor(destination: string, context: KafkaSourceContext, settings: KafkaSourceSettings) {
    this.destination = destination;
    this.#context = context;
    this.#settings = settings;
    this.#link = new KafkaSourceLink(context.clock);
  }

  async open(wake: () => void): Promise<void> {
    this.#wake = wake;
    await this.#context.ensureTopic(this.destination);
    const consumer = new Consumer<Buffer, Buffer, Buffer, Buffer>({
      clientId: this.#context.clientId,
      bootstrapBrokers: this.#context.bootstrapBrokers,
      groupId: this.#settings.group,
      sessionTimeout: this.#settings.sessionTimeoutMs,
      heartbeatInterval: this.#settings.heartbeatIntervalMs,
      rebalanceTimeout: Math.max(this.#settings.sessionTimeoutMs, 10_000),
      autocommit: false,
      maxWaitTime: this.#settings.maxWaitMs,
    });
    this.#consumer = consumer;
    consumer.on('consumer:group:join', () => this.#onAssignment());
    this.#link.followGroup(
      consumer,
      `the Kafka consumer for ${this.destination} (group ${this.#settings.group})`,
      () => this.#scheduleRecovery(),
    );
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
    stream.on('data', (message) => this.#onMessage(message));
    stream.on('error', (error) => {
      // The client ends the stream on a fetch error (a broker restart, a lost leader):
      // a new one resumes from the committed offsets, and the trackers drop what repeats.
      this.#streamError = error;
      this.#lost(stream);
    });
    stream.on('close', () => {
      this.#lost(stream);
      if (this.#stream === stream) this.#stream = undefined;
      // An attempt that found this stream ended but not yet closed left the reopen to now.
      this.#scheduleRecovery();
      this.#wake();
    });
    if (this.#buffered >= this.#settings.maxBuffered) this.#pause();
  }

  /**
   * Lost: the group's heartbeats failed and no join has gone through since (reported at once,
   * paused stream or not), or the stream ended under the consumer and is not open again (nothing
   * is fetched meanwhile; reported at once when the group's heartbeats or a reopen failed too,
   * else only once it has been down for `switchOverMs`: a partition's leader moving ends the
   * stream too, see kafka-source-link.ts). `attempts` counts the reopens that failed, the
   * claims' and the background ones' (see `#scheduleRecovery`), or the rejoins. A read of memory.
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
    this.#scheduleRecovery();
  }

  /**
   * Reopens the lost stream, or rejoins the lost group, in the background too, with backoff,
   * until it is back: a consumer whose every slot is busy makes no claim, and would otherwise
   * fetch nothing (and stay failing in `health()`) until a handler finishes, however soon Kafka
   * is back; and a paused stream does not rejoin at all.
   */
  #scheduleRecovery(): void {
    const link = this.#link;
    if (this.#closing || this.#recoveryTimer !== undefined || !(link.streamLost || link.groupLost)) return;
    const delayMs = Math.min(reopenMaxMs, reopenFirstMs * 2 ** Math.min(link.attempts, 6));
    this.#recoveryTimer = this.#context.clock.setTimeout(() => {
      this.#recoveryTimer = undefined;
      if (this.#closing) return;
      this.#recover().then(
        () => this.#wake(),
        () => this.#scheduleRecovery(),
      );
    }, delayMs);
  }

  /**
   * One attempt: a new stream when the last one is gone (it joins the group first); a rejoin
   * when the stream is there and the group is lost. A stream ended but not yet closed is left to
   * its `close`, which schedules the next attempt.
   */
  #recover(): Promise<void> {
    if (this.#stream === undefined) return this.#reopen();
    if (this.#link.groupLost && !this.#link.streamLost) return this.#rejoin();
    return Promise.resolve();
  }

  /** Joins the group again (the client restarts its heartbeats then); `consumer:group:join` clears the loss. */
  #rejoin(): Promise<void> {
    this.#rejoining ??= this.#consumer!.joinGroup({})
      .then(
        () => undefined,
        (error: unknown) => {
          this.#link.groupFailed(error);
          this.#scheduleRecovery();
          throw error;
        },
      )
      .finally(() => (this.#rejoining = undefined));
    return this.#rejoining;
  }

  async claim(max: number): Promise<KafkaDelivery[]> {
    if (this.#closing) return [];
    if (this.#stream === undefined) await this.#reopen();
    const now = this.#context.clock.now();
    const trackers = [...this.#trackers.values()];
    const out: KafkaDelivery[] = [];
    const records: TrackedRecord<KafkaMessage>[] = [];
    // Start at a different partition each time so one busy partition does not take every slot.
    for (let i = 0; i < trackers.length && out.length < max; i++) {
      const tracker = trackers[(this.#rotate + i) % trackers.length]!;
      records.length = 0;
      tracker.claim(now, max - out.length, records);
      for (const record of records)
        out.push({ envelope: record.envelope, attempt: record.attempt, record, tracker });
    }
    this.#rotate++;
    return out;
  }

  async ack(deliveries: readonly KafkaDelivery[]): Promise<void> {
    const touched = new Set<PartitionTracker<KafkaMessage>>();
    for (const delivery of deliveries) {
      if (this.#settle(delivery)) touched.add(delivery.tracker);
    }
    const commits = [...touched].map((tracker) => this.#commit(tracker));
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
    if (this.#recoveryTimer !== undefined) this.#context.clock.clearTimeout(this.#recoveryTimer);
    this.#recoveryTimer = undefined;
    const consumer = this.#consumer;
    if (consumer === undefined) return;
    // Whatever finished is committed before the group hands the partitions to someone else.
    await Promise.all(
      [...this.#trackers.values()].map((tracker) => this.#commit(tracker).catch(() => undefined)),
    );
    this.#trackers.clear();
    try {
      await this.#stream?.close();
      await consumer.close();
    } catch {
      // Unreachable broker: the session expires and the group moves on without this member.
      await forceClose(consumer);
    }
  }

  #onMessage(message: KafkaMessage): void {
    if (this.#closing) return;
    const id = `${message.topic}:${message.partition}`;
    if (!this.#isAssigned(message.topic, message.partition)) return;
    let tracker = this.#trackers.get(id);
    if (tracker === undefined) {
      tracker = new PartitionTracker<KafkaMessage>(message.topic, message.partition);
      this.#trackers.set(id, tracker);
    }
    let decoded;
    try {
      decoded = decodeMessage(message);
    } catch (error) {
      decoded = { envelope: undecodableEnvelope(message, error), attempt: 1, availableAt: undefined };
    }
    const record: TrackedRecord<KafkaMessage> = {
      offset: message.offset,
      envelope: decoded.envelope,
      message,
      attempt: decoded.attempt,
      dueAt: decoded.availableAt ?? 0,
      state: 'waiting',
      firstFailedAt: undefined,
    };
    if (!tracker.add(record)) return;
    this.#buffered++;
    if (record.dueAt > this.#context.clock.now()) this.#wakeAt(record.dueAt);
    if (this.#buffered >= this.#settings.maxBuffered) this.#pause();
    this.#wake();
  }

  #isAssigned(topic: string, partition: number): boolean {
    return (
      this.#consumer?.assignments?.some((a) => a.topic === topic && a.partitions.includes(partition)) ?? false
    );
  }

  /** After a rebalance: forget revoked partitions (their records go to their new owner). */
  #onAssignment(): void {
    for (const [id, tracker] of this.#trackers) {
      if (!this.#isAssigned(tracker.topic, tracker.partition)) {
        this.#trackers.delete(id);
        this.#batchers.delete(tracker);
        this.#buffered -= tracker.size;
      } else {
        // A commit refused during the rebalance (stale generation) is retried now.
        void this.#commit(tracker).catch(() => undefined);
      }
    }
    this.#resumeIfRoom();
    this.#wake();
  }

  #owns(delivery: KafkaDelivery): boolean {
    const { tracker, record } = delivery;
    return (
      !this.#closing &&
      this.#trackers.get(`${tracker.topic}:${tracker.partition}`) === tracker &&
      tracker.holds(record)
    );
  }

  #settle(delivery: KafkaDelivery): boolean {
    if (!this.#owns(delivery)) return false;
    this.#buffered -= delivery.tracker.settle(delivery.record);
    this.#resumeIfRoom();
    return true;
  }

  #commit(tracker: PartitionTracker<KafkaMessage>): Promise<void> {
    let batcher = this.#batchers.get(tracker);
    if (batcher === undefined) {
      batcher = new CommitBatcher(async () => {
        // A partition revoked meanwhile is someone else's: committing it could move their position.
        if (this.#trackers.get(`${tracker.topic}:${tracker.partition}`) !== tracker) return;
        const target = tracker.pendingCommit();
        if (target === undefined) return;
        await target.message.commit();
        tracker.committed(target);
      });
      this.#batchers.set(tracker, batcher);
    }
    return batcher.request();
  }

  #pause(): void {
    if (this.#paused) return;
    this.#paused = true;
    this.#stream?.pause();
  }

  #resumeIfRoom(): void {
    // Resume below half, not at once below the limit: fetching in larger steps.
    if (this.#paused && this.#buffered <= this.#settings.maxBuffered / 2) {
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

  /**
   * The client ended the stream (a fetch failed): open a new one; claim's failure backs off. A
   * claim and a background reopen share one attempt, counted once.
   */
  #reopen(): Promise<void> {
    // After a rejoin in flight: two joins at once would each sync the group.
    const rejoined = this.#rejoining?.catch(() => undefined) ?? Promise.resolve();
    this.#reopening ??= rejoined
      .then(() => this.#openStream())
      .catch((error: unknown) => {
        const failure = new KeelError(
          'KEEL_BROKER_UNAVAILABLE',
          `Kafka consumer for ${this.destination} lost its stream (${describeError(this.#streamError)}) and could not reopen it: ${describeError(error)}`,
          { cause: error },
        );
        this.#link.reopenFailed(failure);
        throw failure;
      })
      .finally(() => (this.#reopening = undefined));
    return this.#reopening;
  }
}

/** Closes a client without waiting on a broker that may be gone. */
export function forceClose(client: {
  close(force: boolean, callback: (error?: Error | null) => void): void;
}): Promise<void> {
  return new Promise((resolve) => client.close(true, () => resolve()));
}
