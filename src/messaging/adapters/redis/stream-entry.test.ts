// Stream entry layout, without a server.
import { describe, expect, it } from 'vitest';
import { createEnvelope } from '../../envelope.ts';
import { decodeEntry, encodeEntry } from './stream-entry.ts';

describe('decodeEntry', () => {
  it('reads back what encodeEntry wrote, with the retry fields', () => {
    const sent = createEnvelope({ type: 'a.b.v1', key: 'k', payload: { x: [1] }, hlc: '1:2:n' });
    expect(decodeEntry(encodeEntry(sent))).toEqual({
      envelope: sent,
      priorAttempts: 0,
      firstFailedAt: undefined,
    });
    const retried = encodeEntry(
      { ...sent, key: null, hlc: undefined },
      { priorAttempts: 2, firstFailedAt: '2026-01-01T00:00:00.000Z', retryOf: '1-0' },
    );
    const decoded = decodeEntry(retried);
    expect(decoded).toMatchObject({ priorAttempts: 2, firstFailedAt: '2026-01-01T00:00:00.000Z' });
    expect(decoded?.envelope.key).toBeNull();
    expect(decoded?.envelope).not.toHaveProperty('hlc');
  });

  it('refuses entries keel did not write: missing fields, bad JSON, headers that are not an object', () => {
    expect(decodeEntry(['type', 't', 'occurredAt', 'x'])).toBeUndefined();
    expect(decodeEntry(['id', 'i', 'type', 't', 'occurredAt', 'x', 'payload', '{'])).toBeUndefined();
    expect(decodeEntry(['id', 'i', 'type', 't', 'occurredAt', 'x', 'headers', '[]'])).toBeUndefined();
    expect(decodeEntry(['id', 'i', 'type', 't', 'occurredAt', 'x', 'attempt', '-1'])).toMatchObject({
      envelope: { payload: null, headers: {}, key: null },
      priorAttempts: 0,
    });
  });
});
