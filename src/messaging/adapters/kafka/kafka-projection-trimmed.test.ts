// KafkaProjectionRunner against the real Kafka and the suite's database (PGlite, or PostgreSQL
// with KEEL_DB=pg) when a partition no longer holds the offset the projection stored: records
// deleted past it (the admin DeleteRecords call, as retention does), or a topic holding fewer
// records than the offset says. Kafka answers both with OFFSET_OUT_OF_RANGE. A topic deleted and
// created again: kafka-projection-recreated.test.ts.
import { describe, expect, it, vi } from 'vitest';
import type { Db, Tx } from '../../../db/index.ts';
import {
  KafkaOffsetPastEndError,
  KafkaPartitionTrimmedError,
  type KafkaEntry,
  type KafkaProjection,
  type SkippedRecords,
} from './index.ts';
import { kafkaTestSuite } from './kafka-test-suite.ts';
import { projectionTestKit, states, stored } from './projection-test-support.ts';

vi.setConfig({ testTimeout: 60_000 });

const kafka = kafkaTestSuite({ clientId: 'keel-test' });
const { runner, produce, deleteBefore, recreate, ...kit } = projectionTestKit(kafka, 'kpt');

const modelTable = [
  {
    id: 'kafka_trimmed_test_model',
    // Keyed by the record's place: a record applied twice fails its batch instead of passing unseen.
    sql: 'CREATE TABLE model (partition integer NOT NULL, record_offset bigint NOT NULL, PRIMARY KEY (partition, record_offset))',
  },
];

/** Inserts each record's place; `afterWrite` runs once a batch's rows are written, before the commit. */
function modelProjection(
  afterWrite: (entries: readonly KafkaEntry[]) => void = () => undefined,
): KafkaProjection {
  return {
    async apply(entries: readonly KafkaEntry[], tx: Tx): Promise<void> {
      for (const entry of entries)
        await tx.query('INSERT INTO model (partition, record_offset) VALUES ($1, $2)', [
          entry.partition,
          String(entry.offset),
        ]);
      afterWrite(entries);
    },
    async reset(tx: Tx): Promise<void> {
      await tx.query('DELETE FROM model');
    },
  };
}

const setup = (partitions: number): Promise<{ db: Db; topic: string }> => kit.setup(partitions, modelTable);

/** The model's rows as `partition@offset`. */
async function model(db: Db): Promise<string[]> {
  const { rows } = await db.query<{ partition: number; offset: string }>(
    'SELECT partition, record_offset::text AS offset FROM model ORDER BY partition, record_offset',
  );
  return rows.map((row) => `${row.partition}@${row.offset}`);
}

const places = (partition: number, offsets: number[]): string[] => offsets.map((o) => `${partition}@${o}`);

/**
 * Partition 0 and 1 each hold 0..6; the projection applied 0..2 of both (stored 3), then
 * partition 0's records before 5 were deleted: 3 and 4 are gone unapplied.
 */
async function trimmedPastStored(): Promise<{ db: Db; topic: string }> {
  const { db, topic } = await setup(2);
  await produce(topic, 0, 3);
  await produce(topic, 1, 3);
  expect(await runner(db, topic, modelProjection()).catchUp()).toBe(6);
  await produce(topic, 0, 4);
  await produce(topic, 1, 4);
  await deleteBefore(topic, 0, 5n);
  return { db, topic };
}

describe('KafkaProjectionRunner when records were deleted past its stored offset', () => {
  it('fails with KEEL_STREAM_TRIMMED naming topic, partition, stored and earliest offsets; model and offsets untouched', async () => {
    const { db, topic } = await trimmedPastStored();
    const run = runner(db, topic, modelProjection(), { retryDelayMs: 50 });
    expect(await states(run)).toEqual(['0: 5..7 next 3 trimmed', '1: 0..7 next 3 in-range']);
    const failure = await run.catchUp().catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(KafkaPartitionTrimmedError);
    expect(failure).toMatchObject({
      code: 'KEEL_STREAM_TRIMMED',
      status: 410,
      topic,
      partition: 0,
      next: 3n,
      earliest: 5n,
      details: { topic, partition: 0, next: '3', earliest: '5' },
    });
    expect((failure as Error).message).toMatch(/partition 0: records 3 to 4 were deleted/);
    expect(await stored(run)).toEqual(['0@3', '1@3']);
    expect(await model(db)).toEqual([...places(0, [0, 1, 2]), ...places(1, [0, 1, 2])]);

    // Started, it reports the same at every retry and never skips on its own.
    const failures: unknown[] = [];
    run.events.on('error', ({ error, during }) => void failures.push({ error, during }));
    await run.start();
    await vi.waitFor(() => expect(failures.length).toBeGreaterThanOrEqual(2), { timeout: 20_000 });
    expect(failures[1]).toMatchObject({
      during: 'fetch',
      error: { code: 'KEEL_STREAM_TRIMMED', partition: 0 },
    });
    await run.stop();
    expect(await stored(run)).toEqual(['0@3', '1@3']);
  });

  it("onTrimmed: 'resume' applies exactly the retained records once, says what it passed over (skipped) once that commits", async () => {
    const { db, topic } = await trimmedPastStored();
    let refusals = 1;
    const projection = modelProjection((entries) => {
      // The first batch after the skip fails after its writes: the move of the offset rolls back with it.
      if (entries.some((e) => e.partition === 0) && refusals-- > 0) throw new Error('refused once');
    });
    const run = runner(db, topic, projection, { onTrimmed: 'resume' });
    const skipped: SkippedRecords[] = [];
    const seen: string[] = [];
    run.events.on('skipped', (skip) => void (skipped.push(skip), seen.push('skipped')));
    run.events.on('applied', () => void seen.push('applied'));
    await expect(run.catchUp()).rejects.toThrow('refused once');
    expect(skipped).toEqual([]);
    expect(await stored(run)).toEqual(['0@3', '1@3']);

    expect(await run.catchUp()).toBe(6);
    expect(skipped).toEqual([{ partition: 0, from: 3n, to: 5n, count: 2 }]);
    expect(seen[0]).toBe('skipped');
    expect(await model(db)).toEqual([...places(0, [0, 1, 2, 5, 6]), ...places(1, [0, 1, 2, 3, 4, 5, 6])]);
    expect(await stored(run)).toEqual(['0@7', '1@7']);
    expect(await run.lag()).toBe(0);
    expect(await states(run)).toEqual(['0: 5..7 next 7 in-range', '1: 0..7 next 7 in-range']);

    // Every record of a partition deleted: the offset moves to its end with nothing to apply.
    await produce(topic, 1, 2);
    await deleteBefore(topic, 1, 9n);
    expect(await run.catchUp()).toBe(0);
    expect(skipped[1]).toEqual({ partition: 1, from: 7n, to: 9n, count: 2 });
    expect(await stored(run)).toEqual(['0@7', '1@9']);
    expect(await run.lag()).toBe(0);
  });

  it('a started runner with resume goes on by itself', async () => {
    const { db, topic } = await trimmedPastStored();
    const run = runner(db, topic, modelProjection(), { onTrimmed: 'resume' });
    const skipped = run.events.once('skipped');
    await run.start();
    expect(await skipped).toEqual({ partition: 0, from: 3n, to: 5n, count: 2 });
    await vi.waitFor(async () => expect(await stored(run)).toEqual(['0@7', '1@7']), { timeout: 20_000 });
    expect(await model(db)).toEqual([...places(0, [0, 1, 2, 5, 6]), ...places(1, [0, 1, 2, 3, 4, 5, 6])]);
  });

  it('a partition with no stored offset is not trimmed: it starts at its first retained record as it is now', async () => {
    const { db, topic } = await setup(2);
    await produce(topic, 0, 2);
    const run = runner(db, topic, modelProjection());
    // Partition 1 holds nothing yet: no offset is stored for it, its first offset (0) is kept.
    expect(await run.catchUp()).toBe(2);
    expect(await stored(run)).toEqual(['0@2']);
    await produce(topic, 1, 3);
    await deleteBefore(topic, 1, 2n);
    const skipped: unknown[] = [];
    run.events.on('skipped', (skip) => void skipped.push(skip));
    expect(await run.catchUp()).toBe(1);
    expect(skipped).toEqual([]);
    expect(await model(db)).toEqual([...places(0, [0, 1]), ...places(1, [2])]);
  });

  it('rebuild() after the deletion replays what the topic holds, without asking for onTrimmed', async () => {
    const { db, topic } = await trimmedPastStored();
    const run = runner(db, topic, modelProjection());
    await run.rebuild();
    expect(await run.catchUp()).toBe(9);
    expect(await model(db)).toEqual([...places(0, [5, 6]), ...places(1, [0, 1, 2, 3, 4, 5, 6])]);
  });
});

describe('KafkaProjectionRunner with a stored offset past the partition’s end', () => {
  it('fails with KafkaOffsetPastEndError (not trimmed), with resume too, when the topic holds fewer records than applied', async () => {
    const { db, topic } = await setup(1);
    await produce(topic, 0, 3);
    const resumes = runner(db, topic, modelProjection(), { onTrimmed: 'resume' });
    expect(await resumes.catchUp()).toBe(3);
    // Offsets stored before topic ids were (migration 0002): nothing tells this topic from the
    // one they are of but its end, as after records lost in an unclean leader election.
    await db.query('UPDATE keel_kafka_projection_offsets SET topic_id = NULL');
    await recreate(topic, 1);
    await produce(topic, 0, 1);
    expect(await states(resumes)).toEqual(['0: 0..1 next 3 past-end']);
    const failure = await resumes.catchUp().catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(KafkaOffsetPastEndError);
    expect(failure).toMatchObject({
      code: 'KEEL_STREAM_AHEAD',
      topic,
      partition: 0,
      next: 3n,
      end: 1n,
      details: { topic, partition: 0, next: '3', end: '1' },
    });
    expect((failure as Error).message).toMatch(
      /ends at offset 1, but the projection has applied it up to offset 3/,
    );
    const throws = runner(db, topic, modelProjection());
    await expect(throws.catchUp()).rejects.toBeInstanceOf(KafkaOffsetPastEndError);
    expect(await stored(throws)).toEqual(['0@3']);
    expect(await model(db)).toEqual(places(0, [0, 1, 2]));
    // The way out: a rebuild replays the new topic.
    await throws.rebuild();
    expect(await throws.catchUp()).toBe(1);
    expect(await model(db)).toEqual(places(0, [0]));
  });
});
