import type { Delivery } from '../../delivery-source.ts';
import type { KafkaMessage } from './kafka-source-commits.ts';
import { PartitionTracker, type TrackedRecord } from './partition-tracker.ts';
import { decodeMessage, undecodableEnvelope } from './record-codec.ts';

export interface KafkaDelivery extends Delivery {
  readonly record: TrackedRecord<KafkaMessage>;
  readonly tracker: PartitionTracker<KafkaMessage>;
}

/**
 * The records a Kafka source holds, fetched and not yet committed through, in a tracker per
 * assigned partition (see PartitionTracker), and how many: the source pauses its fetch on it.
 */
export class KafkaSourcePartitions {
  readonly #trackers = new Map<string, PartitionTracker<KafkaMessage>>();
  #buffered = 0;
  #rotate = 0;

  /** Records held, in every partition. */
  get buffered(): number {
    return this.#buffered;
  }

  /** The trackers, one per partition held. */
  trackers(): PartitionTracker<KafkaMessage>[] {
    return [...this.#trackers.values()];
  }

  /** Whether `tracker` is still held (not dropped by a revocation or a close). */
  holds(tracker: PartitionTracker<KafkaMessage>): boolean {
    return this.#trackers.get(`${tracker.topic}:${tracker.partition}`) === tracker;
  }

  /** Whether `delivery`'s record is still held: its partition and itself. */
  owns(delivery: KafkaDelivery): boolean {
    return this.holds(delivery.tracker) && delivery.tracker.holds(delivery.record);
  }

  /** Holds a fetched message of an assigned partition; undefined for one seen before (a refetch). */
  add(message: KafkaMessage): TrackedRecord<KafkaMessage> | undefined {
    const id = `${message.topic}:${message.partition}`;
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
    if (!tracker.add(record)) return undefined;
    this.#buffered++;
    return record;
  }

  /** Up to `max` records due at `now` that the per-key rule lets out, marked claimed. */
  claim(now: number, max: number): KafkaDelivery[] {
    const trackers = this.trackers();
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

  /** Marks `delivery`'s record finished (it must be owned); its partition's finished prefix moves out. */
  settle(delivery: KafkaDelivery): void {
    this.#buffered -= delivery.tracker.settle(delivery.record);
  }

  /**
   * Drops the partitions that `assigned` no longer says are this member's (their records go to
   * their new owner) and returns the ones kept.
   */
  revoke(assigned: (topic: string, partition: number) => boolean): {
    dropped: PartitionTracker<KafkaMessage>[];
    kept: PartitionTracker<KafkaMessage>[];
  } {
    const dropped: PartitionTracker<KafkaMessage>[] = [];
    const kept: PartitionTracker<KafkaMessage>[] = [];
    for (const [id, tracker] of this.#trackers) {
      if (assigned(tracker.topic, tracker.partition)) kept.push(tracker);
      else {
        this.#trackers.delete(id);
        this.#buffered -= tracker.size;
        dropped.push(tracker);
      }
    }
    return { dropped, kept };
  }

  /** Drops every partition (the source closed). */
  clear(): void {
    this.#trackers.clear();
  }
}
