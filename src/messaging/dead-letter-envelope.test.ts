import { describe, expect, it } from 'vitest';
import { deadLetterEnvelope } from './dead-letter-envelope.ts';
import { describeErrorOnOneLine } from './describe-error.ts';
import { createEnvelope } from './envelope.ts';

const now = '2026-12-05T07:00:00.000Z';

describe('deadLetterEnvelope', () => {
  const envelope = createEnvelope({
    type: 'job.run.v1',
    payload: { n: 1 },
    headers: { 'correlation-id': 'c' },
  });

  it('keeps the message and says where it came from, why, and when', () => {
    const copy = deadLetterEnvelope(
      { envelope, attempt: 5, firstFailedAt: '2026-12-05T06:00:00.000Z' },
      'jobs',
      new TypeError('boom'),
      now,
    );
    expect(copy).toEqual({
      ...envelope,
      headers: {
        'correlation-id': 'c',
        'x-dead-letter-source': 'jobs',
        'x-dead-letter-error': 'TypeError: boom',
        'x-dead-letter-attempts': '5',
        'x-dead-letter-first-failed-at': '2026-12-05T06:00:00.000Z',
        'x-dead-letter-last-failed-at': now,
      },
    });
  });

  it('a first attempt that fails for good failed first now', () => {
    const first = deadLetterEnvelope({ envelope, attempt: 1, firstFailedAt: undefined }, 'jobs', 'no', now);
    expect(first.headers['x-dead-letter-first-failed-at']).toBe(now);
    expect(first.headers['x-dead-letter-error']).toBe('no');
  });

  it('states the error as `describe` does', () => {
    const copy = deadLetterEnvelope(
      { envelope, attempt: 2, firstFailedAt: undefined },
      'jobs',
      new Error('a\nb'),
      now,
      describeErrorOnOneLine,
    );
    expect(copy.headers['x-dead-letter-error']).toBe('Error: a b');
  });
});
