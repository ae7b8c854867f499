// A KafkaProjectionRunner on the suite's database (PGlite, or PostgreSQL with KEEL_DB=pg) and a
// Kafka faked at its client (fake-kafka-test-support.ts), on a manual clock: a fetch refused as
// out of range, OFFSET_OUT_OF_RANGE or an answer the client cannot read ("Out of bounds."), for
// offsets that the partitions' ranges show valid, as a broker behind a partition's switch-over
// answers, is ridden out as a leader moving is; records trimmed or an offset past the end are
// not. Against a real Kafka: kafka-projection-stale-leader.test.ts and
// kafka-projection-health-with-kafka.test.ts.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { migrate, type Db, type Tx } from '../../../db/index.ts';
import { advanceUntil, createTestDb } from '../../../testing/index.ts';
import { ManualClock } from '../../../time/index.ts';
import { answered, fetchApi, outOfBounds } from './kafka-answers-test-support.ts';
import {
  KafkaProjectionRunner,
  type KafkaProjection,
  type KafkaProjectionRunnerOptions,
} from './kafka-projection.ts';
import { kafkaProjectionMigrations } from './kafka-projection-schema.ts';
import { fakeKafka, type FakeKafka } from './fake-kafka-test-support.ts';
import {
  KafkaOffsetPastEndError,
  KafkaPartitionTrimmedError,
  KafkaStaleOutOfRangeError,
} from './offset-out-of-range.ts';
import { staleLeaderAnswers } from './stale-leader.ts';
import type { KafkaEntry } from './topic-fetcher.ts';

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  vi.restoreAllMocks();
});

const modelProjection: KafkaProjection = {
  async apply(entries: readonly KafkaEntry[], tx: Tx): Promise<void> {
    for (const entry of entries)
      await tx.query('INSERT INTO model (partition, record_offset) VALUES ($1, $2)', [
        entry.partition,
        String(entry.offset),
      ]);
  },
  async reset(tx: Tx): Promise<void> {
    await tx.query('DELETE FROM model');
  },
};

/** A database for the runner and its model, and a fake topic of partitions holding 3 and 2 records. */
async function setup(clock: ManualClock): Promise<{ db: Db; kafka: FakeKafka }> {
  const db = await createTestDb();
  cleanups.push(() => db.close());
  await migrate(db, [
    ...kafkaProjectionMigrations,
    {
      id: 'kafka_switch_over_test_model',
      // Keyed by the record's place: a record applied twice fails its batch instead of passing unseen.
      sql: 'CREATE TABLE model (partition integer NOT NULL, record_offset bigint NOT NULL, PRIMARY KEY (partition, record_offset))',
    },
  ]);
  const kafka = fakeKafka(
    'orders',
    [
      { start: 0n, end: 3n },
      { start: 0n, end: 2n },
    ],
    clock,
  );
  return { db, kafka };
}

function runner(
  db: Db,
  clock: ManualClock,
  options: Partial<KafkaProjectionRunnerOptions> = {},
): KafkaProjectionRunner {
  const run = new KafkaProjectionRunner(db, modelProjection, {
    name: 'model.v1',
    topic: 'orders',
    clock,
    retryDelayMs: 1000,
    ...options,
  });
  // A started loop waits on the fake Kafka's clock (maxWaitMs): the clock moves it on.
  cleanups.push(() => advanceUntil(clock, run.stop({ drainMs: 1000 })));
  return run;
}

const refusals = {
  OFFSET_OUT_OF_RANGE: () => answered(fetchApi, 'OFFSET_OUT_OF_RANGE'),
  OUT_OF_BOUNDS: () => outOfBounds(),
} as const;
const answers = Object.keys(refusals) as (keyof typeof refusals)[];

async function modelRows(db: Db): Promise<number> {
  const { rows } = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM model');
  return rows[0]!.n;
}

async function stored(run: KafkaProjectionRunner): Promise<string[]> {
  return [...(await run.position())].map(([partition, next]) => `${partition}@${next}`).sort();
}

/** Waits (in real time: the runner's statements are real I/O) until `timers` are set on the clock. */
function paused(clock: ManualClock, timers = 1): Promise<void> {
  return vi.waitFor(() => expect(clock.pendingTimers).toBe(timers), { timeout: 10_000, interval: 2 });
}

interface Settled<T> {
  value?: T;
  error?: unknown;
}

/** The call's outcome once it settles, without an unhandled rejection meanwhile. */
function watch<T>(call: Promise<T>): () => Settled<T> | undefined {
  let settled: Settled<T> | undefined;
  call.then(
    (value) => void (settled = { value }),
    (error: unknown) => void (settled = { error }),
  );
  return () => settled;
}

async function settled<T>(outcome: () => Settled<T> | undefined): Promise<Settled<T>> {
  await vi.waitFor(() => expect(outcome()).toBeDefined(), { timeout: 10_000, interval: 2 });
  return outcome()!;
}

describe('KafkaProjectionRunner: a fetch refused as out of range for offsets that are valid', () => {
  it.each(answers)(
    'catchUp() on a runner never started (%s): looked at again after retryDelayMs, quietly, and applies every record once answered',
    async (answer) => {
      const clock = new ManualClock();
      const { db, kafka } = await setup(clock);
      kafka.fetchFailures.push(refusals[answer](), refusals[answer](), refusals[answer]());
      const run = runner(db, clock);
      const outcome = watch(run.catchUp());
      for (let pause = 0; pause < 3; pause++) {
        await paused(clock);
        expect(outcome()).toBeUndefined();
        expect(clock.nextTimerIn()).toBe(1000);
        await clock.advance(1000);
      }
      expect(await settled(outcome)).toEqual({ value: 5 });
      expect(await modelRows(db)).toBe(5);
      expect(await stored(run)).toEqual(['0@3', '1@2']);
      // Three refused, one that applied, one that found nothing more.
      expect(kafka.fetches()).toBe(5);
      expect(clock.pendingTimers).toBe(0);
    },
  );

  it('with staleLeaderLimitMs 3000, catchUp() rejects with the last once they have gone on that long, the answer as its cause', async () => {
    const clock = new ManualClock();
    const { db, kafka } = await setup(clock);
    const last = answered(fetchApi, 'OFFSET_OUT_OF_RANGE');
    kafka.fetchFailures.push(...answers.map((answer) => refusals[answer]()), refusals.OUT_OF_BOUNDS(), last);
    const run = runner(db, clock, { staleLeaderLimitMs: 3000 });
    const startedAt = clock.now();
    const outcome = watch(run.catchUp());
    // Refused at 0, 1 000 and 2 000 ms, quietly; the refusal at 3 000 ms is the call's.
    for (let pause = 0; pause < 3; pause++) {
      await paused(clock);
      await clock.advance(1000);
    }
    const { error } = await settled(outcome);
    expect(clock.now() - startedAt).toBe(3000);
    expect(error).toBeInstanceOf(KafkaStaleOutOfRangeError);
    expect(error).toMatchObject({
      code: 'KEEL_BROKER_UNAVAILABLE',
      topic: 'orders',
      answer: 'OFFSET_OUT_OF_RANGE',
      cause: last,
    });
    expect((error as Error).message).toContain('(0@0, 1@0) is within what its partition holds now');
    expect(staleLeaderAnswers(error)).toEqual(['OFFSET_OUT_OF_RANGE']);
    expect(await modelRows(db)).toBe(0);
    expect(clock.pendingTimers).toBe(0);
  });

  it.each(answers)(
    'records trimmed, or an offset past the end, still reject catchUp() at once (%s first): the ranges decide',
    async (answer) => {
      const clock = new ManualClock();
      const { db, kafka } = await setup(clock);
      const run = runner(db, clock);
      expect(await run.catchUp()).toBe(5);

      // Retention deleted partition 0's records up to 5: 3 and 4 were never applied.
      kafka.partitions[0] = { start: 5n, end: 6n };
      kafka.fetchFailures.push(refusals[answer]());
      await expect(run.catchUp()).rejects.toBeInstanceOf(KafkaPartitionTrimmedError);
      expect(clock.pendingTimers).toBe(0);

      // Partition 1 holds fewer records than applied.
      kafka.partitions[0] = { start: 0n, end: 3n };
      kafka.partitions[1] = { start: 0n, end: 1n };
      kafka.fetchFailures.push(refusals[answer]());
      const pastEnd = await run.catchUp().catch((error: unknown) => error);
      expect(pastEnd).toBeInstanceOf(KafkaOffsetPastEndError);
      expect(pastEnd).toMatchObject({ partition: 1, next: 2n, end: 1n });
      expect(staleLeaderAnswers(pastEnd)).toBeUndefined();
      expect(clock.pendingTimers).toBe(0);
      expect(await stored(run)).toEqual(['0@3', '1@2']);
    },
  );

  it.each(answers)(
    'the running loop (%s): no error event and health() ok within staleLeaderLimitMs; failing on the broker from the first it reports; ok once a look goes through',
    async (answer) => {
      const clock = new ManualClock();
      const { db, kafka } = await setup(clock);
      for (let n = 0; n < 5; n++) kafka.fetchFailures.push(refusals[answer]());
      const run = runner(db, clock, { staleLeaderLimitMs: 3000 });
      const errors: unknown[] = [];
      run.events.on('error', ({ error }) => void errors.push(error));
      let applied = 0;
      run.events.on('applied', ({ count }) => void (applied += count));
      await run.start();
      // Refused at 0, 1 000 and 2 000 ms, quietly.
      for (let look = 0; look < 3; look++) {
        await paused(clock);
        expect(errors).toEqual([]);
        expect(run.health()).toMatchObject({ status: 'ok' });
        await clock.advance(1000);
      }
      // At 3 000 and 4 000 ms: reported, and Kafka's answers to those looks do not clear it.
      await paused(clock);
      expect(errors).toHaveLength(1);
      expect(staleLeaderAnswers(errors[0])).toEqual([answer]);
      expect(run.health()).toMatchObject({
        status: 'failing',
        dependency: 'broker',
        during: 'fetch',
        since: clock.now(),
        failures: 1,
        lastError: errors[0],
      });
      await clock.advance(1000);
      await paused(clock);
      expect(run.health()).toMatchObject({ status: 'failing', failures: 2 });
      await clock.advance(1000);
      // The look through applies every record, then waits on Kafka (maxWaitMs) for more.
      await vi.waitFor(() => expect(applied).toBe(5), { timeout: 10_000, interval: 2 });
      await paused(clock);
      expect(run.health()).toEqual({ status: 'ok', lastContactAt: clock.now() });
      expect(errors).toHaveLength(2);
      expect(await modelRows(db)).toBe(5);
    },
  );
});
