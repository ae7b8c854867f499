import type { Db } from '../../../../src/db/index.ts';
import { PermanentError, type Envelope, type Handler } from '../../../../src/messaging/index.ts';
import type { Clock } from '../../../../src/time/index.ts';
import { accountSignedUpV1 } from '../../contracts/accounts.ts';
import { orderCancelledV1, orderConfirmedV1 } from '../../contracts/order-events.ts';
import {
  orderCancelledMail,
  orderConfirmedMail,
  welcomeMail,
  type MailContent,
  type NotificationKind,
} from '../../domain/notifications.ts';
import type { Mailer } from '../../notifications/mailer.ts';
import { findAccount } from '../../storage/accounts-store.ts';
import { recordNotification, wasNotified } from '../../storage/notifications-store.ts';

export interface NotificationsHandlerOptions {
  db: Db;
  clock: Clock;
  mailer: Mailer;
  /** The domain of the Message-IDs: `<event id>@<domain>`. Default `shop.keel`. */
  messageIdDomain?: string;
}

/**
 * Mails the customer about what happened to them: a welcome on `account.signed_up.v1`, the
 * outcome of an order on `order.confirmed.v1` and `order.cancelled.v1` (to the account whose id
 * the order carries; an order without an account mails nobody).
 *
 * A mail cannot join a database transaction, so this is at-least-once made as close to once as
 * it gets: a redelivered event whose mail was recorded sends nothing; a crash between the send
 * and the record sends again — with the same Message-ID, derived from the event, by which mail
 * clients and the local mailbox recognise the duplicate.
 */
export function notificationsHandler(options: NotificationsHandlerOptions): Handler {
  const { db, clock, mailer } = options;
  const domain = options.messageIdDomain ?? 'shop.keel';
  return async (message, context) => {
    if (await wasNotified(db, message.id)) return;
    const notification = await notificationFor(db, message);
    if (notification === undefined) return;
    const { kind, to, content } = notification;
    await mailer.send({ id: `${message.id}@${domain}`, to, ...content }, context.signal);
    await recordNotification(db, {
      eventId: message.id,
      kind,
      recipient: to,
      subject: content.subject,
      sentAt: new Date(clock.now()).toISOString(),
    });
  };
}

async function notificationFor(
  db: Db,
  message: Envelope,
): Promise<{ kind: NotificationKind; to: string; content: MailContent } | undefined> {
  if (accountSignedUpV1.is(message)) {
    const { payload } = accountSignedUpV1.parse(message);
    const content = welcomeMail({ id: payload.accountId, name: payload.name });
    return { kind: 'welcome', to: payload.email, content };
  }
  if (orderConfirmedV1.is(message)) {
    const { payload } = orderConfirmedV1.parse(message);
    const account = await findAccount(db, payload.customerId);
    return (
      account && { kind: 'order-confirmed', to: account.email, content: orderConfirmedMail(account, payload) }
    );
  }
  if (orderCancelledV1.is(message)) {
    const { payload } = orderCancelledV1.parse(message);
    const account = await findAccount(db, payload.customerId);
    return (
      account && { kind: 'order-cancelled', to: account.email, content: orderCancelledMail(account, payload) }
    );
  }
  throw new PermanentError(`notifications has nothing to say about ${message.type}`);
}
