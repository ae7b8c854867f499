import type { Envelope, Publisher } from '../../../src/messaging/index.ts';
import { orderEventsStream } from '../contracts/order-events.ts';
import { orderPlacedV1, ordersQueue } from '../contracts/orders.ts';

export interface OrderStreamPublisherOptions {
  /** Where queue destinations go (the worker's `shop.orders`, the sagas' queues). */
  queue: Publisher;
  /** The order stream (`shop.order-events`). */
  stream: Publisher;
}

/**
 * The relay's publisher: routes `shop.order-events` to the stream and everything else to the
 * queue, and tees `order.placed.v1` on its way to `shop.orders` into the stream as well. So an
 * order's placed event reaches both from its one outbox row: the orders POST path writes no
 * second row.
 *
 * The stream is appended first: the worker acts on an order only once its placed event is in
 * the stream, so the outcome events the saga writes after that come later in the stream. If the
 * queue then refuses, the publish rejects and the relay publishes the batch again: the stream
 * holds the placed events twice, which the analytics projection applies once.
 */
export function orderStreamPublisher({ queue, stream }: OrderStreamPublisherOptions): Publisher {
  return {
    async publish(destination: string, messages: readonly Envelope[]): Promise<void> {
      if (destination === orderEventsStream) return stream.publish(destination, messages);
      if (destination === ordersQueue) {
        const placed = messages.filter((m) => orderPlacedV1.is(m));
        if (placed.length > 0) await stream.publish(orderEventsStream, placed);
      }
      return queue.publish(destination, messages);
    },
  };
}
