import type { FetchedPartition, KafkaEntry } from './topic-fetcher.ts';

/** Where a batch moved one partition: it applied the records from `first` to `last`. */
export interface AppliedRange {
  partition: number;
  first: bigint;
  last: bigint;
}

/**
 * Where each partition of `batch` goes on: after its last record, or, when the batch ends the
 * partition's part of the fetch, after everything the fetch returned there (markers included).
 */
export function nextOffsets(
  batch: readonly KafkaEntry[],
  fetched: readonly FetchedPartition[],
): Map<number, bigint> {
  const next = new Map<number, bigint>();
  for (const entry of batch) next.set(entry.partition, entry.offset + 1n);
  for (const part of fetched) {
    const last = part.entries.at(-1);
    if (last !== undefined && next.get(part.partition) === last.offset + 1n)
      next.set(part.partition, part.next);
  }
  return next;
}

/** The records of `batch` per partition, first to last. */
export function appliedRanges(batch: readonly KafkaEntry[]): AppliedRange[] {
  const ranges = new Map<number, AppliedRange>();
  for (const entry of batch) {
    const range = ranges.get(entry.partition);
    if (range === undefined)
      ranges.set(entry.partition, { partition: entry.partition, first: entry.offset, last: entry.offset });
    else range.last = entry.offset;
  }
  return [...ranges.values()];
}
