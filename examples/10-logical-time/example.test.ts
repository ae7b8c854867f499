import { expect, it } from 'vitest';
import { ManualClock } from 'keel/time';
import { runExample } from './main.ts';

it('examples/10-logical-time: the hlc orders cause before effect where wall clocks do not; a vector clock sees the concurrent writes; the drift guard refuses a fast clock', async () => {
  const clock = new ManualClock(Date.parse('2026-06-01T12:00:00Z'));
  const lines: string[] = [];
  await runExample({
    clock,
    log: (line) => lines.push(line),
    settle: async (done) => {
      while (!done()) await clock.advance(10);
    },
  });
  expect(lines).toEqual([
    'by occurredAt: shipment.sent → payment.captured → order.placed',
    'by hlc:        order.placed → payment.captured → shipment.sent',
    'payments stamped its capture after the order although its clock read 1500 ms earlier',
    'cart replicas a {"a":1} and b {"b":1}: concurrent',
    'a merges b\'s write: book, mug at {"a":2,"b":1}, after b\'s',
    "a stamp five minutes ahead is refused (KEEL_CLOCK_DRIFT); payments' clock kept its time",
  ]);
});
