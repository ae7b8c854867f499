import { Consumer, type Message } from '@platformatic/kafka';
import { forceClose } from './kafka-source.ts';

/** What a reader needs to connect. */
export interface ReaderClient {
  clientId: string;
  brokers: string[];
  maxWaitMs: number;
}

/**
 * Reads a topic from a start position to the end offsets it had at the start, in batches, with a
 * consumer of its own in `group`; `onBatch` returns false to stop early.
 */
export async function readToEnd(
  client: ReaderClient,
  topic: string,
  start: { group: string; mode: 'committed' | 'earliest' | Date },
  onBatch: (messages: Message<Buffer, Buffer, Buffer, Buffer>[]) => Promise<boolean>,
  signal?: AbortSignal,
): Promise<void> {
  const consumer = new Consumer<Buffer, Buffer, Buffer, Buffer>({
    clientId: client.clientId,
    bootstrapBrokers: client.brokers,
    groupId: start.group,
    autocommit: false,
    maxWaitTime: client.maxWaitMs,
    sessionTimeout: 10_000,
    heartbeatInterval: 1000,
  });
  try {
    const ends = (await consumer.listOffsets({ topics: [topic] })).get(topic) ?? [];
    let offsets: { topic: string; partition: number; offset: bigint }[] | undefined;
    if (start.mode instanceof Date || start.mode === 'earliest') {
      const at = start.mode === 'earliest' ? -2n : BigInt(start.mode.getTime());
      const begins = (await consumer.listOffsets({ topics: [topic], timestamp: at })).get(topic) ?? [];
      // No record at or after the time: that partition starts at its end.
      offsets = begins.map((offset, partition) => ({
        topic,
        partition,
        offset: offset < 0n ? ends[partition]! : offset,
      }));
    }
    const stream = await consumer.consume({
      topics: [topic],
      autocommit: false,
      ...(offsets === undefined
        ? { mode: 'committed' as const, fallbackMode: 'earliest' as const }
        : { mode: 'manual' as const, offsets }),
    });
    try {
      // Partitions still to read, and where each ends.
      const remaining = new Map<number, bigint>();
      const firsts = offsets ?? [];
      ends.forEach((end, partition) => {
        const from = firsts.find((o) => o.partition === partition)?.offset ?? -1n;
        if (end > 0n && from < end) remaining.set(partition, end);
      });
      if (offsets === undefined) {
        const committed =
          (
            await consumer.listCommittedOffsets({ topics: [{ topic, partitions: ends.map((_, i) => i) }] })
          ).get(topic) ?? [];
        committed.forEach((offset, partition) => {
          if (offset >= 0n && offset >= (remaining.get(partition) ?? 0n)) remaining.delete(partition);
        });
      }
      if (remaining.size === 0) return;
      const batch: Message<Buffer, Buffer, Buffer, Buffer>[] = [];
      for await (const message of stream as AsyncIterable<Message<Buffer, Buffer, Buffer, Buffer>>) {
        signal?.throwIfAborted();
        const end = remaining.get(message.partition);
        if (end === undefined || message.offset >= end) continue;
        batch.push(message);
        if (message.offset >= end - 1n) remaining.delete(message.partition);
        if (batch.length >= 500 || remaining.size === 0 || stream.readableLength === 0) {
          const more = await onBatch(batch.splice(0));
          if (!more || remaining.size === 0) break;
        }
      }
    } finally {
      await stream.close().catch(() => undefined);
    }
  } finally {
    await consumer.close().catch(() => forceClose(consumer));
  }
}
