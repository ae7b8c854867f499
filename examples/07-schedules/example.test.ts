import { expect, it } from 'vitest';
import { advanceUntil, createTestDb } from 'keel/testing';
import { ManualClock, sleep } from 'keel/time';
import { runExample } from './main.ts';

it('examples/07-schedules: two replicas fire each tick once, and after an outage the newest tick within the window fires', async () => {
  await using db = await createTestDb();
  const clock = new ManualClock(Date.parse('2026-06-01T00:00:00Z'));
  const lines: string[] = [];
  await runExample({
    db,
    clock,
    wait: (ms) => advanceUntil(clock, sleep(ms, { clock }), { stepMs: 100 }),
    log: (line) => lines.push(line),
  });
  expect(lines).toEqual([
    '3 ticks fired by two replicas; the outbox holds 3 reminders, one per tick',
    'after 5 s down: ticks from 2026-06-01T00:00:04.000Z skipped, 2026-06-01T00:00:08.000Z fired 500 ms late',
    'reminders.send: fired 4 ticks, next at 2026-06-01T00:00:09.000Z',
  ]);
});
