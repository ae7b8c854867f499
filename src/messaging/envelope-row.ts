import { isoFromTimestamptz } from '../db/timestamptz-text.ts';
import type { Envelope } from './envelope.ts';

/**
 * The columns an envelope is stored in by the PostgreSQL queue and the table outbox, as pg and
 * PGlite return them; `occurred_at` as a Date, or as text where a hot read selects
 * `occurred_at::text` (src/db/timestamptz-text.ts).
 */
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
    occurredAt: isoFromTimestamptz(row.occurred_at),
    ...(row.hlc === null ? {} : { hlc: row.hlc }),
  };
}
