import type { Db, Tx } from '../../../db/db.ts';
import type { Projection } from '../../projection.ts';
import { appliedRanges } from './batch-offsets.ts';
import type { ProjectionEventSink } from './kafka-projection-events.ts';
import type { LookCalls } from './kafka-projection-health.ts';
import type { PendingRestart } from './kafka-projection-recreation.ts';
import type { SkippedRecords } from './offset-out-of-range.ts';
import {
  adoptTopicId,
  dropOffsets,
  lockProjection,
  readStored,
  storeOffsets,
  type ProjectionKey,
} from './projection-offsets.ts';
import type { KafkaEntry } from './topic-fetcher.ts';
import { otherTopic, type StoredOffset } from './topic-incarnation.ts';

/** What a batch needs of its runner. */
export interface BatchContext {
  readonly db: Db;
  readonly key: ProjectionKey;
  readonly handler: Projection<KafkaEntry>;
  readonly events: ProjectionEventSink;
  /** Through which the batch's transaction, and the projection's `apply` in it, are made. */
  readonly calls: LookCalls;
  /** The drain deadline of a stop, once `stop()` was called: past it a batch in flight is handed back. */
  drain(): AbortSignal | undefined;
}

/** What the batches of one look share, moved on by each commit. */
export interface LookBatches {
  /** The stored offsets the next batch applies only from (absent: none stored). */
  readonly basis: Map<number, bigint>;
  /** The topic the fetched records are of: the one the look checked the stored offsets against. */
  readonly topicId: string | null;
  /** Its partition count as the look found it. */
  readonly partitions: number;
  /** Trimmed partitions resumed: stored (and reported) by the batch that takes their partition on. */
  readonly skipped: Map<number, SkippedRecords>;
  /** A restart on a recreated topic the next batch stores, with the rows it found (`seen`). */
  restart: PendingRestart | undefined;
  /**
   * Offsets stored without a topic id (before migration 0002) that the look found consistent with
   * the topic (`otherTopic`) and fetched from: the next batch stamps them with `topicId`, a batch
   * of no records if need be, so that the look adopts them rather than leave it to a first record.
   */
  adopt: boolean;
}

/**
 * Applies `batch` (none: only moves offsets) and stores `next` for its partitions, of the
 * fetched topic, in one transaction, if each of them still has the stored offset `basis` says
 * (absent: none stored) and no stored offset is of another topic (a restart: if the stored
 * offsets are still those it found, it drops them first); offsets stored without a topic id
 * take the fetched topic's (adopt it). Moves `basis` on. Reports the restart and the skips
 * (taking them out) this stored. False, with nothing stored, when another runner or a rebuild
 * moved the offsets since the look read them, or they are found to be of another topic.
 */
export async function applyBatch(
  context: BatchContext,
  batch: readonly KafkaEntry[],
  next: ReadonlyMap<number, bigint>,
  batches: LookBatches,
): Promise<boolean> {
  const { db, key, handler, calls } = context;
  const { basis, topicId, skipped, restart } = batches;
  const transaction = (work: (tx: Tx) => Promise<boolean>): Promise<boolean> =>
    calls.call('database', () => db.transaction(work));
  const committed = await transaction(async (tx) => {
    await lockProjection(tx, key);
    const now = await readStored(tx, key);
    if (restart !== undefined) {
      if (topicId !== restart.topicId || !sameStored(now, restart.seen)) return false;
      await dropOffsets(tx, key);
    } else {
      for (const partition of next.keys()) {
        if (now.get(partition)?.next !== basis.get(partition)) return false;
      }
      // Records of another topic than the stored offsets' (recreated under the fetch, or rows
      // without an id stored meanwhile by a runner from before 0002 that saw another topic): the
      // next look checks afresh, and fails or restarts.
      if (otherTopic(now, { id: topicId, partitions: batches.partitions }) !== undefined) return false;
      if (topicId !== null && [...now.values()].some((offset) => offset.topicId === null))
        await adoptTopicId(tx, key, topicId);
    }
    if (batch.length > 0) await calls.projection(() => handler.apply(batch, tx));
    // Past the drain deadline the batch is handed back: it rolls back and is applied at the next start.
    context.drain()?.throwIfAborted();
    await storeOffsets(tx, key, next, topicId);
    return true;
  });
  if (!committed) return false;
  batches.adopt = false;
  if (restart !== undefined) {
    batches.restart = undefined;
    basis.clear();
    const { seen: _seen, ...reported } = restart;
    context.events.emit('restarted', reported);
  }
  for (const [partition, offset] of next) {
    basis.set(partition, offset);
    const skip = skipped.get(partition);
    if (skip === undefined) continue;
    skipped.delete(partition);
    context.events.emit('skipped', skip);
  }
  if (batch.length > 0)
    context.events.emit('applied', { count: batch.length, partitions: appliedRanges(batch) });
  return true;
}

/** Whether two reads of the stored offsets found the same rows. */
function sameStored(a: ReadonlyMap<number, StoredOffset>, b: ReadonlyMap<number, StoredOffset>): boolean {
  if (a.size !== b.size) return false;
  for (const [partition, offset] of a) {
    const other = b.get(partition);
    if (other?.next !== offset.next || other.topicId !== offset.topicId) return false;
  }
  return true;
}
