// The wait of a stopping WAL relay for the server to let its slot go, on a manual clock, with a
// Db that answers what the test scripts. Against a real server: test/integration/wal-outbox-relay-stop.test.ts.
import { describe, expect, it } from 'vitest';
import type { Queryable, QueryResult } from '../db/db.ts';
import { ManualClock } from '../time/index.ts';
import { resolveWalOutboxRelayOptions } from './wal-outbox-relay-options.ts';
import { slotReleasePollMs, waitForSlotRelease, type SlotRelease } from './wal-outbox-slot-release.ts';

const walsender = 4242;

/** Answers each read of the slot with the next of `answers` (the last one from then on). */
function slotReads(answers: (number | null | 'no-slot' | Error | 'hang')[]): {
  db: Queryable;
  reads: number;
} {
  const state = { reads: 0 };
  const db = {
    query: async (sql: string, params?: unknown[]): Promise<QueryResult<{ active_pid: number | null }>> => {
      expect(sql).toContain('pg_replication_slots');
      expect(params).toEqual(['s']);
      const answer = answers[Math.min(state.reads, answers.length - 1)];
      state.reads++;
      if (answer === 'hang') return new Promise(() => undefined);
      if (answer instanceof Error) throw answer;
      if (answer === 'no-slot') return { rows: [], rowCount: 0 };
      return { rows: [{ active_pid: answer ?? null }], rowCount: 1 };
    },
  } as Queryable;
  return {
    db,
    get reads() {
      return state.reads;
    },
  };
}

/** Runs the wait, moving the clock on until it ends. */
async function run(
  clock: ManualClock,
  db: Queryable,
  timeoutMs = 1000,
): Promise<SlotRelease & { pendingTimers: number }> {
  let result: SlotRelease | undefined;
  const waiting = waitForSlotRelease({ db, clock, slotName: 's', walsender, timeoutMs }).then(
    (r) => (result = r),
  );
  for (let step = 0; step < 1000 && result === undefined; step++) {
    await new Promise((resolve) => setImmediate(resolve));
    if (result === undefined) await clock.advance(slotReleasePollMs);
  }
  await waiting;
  return { ...result!, pendingTimers: clock.pendingTimers };
}

describe('waitForSlotRelease', () => {
  it('polls until the walsender lets the slot go', async () => {
    const clock = new ManualClock();
    const slot = slotReads([walsender, walsender, walsender, null]);
    expect(await run(clock, slot.db)).toEqual({
      outcome: 'released',
      waitedMs: 3 * slotReleasePollMs,
      pendingTimers: 0,
    });
    expect(slot.reads).toBe(4);
  });

  it("ends at once when the slot is another process's, or gone", async () => {
    for (const answer of [walsender + 1, 'no-slot'] as const) {
      const clock = new ManualClock();
      const slot = slotReads([answer]);
      expect(await run(clock, slot.db)).toEqual({ outcome: 'released', waitedMs: 0, pendingTimers: 0 });
      expect(slot.reads).toBe(1);
    }
  });

  it('times out at the bound while the slot is still held', async () => {
    const clock = new ManualClock();
    expect(await run(clock, slotReads([walsender]).db, 500)).toEqual({
      outcome: 'timed-out',
      waitedMs: 500,
      pendingTimers: 0,
    });
  });

  it('times out at the bound while a read hangs', async () => {
    const clock = new ManualClock();
    expect(await run(clock, slotReads([walsender, 'hang']).db, 500)).toEqual({
      outcome: 'timed-out',
      waitedMs: 500,
      pendingTimers: 0,
    });
  });

  it('ends at the first read that fails: the server cannot be asked', async () => {
    const clock = new ManualClock();
    const lost = new Error('connection refused');
    const slot = slotReads([walsender, lost]);
    expect(await run(clock, slot.db)).toEqual({
      outcome: 'unreachable',
      waitedMs: slotReleasePollMs,
      error: lost,
      pendingTimers: 0,
    });
    expect(slot.reads).toBe(2);
  });
});

describe('WalOutboxRelay slotReleaseMs', () => {
  it('defaults to 5 000 ms, takes 0 (no wait), and refuses what is not an integer >= 0, naming it', () => {
    const clock = new ManualClock();
    const resolve = (slotReleaseMs: unknown): number =>
      resolveWalOutboxRelayOptions({ connectionString: 'postgres://x', slotReleaseMs } as never, clock)
        .slotReleaseMs;
    expect(resolve(undefined)).toBe(5000);
    expect(resolve(0)).toBe(0);
    for (const bad of [-1, 1.5, '100', Number.NaN]) {
      expect(() => resolve(bad)).toThrow(/slotReleaseMs: expected an integer >= 0/);
    }
  });
});
