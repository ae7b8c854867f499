import type { Message } from 'amqplib';
import type { Clock } from '../../../time/index.ts';
import { PublishError } from '../../publisher.ts';
import { decode, encode } from './codec.ts';
import type { Confirmer, Outgoing } from './confirm-channel.ts';
import { partitionOf, partitionQueueName } from './partitions.ts';
import { consumeReader, getReader, type QueueReader } from './queue-reader.ts';
import type { Topology } from './topology.ts';

export interface RedriveContext {
  /** The redrive's own confirm channel: what it takes stays unacked there until moved. */
  confirmer: Confirmer;
  topology: Topology;
  clock: Clock;
  /** Per-key mode's partition count: letters go to their key's partition of the target. */
  partitions: number | undefined;
}

/**
 * How long a redrive of a per-key dead-letter partition waits for a message before it takes the
 * partition for empty: long enough for a busy server, short when another consumer is the
 * partition's single active consumer and nothing comes.
 */
const redriveIdleMs = 2000;

/** Every x-dead-letter-* header keel sets, stripped again on redrive. */
const deadLetterHeader = /^x-dead-letter-/;

/**
 * Moves up to `limit` letters from one queue (the dead-letter queue, or one of its partitions):
 * take a batch, publish each (confirmed) to `to` or to the queue it was dead-lettered from with
 * a fresh attempt count, then ack the batch. A crash in between duplicates, never loses. Letters
 * with no known source and no `to` stay where they are. Returns how many moved.
 */
export async function redriveQueue(
  ctx: RedriveContext,
  deadLetterQueue: string,
  to: string | undefined,
  limit: number,
): Promise<number> {
  const { confirmer } = ctx;
  await ctx.topology.queue(confirmer.channel, deadLetterQueue);
  // RabbitMQ refuses basic.get on a quorum queue with a single active consumer (per-key).
  const reader: QueueReader =
    ctx.partitions === undefined
      ? getReader(confirmer.channel, deadLetterQueue)
      : await consumeReader(confirmer.channel, deadLetterQueue, ctx.clock, redriveIdleMs);
  try {
    return await redriveFrom(ctx, reader, to, limit);
  } finally {
    await reader.close();
  }
}

async function redriveFrom(
  ctx: RedriveContext,
  reader: QueueReader,
  to: string | undefined,
  limit: number,
): Promise<number> {
  const { confirmer, topology } = ctx;
  let moved = 0;
  while (moved < limit) {
    const batch = await reader.take(Math.min(500, limit - moved));
    if (batch.length === 0) break;
    const byTarget = new Map<string, { message: Message; outgoing: Outgoing }[]>();
    for (const message of batch) {
      let target: string | undefined = to;
      let outgoing: Outgoing | undefined;
      try {
        const { envelope } = decode(message);
        target ??= envelope.headers['x-dead-letter-source'];
        // In per-key mode the message goes to its key's partition of the target.
        if (target !== undefined && ctx.partitions !== undefined) {
          target = partitionQueueName(target, partitionOf(envelope, ctx.partitions));
        }
        const headers = Object.fromEntries(
          Object.entries(envelope.headers).filter(([name]) => !deadLetterHeader.test(name)),
        );
        outgoing = { id: envelope.id, ...encode({ ...envelope, headers }, ctx.clock.now()) };
      } catch {
        outgoing = undefined;
      }
      // Not ours to move: it stays unacked until the channel closes, then returns to the queue.
      if (outgoing === undefined || target === undefined) continue;
      const group = byTarget.get(target) ?? [];
      group.push({ message, outgoing });
      byTarget.set(target, group);
    }
    // Unacked on this channel, the unmovable ones are not handed out again: go on to the next batch.
    if (byTarget.size === 0) continue;
    for (const [target, group] of byTarget) {
      await topology.queue(confirmer.channel, target);
      const failures = await confirmer.publish(
        target,
        group.map((g) => g.outgoing),
      );
      const failed = new Set(failures.map((f) => f.id));
      for (const { message, outgoing } of group) {
        if (failed.has(outgoing.id)) continue;
        confirmer.channel.ack(message);
        moved++;
      }
      if (failures.length > 0) {
        throw new PublishError(
          target,
          failures.map((f) => f.id),
          failures[0]?.error,
        );
      }
    }
  }
  return moved;
}
