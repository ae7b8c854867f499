/**
 * When the consumer runtime claims, and how many: the refill policy.
 *
 * - Never more than the room left: `concurrency + prefetch` minus everything held (claimed
 *   ahead, being handled, handled and awaiting its ack). Messages in an ack call still count
 *   until the call returns, so what a consumer holds stays bounded however fast handlers run.
 * - A handler slot that would wait for work (slots busy + messages buffered < concurrency):
 *   claim at once, as many as there is room for, however few that is.
 * - Every slot has work: claim only once the prefetch buffer is at most half full and the room
 *   is at least the low-water mark — min(a quarter of `concurrency + prefetch`, half the
 *   prefetch), rounded up, and at least 1 — so one claim brings many messages instead of one
 *   claim per finished handler.
 *
 * The runtime asks again whenever a claim came back full, and otherwise on a wake-up.
 */
export function lowWaterMark(concurrency: number, prefetch: number): number {
  return Math.max(1, Math.min(Math.ceil((concurrency + prefetch) / 4), Math.ceil(prefetch / 2)));
}

export interface RefillState {
  concurrency: number;
  prefetch: number;
  lowWater: number;
  /** Every message held (see above). */
  held: number;
  /** Handler slots taken. */
  running: number;
  /** Claimed ahead, not yet handed to a handler. */
  buffered: number;
}

/** How many messages to claim now: 0 when there is no room, or when a claim would not pay. */
export function claimSize(state: RefillState): number {
  const { concurrency, prefetch, lowWater, held, running, buffered } = state;
  const free = concurrency + prefetch - held;
  if (free <= 0) return 0;
  // A handler slot would wait for work: fill it, however little the claim brings.
  if (running + buffered < concurrency) return free;
  return buffered <= prefetch / 2 && free >= lowWater ? free : 0;
}
