import { KeelError } from '../errors/index.ts';
import type { Envelope } from '../messaging/envelope.ts';
import type { WalOutboxRecord } from './wal-outbox.ts';

/**
 * Reads one logical message written by `addToWalOutbox`. Anything else under the prefix (a
 * newer encoding, another writer's bytes) fails with `KEEL_MESSAGE_INVALID` naming what is wrong.
 */
export function decodeWalOutboxRecord(content: Uint8Array): WalOutboxRecord {
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(content.buffer, content.byteOffset, content.byteLength).toString('utf8'));
  } catch (error) {
    throw invalid('is not JSON', error);
  }
  const record = value as Partial<WalOutboxRecord> | null;
  if (record === null || typeof record !== 'object') throw invalid('is not an object');
  if (record.v !== 1) {
    throw invalid(`has encoding version ${String(record.v)}; this relay reads version 1`, undefined, {
      version: record.v,
    });
  }
  if (typeof record.destination !== 'string' || record.destination.length === 0) {
    throw invalid('has no destination');
  }
  if (!Array.isArray(record.messages)) throw invalid('has no messages array');
  for (const [index, message] of record.messages.entries()) {
    const m = message as Partial<Envelope> | null;
    if (
      m === null ||
      typeof m !== 'object' ||
      typeof m.id !== 'string' ||
      typeof m.type !== 'string' ||
      typeof m.occurredAt !== 'string' ||
      (m.key !== null && typeof m.key !== 'string') ||
      m.headers === null ||
      typeof m.headers !== 'object'
    ) {
      throw invalid(`has messages[${index}] that is not an envelope`);
    }
  }
  return record as WalOutboxRecord;
}

function invalid(what: string, cause?: unknown, details?: Record<string, unknown>): KeelError {
  return new KeelError('KEEL_MESSAGE_INVALID', `a WAL outbox record ${what}`, { cause, details });
}

/** A record a newer writer encoded: this relay must not skip it, only stop until it is upgraded. */
export function isNewerWalOutboxRecord(error: unknown): boolean {
  return error instanceof KeelError && error.details?.version !== undefined;
}
