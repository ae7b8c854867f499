// Two schedulers sharing a database, restarted, paused and resumed at random while the clock
// jumps and ticks fail at random: whatever the interleaving, no tick fires twice, none early or
// older than its window, in order, within its attempts, and the counters agree with what fired;
// each run asked for by hand fires once, after it was asked for.
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrate, type Tx } from '../db/index.ts';
import { createTestDb, type TestDb } from '../testing/index.ts';
import { statementsSettled } from '../testing/statements-in-flight.ts';
import { constantBackoff, ManualClock } from '../time/index.ts';
import { defineSchedule, type Schedule, type ScheduleTick } from './schedule-definition.ts';
import { pauseSchedule, readSchedules, resumeSchedule, triggerSchedule } from './schedule-store.ts';
import { Scheduler } from './scheduler.ts';
import { scheduleMigrations } from './schema.ts';
import { propertyRuns } from '../testing/property-runs.ts';

type Step =
  | { kind: 'advance'; ms: number }
  | { kind: 'restart'; which: 0 | 1 }
  | { kind: 'pause' }
  | { kind: 'resume' }
  | { kind: 'trigger' };

interface Plan {
  everyMs: number;
  catchUp: 'latest' | 'each';
  catchUpWindowMs: number;
  maxAttempts: number;
  /** Attempts that fail, by the tick's index since the first tick: the first n attempts at it. */
  failures: Record<number, number>;
  steps: Step[];
}

const stepMs = 1000;
const start = Date.parse('2026-06-01T00:00:00Z');

const planArbitrary: fc.Arbitrary<Plan> = fc.record({
  everyMs: fc.constantFrom(1000, 3000, 10_000),
  catchUp: fc.constantFrom('latest' as const, 'each' as const),
  catchUpWindowMs: fc.constantFrom(0, 2000, 15_000, Infinity),
  maxAttempts: fc.integer({ min: 1, max: 3 }),
  failures: fc.dictionary(fc.integer({ min: 0, max: 40 }).map(String), fc.integer({ min: 1, max: 3 }), {
    maxKeys: 6,
  }),
  steps: fc.array(
    fc.oneof(
      {
        weight: 5,
        arbitrary: fc.integer({ min: 0, max: 40_000 }).map((ms) => ({ kind: 'advance' as const, ms })),
      },
      {
        weight: 1,
        arbitrary: fc
          .constantFrom(0 as const, 1 as const)
          .map((which) => ({ kind: 'restart' as const, which })),
      },
      { weight: 1, arbitrary: fc.constant({ kind: 'pause' as const }) },
      { weight: 1, arbitrary: fc.constant({ kind: 'resume' as const }) },
      { weight: 1, arbitrary: fc.constant({ kind: 'trigger' as const }) },
    ),
    { minLength: 1, maxLength: 10 },
  ),
});

/** Moves the clock in steps of a second, letting each step's statements finish before the next. */
async function advance(clock: ManualClock, ms: number): Promise<void> {
  for (let left = ms; left > 0; left -= stepMs) {
    await clock.advance(Math.min(stepMs, left));
    for (let turn = 0; turn < 5; turn++) await new Promise((resolve) => setImmediate(resolve));
    await statementsSettled();
  }
}

interface Run {
  fired: { key: string; at: number; firedAt: number }[];
  /** The clock's instants at which a run by hand was asked for. */
  triggers: number[];
  attempts: Map<string, number>;
  now: number;
  row: Awaited<ReturnType<typeof readSchedules>>[number];
}

async function run(db: TestDb, plan: Plan, table: string): Promise<Run> {
  const clock = new ManualClock(start);
  const attempts = new Map<string, number>();
  const firstTick = start + plan.everyMs;
  const fire = async (tx: Tx, tick: ScheduleTick): Promise<void> => {
    const made = (attempts.get(tick.key) ?? 0) + 1;
    attempts.set(tick.key, made);
    await tx.query(`INSERT INTO ${table} (key, at, fired_at) VALUES ($1, $2, $3)`, [
      tick.key,
      tick.at.getTime(),
      tick.firedAt.getTime(),
    ]);
    const index = (tick.at.getTime() - firstTick) / plan.everyMs;
    if (tick.triggered !== true && made <= (plan.failures[index] ?? 0))
      throw new Error(`attempt ${made} at tick ${index} fails`);
  };
  const schedule: Schedule = defineSchedule({
    name: table,
    everyMs: plan.everyMs,
    catchUp: plan.catchUp,
    catchUpWindowMs: plan.catchUpWindowMs,
    maxAttempts: plan.maxAttempts,
    backoff: constantBackoff(1000),
    fire,
  });
  const errors: unknown[] = [];
  const startScheduler = async (): Promise<Scheduler> => {
    const scheduler = new Scheduler(db, { schedules: [schedule], clock, pollMs: 2000 });
    scheduler.events.on('error', (e) => void errors.push(e.error));
    await scheduler.start();
    return scheduler;
  };
  const schedulers = [await startScheduler(), await startScheduler()];
  let paused = false;
  const triggers: number[] = [];
  for (const step of plan.steps) {
    if (step.kind === 'advance') await advance(clock, step.ms);
    else if (step.kind === 'restart') {
      await schedulers[step.which]!.stop();
      schedulers[step.which] = await startScheduler();
    } else if (step.kind === 'pause') {
      await pauseSchedule(db, table, clock.now());
      paused = true;
    } else if (step.kind === 'trigger') {
      await triggerSchedule(db, table, clock.now());
      triggers.push(clock.now());
    } else {
      await resumeSchedule(db, table, clock.now());
      paused = false;
    }
  }
  if (paused) await resumeSchedule(db, table, clock.now());
  // Settle: retries and the next poll, then every due tick has been dealt with.
  await advance(clock, (plan.maxAttempts + 3) * stepMs + 2000);
  for (const scheduler of schedulers) await scheduler.stop();
  expect(errors).toEqual([]);
  const { rows } = await db.query<{ key: string; at: string; fired_at: string }>(
    `SELECT key, at, fired_at FROM ${table} ORDER BY id`,
  );
  const [row] = await readSchedules(db, [table]);
  return {
    fired: rows.map((r) => ({ key: r.key, at: Number(r.at), firedAt: Number(r.fired_at) })),
    triggers,
    attempts,
    now: clock.now(),
    row: row!,
  };
}

describe('Scheduler (property)', () => {
  let db: TestDb;
  let runs = 0;
  beforeAll(async () => {
    db = await createTestDb();
    await migrate(db, scheduleMigrations);
  });
  afterAll(async () => {
    await db.close();
  });

  /** A table of its own per run: writes of failed attempts are rolled back, so only fires stay. */
  async function freshTable(): Promise<string> {
    const table = `fired_${++runs}`;
    await db.query(
      `CREATE TABLE ${table} (id bigint GENERATED ALWAYS AS IDENTITY, key text NOT NULL, at bigint NOT NULL, fired_at bigint NOT NULL)`,
    );
    return table;
  }

  it('fires no tick twice, early, late beyond its window, out of order, or past its attempts', async () => {
    await fc.assert(
      fc.asyncProperty(planArbitrary, async (plan) => {
        const { fired: all, triggers, attempts, now, row } = await run(db, plan, await freshTable());
        const keys = all.map((f) => f.key);
        expect(new Set(keys).size).toBe(keys.length);
        const byHand = all.filter((f) => f.key.includes('/triggered-'));
        const fired = all.filter((f) => !f.key.includes('/triggered-'));
        for (const [i, f] of fired.entries()) {
          expect(f.firedAt).toBeGreaterThanOrEqual(f.at);
          expect(f.firedAt - f.at).toBeLessThanOrEqual(plan.catchUpWindowMs);
          if (i > 0) expect(f.at).toBeGreaterThan(fired[i - 1]!.at);
        }
        // Each run by hand fired once, at or after it was asked for; a trigger while one was
        // pending joined it, so every trigger is covered by a run asked for no later.
        for (const f of byHand) expect(triggers).toContain(f.at);
        for (const asked of triggers)
          expect(byHand.some((f) => f.at <= asked && f.firedAt >= asked)).toBe(true);
        expect(row.triggeredAt).toBeNull();
        for (const made of attempts.values()) expect(made).toBeLessThanOrEqual(plan.maxAttempts);
        const givenUp = [...attempts].filter(
          ([key, made]) => made === plan.maxAttempts && !keys.includes(key),
        );
        expect(row.fired).toBe(all.length);
        expect(row.failed).toBe(givenUp.length);
        // Settled: nothing due is left waiting (a retry may be planned, not overdue).
        expect(Math.max(row.nextTick, row.retryAt ?? 0)).toBeGreaterThan(now - stepMs);
      }),
      { numRuns: propertyRuns(25) },
    );
  }, 240_000);

  it("with catchUp 'each', an infinite window and no failures, fires every tick since the first, once", async () => {
    const plan = fc.record({
      everyMs: fc.constantFrom(1000, 3000),
      steps: fc.array(
        fc.oneof(
          fc.integer({ min: 0, max: 20_000 }).map((ms) => ({ kind: 'advance' as const, ms })),
          fc.constantFrom(0 as const, 1 as const).map((which) => ({ kind: 'restart' as const, which })),
          fc.constant({ kind: 'pause' as const }),
          fc.constant({ kind: 'resume' as const }),
        ),
        { minLength: 1, maxLength: 8 },
      ),
    });
    await fc.assert(
      fc.asyncProperty(plan, async ({ everyMs, steps }) => {
        const full: Plan = {
          everyMs,
          steps,
          catchUp: 'each',
          catchUpWindowMs: Infinity,
          maxAttempts: 1,
          failures: {},
        };
        const { fired, now } = await run(db, full, await freshTable());
        const expected: number[] = [];
        for (let at = start + everyMs; at <= now - stepMs; at += everyMs) expected.push(at);
        expect(fired.map((f) => f.at).slice(0, expected.length)).toEqual(expected);
      }),
      { numRuns: propertyRuns(15) },
    );
  }, 240_000);
});
