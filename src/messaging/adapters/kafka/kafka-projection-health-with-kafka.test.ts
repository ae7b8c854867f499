// KafkaProjectionRunner.health() against the real Kafka and the suite's database (PGlite, or
// PostgreSQL with KEEL_DB=pg), the runner on a manual clock: the database lost and back, a
// projection that throws, and a leader that seems to move (the client's metadata altered as it
// arrives, so that the broker itself answers UNKNOWN_LEADER_EPOCH; or its fetches' offsets, so
// that it answers OFFSET_OUT_OF_RANGE for offsets ListOffsets shows valid). Without Kafka:
// kafka-projection-health.test.ts.
import { randomBytes } from 'node:crypto';
import { describe, expect, it, vi } from 'vitest';
import type { Tx } from '../../../db/index.ts';
import type { ServiceHealth } from '../../../service/index.ts';
import { flakyDb } from '../../../testing/index.ts';
import { ManualClock } from '../../../time/index.ts';
import type { KafkaEntry, KafkaProjection, KafkaProjectionRunner } from './index.ts';
import { kafkaTestSuite } from './kafka-test-suite.ts';
import { outOfRangeFetches, projectionTestKit, staleMetadata } from './projection-test-support.ts';

vi.setConfig({ testTimeout: 60_000 });

const kafka = kafkaTestSuite({ clientId: 'keel-test' });
const { runner, produce, ...kit } = projectionTestKit(kafka, 'kph');

const modelTable = [
  {
    id: 'kafka_health_test_model',
    sql: 'CREATE TABLE model (partition integer NOT NULL, record_offset bigint NOT NULL, PRIMARY KEY (partition, record_offset))',
  },
];

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

/**
 * Waits (in real time: the runner's looks are real I/O) until `check` holds, moving the clock on
 * by `stepMs` whenever the runner pauses on it.
 */
async function until(clock: ManualClock, check: () => boolean, stepMs = 1000): Promise<void> {
  await vi.waitFor(
    async () => {
      if (check()) return;
      if (clock.pendingTimers > 0) await clock.advance(stepMs);
      throw new Error('not yet');
    },
    { timeout: 20_000, interval: 5 },
  );
}

/** Whether `run` is ok with a look through since its start: `applied` is emitted before the look ends. */
function answered(run: KafkaProjectionRunner): boolean {
  const health = run.health();
  return health.status === 'ok' && health.lastContactAt !== undefined;
}

/** Waits (in real time) until the runner pauses on its clock: its look has ended. */
function paused(clock: ManualClock): Promise<void> {
  return vi.waitFor(() => expect(clock.pendingTimers).toBe(1), { timeout: 15_000, interval: 5 });
}

const newClientId = (): string => `keel-test-${randomBytes(3).toString('hex')}`;

describe('KafkaProjectionRunner.health() on a real Kafka', () => {
  it('ok while it applies; failing on the database while its statements fail; ok again once they answer', async () => {
    const { db, topic } = await kit.setup(2, modelTable);
    await produce(topic, 0, 3);
    const link = flakyDb(db);
    const clock = new ManualClock();
    const run = runner(link.db, topic, modelProjection, { clock, maxWaitMs: 50, retryDelayMs: 1000 });
    const errors: { error: unknown; during: string }[] = [];
    run.events.on('error', (event) => void errors.push(event));
    let applied = 0;
    run.events.on('applied', ({ count }) => void (applied += count));
    expect(run.health()).toEqual({ status: 'not-running', state: 'idle' });
    await run.start();
    await until(clock, () => applied === 3 && answered(run));
    expect(run.health()).toEqual({ status: 'ok', lastContactAt: clock.now() });

    link.cut();
    await until(clock, () => errors.length > 0);
    // Still running: only health() and the error events say that nothing is applied.
    expect(run.state).toBe('running');
    const health: ServiceHealth = run.health();
    expect(health).toMatchObject({
      status: 'failing',
      dependency: 'database',
      // The look's first statement: the stored offsets' read, before its fetch.
      during: 'fetch',
      failures: 1,
      lastError: { code: 'KEEL_DB_UNAVAILABLE' },
    });
    expect(errors[0]).toMatchObject({ during: 'fetch', error: { code: 'KEEL_DB_UNAVAILABLE' } });

    link.restore();
    await produce(topic, 1, 2);
    await until(clock, () => applied === 5 && answered(run));
    await run.stop({ drainMs: 2000 });
    expect(run.health()).toEqual({ status: 'not-running', state: 'stopped' });
  });

  it('stays ok while the projection’s apply throws: the batch halts the projection, Kafka and the database answered', async () => {
    const { db, topic } = await kit.setup(1, modelTable);
    await produce(topic, 0, 2);
    const clock = new ManualClock();
    const throwing: KafkaProjection = {
      ...modelProjection,
      apply: async () => {
        throw new Error('model refuses the record');
      },
    };
    const run = runner(db, topic, throwing, { clock, maxWaitMs: 50, retryDelayMs: 1000 });
    const errors: { error: unknown; during: string }[] = [];
    run.events.on('error', (event) => void errors.push(event));
    await run.start();
    await until(clock, () => errors.length >= 2);
    expect(errors.map((e) => e.during)).toEqual(['apply', 'apply']);
    // The look's outcome is kept after its error event: once the runner pauses.
    await paused(clock);
    expect(run.health()).toEqual({ status: 'ok', lastContactAt: clock.now() });
  });

  it.each(['leader-epoch', 'out-of-range'] as const)(
    'a leader that seems to move (%s): ok while the loop retries quietly, failing on the broker from the first failure it reports, ok once a look goes through',
    async (how) => {
      const { db, topic } = await kit.setup(2, modelTable);
      await produce(topic, 0, 3);
      const clientId = newClientId();
      // 'out-of-range': Fetch refused OFFSET_OUT_OF_RANGE for offsets that ListOffsets shows valid.
      const stale =
        how === 'leader-epoch'
          ? staleMetadata(kafka, clientId, topic, how)
          : outOfRangeFetches(kafka, clientId);
      const clock = new ManualClock();
      const run = runner(db, topic, modelProjection, {
        clock,
        clientId,
        retryDelayMs: 1000,
        staleLeaderLimitMs: 3000,
      });
      const errors: unknown[] = [];
      run.events.on('error', ({ error }) => void errors.push(error));
      let applied = 0;
      run.events.on('applied', ({ count }) => void (applied += count));
      await run.start();
      // Failed at 0, 1 000 and 2 000 ms, quietly: the stored offsets' reads answered, so ok.
      for (let look = 0; look < 3; look++) {
        await paused(clock);
        expect(errors).toEqual([]);
        expect(run.health()).toMatchObject({ status: 'ok' });
        await clock.advance(1000);
      }
      await paused(clock);
      expect(errors).toHaveLength(1);
      const failing = run.health();
      expect(failing).toMatchObject({
        status: 'failing',
        dependency: 'broker',
        during: 'fetch',
        since: clock.now(),
        failures: 1,
        lastError: errors[0],
      });

      stale.heal();
      await until(clock, () => applied === 3 && run.health().status === 'ok');
      expect(stale.answers()).toBeGreaterThanOrEqual(4);
    },
  );
});
