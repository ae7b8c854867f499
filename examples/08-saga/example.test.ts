import { expect, it } from 'vitest';
import { advanceUntil, createTestDb } from 'keel/testing';
import { ManualClock, sleep } from 'keel/time';
import { runExample } from './main.ts';

it('examples/08-saga: one order completes, one is undone in reverse, and one outlives its runner with each step applied once', async () => {
  await using db = await createTestDb();
  const clock = new ManualClock();
  const lines: string[] = [];
  await runExample({
    db,
    clock,
    wait: (ms) => advanceUntil(clock, sleep(ms, { clock })),
    log: (line) => lines.push(line),
  });
  expect(lines).toEqual([
    'o-1 COMPLETED — process-a: reserve, charge, ship',
    'o-2 COMPENSATED — process-a: reserve, charge, ship failed (carrier: no delivery to AQ), undo charge, undo reserve',
    'o-3 as stored when process-a died: RUNNING at ship; recorded reserve, charge; leased to process-a',
    // Process B ran ship only, from the stored state; the carrier saw it twice under one key.
    'o-3 COMPLETED — process-a: reserve, charge; process-b: ship',
    'o-3 calls per idempotency key: reserve 1, charge 1, ship 2; effects applied: 3',
  ]);
});
