// stop() while a KafkaProjectionRunner's catchUp() applies batches, on a runner never started (a
// command line's) and on a started one: catchUp() ends after the batch in hand (committed, or
// rolled back past the drain deadline) and rejects with KEEL_SERVICE_STATE, and stop() resolves
// after it. On the suite's database (PGlite, or PostgreSQL with KEEL_DB=pg) and a Kafka faked at
// its client (fake-kafka-test-support.ts), on a manual clock.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { migrate, type Db, type Tx } from '../../../db/index.ts';
import { advanceUntil, createTestDb } from '../../../testing/index.ts';
import { ManualClock } from '../../../time/index.ts';
import { fakeKafka, type FakeKafka } from './fake-kafka-test-support.ts';
import { KafkaProjectionRunner, type KafkaProjection } from './kafka-projection.ts';
import type { KafkaEntry } from './topic-fetcher.ts';
import { kafkaProjectionMigrations } from './kafka-projection-schema.ts';
import { stored } from './projection-test-support.ts';

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  vi.restoreAllMocks();
});

/** A projection whose batches wait at a gate once `hold()` is called, until `release()`. */
class GatedProjection implements KafkaProjection {
  /** Resolves when a batch reaches the gate. */
  reached: Promise<void> = Promise.resolve();
  #arrive: (() => void) | undefined;
  #gate: Promise<void> | undefined;
  #open: (() => void) | undefined;

  hold(): void {
    this.reached = new Promise((resolve) => (this.#arrive = resolve));
    this.#gate = new Promise((resolve) => (this.#open = resolve));
  }

  release(): void {
    this.#gate = undefined;
    this.#open?.();
  }

  async apply(entries: readonly KafkaEntry[], tx: Tx): Promise<void> {
    for (const entry of entries)
      await tx.query('INSERT INTO model (partition, record_offset) VALUES ($1, $2)', [
        entry.partition,
        String(entry.offset),
      ]);
    // After its writes: a batch rolled back takes them back.
    if (this.#gate === undefined) return;
    this.#arrive?.();
    await this.#gate;
  }

  async reset(tx: Tx): Promise<void> {
    await tx.query('DELETE FROM model');
  }
}

/** A database for the runner and its model, and a fake topic of one partition holding `records`. */
async function setup(clock: ManualClock, records: bigint): Promise<{ db: Db; kafka: FakeKafka }> {
  const db = await createTestDb();
  cleanups.push(() => db.close());
  await migrate(db, [
    ...kafkaProjectionMigrations,
    {
      id: 'kafka_stop_test_model',
      sql: 'CREATE TABLE model (partition integer NOT NULL, record_offset bigint NOT NULL, PRIMARY KEY (partition, record_offset))',
    },
  ]);
  return { db, kafka: fakeKafka('orders', [{ start: 0n, end: records }], clock) };
}

function runner(db: Db, projection: KafkaProjection, clock: ManualClock): KafkaProjectionRunner {
  const run = new KafkaProjectionRunner(db, projection, {
    name: 'model.v1',
    topic: 'orders',
    clock,
    batchSize: 2,
  });
  cleanups.push(() => advanceUntil(clock, run.stop({ drainMs: 1000 })));
  return run;
}

async function modelRows(db: Db): Promise<number> {
  const { rows } = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM model');
  return rows[0]!.n;
}

/** Records the order in which the watched calls settle, and how. */
function settlements(): {
  watch: <T>(name: string, call: Promise<T>) => void;
  order: string[];
  outcomes: Map<string, { value?: unknown; error?: unknown }>;
} {
  const order: string[] = [];
  const outcomes = new Map<string, { value?: unknown; error?: unknown }>();
  return {
    order,
    outcomes,
    watch: (name, call) =>
      void call.then(
        (value) => {
          order.push(name);
          outcomes.set(name, { value });
        },
        (error: unknown) => {
          order.push(name);
          outcomes.set(name, { error });
        },
      ),
  };
}

/** A few turns of the event loop: what is not settled after them waits on something. */
async function turns(): Promise<void> {
  for (let turn = 0; turn < 5; turn++) await new Promise((resolve) => setImmediate(resolve));
}

describe('KafkaProjectionRunner: stop() during catchUp()', () => {
  it('on a runner never started: the batch in hand commits, catchUp() rejects with KEEL_SERVICE_STATE saying what it applied, stop() resolves after', async () => {
    const clock = new ManualClock();
    const { db } = await setup(clock, 6n);
    const projection = new GatedProjection();
    const run = runner(db, projection, clock);
    const states: string[] = [];
    run.events.on('state', ({ to }) => void states.push(to));
    const calls = settlements();
    projection.hold();
    calls.watch('catchUp', run.catchUp());
    await projection.reached;
    calls.watch('stop', run.stop());
    await turns();
    // The batch is in its transaction: neither has ended, and the runner is stopping.
    expect(calls.order).toEqual([]);
    expect(clock.pendingTimers).toBe(1);
    expect(run.state).toBe('stopping');

    projection.release();
    await vi.waitFor(() => expect(calls.order).toEqual(['catchUp', 'stop']), {
      timeout: 10_000,
      interval: 2,
    });
    expect(calls.outcomes.get('catchUp')?.error).toMatchObject({
      code: 'KEEL_SERVICE_STATE',
      details: { applied: 2 },
      message: expect.stringContaining('after applying 2 record(s)') as unknown,
    });
    expect(await modelRows(db)).toBe(2);
    expect(await stored(run)).toEqual(['0@2']);
    expect(run.state).toBe('stopped');
    expect(states).toEqual(['stopping', 'stopped']);
    // A command line's calls are no loop's: nothing for health() to read.
    expect(run.health()).toEqual({ status: 'not-running', state: 'stopped' });
    expect(clock.pendingTimers).toBe(0);
    await expect(run.catchUp()).rejects.toMatchObject({ code: 'KEEL_SERVICE_STATE' });
  });

  it('on a runner never started, past the drain deadline: stop() resolves, the batch in hand rolls back, catchUp() rejects with KEEL_SERVICE_STATE', async () => {
    const clock = new ManualClock();
    const { db } = await setup(clock, 6n);
    const projection = new GatedProjection();
    const run = runner(db, projection, clock);
    const timeouts: number[] = [];
    run.events.on('drain-timeout', ({ drainMs }) => void timeouts.push(drainMs));
    const calls = settlements();
    projection.hold();
    calls.watch('catchUp', run.catchUp());
    await projection.reached;
    calls.watch('stop', run.stop({ drainMs: 1000 }));
    await turns();
    await clock.advance(999);
    await turns();
    expect(calls.order).toEqual([]);
    expect(run.state).toBe('stopping');

    await clock.advance(1);
    await vi.waitFor(() => expect(calls.order).toEqual(['stop']), { timeout: 10_000, interval: 2 });
    expect(timeouts).toEqual([1000]);
    // Its apply ignores the abort: the batch rolls back once it returns.
    projection.release();
    await vi.waitFor(() => expect(calls.order).toEqual(['stop', 'catchUp']), {
      timeout: 10_000,
      interval: 2,
    });
    expect(calls.outcomes.get('catchUp')?.error).toMatchObject({
      code: 'KEEL_SERVICE_STATE',
      details: { applied: 0 },
      cause: { code: 'KEEL_ABORTED' },
    });
    expect(await modelRows(db)).toBe(0);
    expect(await stored(run)).toEqual([]);
    expect(clock.pendingTimers).toBe(0);
  });

  it('on a started runner: catchUp() on the loop’s client ends the same way, and stop() resolves after it', async () => {
    const clock = new ManualClock();
    const { db, kafka } = await setup(clock, 0n);
    const projection = new GatedProjection();
    const run = runner(db, projection, clock);
    await run.start();
    // The loop's fetch waits on Kafka for records (maxWaitMs, on the clock).
    await vi.waitFor(() => expect(kafka.fetches()).toBe(1), { timeout: 10_000, interval: 2 });
    kafka.partitions[0]!.end = 6n;
    const calls = settlements();
    projection.hold();
    calls.watch('catchUp', run.catchUp());
    await projection.reached;
    // The calls of catchUp() are its own, not the loop's.
    expect(run.health()).toMatchObject({ status: 'ok' });
    calls.watch('stop', run.stop());
    // The loop's fetch answers; stopping, it applies none of it.
    await clock.advance(500);
    await turns();
    expect(calls.order).toEqual([]);

    projection.release();
    await vi.waitFor(() => expect(calls.order).toEqual(['catchUp', 'stop']), {
      timeout: 10_000,
      interval: 2,
    });
    expect(calls.outcomes.get('catchUp')?.error).toMatchObject({
      code: 'KEEL_SERVICE_STATE',
      details: { applied: 2 },
    });
    expect(await modelRows(db)).toBe(2);
    expect(await stored(run)).toEqual(['0@2']);
    expect(clock.pendingTimers).toBe(0);
  });

  it('stop() before catchUp()’s first batch: it rejects having applied none; on a topic with nothing to apply it resolves, caught up', async () => {
    const clock = new ManualClock();
    const { db, kafka } = await setup(clock, 0n);
    const run = runner(db, new GatedProjection(), clock);
    const idle = run.catchUp();
    await run.stop();
    expect(await idle).toBe(0);

    kafka.partitions[0]!.end = 2n;
    const other = runner(db, new GatedProjection(), clock);
    const cut = other.catchUp();
    await other.stop();
    await expect(cut).rejects.toMatchObject({ code: 'KEEL_SERVICE_STATE', details: { applied: 0 } });
    expect(await modelRows(db)).toBe(0);
    expect(clock.pendingTimers).toBe(0);
  });
});
