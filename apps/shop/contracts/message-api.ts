import { asyncApiDocument, type AsyncApiDocument } from '../../../src/contracts/index.ts';
import { accountSignedUpV1, accountsTopic } from './accounts.ts';
import { notificationsQueue } from './notifications.ts';
import { orderCancelledV1, orderConfirmedV1, orderEventsStream } from './order-events.ts';
import { orderPlacedV1, ordersQueue } from './orders.ts';

// The shop's message contract: every destination its contexts publish to or read from, with
// the versioned message types on each. apps/shop/contracts/asyncapi.json is this document as
// published, kept current like openapi.json (`npm run contracts -- write`). The order-fulfilment
// saga has no channel here because it exchanges no messages: keel sends a saga's commands (and
// waits for replies) only for a step's `request` or a compensation's `command`, and each of its
// steps is a call the worker makes itself. asyncapi.test.ts holds any command it comes to send to
// a channel documented here.

/** The shop's messages as an AsyncAPI 3.0 document. */
export function shopAsyncApiDocument(): AsyncApiDocument {
  return asyncApiDocument({
    info: {
      title: 'keel shop events',
      version: '1.0.0',
      description:
        'Every message is written to the outbox in the transaction of the change it reports, and published at least once: consumers deduplicate on the envelope id. A breaking change to a payload is a new version, a new type (`name.v2`), published beside the old one while consumers move over.',
    },
    channels: {
      orders: {
        address: ordersQueue,
        description:
          'The worker’s work queue: each placed order starts its fulfilment saga. Keyed by order id.',
        messages: [orderPlacedV1],
        actions: ['send', 'receive'],
      },
      orderEvents: {
        address: orderEventsStream,
        description:
          'The order stream: every event of an order’s life in the order it happened, kept for replay (analytics rebuilds its read model from the first entry). The relay appends each `order.placed.v1` on its way to the orders queue; the fulfilment saga writes the outcome.',
        messages: [orderPlacedV1, orderConfirmedV1, orderCancelledV1],
        actions: ['send', 'receive'],
      },
      accounts: {
        address: accountsTopic,
        description:
          'What the accounts context publishes. The relay routes it to the notifications queue (nothing else reads it yet).',
        messages: [accountSignedUpV1],
        actions: ['send'],
      },
      notifications: {
        address: notificationsQueue,
        description:
          'The notifications context’s queue: the events it mails customers about, routed here by the relay from the accounts topic and the order stream.',
        messages: [accountSignedUpV1, orderConfirmedV1, orderCancelledV1],
        actions: ['receive'],
      },
    },
  });
}
