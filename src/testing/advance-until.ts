import type { ManualClock } from '../time/index.ts';
import { statementsSettled } from './statements-in-flight.ts';

export interface AdvanceUntilOptions {
  /** Manual-clock milliseconds per step. Default 100. */
  stepMs?: number;
  /** Steps before giving up; a test that needs more has a bug or a wrong step. Default 10 000. */
  maxSteps?: number;
}

/**
 * Moves a manual clock forward in steps until `until` settles, and returns its value. For
 * integration tests where real I/O (a database round trip) happens between timers: each step
 * lets that I/O complete before time moves on, so a timer set after a query is still fired, and
 * a lease or a deadline does not run out on the manual clock while a statement is on its way. The
 * statements waited for are those of test databases (`createTestDb`); other I/O (a broker's) gets
 * a few turns of the event loop. No real time passes beyond the I/O itself.
 */
export async function advanceUntil<T>(
  clock: ManualClock,
  until: Promise<T>,
  options: AdvanceUntilOptions = {},
): Promise<T> {
  const stepMs = options.stepMs ?? 100;
  const maxSteps = options.maxSteps ?? 10_000;
  let settled = false;
  const watched = until.finally(() => {
    settled = true;
  });
  for (let step = 0; step < maxSteps && !settled; step++) {
    await clock.advance(stepMs);
    // A database round trip completes in I/O callbacks; give it a few event-loop turns.
    for (let turn = 0; turn < 5 && !settled; turn++) await new Promise((resolve) => setImmediate(resolve));
    if (!settled) await statementsSettled();
  }
  if (!settled) throw new Error(`advanceUntil: not settled after ${maxSteps} steps of ${stepMs} ms`);
  return watched;
}
