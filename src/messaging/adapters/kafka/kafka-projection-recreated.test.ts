// KafkaProjectionRunner against the real Kafka and the suite's database (PGlite, or PostgreSQL
// with KEEL_DB=pg) when its topic was deleted and created again under the same name, and the new
// topic grew past the stored offsets: nothing out of range tells it from the old one, its topic
// id (KIP-516) does.
import { randomBytes } from 'node:crypto';
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
const { runner, produce, recreate, topicId, ...kit } = projectionTestKit(kafka, 'kpr');

const modelTable = [
  {
    id: 'kafka_recreated_test_model',
    // Keyed by the envelope's id, not the record's place: the new topic's records take the old
    // one's offsets again. A record applied twice fails its batch instead of passing unseen.
    sql: 'CREATE TABLE model (id text PRIMARY KEY, partition integer NOT NULL, record_offset bigint NOT NULL)',
  },
];

const setup = (partitions: number): Promise<{ db: Db; topic: string }> => kit.setup(partitions, modelTable);

/** Inserts each record; `afterWrite` runs once a batch's rows are written, before the commit. */
function modelProjection(
  afterWrite: (entries: readonly KafkaEntry[]) => void = () => undefined,
): KafkaProjection {
  return {
    async apply(entries: readonly KafkaEntry[], tx: Tx): Promise<void> {
      for (const entry of entries)
        await tx.query('INSERT INTO model (id, partition, record_offset) VALUES ($1, $2, $3)', [
          entry.envelope.id,
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

/** The model's rows as `partition@offset`, in order. */
async function model(db: Db): Promise<string[]> {
  const { rows } = await db.query<{ place: string }>(
    `SELECT partition || '@' || record_offset AS place FROM model ORDER BY partition, record_offset, id`,
  );
  return rows.map((row) => row.place);
}

/** The ids of `envelopes` the model holds. */
async function applied(db: Db, envelopes: readonly Envelope[]): Promise<string[]> {
  const { rows } = await db.query<{ id: string }>('SELECT id FROM model WHERE id = ANY($1::text[])', [
    envelopes.map((e) => e.id),
  ]);
  return rows.map((row) => row.id);
}

const ids = (envelopes: readonly Envelope[]): string[] => envelopes.map((e) => e.id).sort();

/**
 * Partitions 0 and 1 of `topic` held 3 and 2 records, all applied (stored 0@3, 1@2, with the
 * topic's id); then the topic was deleted and created again, and the new one holds 6 and 3: past
 * the stored offsets, so no fetch is out of range.
 */
async function recreatedPastStored(): Promise<{
  db: Db;
  topic: string;
  oldId: string;
  newId: string;
  fresh: Envelope[];
}> {
  const { db, topic } = await setup(2);
  await produce(topic, 0, 3);
  await produce(topic, 1, 2);
  expect(await runner(db, topic, modelProjection()).catchUp()).toBe(5);
  const oldId = await topicId(topic);
  await recreate(topic, 2);
  const fresh = [...(await produce(topic, 0, 6)), ...(await produce(topic, 1, 3))];
  return { db, topic, oldId, newId: await topicId(topic), fresh };
}

const oldModel = ['0@0', '0@1', '0@2', '1@0', '1@1'];

describe('KafkaProjectionRunner on a topic deleted and created again', () => {
  it('stores the topic id with the offsets, and refuses the new topic: KEEL_STREAM_REPLACED naming topic, stored id and current id', async () => {
    const { db, topic, oldId, newId } = await recreatedPastStored();
    expect(newId).not.toBe(oldId);
    expect(await storedIds(db)).toEqual([`0:${oldId}`, `1:${oldId}`]);
    const run = runner(db, topic, modelProjection(), { onTrimmed: 'resume' });
    expect(await states(run)).toEqual(['0: 0..6 next 3 recreated', '1: 0..3 next 2 recreated']);
    expect(await run.lag()).toBe(9);

    const failure = await run.catchUp().catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(KafkaTopicRecreatedError);
    expect(failure).toMatchObject({
      code: 'KEEL_STREAM_REPLACED',
      status: 409,
      topic,
      storedTopicId: oldId,
      currentTopicId: newId,
      partitions: [0, 1],
      details: { topic, storedTopicId: oldId, currentTopicId: newId, partitions: [0, 1] },
    });
    expect((failure as Error).message).toContain(
      `stored for topic id ${oldId}, the topic's id is now ${newId}`,
    );
    expect(await stored(run)).toEqual(['0@3', '1@2']);
    expect(await storedIds(db)).toEqual([`0:${oldId}`, `1:${oldId}`]);
    expect(await model(db)).toEqual(oldModel);

    // The way out that empties the model: a rebuild replays the new topic.
    await run.rebuild();
    expect(await run.catchUp()).toBe(9);
    expect(await storedIds(db)).toEqual([`0:${newId}`, `1:${newId}`]);
    expect(await states(run)).toEqual(['0: 0..6 next 6 in-range', '1: 0..3 next 3 in-range']);
  });

  it('a started runner that applied the old topic refuses the new one at its next look, storing none of it', async () => {
    const { db, topic } = await setup(1);
    await produce(topic, 0, 3);
    const run = runner(db, topic, modelProjection(), { retryDelayMs: 50 });
    const failures: { error: unknown; during: string }[] = [];
    run.events.on('error', (failure) => void failures.push(failure));
    const caughtUp = run.events.once('applied');
    await run.start();
    await caughtUp;
    const oldId = await topicId(topic);
    // The runner's client has the old topic's metadata cached: its next fetch names the old id.
    await recreate(topic, 1);
    await produce(topic, 0, 5);
    await vi.waitFor(
      () => expect(failures.some((f) => f.error instanceof KafkaTopicRecreatedError)).toBe(true),
      { timeout: 20_000 },
    );
    await run.stop();
    // The fetch in flight when the topic went and any by the old id are no failures: they send
    // the runner to Kafka for fresh metadata.
    expect(failures.filter((f) => !(f.error instanceof KafkaTopicRecreatedError))).toEqual([]);
    expect(failures[0]).toMatchObject({
      during: 'fetch',
      error: { code: 'KEEL_STREAM_REPLACED', storedTopicId: oldId, currentTopicId: await topicId(topic) },
    });
    expect(await stored(run)).toEqual(['0@3']);
    expect(await model(db)).toEqual(['0@0', '0@1', '0@2']);
  });

  it("onRecreated: 'restart' applies the new topic from its first record, each once, and says so (restarted) once that commits", async () => {
    const { db, topic, oldId, newId, fresh } = await recreatedPastStored();
    let refusals = 1;
    // The first batch after the restart fails after its writes: the drop of the old offsets rolls back with it.
    const projection = modelProjection(() => {
      if (refusals-- > 0) throw new Error('refused once');
    });
    const run = runner(db, topic, projection, { onRecreated: 'restart', batchSize: 4 });
    const restarts: TopicRestart[] = [];
    const seen: string[] = [];
    run.events.on('restarted', (restart) => void (restarts.push(restart), seen.push('restarted')));
    run.events.on('applied', () => void seen.push('applied'));
    await expect(run.catchUp()).rejects.toThrow('refused once');
    expect(restarts).toEqual([]);
    expect(await stored(run)).toEqual(['0@3', '1@2']);
    expect(await storedIds(db)).toEqual([`0:${oldId}`, `1:${oldId}`]);

    expect(await run.catchUp()).toBe(9);
    expect(restarts).toEqual([
      {
        storedTopicId: oldId,
        topicId: newId,
        dropped: [
          { partition: 0, next: 3n },
          { partition: 1, next: 2n },
        ],
      },
    ]);
    expect(seen[0]).toBe('restarted');
    expect(seen.filter((s) => s === 'restarted')).toHaveLength(1);
    // The old topic's rows stay (no reset); each of the new topic's records is there once.
    expect((await applied(db, fresh)).sort()).toEqual(ids(fresh));
    expect(await model(db)).toEqual([
      ...['0@0', '0@0', '0@1', '0@1', '0@2', '0@2', '0@3', '0@4', '0@5'],
      ...['1@0', '1@0', '1@1', '1@1', '1@2'],
    ]);
    expect(await stored(run)).toEqual(['0@6', '1@3']);
    expect(await storedIds(db)).toEqual([`0:${newId}`, `1:${newId}`]);
    expect(await states(run)).toEqual(['0: 0..6 next 6 in-range', '1: 0..3 next 3 in-range']);
    expect(await run.catchUp()).toBe(0);
    expect(restarts).toHaveLength(1);
  });

  it('a started runner with restart goes on by itself when the topic is recreated under it', async () => {
    const { db, topic } = await setup(1);
    const old = await produce(topic, 0, 3);
    const run = runner(db, topic, modelProjection(), { onRecreated: 'restart', retryDelayMs: 50 });
    const caughtUp = run.events.once('applied');
    await run.start();
    await caughtUp;
    const restarted = run.events.once('restarted');
    await recreate(topic, 1);
    const fresh = await produce(topic, 0, 5);
    expect(await restarted).toMatchObject({
      topicId: await topicId(topic),
      dropped: [{ partition: 0, next: 3n }],
    });
    await vi.waitFor(async () => expect(await stored(run)).toEqual(['0@5']), { timeout: 20_000 });
    expect((await applied(db, [...old, ...fresh])).sort()).toEqual(ids([...old, ...fresh]));
    expect(await model(db)).toEqual(['0@0', '0@0', '0@1', '0@1', '0@2', '0@2', '0@3', '0@4']);
  });

  it('two started runners of one projection, both with restart: one restart stored, the other follows it; each record once', async () => {
    const { db, topic } = await setup(1);
    const old = await produce(topic, 0, 3);
    const runs = [1, 2].map(() =>
      runner(db, topic, modelProjection(), { onRecreated: 'restart', retryDelayMs: 50 }),
    );
    const restarts: TopicRestart[] = [];
    // A batch applied twice would fail on the model's key: an `apply` error.
    const refused: unknown[] = [];
    for (const run of runs) {
      run.events.on('restarted', (restart) => void restarts.push(restart));
      run.events.on('error', ({ error, during }) => void (during === 'apply' && refused.push(error)));
      await run.start();
    }
    await vi.waitFor(async () => expect(await stored(runs[0]!)).toEqual(['0@3']), { timeout: 20_000 });
    await recreate(topic, 1);
    const fresh = [...(await produce(topic, 0, 4)), ...(await produce(topic, 0, 4))];
    await vi.waitFor(async () => expect(await stored(runs[0]!)).toEqual(['0@8']), { timeout: 20_000 });
    expect(restarts).toHaveLength(1);
    expect(refused).toEqual([]);
    expect((await applied(db, [...old, ...fresh])).sort()).toEqual(ids([...old, ...fresh]));
  });

  it('an empty new topic: restart drops the old offsets with nothing to apply, then applies what arrives', async () => {
    const { db, topic } = await setup(1);
    await produce(topic, 0, 2);
    const run = runner(db, topic, modelProjection(), { onRecreated: 'restart' });
    expect(await run.catchUp()).toBe(2);
    await recreate(topic, 1);
    const restarts: TopicRestart[] = [];
    run.events.on('restarted', (restart) => void restarts.push(restart));
    expect(await run.catchUp()).toBe(0);
    expect(restarts).toHaveLength(1);
    expect(await stored(run)).toEqual([]);
    await produce(topic, 0, 1);
    expect(await run.catchUp()).toBe(1);
    expect(await stored(run)).toEqual(['0@1']);
    expect(restarts).toHaveLength(1);
  });
});

describe('KafkaProjectionRunner offsets stored before topic ids (migration 0002)', () => {
  it('adopt the topic’s id at the projection’s next batch, every partition’s; a later recreation is then refused', async () => {
    const [createTables] = kafkaProjectionMigrations;
    const { db, topic } = await kit.setup(2, modelTable, { runnerMigrations: [createTables] });
    await produce(topic, 0, 3);
    await produce(topic, 1, 2);
    // As a runner from before 0002 left them: partition 0 applied up to 2, partition 1 entirely.
    await db.query(
      `INSERT INTO keel_kafka_projection_offsets (projection, topic, partition, next_offset)
       VALUES ('model.v1', $1, 0, 2), ('model.v1', $1, 1, 2)`,
      [topic],
    );
    await migrate(db, kafkaProjectionMigrations);
    expect(await storedIds(db)).toEqual(['0:null', '1:null']);
    const run = runner(db, topic, modelProjection());
    expect(await states(run)).toEqual(['0: 0..3 next 2 in-range', '1: 0..2 next 2 in-range']);
    expect(await run.catchUp()).toBe(1);
    const id = await topicId(topic);
    expect(await storedIds(db)).toEqual([`0:${id}`, `1:${id}`]);
    expect(await model(db)).toEqual(['0@2']);

    await recreate(topic, 2);
    await produce(topic, 1, 4);
    await expect(run.catchUp()).rejects.toMatchObject({ code: 'KEEL_STREAM_REPLACED', storedTopicId: id });
  });
});

describe('KafkaProjectionRunner: what the topic id check costs', () => {
  it('no Metadata request per batch: the id comes with the metadata the client caches (5 s)', async () => {
    const { db, topic } = await setup(1);
    const clientId = `keel-test-${randomBytes(3).toString('hex')}`;
    const requests = kafka.requestsSent(clientId);
    const run = runner(db, topic, modelProjection(), { clientId, batchSize: 1 });
    await run.start();
    const began = Date.now();
    let batches = 0;
    run.events.on('applied', () => void batches++);
    // One record at a time: each is its own look (fetch) and batch.
    for (let n = 1; n <= 15; n++) {
      await produce(topic, 0, 1);
      await vi.waitFor(() => expect(batches).toBe(n), { timeout: 10_000, interval: 10 });
    }
    const elapsed = Date.now() - began;
    await run.stop();
    expect(requests.count('Fetch')).toBeGreaterThanOrEqual(15);
    // The first look's, then at most one per 5 s of the client's metadata age.
    expect(requests.count('Metadata')).toBeLessThanOrEqual(2 + Math.ceil(elapsed / 5000));
  });
});
