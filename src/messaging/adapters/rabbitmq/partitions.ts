import { InvalidArgumentError } from '../../../errors/index.ts';
import type { Envelope } from '../../envelope.ts';

/** The largest `partitions` accepted: each partition is a queue (a Raft group on quorum queues). */
export const maxPartitions = 256;

export function assertPartitions(partitions: unknown): asserts partitions is number {
  if (typeof partitions !== 'number' || !Number.isInteger(partitions) || partitions < 1) {
    throw new InvalidArgumentError('partitions', `an integer from 1 to ${maxPartitions}`, partitions);
  }
  if (partitions > maxPartitions) {
    throw new InvalidArgumentError('partitions', `an integer from 1 to ${maxPartitions}`, partitions);
  }
}

/**
 * FNV-1a, 32 bits, over the UTF-8 bytes of `text`: small, stable across processes and
 * languages, so a producer written in something else can route a key to the same partition.
 */
export function fnv1a32(text: string): number {
  let hash = 0x811c9dc5;
  for (const byte of Buffer.from(text, 'utf8')) {
    hash ^= byte;
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash >>> 0;
}

/** The partition of an envelope: by its key, or by its id when it has none (spread, unordered). */
export function partitionOf(envelope: Pick<Envelope, 'key' | 'id'>, partitions: number): number {
  return fnv1a32(envelope.key ?? envelope.id) % partitions;
}

/** The queue behind partition `index` of `destination`. */
export function partitionQueueName(destination: string, index: number): string {
  return `${destination}.p${index}`;
}

/** Every partition queue of `destination`, in partition order. */
export function partitionQueueNames(destination: string, partitions: number): string[] {
  return Array.from({ length: partitions }, (_, index) => partitionQueueName(destination, index));
}
