import { nextOffsets } from './batch-offsets.ts';
import { applyBatch, type BatchContext, type LookBatches } from './kafka-projection-batch.ts';
import { fetchForLook, type FirstRetainedOffsets, type TopicReads } from './kafka-projection-fetch.ts';
import { brokerCalls } from './kafka-projection-health.ts';
import { checkRecreation } from './kafka-projection-recreation.ts';
import { offsetsOf, readStored } from './projection-offsets.ts';

/**
 * What one look at the topic came to. `'stopped'`: `stop()` came before it applied all it
 * fetched (or stored the offsets it moved past without a record); `applied` in batches before it.
 */
export type Look =
  | { kind: 'no-topic' }
  | { kind: 'looked'; applied: number; stale: boolean }
  | { kind: 'stopped'; applied: number };

/** What a look needs of its runner, the same for each of its looks. */
export interface LookContext extends BatchContext {
  readonly batchSize: number;
  readonly onTrimmed: 'throw' | 'resume';
  readonly onRecreated: 'throw' | 'restart';
  /** Where partitions with no stored offset start, kept across the runner's looks. */
  readonly earliest: FirstRetainedOffsets;
  /**
   * Whether `stop()` was called: no batch begins after it; the one under way commits, or past
   * the drain deadline rolls back.
   */
  stopping(): boolean;
  /** What the look is doing now, for the runner's `error` events. */
  phase(during: 'fetch' | 'apply'): void;
}

/**
 * One fetch from the stored offsets, then its records in batches, each in its own transaction.
 * `stale`: another runner (or a rebuild) moved the offsets meanwhile, or the topic's id changed
 * under the fetch; what was fetched is dropped. Its calls to Kafka and to the database go
 * through `context.calls` (the running loop's keep their outcomes for `health()`).
 */
export async function look(context: LookContext, topicFetcher: TopicReads, maxWaitMs: number): Promise<Look> {
  context.phase('fetch');
  const fetcher = brokerCalls(topicFetcher, context.calls);
  const cached = await fetcher.current();
  if (cached === undefined) return { kind: 'no-topic' };
  const stored = await context.calls.call('database', () => readStored(context.db, context.key));
  const checked = await checkRecreation(fetcher, cached, stored, context.onRecreated);
  if (checked === undefined) return { kind: 'no-topic' };
  const { topic, restart } = checked;
  // Restarting, the old topic's offsets count for nothing: each partition from its first record.
  const positions = restart === undefined ? offsetsOf(stored) : new Map<number, bigint>();
  if (restart !== undefined) context.earliest.forget();
  const fetch = await fetchForLook(fetcher, topic, positions, context.earliest, {
    onTrimmed: context.onTrimmed,
    maxWaitMs,
  });
  if (fetch.kind === 'stale') return { kind: 'looked', applied: 0, stale: true };
  const { partitions: fetched, skipped } = fetch;
  const batches: LookBatches = {
    basis: positions,
    topicId: fetch.topicId,
    partitions: topic.partitions,
    skipped,
    restart,
    // Rows without an id that the check let through: the fetch Kafka answered from them put
    // each within its partition's bounds, of this topic id.
    adopt: restart === undefined && topic.id !== null && [...stored.values()].some((o) => o.topicId === null),
  };
  context.phase('apply');
  const entries = fetched.flatMap((part) => part.entries);
  let applied = 0;
  for (let at = 0; at < entries.length; at += context.batchSize) {
    if (context.stopping()) return { kind: 'stopped', applied };
    const batch = entries.slice(at, at + context.batchSize);
    if (!(await applyBatch(context, batch, nextOffsets(batch, fetched), batches)))
      return { kind: 'looked', applied, stale: true };
    applied += batch.length;
  }
  // Partitions where the fetch found markers only, and those resumed where it found nothing:
  // their offset moves on without a batch; so does a restart on a topic with nothing to apply,
  // and an adoption of the topic id on an idle topic (the sooner it is stored, the shorter the
  // time in which a recreation would go unseen).
  const passed = new Map(
    fetched.filter((part) => part.entries.length === 0).map((p) => [p.partition, p.next]),
  );
  for (const { partition, to } of skipped.values()) {
    if (!fetched.some((part) => part.partition === partition)) passed.set(partition, to);
  }
  const moves = passed.size > 0 || batches.restart !== undefined || batches.adopt;
  if (moves && context.stopping()) return { kind: 'stopped', applied };
  if (moves && !(await applyBatch(context, [], passed, batches)))
    return { kind: 'looked', applied, stale: true };
  return { kind: 'looked', applied, stale: false };
}
