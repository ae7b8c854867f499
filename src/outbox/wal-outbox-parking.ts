import type { Queryable } from '../db/db.ts';
import type { Envelope } from '../messaging/envelope.ts';
import { envelopeRecordset } from '../messaging/envelope-recordset.ts';
import { outboxChannel } from './schema.ts';

/**
 * Writes a message the WAL outbox relay could not publish into the table outbox as a parked row:
 * `keel outbox status` counts it, `keel outbox retry` hands it to an `OutboxRelay`. Parking it
 * again (a relay that died after parking, before confirming) changes nothing, also once the row
 * was retried and published: the archive is checked too, for as long as it keeps the row.
 */
export async function parkWalOutboxMessage(
  db: Queryable,
  destination: string,
  message: Envelope,
  failure: { attempts: number; error: string; now: Date },
): Promise<void> {
  await db.query(
    `INSERT INTO keel_outbox (destination, id, type, key, payload, headers, occurred_at, hlc, attempts, parked_at, last_error)
     SELECT $1, $2::uuid, $3, $4, $5::jsonb, $6::jsonb, $7::timestamptz, $8, $9, $10, $11
     WHERE NOT EXISTS (SELECT 1 FROM keel_outbox_archive a WHERE a.id = $2::uuid)
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

/**
 * Writes messages the WAL outbox relay must not publish yet — later messages of a key that has
 * an unpublished row in the table outbox (a parked one, say) — into the table outbox as rows to
 * publish, behind that row: the table relay then publishes them in order once the row ahead is
 * retried. Writing one again (after a relay's restart) changes nothing, also once the table relay
 * published it (the archive is checked too); the table relay is woken.
 */
export async function holdWalOutboxMessages(
  db: Queryable,
  destination: string,
  messages: readonly Envelope[],
): Promise<void> {
  if (messages.length === 0) return;
  await db.query(
    `WITH inserted AS (
       INSERT INTO keel_outbox (destination, id, type, key, payload, headers, occurred_at, hlc)
       SELECT $1, m.id, m.type, m.key, m.payload, m.headers, m.occurred_at, m.hlc
       FROM ROWS FROM (jsonb_to_recordset($2::jsonb)
           AS (id uuid, type text, key text, payload jsonb, headers jsonb, occurred_at timestamptz, hlc text))
         WITH ORDINALITY AS m(id, type, key, payload, headers, occurred_at, hlc, position)
       WHERE NOT EXISTS (SELECT 1 FROM keel_outbox_archive a WHERE a.id = m.id)
       -- Numbered in the order given: the anti-join alone may hand the rows over in another.
       ORDER BY m.position
       ON CONFLICT (id) DO NOTHING
       RETURNING 1)
     SELECT pg_notify($3, '') FROM (SELECT count(*) FROM inserted) AS c`,
    [destination, envelopeRecordset(messages), outboxChannel],
  );
}

/**
 * Of the given (destination, key) pairs — or of all, without pairs — those with a row in the
 * table outbox not yet published (parked or waiting): a WAL message of such a key must wait
 * behind it. Each half reads a partial index of the table's unpublished rows.
 */
export async function keysWithUnpublishedRows(
  db: Queryable,
  pairs?: readonly { destination: string; key: string }[],
): Promise<{ destination: string; key: string }[]> {
  const filter =
    pairs === undefined ? '' : 'AND (destination, key) IN (SELECT * FROM unnest($1::text[], $2::text[]))';
  const params = pairs === undefined ? [] : [pairs.map((p) => p.destination), pairs.map((p) => p.key)];
  const { rows } = await db.query<{ destination: string; key: string }>(
    `SELECT destination, key FROM keel_outbox
       WHERE published_at IS NULL AND parked_at IS NULL AND key IS NOT NULL ${filter}
     UNION
     SELECT destination, key FROM keel_outbox
       WHERE published_at IS NULL AND key IS NOT NULL AND parked_at IS NOT NULL ${filter}`,
    params,
  );
  return rows;
}
