import { expect, it } from 'vitest';
import { createTestDb } from 'keel/testing';
import { ManualClock } from 'keel/time';
import { runExample } from './main.ts';

it('examples/09-idempotency-keys: a retried key replays without a second payment, a 5xx frees its key, an expired key runs again, and the processor charges each payment once', async () => {
  await using db = await createTestDb();
  const clock = new ManualClock(Date.parse('2026-06-01T00:00:00Z'));
  const lines: string[] = [];
  await runExample({ db, clock, wait: (ms) => clock.advance(ms), log: (line) => lines.push(line) });
  expect(lines).toEqual([
    'k-1: 201 {"id":1,"cents":1200}',
    'k-1 again, same body: 201 {"id":1,"cents":1200}, Idempotent-Replayed: true',
    'k-1, another body: 422 KEEL_IDEMPOTENCY_KEY_REUSED',
    'payments in the table: 1, events in the outbox: 1',
    // Payment 2 was written and rolled back with its transaction; its id stays used.
    'k-2 during a failover: 503 KEEL_DB_UNAVAILABLE; retried: 201 {"id":3,"cents":500}',
    'k-1 after its 1 s TTL: 201 {"id":4,"cents":1200}',
    'payments in the table: 3, events in the outbox: 3',
    'a charge failed (no answer from the processor within 10 s); its retry sends the same key',
    '3 events, each delivered twice: 3 charges in 4 calls to the processor',
  ]);
});
