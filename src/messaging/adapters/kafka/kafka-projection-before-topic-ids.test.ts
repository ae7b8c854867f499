// KafkaProjectionRunner against the real Kafka and the suite's database (PGlite, or PostgreSQL
// with KEEL_DB=pg) on offsets stored before topic ids were (migration
// keel_kafka_projection_0002_topic_id: their topic_id is NULL). What can be told from them is
// refused or adopted at the first look; what cannot is in docs/kafka.md. The adoption at the next
// batch and the recreation refused after it: kafka-projection-recreated.test.ts.
import { describe, expect, it, vi } from 'vitest';
import { migrate, type Db, type Tx } from '../../../db/index.ts';
import type { Envelope } from '../../envelope.ts';
import {
  KafkaTopicRecreatedError,
  kafkaProjectionMigrations,
  type KafkaEntry,
  type KafkaProjection,
  type TopicRestart,
} from './index.ts';
import { kafkaTestSuite } from './kafka-test-suite.ts';
import { projectionTestKit, states, stored, storedIds } from './projection-test-support.ts';

vi.setConfig({ testTimeout: 60_000 });

const kafka = kafkaTestSuite({ clientId: 'keel-test' });
const { runner, produce, recreate, topicId, ...kit } = projectionTestKit(kafka, 'kpb');

const modelTable = [
  {
    id: 'kafka_before_topic_ids_test_model',
    // Keyed by the envelope's id: a record applied twice fails its batch instead of passing unseen.
    sql: 'CREATE TABLE model (id text PRIMARY KEY)',
  },
];

const modelProjection: KafkaProjection = {
  async apply(entries: readonly KafkaEntry[], tx: Tx): Promise<void> {
    for (const entry of entries) await tx.query('INSERT INTO model (id) VALUES ($1)', [entry.envelope.id]);
  },
  async reset(tx: Tx): Promise<void> {
    await tx.query('DELETE FROM model');
  },
};

/** The ids in the model, sorted. */
async function model(db: Db): Promise<string[]> {
  const { rows } = await db.query<{ id: string }>('SELECT id FROM model ORDER BY id');
  return rows.map((row) => row.id);
}

const ids = (envelopes: readonly Envelope[]): string[] => envelopes.map((e) => e.id).sort();

/** Stores `offsets` (`[partition, next]`) as a runner from before topic ids did: no topic id. */
async function storeWithoutId(db: Db, topic: string, offsets: [number, number][]): Promise<void> {
  for (const [partition, next] of offsets)
    await db.query(
      `INSERT INTO keel_kafka_projection_offsets (projection, topic, partition, next_offset)
       VALUES ('model.v1', $1, $2, $3) ON CONFLICT DO NOTHING`,
      [topic, partition, next],
    );
}

/** A database on the runner's tables as they were before 0002, where `offsets` were stored, then migrated. */
async function storedBeforeTopicIds(
  partitions: number,
  offsets: [number, number][],
  produced: number,
): Promise<{ db: Db; topic: string }> {
  const [createTables] = kafkaProjectionMigrations;
  const { db, topic } = await kit.setup(partitions, modelTable, { runnerMigrations: [createTables] });
  for (let partition = 0; partition < partitions; partition++) await produce(topic, partition, produced);
  await storeWithoutId(db, topic, offsets);
  await migrate(db, kafkaProjectionMigrations);
  expect(await storedIds(db)).toEqual(offsets.map(([partition]) => `${partition}:null`));
  return { db, topic };
}

describe('KafkaProjectionRunner on offsets stored before topic ids (migration 0002)', () => {
  it('one of a partition the topic lacks: the topic was recreated with fewer; refused (KEEL_STREAM_REPLACED, no stored id) though it grew past the others', async () => {
    // Three partitions, each applied to 2; the topic recreated with two, which hold 4 and 3 records.
    const { db, topic } = await storedBeforeTopicIds(
      3,
      [
        [0, 2],
        [1, 2],
        [2, 2],
      ],
      2,
    );
    await recreate(topic, 2);
    const fresh = [...(await produce(topic, 0, 4)), ...(await produce(topic, 1, 3))];
    const newId = await topicId(topic);
    const run = runner(db, topic, modelProjection, { onTrimmed: 'resume' });
    expect(await states(run)).toEqual(['0: 0..4 next 2 recreated', '1: 0..3 next 2 recreated']);
    expect(await run.lag()).toBe(7);

    const failure = await run.catchUp().catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(KafkaTopicRecreatedError);
    expect(failure).toMatchObject({
      code: 'KEEL_STREAM_REPLACED',
      topic,
      storedTopicId: null,
      currentTopicId: newId,
      partitions: [0, 1, 2],
    });
    expect((failure as Error).message).toContain(`the topic (id ${newId}) has 2 partitions now`);
    expect(await storedIds(db)).toEqual(['0:null', '1:null', '2:null']);
    expect(await model(db)).toEqual([]);

    // onRecreated: 'restart' applies the new topic from its first records, and says what it dropped.
    const restarting = runner(db, topic, modelProjection, { onRecreated: 'restart' });
    const restarts: TopicRestart[] = [];
    restarting.events.on('restarted', (restart) => void restarts.push(restart));
    expect(await restarting.catchUp()).toBe(7);
    expect(restarts).toEqual([
      {
        storedTopicId: null,
        topicId: newId,
        dropped: [
          { partition: 0, next: 2n },
          { partition: 1, next: 2n },
          { partition: 2, next: 2n },
        ],
      },
    ]);
    expect(await model(db)).toEqual(ids(fresh));
    expect(await storedIds(db)).toEqual([`0:${newId}`, `1:${newId}`]);
  });

  it('each within a partition the topic has: adopted at the first look, even with nothing to apply; a recreation after it is refused', async () => {
    const { db, topic } = await storedBeforeTopicIds(1, [[0, 3]], 3);
    const run = runner(db, topic, modelProjection);
    expect(await run.catchUp()).toBe(0);
    const id = await topicId(topic);
    expect(await storedIds(db)).toEqual([`0:${id}`]);

    // Before, an idle topic kept them without an id until a record came: the new topic's 4th
    // and 5th records would have been applied as the old topic's.
    await recreate(topic, 1);
    await produce(topic, 0, 5);
    await expect(run.catchUp()).rejects.toMatchObject({ code: 'KEEL_STREAM_REPLACED', storedTopicId: id });
    expect(await stored(run)).toEqual(['0@3']);
    expect(await model(db)).toEqual([]);
  });

  it('one stored by a runner from before 0002 for a partition added under a started runner: no refusal, the id adopted', async () => {
    const { db, topic } = await kit.setup(1, modelTable);
    const first = await produce(topic, 0, 2);
    const run = runner(db, topic, modelProjection, { retryDelayMs: 50 });
    const failures: unknown[] = [];
    run.events.on('error', ({ error }) => void failures.push(error));
    const caughtUp = run.events.once('applied');
    await run.start();
    await caughtUp;
    // The runner's client has cached metadata of one partition (for up to 5 s): the row below
    // names a partition it does not know of, which Kafka has.
    const { topics } = await kafka.admin.metadata({ topics: [topic] });
    const leader = topics.get(topic)!.partitions[0]!.leader;
    await kafka.admin.createPartitions({
      topics: [{ name: topic, count: 2, assignments: [{ brokerIds: [leader] }] }],
    });
    // The producer's metadata too: it writes a record for a partition it does not know to another.
    await vi.waitFor(async () => {
      const { topics } = await kafka.producer.metadata({ topics: [topic], forceUpdate: true });
      expect(topics.get(topic)?.partitionsCount).toBe(2);
    });
    const [oldRunners] = await produce(topic, 1, 1);
    // As a runner from before 0002 still running beside it leaves it, once it applied that record.
    // (If this runner got to the record first, its row stays.)
    await storeWithoutId(db, topic, [[1, 1]]);
    const later = await produce(topic, 1, 2);
    await vi.waitFor(async () => expect(await stored(run)).toEqual(['0@2', '1@3']), { timeout: 20_000 });
    await run.stop();
    expect(failures).toEqual([]);
    const id = await topicId(topic);
    expect(await storedIds(db)).toEqual([`0:${id}`, `1:${id}`]);
    // Each record once; the one the old runner applied, by this one too if it got there first.
    const applied = await model(db);
    expect(applied.filter((id) => id !== oldRunners!.id)).toEqual(ids([...first, ...later]));
  });
});
