import type { Channel, Message } from 'amqplib';
import type { Clock, TimerHandle } from '../../../time/index.ts';

/** Takes messages out of a queue, unacknowledged on the reader's channel (redrive). */
export interface QueueReader {
  /** Up to `max` messages; none once the queue is (or looks) empty. */
  take(max: number): Promise<Message[]>;
  close(): Promise<void>;
}

/** `basic.get`, one message per round trip: for plain queues. */
export function getReader(channel: Channel, queue: string): QueueReader {
  return {
    take: async (max) => {
      const out: Message[] = [];
      while (out.length < max) {
        const message = await channel.get(queue, { noAck: false });
        if (message === false) break;
        out.push(message);
      }
      return out;
    },
    close: async () => {},
  };
}

/**
 * `basic.consume` for as many messages as the queue held when the reader opened: RabbitMQ
 * refuses `basic.get` on a quorum queue with a single active consumer (per-key partitions). When
 * another consumer is the active one, nothing arrives: after `idleMs` without a message the
 * reader reports the queue empty.
 */
export async function consumeReader(
  channel: Channel,
  queue: string,
  clock: Clock,
  idleMs: number,
): Promise<QueueReader> {
  let remaining = (await channel.checkQueue(queue)).messageCount;
  const buffer: Message[] = [];
  let arrived: (() => void) | undefined;
  let tag: string | undefined;
  if (remaining > 0) {
    await channel.prefetch(Math.min(500, remaining));
    ({ consumerTag: tag } = await channel.consume(queue, (message) => {
      if (message === null) return;
      buffer.push(message);
      arrived?.();
    }));
  }
  const next = (): Promise<boolean> =>
    new Promise<boolean>((resolve) => {
      let timer: TimerHandle | undefined = undefined;
      arrived = () => {
        arrived = undefined;
        if (timer !== undefined) clock.clearTimeout(timer);
        resolve(true);
      };
      timer = clock.setTimeout(() => {
        arrived = undefined;
        resolve(false);
      }, idleMs);
    });
  return {
    take: async (max) => {
      const out: Message[] = [];
      while (out.length < max && remaining > 0) {
        if (buffer.length === 0 && !(await next())) {
          remaining = 0;
          break;
        }
        const message = buffer.shift();
        if (message === undefined) continue;
        out.push(message);
        remaining--;
      }
      return out;
    },
    close: async () => {
      if (tag !== undefined) await channel.cancel(tag).catch(() => undefined);
    },
  };
}
