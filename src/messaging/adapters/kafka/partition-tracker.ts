import type { Envelope } from '../../envelope.ts';

/** One fetched record of a partition, from fetch until its offset is committed. */
export interface TrackedRecord<M> {
  readonly offset: bigint;
  readonly envelope: Envelope;
  /** What committing this record's offset needs (the client's message). */
  readonly message: M;
  attempt: number;
  /** Not handed out before this instant (a retry's backoff, a delayed publish); 0: at once. */
  dueAt: number;
  state: 'waiting' | 'claimed' | 'done';
  firstFailedAt: number | undefined;
}

/**
 * The records of one assigned partition that are fetched but not yet committed, in offset order.
 *
 * Kafka commits one offset per partition meaning "everything before it is done", while the
 * runtime finishes records out of order. So the tracker hands records out under one rule —
 * never one whose key has an earlier record (same partition) still unfinished, which keeps
 * per-key order and lets other keys run — and the commit point is the end of the longest
 * finished prefix. A slow record holds back the commit point (not other keys): after a crash,
 * everything after it is delivered again.
 */
export class PartitionTracker<M> {
  readonly topic: string;
  readonly partition: number;
  readonly #records: TrackedRecord<M>[] = [];
  /** Records below this offset were seen already: a refetch after a rebalance repeats them. */
  #nextOffset = -1n;
  /** The last record of the finished prefix, whose offset + 1 is the next commit. */
  #commitTarget: TrackedRecord<M> | undefined;
  #committed = -1n;

  constructor(topic: string, partition: number) {
    this.topic = topic;
    this.partition = partition;
  }

  /** Records held (fetched, not yet committed through). */
  get size(): number {
    return this.#records.length;
  }

  /** Adds a fetched record; false for one seen before (a refetch), which the caller drops. */
  add(record: TrackedRecord<M>): boolean {
    if (record.offset < this.#nextOffset) return false;
    this.#nextOffset = record.offset + 1n;
    this.#records.push(record);
    return true;
  }

  /**
   * Marks up to `max` records claimed and returns them: due, waiting, and with no earlier
   * unfinished record of the same key. Records without a key never wait for each other.
   */
  claim(now: number, max: number, out: TrackedRecord<M>[]): void {
    let blocked: Set<string> | undefined;
    for (const record of this.#records) {
      if (out.length >= max) return;
      if (record.state === 'done') continue;
      const key = record.envelope.key;
      const free = key === null || blocked === undefined || !blocked.has(key);
      if (record.state === 'waiting' && record.dueAt <= now && free) {
        record.state = 'claimed';
        out.push(record);
      }
      if (key !== null) (blocked ??= new Set()).add(key);
    }
  }

  /** The earliest instant a waiting record becomes due, if any is not due at `now`. */
  nextDueAt(now: number): number | undefined {
    let next: number | undefined;
    for (const record of this.#records) {
      if (record.state === 'waiting' && record.dueAt > now && (next === undefined || record.dueAt < next)) {
        next = record.dueAt;
      }
    }
    return next;
  }

  /** Whether `record` is still this tracker's (not dropped by a revocation or already committed). */
  holds(record: TrackedRecord<M>): boolean {
    return this.#records.includes(record);
  }

  /** Marks a record finished and moves the finished prefix out; returns how many left. */
  settle(record: TrackedRecord<M>): number {
    record.state = 'done';
    let removed = 0;
    while (this.#records.length > 0 && this.#records[0]!.state === 'done') {
      this.#commitTarget = this.#records.shift();
      removed++;
    }
    return removed;
  }

  /** The record whose offset + 1 should be committed next, if the finished prefix moved past the last commit. */
  pendingCommit(): TrackedRecord<M> | undefined {
    const target = this.#commitTarget;
    return target !== undefined && target.offset >= this.#committed ? target : undefined;
  }

  /** Records that `target` (from `pendingCommit`) is committed. */
  committed(target: TrackedRecord<M>): void {
    if (target.offset + 1n > this.#committed) this.#committed = target.offset + 1n;
  }
}
