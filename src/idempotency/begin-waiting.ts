import { sleep, type Clock } from '../time/index.ts';
import type { BeginOutcome, BeginRequest, IdempotencyStore } from './idempotency-store.ts';

/**
 * `store.begin(request)`, and while another holder still runs the key, again every `pollMs`
 * until `waitMs` has passed: the first holder's response, once stored, replays. Rejects with
 * `AbortedError` when `signal` aborts during a wait.
 */
export async function beginWaiting(
  store: IdempotencyStore,
  request: BeginRequest,
  wait: { waitMs: number; pollMs: number; clock: Clock; signal?: AbortSignal },
): Promise<BeginOutcome> {
  const { clock } = wait;
  let outcome = await store.begin(request);
  const deadline = clock.now() + wait.waitMs;
  while (outcome.kind === 'in-flight' && clock.now() < deadline) {
    await sleep(Math.min(wait.pollMs, deadline - clock.now()), { clock, signal: wait.signal });
    outcome = await store.begin(request);
  }
  return outcome;
}
