import type { Account } from './account.ts';

/** What the customer is told, and why: one kind per event the notifications context reads. */
export type NotificationKind = 'welcome' | 'order-confirmed' | 'order-cancelled';

export interface MailContent {
  readonly subject: string;
  readonly text: string;
}

export function welcomeMail(account: Pick<Account, 'id' | 'name'>): MailContent {
  return {
    subject: `Welcome to the shop, ${account.name}`,
    text: [
      `Hello ${account.name},`,
      '',
      `your account is ready. Place orders with your customer id ${account.id}.`,
      '',
      '— the shop',
    ].join('\n'),
  };
}

export function orderConfirmedMail(
  account: Pick<Account, 'name'>,
  order: { orderId: string; amountCents: number },
): MailContent {
  return {
    subject: `Order ${order.orderId} is confirmed`,
    text: [
      `Hello ${account.name},`,
      '',
      `your order ${order.orderId} is confirmed: ${formatCents(order.amountCents)} charged.`,
      '',
      '— the shop',
    ].join('\n'),
  };
}

export function orderCancelledMail(
  account: Pick<Account, 'name'>,
  order: { orderId: string; reason: string },
): MailContent {
  return {
    subject: `Order ${order.orderId} is cancelled`,
    text: [
      `Hello ${account.name},`,
      '',
      `your order ${order.orderId} is cancelled: ${order.reason}. Nothing is charged for it.`,
      '',
      '— the shop',
    ].join('\n'),
  };
}

function formatCents(cents: number): string {
  return `${Math.floor(cents / 100)}.${String(cents % 100).padStart(2, '0')}`;
}
