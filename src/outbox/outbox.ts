import type { Queryable } from '../db/db.ts';
import { InvalidArgumentError } from '../errors/index.ts';
import type { Envelope } from '../messaging/envelope.ts';
import { outboxChannel } from './schema.ts';

/**
 * Writes messages into the outbox table in the caller's transaction, so they are published if
 * and only if the transaction commits. `tx` is anything with `query(sql, params)`: a keel
 * transaction, a pg `PoolClient` inside BEGIN, a PGlite transaction.
 *
 * A relay publishes each committed row at least once; consumers deduplicate on `Envelope.id`.
 */
export async function addToOutbox(
  tx: Queryable,
  destination: string,
  messages: Envelope | readonly Envelope[],
): Promise<void> {
  const list: readonly Envelope[] = Array.isArray(messages) ? messages : [messages as Envelope];
  if (typeof destination !== 'string' || destination.length === 0) {
    throw new InvalidArgumentError('destination', 'a non-empty string', destination);
  }
  if (list.length === 0) return;
  const rows = list.map((m) => ({
    id: m.id,
    type: m.type,
    key: m.key,
    payload: m.payload,
    headers: m.headers,
    occurred_at: m.occurredAt,
    hlc: m.hlc ?? null,
  }));
  // The NOTIFY is delivered only at commit, together with the rows.
  await tx.query(
    `WITH inserted AS (
       INSERT INTO keel_outbox (destination, id, type, key, payload, headers, occurred_at, hlc)
       SELECT $1, m.id, m.type, m.key, m.payload, m.headers, m.occurred_at, m.hlc
       FROM jsonb_to_recordset($2::jsonb)
         AS m(id uuid, type text, key text, payload jsonb, headers jsonb, occurred_at timestamptz, hlc text)
       RETURNING 1)
     SELECT pg_notify($3, '') FROM (SELECT count(*) FROM inserted) AS c`,
    [destination, JSON.stringify(rows), outboxChannel],
  );
}

/** `outbox.add(tx, destination, messages)`: the same as `addToOutbox`, as an object to pass around. */
export const outbox = { add: addToOutbox } as const;
