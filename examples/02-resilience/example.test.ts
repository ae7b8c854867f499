import { expect, it } from 'vitest';
import { advanceUntil } from 'keel/testing';
import { ManualClock } from 'keel/time';
import { runExample } from './main.ts';

it('examples/02-resilience prints how each policy acted', async () => {
  const clock = new ManualClock();
  const lines: string[] = [];
  await advanceUntil(clock, runExample({ clock, log: (line) => lines.push(line) }), { stepMs: 10 });
  expect(lines).toEqual([
    't=   0ms retry   after attempt 1: 503 from inventory; waiting 100 ms',
    't= 100ms retry   after attempt 2: 503 from inventory; waiting 200 ms',
    "t= 600ms timeout after 300 ms: the call's signal is aborted",
    't= 600ms breaker opens (consecutive-failures) until t=1600ms',
    't= 600ms retry   after attempt 3: timed out after 300 ms; waiting 400 ms',
    // The breaker asks for 600 ms more; the backoff's 800 ms is longer, so that wins.
    't=1000ms retry   after attempt 4: circuit is open; the call was not made; waiting 800 ms',
    't=1800ms breaker half-open: one probe goes through',
    't=1800ms breaker closes',
    't=1800ms stock level of sku-1: 42 (after 4 calls to inventory)',
    't=1800ms operator isolates the breaker',
    't=1800ms fallback answers',
    't=1800ms stock level of sku-1: -1 (fallback; still 4 calls to inventory)',
  ]);
});
