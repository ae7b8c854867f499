import type { Queryable } from '../db/db.ts';
import type { Envelope } from '../messaging/envelope.ts';

/**
 * Writes a message the WAL outbox relay could not publish into the table outbox as a parked row:
 * `keel outbox status` counts it, `keel outbox retry` hands it to an `OutboxRelay`. Parking it
 * again (a relay that died after parking, before confirming) changes nothing.
 */
export async function parkWalOutboxMessage(
  db: Queryable,
  destination: string,
  message: Envelope,
  failure: { attempts: number; error: string; now: Date },
): Promise<void> {
  await db.query(
    `INSERT INTO keel_outbox (destination, id, type, key, payload, headers, occurred_at, hlc, attempts, parked_at, last_error)
     VALUES ($1, $2::uuid, $3, $4, $5::jsonb, $6::jsonb, $7::timestamptz, $8, $9, $10, $11)
     ON CONFLICT (id) DO NOTHING`,
    [
      destination,
      message.id,
      message.type,
      message.key,
      JSON.stringify(message.payload),
      JSON.stringify(message.headers),
      message.occurredAt,
      message.hlc ?? null,
      failure.attempts,
      failure.now,
      failure.error,
    ],
  );
}
