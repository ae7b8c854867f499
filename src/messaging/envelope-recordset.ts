import type { Envelope } from './envelope.ts';

/**
 * Envelopes as the JSON array that multi-row inserts read with `jsonb_to_recordset(...) AS
 * m(id uuid, type text, key text, payload jsonb, headers jsonb, occurred_at timestamptz, hlc text)`:
 * the PostgreSQL queue's publish and both outboxes' table inserts.
 */
export function envelopeRecordset(messages: readonly Envelope[]): string {
  return JSON.stringify(
    messages.map((m) => ({
      id: m.id,
      type: m.type,
      key: m.key,
      payload: m.payload,
      headers: m.headers,
      occurred_at: m.occurredAt,
      hlc: m.hlc ?? null,
    })),
  );
}
