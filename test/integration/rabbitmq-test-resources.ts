// What the RabbitMQ integration files open and must put away: brokers, consumers and a side
// connection for looking at queues directly. Each test's consumers and brokers are closed after
// it, the side connection and every queue the brokers declared after the file.
import { connect, type ChannelModel } from 'amqplib';
import { afterAll, afterEach, beforeAll } from 'vitest';
import type { QueueConsumer } from '../../src/messaging/queue-consumer.ts';
import {
  deleteQueues,
  rabbitMqUrl,
  requireRabbitMq,
} from '../../src/messaging/adapters/rabbitmq/test-support.ts';

interface ClosableBroker {
  declaredQueues(): Iterable<string>;
  close(): Promise<void>;
}

export interface RabbitMqTestResources<B extends ClosableBroker> {
  /** Push what a test opens; closed after it. */
  readonly brokers: B[];
  readonly consumers: QueueConsumer[];
  /** The side connection (opened before the file's first test). */
  side: () => ChannelModel;
}

/** Registers the file's hooks; fails, naming the server, when RabbitMQ is not there. */
export function rabbitMqTestResources<B extends ClosableBroker>(): RabbitMqTestResources<B> {
  const brokers: B[] = [];
  const consumers: QueueConsumer[] = [];
  const queues = new Set<string>();
  let side: ChannelModel | undefined;
  beforeAll(async () => {
    await requireRabbitMq();
    side = await connect(rabbitMqUrl);
    // Tests that cut connections from the server side cut this one too.
    side.on('error', () => {});
  });
  afterEach(async () => {
    for (const consumer of consumers.splice(0)) await consumer.stop({ drainMs: 200 });
    for (const broker of brokers.splice(0)) {
      for (const name of broker.declaredQueues()) queues.add(name);
      await broker.close();
    }
  });
  afterAll(async () => {
    await side?.close().catch(() => undefined);
    await deleteQueues(queues);
  });
  return {
    brokers,
    consumers,
    side: () => {
      if (side === undefined) throw new Error('the side connection opens before the first test');
      return side;
    },
  };
}
