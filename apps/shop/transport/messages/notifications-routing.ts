import type { Envelope, Publisher } from '../../../../src/messaging/index.ts';
import { accountsTopic } from '../../contracts/accounts.ts';
import { notificationsQueue } from '../../contracts/notifications.ts';
import { orderEventsStream } from '../../contracts/order-events.ts';

/**
 * Subscribes the notifications queue to the events it mails about, at the relay: what the
 * accounts context publishes goes to `shop.notifications` (nothing else reads it), and the
 * order stream's events go to the stream through `next` and then to `shop.notifications` too.
 * A failure after the stream took a batch makes the relay publish it again: the stream's
 * projection and the notifications handler each apply an event once, by its id.
 */
export function notificationsRouting(next: Publisher, queue: Publisher): Publisher {
  return {
    async publish(destination: string, messages: readonly Envelope[]): Promise<void> {
      if (destination === accountsTopic) return queue.publish(notificationsQueue, messages);
      await next.publish(destination, messages);
      if (destination === orderEventsStream) await queue.publish(notificationsQueue, messages);
    },
  };
}
