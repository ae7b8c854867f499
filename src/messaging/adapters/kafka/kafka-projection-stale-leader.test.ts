// KafkaProjectionRunner's one-shot calls against the real Kafka and the suite's database
// (PGlite, or PostgreSQL with KEEL_DB=pg) while a partition's leader seems to move: the client's
// metadata is altered as it arrives, so that the broker itself answers UNKNOWN_LEADER_EPOCH or
// UNKNOWN_TOPIC_ID. The running loop under the same answers: test/integration/kafka-projection.test.ts.
import { randomBytes } from 'node:crypto';
import { describe, expect, it, vi } from 'vitest';
import type { Db, Tx } from '../../../db/index.ts';
import { ManualClock } from '../../../time/index.ts';
import type { KafkaEntry, KafkaProjection } from './index.ts';
import { kafkaTestSuite } from './kafka-test-suite.ts';
import {
  outOfRangeFetches,
  projectionTestKit,
  staleMetadata,
  states,
  stored,
} from './projection-test-support.ts';
import { staleLeaderAnswers } from './stale-leader.ts';

vi.setConfig({ testTimeout: 60_000 });

const kafka = kafkaTestSuite({ clientId: 'keel-test' });
const { runner, produce, ...kit } = projectionTestKit(kafka, 'kps');

const modelTable = [
  {
    id: 'kafka_stale_leader_test_model',
    // Keyed by the record's place: a record applied twice fails its batch instead of passing unseen.
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

/** A topic of 2 partitions holding 3 records in partition 0 and 2 in partition 1. */
async function setup(): Promise<{ db: Db; topic: string }> {
  const made = await kit.setup(2, modelTable);
  await produce(made.topic, 0, 3);
  await produce(made.topic, 1, 2);
  return made;
}

async function modelRows(db: Db): Promise<number> {
  const { rows } = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM model');
  return rows[0]!.n;
}

const newClientId = (): string => `keel-test-${randomBytes(3).toString('hex')}`;

/** Waits (in real time: the call is at real I/O meanwhile) until `timers` are set on the clock: the calls pause. */
function paused(clock: ManualClock, timers = 1): Promise<void> {
  return vi.waitFor(() => expect(clock.pendingTimers).toBe(timers), { timeout: 15_000, interval: 5 });
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

/** Waits (in real time) for the watched call to settle. */
async function settled<T>(outcome: () => Settled<T> | undefined): Promise<Settled<T>> {
  await vi.waitFor(() => expect(outcome()).toBeDefined(), { timeout: 15_000, interval: 5 });
  return outcome()!;
}

describe('KafkaProjectionRunner one-shot calls while a leader moves', () => {
  it.each(['leader-epoch', 'topic-id'] as const)(
    'catchUp() (%s): looked at again after retryDelayMs, each look on fresh metadata, and applies every record once the leader answers',
    async (how) => {
      const { db, topic } = await setup();
      const clientId = newClientId();
      const metadata = staleMetadata(kafka, clientId, topic, how);
      const requests = kafka.requestsSent(clientId);
      const clock = new ManualClock();
      // Never started: a command line's runner, its own connection.
      const run = runner(db, topic, modelProjection, { clock, clientId, retryDelayMs: 1000 });
      const outcome = watch(run.catchUp());
      for (let pause = 0; pause < 5; pause++) {
        await paused(clock);
        expect(clock.nextTimerIn()).toBe(1000);
        await clock.advance(1000);
      }
      await paused(clock);
      expect(outcome()).toBeUndefined();
      // Six looks failed, each after asking Kafka for the metadata; the first UNKNOWN_TOPIC_ID is
      // looked at again at once (cached metadata may name a deleted topic), the second waits.
      const failed = 6 + (how === 'topic-id' ? 1 : 0);
      expect(metadata.answers()).toBe(failed);
      expect(requests.count('Metadata')).toBe(failed);
      expect(requests.count(how === 'topic-id' ? 'Fetch' : 'ListOffsets')).toBe(failed);

      metadata.heal();
      await clock.advance(1000);
      expect(await settled(outcome)).toEqual({ value: 5 });
      expect(await modelRows(db)).toBe(5);
      expect(await stored(run)).toEqual(['0@3', '1@2']);
      expect(clock.pendingTimers).toBe(0);
    },
  );

  it('catchUp() refused OFFSET_OUT_OF_RANGE for offsets ListOffsets shows valid (a broker behind a switch-over): looked at again quietly, applies every record once answered', async () => {
    const { db, topic } = await setup();
    const clientId = newClientId();
    const behind = outOfRangeFetches(kafka, clientId);
    const requests = kafka.requestsSent(clientId);
    const clock = new ManualClock();
    const run = runner(db, topic, modelProjection, { clock, clientId, retryDelayMs: 1000 });
    const outcome = watch(run.catchUp());
    for (let pause = 0; pause < 3; pause++) {
      await paused(clock);
      expect(clock.nextTimerIn()).toBe(1000);
      await clock.advance(1000);
    }
    await paused(clock);
    expect(outcome()).toBeUndefined();
    // Four looks refused, each fetch followed by the ranges that show it valid.
    expect(behind.answers()).toBe(4);
    expect(requests.count('Fetch')).toBe(4);

    behind.heal();
    await clock.advance(1000);
    expect(await settled(outcome)).toEqual({ value: 5 });
    expect(await modelRows(db)).toBe(5);
    expect(await stored(run)).toEqual(['0@3', '1@2']);
    expect(clock.pendingTimers).toBe(0);
  });

  it('progress() and lag() at once, each waiting on its own, answer once the leader does', async () => {
    // ListOffsets carries the leader epochs; it names the topic by name, so a topic id does not matter to it.
    const { db, topic } = await setup();
    const clientId = newClientId();
    const metadata = staleMetadata(kafka, clientId, topic, 'leader-epoch');
    const clock = new ManualClock();
    const run = runner(db, topic, modelProjection, { clock, clientId, retryDelayMs: 1000 });
    const progress = watch(states(run));
    const lag = watch(run.lag());
    for (let pause = 0; pause < 3; pause++) {
      await paused(clock, 2);
      await clock.advance(1000);
    }
    await paused(clock, 2);
    expect(progress()).toBeUndefined();
    expect(lag()).toBeUndefined();
    metadata.heal();
    await clock.advance(1000);
    expect(await settled(progress)).toEqual({
      value: ['0: 0..3 next 0 in-range', '1: 0..2 next 0 in-range'],
    });
    expect(await settled(lag)).toEqual({ value: 5 });
    expect(await run.partitions()).toEqual([
      { partition: 0, start: 0n, end: 3n },
      { partition: 1, start: 0n, end: 2n },
    ]);
  });

  it.each([
    { call: 'catchUp', how: 'leader-epoch', failed: 4 },
    { call: 'catchUp', how: 'topic-id', failed: 5 },
    { call: 'progress', how: 'leader-epoch', failed: 4 },
  ] as const)(
    'with staleLeaderLimitMs 3000, $call ($how) rejects with the last stale-leader failure once they have gone on that long',
    async ({ call, how, failed }) => {
      const { db, topic } = await setup();
      const clientId = newClientId();
      const metadata = staleMetadata(kafka, clientId, topic, how);
      const clock = new ManualClock();
      const startedAt = clock.now();
      const run = runner(db, topic, modelProjection, {
        clock,
        clientId,
        retryDelayMs: 1000,
        staleLeaderLimitMs: 3000,
      });
      const outcome = watch<unknown>(call === 'catchUp' ? run.catchUp() : run.progress());
      // Failed at 0, 1 000 and 2 000 ms, quietly; the failure at 3 000 ms is the call's.
      for (let pause = 0; pause < 3; pause++) {
        await paused(clock);
        await clock.advance(1000);
      }
      const { error } = await settled(outcome);
      expect(clock.now() - startedAt).toBe(3000);
      expect(error).toMatchObject({ code: 'KEEL_BROKER_UNAVAILABLE' });
      expect(staleLeaderAnswers(error)).toEqual([
        how === 'topic-id' ? 'UNKNOWN_TOPIC_ID' : 'UNKNOWN_LEADER_EPOCH',
      ]);
      expect(metadata.answers()).toBe(failed);
      expect(clock.pendingTimers).toBe(0);
      expect(await modelRows(db)).toBe(0);
      expect(await stored(run)).toEqual([]);
    },
  );

  it('stop() during a call’s wait ends it at once with KEEL_SERVICE_STATE, on a runner never started and on a started one', async () => {
    const { db, topic } = await setup();

    // A command line interrupted: the base class has nothing to stop, the wait ends all the same.
    const cliClient = newClientId();
    staleMetadata(kafka, cliClient, topic, 'leader-epoch');
    const cliClock = new ManualClock();
    const cli = runner(db, topic, modelProjection, { clock: cliClock, clientId: cliClient });
    const catchingUp = watch(cli.catchUp());
    await paused(cliClock);
    await cli.stop();
    const { error } = await settled(catchingUp);
    expect(error).toMatchObject({ code: 'KEEL_SERVICE_STATE' });
    expect(staleLeaderAnswers((error as Error).cause)).toEqual(['UNKNOWN_LEADER_EPOCH']);
    expect(cliClock.pendingTimers).toBe(0);
    await expect(cli.catchUp()).rejects.toMatchObject({ code: 'KEEL_SERVICE_STATE' });

    // Started: its loop pauses quietly on the same answers, beside the call's own wait.
    const startedClient = newClientId();
    staleMetadata(kafka, startedClient, topic, 'leader-epoch');
    const clock = new ManualClock();
    const started = runner(db, topic, modelProjection, { clock, clientId: startedClient });
    const errors: unknown[] = [];
    started.events.on('error', ({ error: failure }) => void errors.push(failure));
    await started.start();
    await paused(clock);
    const reading = watch(started.progress());
    await paused(clock, 2);
    await started.stop({ drainMs: 5000 });
    expect((await settled(reading)).error).toMatchObject({ code: 'KEEL_SERVICE_STATE' });
    expect(started.state).toBe('stopped');
    expect(clock.pendingTimers).toBe(0);
    expect(errors).toEqual([]);
  });
});
