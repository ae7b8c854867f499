import type { Message } from '@platformatic/kafka';
import { CommitBatcher } from './commit-batcher.ts';
import { closedClient, type KafkaConsumer } from './kafka-source-client.ts';
import type { PartitionTracker, TrackedRecord } from './partition-tracker.ts';

export type KafkaMessage = Message<Buffer, Buffer, Buffer, Buffer>;

/** What a source's commits read of it. */
export interface KafkaSourceCommitsHost {
  /** Whether `tracker` is still the source's: not revoked, nor the source closed. */
  holds(tracker: PartitionTracker<KafkaMessage>): boolean;
  /** Whether the current client is given the partition. */
  isAssigned(topic: string, partition: number): boolean;
  /** The current client. */
  consumer(): KafkaConsumer | undefined;
}

/**
 * A Kafka source's offset commits: each partition's finished prefix, one commit at a time per
 * partition (later acks fold into the next, see CommitBatcher).
 */
export class KafkaSourceCommits {
  readonly #host: KafkaSourceCommitsHost;
  readonly #batchers = new Map<PartitionTracker<KafkaMessage>, CommitBatcher>();

  constructor(host: KafkaSourceCommitsHost) {
    this.#host = host;
  }

  /** Commits `tracker`'s finished prefix, after the commit in flight if any. */
  commit(tracker: PartitionTracker<KafkaMessage>): Promise<void> {
    let batcher = this.#batchers.get(tracker);
    if (batcher === undefined) {
      batcher = new CommitBatcher(async () => {
        // A partition revoked meanwhile is someone else's: committing it could move their position.
        if (!this.#host.holds(tracker)) return;
        const target = tracker.pendingCommit();
        if (target === undefined) return;
        await this.#commitThrough(tracker, target);
        tracker.committed(target);
      });
      this.#batchers.set(tracker, batcher);
    }
    return batcher.request();
  }

  /** `tracker` is revoked: nothing more of it is committed. */
  forget(tracker: PartitionTracker<KafkaMessage>): void {
    this.#batchers.delete(tracker);
  }

  /**
   * Commits past `target` through the client that fetched it; for a record fetched by a client
   * since replaced (closed: see KafkaSourceRecovery), through the current one, once it is given
   * the partition (until then the commit is refused, and retried at its join). The record's
   * leader epoch is not known then: -1, which the broker stores as unknown.
   */
  async #commitThrough(
    tracker: PartitionTracker<KafkaMessage>,
    target: TrackedRecord<KafkaMessage>,
  ): Promise<void> {
    try {
      await target.message.commit();
    } catch (error) {
      const consumer = this.#host.consumer();
      if (!closedClient(error) || consumer === undefined) throw error;
      if (!this.#host.isAssigned(tracker.topic, tracker.partition)) throw error;
      const { topic, partition } = tracker;
      await consumer.commit({ offsets: [{ topic, partition, offset: target.offset + 1n, leaderEpoch: -1 }] });
    }
  }
}
