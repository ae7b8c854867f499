import { sleep, type Clock } from '../time/index.ts';
import type { BeginOutcome } from './idempotency-store.ts';

/**
 * `look()` — a store's `begin`, or a look that claims nothing — and while another holder still
 * runs the key, again every `pollMs` until `waitMs` has passed: the first holder's response, once
 * stored, replays. Rejects with `AbortedError` when `signal` aborts during a wait.
 */
export async function waitWhileInFlight<T extends BeginOutcome>(
  look: () => Promise<T>,
  wait: { waitMs: number; pollMs: number; clock: Clock; signal?: AbortSignal },
): Promise<T> {
  const { clock } = wait;
  let outcome = await look();
  const deadline = clock.now() + wait.waitMs;
  while (outcome.kind === 'in-flight' && clock.now() < deadline) {
    await sleep(Math.min(wait.pollMs, deadline - clock.now()), { clock, signal: wait.signal });
    outcome = await look();
  }
  return outcome;
}
