import type { Queryable } from '../../../src/db/index.ts';
import type { NotificationKind } from '../domain/notifications.ts';

export interface SentNotification {
  eventId: string;
  kind: NotificationKind;
  recipient: string;
  subject: string;
  sentAt: string;
}

export async function wasNotified(db: Queryable, eventId: string): Promise<boolean> {
  const { rows } = await db.query('SELECT 1 FROM notifications_sent WHERE event_id = $1', [eventId]);
  return rows.length > 0;
}

/** Records a sent mail; a second record for the event (a concurrent redelivery) changes nothing. */
export async function recordNotification(db: Queryable, sent: SentNotification): Promise<void> {
  await db.query(
    `INSERT INTO notifications_sent (event_id, kind, recipient, subject, sent_at) VALUES ($1, $2, $3, $4, $5)
     ON CONFLICT (event_id) DO NOTHING`,
    [sent.eventId, sent.kind, sent.recipient, sent.subject, sent.sentAt],
  );
}

export async function notificationsTo(db: Queryable, recipient: string): Promise<SentNotification[]> {
  const { rows } = await db.query<{
    event_id: string;
    kind: NotificationKind;
    recipient: string;
    subject: string;
    sent_at: Date | string;
  }>(
    `SELECT event_id::text AS event_id, kind, recipient, subject, sent_at
     FROM notifications_sent WHERE recipient = $1 ORDER BY sent_at, event_id`,
    [recipient],
  );
  return rows.map((row) => ({
    eventId: row.event_id,
    kind: row.kind,
    recipient: row.recipient,
    subject: row.subject,
    sentAt: new Date(row.sent_at).toISOString(),
  }));
}
