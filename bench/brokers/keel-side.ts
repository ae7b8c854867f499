// keel's side of a pair, the same for every engine whose broker it is given.
import type { MessageBroker, SourceOptions } from '../../src/messaging/broker.ts';
import type { QueueConsumerOptions } from '../../src/messaging/queue-consumer.ts';
import { until, type Side } from './pair.ts';

export interface KeelSideOptions {
  /** The broker's name for a round's destination. Default: the destination itself. */
  readonly name?: (destination: string) => string;
  /** The consumer's options: concurrency, prefetch, a group. */
  readonly consumer: QueueConsumerOptions & SourceOptions;
  /** Names the consume round in the error when it does not finish: `keel kafka consume`. */
  readonly what: string;
}

/**
 * Publishes a chunk at a time, each awaited before the next; consumes with a no-op handler,
 * counting the runtime's `acked` events until every message is acknowledged, then stops.
 */
export function keelSide(broker: MessageBroker, options: KeelSideOptions): Side {
  const name = options.name ?? ((destination: string): string => destination);
  return {
    publish: async (destination, messages, chunk) => {
      for (let i = 0; i < messages.length; i += chunk) {
        await broker.publish(name(destination), messages.slice(i, i + chunk));
      }
    },
    consume: async (destination, count, span) => {
      let acked = 0;
      const consumer = broker.consumer(name(destination), async () => span.first(), options.consumer);
      consumer.events.on('acked', ({ messages }) => (acked += messages.length));
      await consumer.start();
      await until(() => acked, count, 120_000, options.what);
      span.done();
      await consumer.stop({ drainMs: 1000 });
    },
  };
}
