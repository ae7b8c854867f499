import type { Account } from './account.ts';

/** What the customer is told, and why: one kind per event the notifications context reads. */
export type NotificationKind = 'welcome' | 'order-confirmed' | 'order-cancelled';

export interface MailContent {
  readonly subject: string;
  readonly text: string;
}

export function welcomeMail(account: Pick<Account, 'id' | 'name'>): MailContent {
  return letter(
    `Welcome to the shop, ${account.name}`,
    account,
    `your account is ready. Place orders with your customer id ${account.id}.`,
  );
}

export function orderConfirmedMail(
  account: Pick<Account, 'name'>,
  order: { orderId: string; amountCents: number },
): MailContent {
  return letter(
    `Order ${order.orderId} is confirmed`,
    account,
    `your order ${order.orderId} is confirmed: ${formatCents(order.amountCents)} charged.`,
  );
}

export function orderCancelledMail(
  account: Pick<Account, 'name'>,
  order: { orderId: string; reason: string },
): MailContent {
  return letter(
    `Order ${order.orderId} is cancelled`,
    account,
    `your order ${order.orderId} is cancelled: ${order.reason}. Nothing is charged for it.`,
  );
}

/** Every mail the shop sends has the same frame: a greeting, one paragraph, the signature. */
function letter(subject: string, to: Pick<Account, 'name'>, body: string): MailContent {
  return { subject, text: [`Hello ${to.name},`, '', body, '', '— the shop'].join('\n') };
}

function formatCents(cents: number): string {
  return `${Math.floor(cents / 100)}.${String(cents % 100).padStart(2, '0')}`;
}
