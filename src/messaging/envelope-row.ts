import type { Envelope } from './envelope.ts';

/** The columns an envelope is stored in by the PostgreSQL queue and the table outbox, as pg and PGlite return them. */
export interface EnvelopeRow {
  id: string;
  type: string;
  key: string | null;
  payload: unknown;
  headers: Record<string, string>;
  occurred_at: Date | string;
  hlc: string | null;
}

/** The envelope a row was written from (see `envelopeRecordset` for the way in). */
export function envelopeFromRow(row: EnvelopeRow): Envelope {
  return {
    id: row.id,
    type: row.type,
    key: row.key,
    payload: row.payload,
    headers: row.headers,
    occurredAt:
      row.occurred_at instanceof Date
        ? row.occurred_at.toISOString()
        : new Date(row.occurred_at).toISOString(),
    ...(row.hlc === null ? {} : { hlc: row.hlc }),
  };
}
