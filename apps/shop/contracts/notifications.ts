/**
 * The queue of the notifications context: the events it mails customers about
 * (`account.signed_up.v1`, `order.confirmed.v1`, `order.cancelled.v1`), routed here by the
 * relay from where their contexts publish them.
 */
export const notificationsQueue = 'shop.notifications';
