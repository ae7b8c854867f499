import { describe, expect, it } from 'vitest';
import { createEnvelope, PublishError, type Envelope, type Publisher } from '../../../src/messaging/index.ts';
import { orderEventsStream } from '../contracts/order-events.ts';
import { orderPlacedV1, ordersQueue } from '../contracts/orders.ts';
import { orderStreamPublisher } from './order-stream-publisher.ts';

/** Records every publish, in the order of the calls; `refuse` makes the next call reject. */
function recorder(name: string, calls: string[]): Publisher & { refuse: boolean } {
  const publisher = {
    refuse: false,
    async publish(destination: string, messages: readonly Envelope[]): Promise<void> {
      if (publisher.refuse)
        throw new PublishError(
          destination,
          messages.map((m) => m.id),
        );
      calls.push(`${name} ${destination} ${messages.map((m) => m.type).join(',')}`);
    },
  };
  return publisher;
}

const placed = orderPlacedV1.create({
  orderId: '0190a000-0000-7000-8000-000000000001',
  customerId: 'c-1',
  items: [{ sku: 'book-1', quantity: 1 }],
});
const other = createEnvelope({ type: 'order.audited.v1', payload: {} });

describe('orderStreamPublisher', () => {
  it('tees placed orders into the stream before the queue; routes stream and other destinations alone', async () => {
    const calls: string[] = [];
    const publisher = orderStreamPublisher({
      queue: recorder('queue', calls),
      stream: recorder('stream', calls),
    });
    await publisher.publish(ordersQueue, [placed, other]);
    await publisher.publish(orderEventsStream, [other]);
    await publisher.publish('saga.steps', [other]);
    await publisher.publish(ordersQueue, [other]);
    expect(calls).toEqual([
      'stream shop.order-events order.placed.v1',
      'queue shop.orders order.placed.v1,order.audited.v1',
      'stream shop.order-events order.audited.v1',
      'queue saga.steps order.audited.v1',
      'queue shop.orders order.audited.v1',
    ]);
  });

  it('rejects without touching the queue when the stream refuses: the relay retries the whole batch', async () => {
    const calls: string[] = [];
    const stream = recorder('stream', calls);
    stream.refuse = true;
    const publisher = orderStreamPublisher({ queue: recorder('queue', calls), stream });
    await expect(publisher.publish(ordersQueue, [placed])).rejects.toBeInstanceOf(PublishError);
    expect(calls).toEqual([]);
  });
});
