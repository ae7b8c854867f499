import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { Db } from '../db/index.ts';
import { AbortedError } from '../errors/index.ts';
import { createTestDb } from '../testing/index.ts';
import { constantBackoff, ManualClock } from '../time/index.ts';
import { versionedTable } from './conditional-write.ts';
import { conflictRetry, isConflict, retryOnConflict } from './retry-on-conflict.ts';
import { VersionConflictError } from './version-conflict-error.ts';
import { propertyRuns } from '../testing/property-runs.ts';

const conflict = (actual: number): VersionConflictError =>
  new VersionConflictError({ table: 't', id: 1, expected: actual - 1, actual });

describe('isConflict', () => {
  it('is true for VersionConflictError, serialization failure and deadlock, false otherwise', () => {
    expect(isConflict(conflict(2))).toBe(true);
    expect(isConflict(Object.assign(new Error('could not serialize access'), { code: '40001' }))).toBe(true);
    expect(isConflict(Object.assign(new Error('deadlock detected'), { code: '40P01' }))).toBe(true);
    expect(isConflict(Object.assign(new Error('duplicate key'), { code: '23505' }))).toBe(false);
    expect(isConflict(new Error('boom'))).toBe(false);
    expect(isConflict(null)).toBe(false);
    expect(isConflict('KEEL_VERSION_CONFLICT')).toBe(false);
  });
});

describe('retryOnConflict (manual clock)', () => {
  it('runs the function again after a conflict, waiting the backoff, and returns its result', async () => {
    const clock = new ManualClock(0);
    const attempts: number[] = [];
    const result = retryOnConflict(
      async ({ attempt }) => {
        attempts.push(attempt);
        if (attempt < 3) throw conflict(attempt + 1);
        return 'written';
      },
      { clock, backoff: constantBackoff(50) },
    );
    await clock.advance(49);
    expect(attempts).toEqual([1]);
    await clock.advance(1);
    expect(attempts).toEqual([1, 2]);
    await clock.advance(50);
    await expect(result).resolves.toBe('written');
    expect(attempts).toEqual([1, 2, 3]);
  });

  it('rethrows any other error at once, without a retry', async () => {
    const clock = new ManualClock(0);
    let calls = 0;
    const error = new Error('constraint');
    await expect(
      retryOnConflict(
        async () => {
          calls += 1;
          throw error;
        },
        { clock },
      ),
    ).rejects.toBe(error);
    expect(calls).toBe(1);
    expect(clock.pendingTimers).toBe(0);
  });

  it('maxAttempts counts calls: after the last one the last conflict is rethrown unchanged', async () => {
    const clock = new ManualClock(0);
    let calls = 0;
    const failures = [conflict(2), conflict(3), conflict(4)];
    const result = retryOnConflict(
      async () => {
        throw failures[calls++]!;
      },
      { clock, maxAttempts: 3, backoff: constantBackoff(10) },
    );
    const settled = result.catch((error: unknown) => error);
    await clock.advance(100);
    expect(await settled).toBe(failures[2]);
    expect(calls).toBe(3);
  });

  it('the default backoff has jitter and stays within 10 ms doubling, capped at 1 s', async () => {
    const clock = new ManualClock(0);
    const delays: number[] = [];
    const policy = conflictRetry({ clock, maxAttempts: 12 });
    policy.on('retry', ({ delayMs }) => delays.push(delayMs));
    const done = policy
      .execute(async () => {
        throw conflict(2);
      })
      .catch(() => undefined);
    await clock.advance(20_000);
    await done;
    expect(delays).toHaveLength(11);
    delays.forEach((delay, i) => {
      expect(delay).toBeGreaterThanOrEqual(0);
      expect(delay).toBeLessThanOrEqual(Math.min(1000, 10 * 2 ** i));
    });
    expect(new Set(delays).size).toBeGreaterThan(1);
  });

  it('an abort during the backoff stops at once with AbortedError', async () => {
    const clock = new ManualClock(0);
    const controller = new AbortController();
    let calls = 0;
    const result = retryOnConflict(
      async () => {
        calls += 1;
        throw conflict(2);
      },
      { clock, signal: controller.signal, backoff: constantBackoff(1000) },
    );
    const settled = result.catch((error: unknown) => error);
    await clock.advance(10);
    controller.abort(new Error('client went away'));
    const error = await settled;
    expect(error).toBeInstanceOf(AbortedError);
    expect(calls).toBe(1);
    expect(clock.pendingTimers).toBe(0);
  });

  it('refuses bad options, naming them', () => {
    expect(() => conflictRetry({ maxAttempts: 0 })).toThrow(/^maxAttempts: expected an integer >= 1/);
    expect(() => conflictRetry({ isConflict: 'yes' as never })).toThrow(/^isConflict: expected a function/);
    expect(() => retryOnConflict(undefined as never)).toThrow(/^fn: expected a function/);
  });
});

interface Counter extends Record<string, unknown> {
  value: number;
}
const counters = versionedTable<Counter, number>('counters');

/** One read-modify-write: read outside the transaction, so concurrent callers really interleave on both backends. */
async function increment(db: Db, maxAttempts: number): Promise<void> {
  await retryOnConflict(
    async () => {
      const current = await counters.read(db, 1);
      await db.transaction((tx) =>
        counters.update(tx, 1, current!.version, { value: current!.row.value + 1 }),
      );
    },
    // No wait between attempts: the property is about lost updates, not timing; a CAS round
    // always has a winner, so the loop makes progress without a backoff.
    { maxAttempts, backoff: constantBackoff(0) },
  );
}

describe('retryOnConflict against the database', () => {
  it('property: concurrent increments never lose an update (final value = successful calls)', async () => {
    await using db = await createTestDb({ schemaPrefix: 'cas_prop' });
    await db.query(
      'CREATE TABLE counters (id integer PRIMARY KEY, value integer NOT NULL, version integer NOT NULL)',
    );
    let sawConflictFailure = false;
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 2, max: 8 }),
        fc.integer({ min: 1, max: 4 }),
        fc.oneof(fc.integer({ min: 1, max: 4 }), fc.constant(Infinity)),
        async (writers, perWriter, maxAttempts) => {
          await db.query('DELETE FROM counters; INSERT INTO counters VALUES (1, 0, 0)');
          let succeeded = 0;
          let failed = 0;
          await Promise.all(
            Array.from({ length: writers }, async () => {
              for (let i = 0; i < perWriter; i++) {
                try {
                  await increment(db, maxAttempts);
                  succeeded += 1;
                } catch (error) {
                  // Only running out of attempts on conflicts may fail a call.
                  expect(error).toBeInstanceOf(VersionConflictError);
                  failed += 1;
                }
              }
            }),
          );
          sawConflictFailure ||= failed > 0;
          if (maxAttempts === Infinity) expect(failed).toBe(0);
          expect(succeeded + failed).toBe(writers * perWriter);
          const { rows } = await db.query('SELECT value, version FROM counters');
          // Every successful call added exactly one; a failed one wrote nothing.
          expect(rows).toEqual([{ value: succeeded, version: succeeded }]);
        },
      ),
      { numRuns: propertyRuns(15) },
    );
    // With 1..4 attempts and up to 8 writers some calls must have run out of attempts.
    expect(sawConflictFailure).toBe(true);
  });

  it('of racing writers at REPEATABLE READ, the loser is retried (40001) and nothing is lost', async () => {
    await using db = await createTestDb({ schemaPrefix: 'cas_rr' });
    await db.query(
      'CREATE TABLE counters (id integer PRIMARY KEY, value integer NOT NULL, version integer NOT NULL); INSERT INTO counters VALUES (1, 0, 0)',
    );
    await Promise.all(
      Array.from({ length: 6 }, () =>
        retryOnConflict(
          () =>
            db.transaction(
              async (tx) => {
                const current = await counters.read(tx, 1);
                await counters.update(tx, 1, current!.version, { value: current!.row.value + 1 });
              },
              { isolation: 'repeatable read' },
            ),
          { maxAttempts: Infinity, backoff: constantBackoff(0) },
        ),
      ),
    );
    const { rows } = await db.query('SELECT value, version FROM counters');
    expect(rows).toEqual([{ value: 6, version: 6 }]);
  });
});
