import { describe, expect, it } from 'vitest';
import { orderCancelledMail, orderConfirmedMail, welcomeMail } from './notifications.ts';

describe("the shop's mail", () => {
  it('greets by name, says what happened, and signs', () => {
    expect(welcomeMail({ id: 'a-1', name: 'Ada' })).toEqual({
      subject: 'Welcome to the shop, Ada',
      text: 'Hello Ada,\n\nyour account is ready. Place orders with your customer id a-1.\n\n— the shop',
    });
    expect(orderConfirmedMail({ name: 'Ada' }, { orderId: 'o-1', amountCents: 1505 }).text).toContain(
      'your order o-1 is confirmed: 15.05 charged.',
    );
    expect(orderConfirmedMail({ name: 'Ada' }, { orderId: 'o-2', amountCents: 7 }).text).toContain(
      '0.07 charged',
    );
    expect(orderCancelledMail({ name: 'Ada' }, { orderId: 'o-3', reason: 'out of stock: rare-1' })).toEqual({
      subject: 'Order o-3 is cancelled',
      text: 'Hello Ada,\n\nyour order o-3 is cancelled: out of stock: rare-1. Nothing is charged for it.\n\n— the shop',
    });
  });
});
