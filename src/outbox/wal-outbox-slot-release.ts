// How a stopping WAL outbox relay waits for the server to let its slot go. The relay's stream has
// ended by then, but the server process that streamed it (its walsender) can hold the slot a
// moment longer — one whose connection was closed mid-stream notices only at its next read — and
// a relay started meanwhile on the slot would be refused it and stand by a turn of `reconnectMs`.
import type { Queryable } from '../db/db.ts';
import type { Clock, TimerHandle } from '../time/index.ts';

/** How often a stopping relay asks whether its walsender still holds the slot. */
export const slotReleasePollMs = 20;

/**
 * How the wait ended: the server reported the slot let go (`released`), the bound passed with the
 * slot still held (`timed-out`), or the server could not be asked (`unreachable`: a statement
 * failed, and waiting on would tell nothing more).
 */
export type SlotReleaseOutcome = 'released' | 'timed-out' | 'unreachable';

export interface SlotRelease {
  outcome: SlotReleaseOutcome;
  /** From the start of the wait to its end, on the relay's clock. */
  waitedMs: number;
  /** What the statement failed with, when `unreachable`. */
  error?: unknown;
}

export interface SlotReleaseWait {
  /** Where `pg_replication_slots` is read: the relay's own Db. */
  db: Queryable;
  clock: Clock;
  slotName: string;
  /**
   * The server process of the relay's last stream. Only its hold counts: once it let go, another
   * relay taking the slot (a standby's turn) is no reason to wait on.
   */
  walsender: number;
  /** The bound: the wait ends `timed-out` after this long, a statement in flight included. */
  timeoutMs: number;
}

/** Polls the slot every `slotReleasePollMs` until `walsender` no longer holds it, within `timeoutMs`. */
export async function waitForSlotRelease(wait: SlotReleaseWait): Promise<SlotRelease> {
  const { db, clock, slotName, walsender, timeoutMs } = wait;
  const started = clock.now();
  const deadline = started + timeoutMs;
  const ended = (outcome: SlotReleaseOutcome, error?: unknown): SlotRelease => ({
    outcome,
    waitedMs: clock.now() - started,
    ...(error === undefined ? {} : { error }),
  });
  for (;;) {
    let held: boolean | 'expired';
    try {
      // A statement that hangs (a connection that neither answers nor breaks) must not hold the stop.
      held = await within(clock, deadline - clock.now(), heldBy(db, slotName, walsender));
    } catch (error) {
      return ended('unreachable', error);
    }
    if (held === 'expired') return ended('timed-out');
    if (!held) return ended('released');
    const left = deadline - clock.now();
    if (left <= 0) return ended('timed-out');
    await new Promise<void>((resolve) => clock.setTimeout(resolve, Math.min(slotReleasePollMs, left)));
  }
}

async function heldBy(db: Queryable, slotName: string, walsender: number): Promise<boolean> {
  const { rows } = await db.query<{ active_pid: number | null }>(
    'SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1',
    [slotName],
  );
  return rows[0]?.active_pid === walsender;
}

/** `work`'s result, or 'expired' once `ms` passed on `clock` first; the timer is cleared either way. */
async function within<T>(clock: Clock, ms: number, work: Promise<T>): Promise<T | 'expired'> {
  let timer: TimerHandle | undefined;
  const expired = new Promise<'expired'>((resolve) => {
    timer = clock.setTimeout(() => resolve('expired'), Math.max(0, ms));
  });
  try {
    return await Promise.race([work, expired]);
  } finally {
    if (timer !== undefined) clock.clearTimeout(timer);
  }
}
