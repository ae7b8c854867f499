// The set-up the KafkaProjectionRunner test files against the real Kafka share: a database of the
// suite's backend (PGlite, or PostgreSQL with KEEL_DB=pg) migrated for the runner and the test's
// model, a topic of its own, runners stopped after each test. Not part of the public door.
import { randomBytes, randomUUID } from 'node:crypto';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import {
  consumerFetchesChannel,
  instancesChannel,
  type Base,
  type ClusterMetadata,
  type CreationEvent,
} from '@platformatic/kafka';
import { expect, vi } from 'vitest';
import { migrate, type Db, type Migration } from '../../../db/index.ts';
import { createTestDb } from '../../../testing/index.ts';
import { createEnvelope, type Envelope } from '../../envelope.ts';
import {
  KafkaProjectionRunner,
  type KafkaProjection,
  type KafkaProjectionRunnerOptions,
} from './kafka-projection.ts';
import { kafkaProjectionMigrations } from './kafka-projection-schema.ts';
import type { KafkaTestSuite } from './kafka-test-suite.ts';
import { encodeEnvelope } from './record-codec.ts';
import { kafkaBrokers } from './test-support.ts';
import { TopicFetcher } from './topic-fetcher.ts';

export interface ProjectionTestKit {
  /**
   * A database migrated with the runner's migrations (`runnerMigrations`, default all of them)
   * and the model's, and a new topic of `partitions`.
   */
  setup: (
    partitions: number,
    migrations: readonly Migration[],
    options?: { runnerMigrations?: readonly Migration[] },
  ) => Promise<{ db: Db; topic: string }>;
  /** A runner of the projection `model.v1`, stopped after the test. */
  runner: (
    db: Db,
    topic: string,
    projection: KafkaProjection,
    options?: Partial<KafkaProjectionRunnerOptions>,
  ) => KafkaProjectionRunner;
  /** Writes `count` records to one partition, payload `{ n }` from 0 on; returns their envelopes. */
  produce: (topic: string, partition: number, count: number) => Promise<Envelope[]>;
  /** Deletes the records of `partition` before `offset`, as retention does (the admin DeleteRecords call). */
  deleteBefore: (topic: string, partition: number, offset: bigint) => Promise<void>;
  /**
   * Deletes `topic` and creates it again, empty, once Kafka has let the old one go; resolves
   * once the new topic's leaders serve it (`untilLeadersServe`), so that what is written next
   * lands in it.
   */
  recreate: (topic: string, partitions: number) => Promise<void>;
  /** The topic's id (KIP-516) as Kafka has it now. */
  topicId: (topic: string) => Promise<string>;
}

/** The offsets `run` stored, as `partition@next`. */
export async function stored(run: KafkaProjectionRunner): Promise<string[]> {
  return [...(await run.position())].map(([partition, next]) => `${partition}@${next}`).sort();
}

/** Each partition's `start..end` and how the stored offset stands against it. */
export async function states(run: KafkaProjectionRunner): Promise<string[]> {
  return (await run.progress()).map((p) => `${p.partition}: ${p.start}..${p.end} next ${p.next} ${p.state}`);
}

/** The topic id stored with each partition's offset, as `partition:id`. */
export async function storedIds(db: Db): Promise<string[]> {
  const { rows } = await db.query<{ partition: number; topic_id: string | null }>(
    'SELECT partition, topic_id::text FROM keel_kafka_projection_offsets ORDER BY partition',
  );
  return rows.map((row) => `${row.partition}:${row.topic_id}`);
}

export function projectionTestKit(kafka: KafkaTestSuite, topicPrefix: string): ProjectionTestKit {
  const { topics, cleanups } = kafka;
  return {
    async setup(partitions, migrations, options = {}) {
      const db = await createTestDb();
      cleanups.push(() => db.close());
      await migrate(db, [...(options.runnerMigrations ?? kafkaProjectionMigrations), ...migrations]);
      const topic = `${topicPrefix}_${randomBytes(5).toString('hex')}`;
      topics.push(topic);
      await kafka.admin.createTopics({ topics: [topic], partitions, replicas: 1 });
      return { db, topic };
    },

    runner(db, topic, projection, options = {}) {
      const built = new KafkaProjectionRunner(db, projection, {
        name: 'model.v1',
        topic,
        brokers: kafkaBrokers,
        ...options,
      });
      cleanups.push(() => built.stop({ drainMs: 2000 }));
      return built;
    },

    async produce(topic, partition, count) {
      const envelopes = Array.from({ length: count }, (_, n) =>
        createEnvelope({ type: 'thing.counted.v1', payload: { n } }),
      );
      const messages = envelopes.map((envelope) => {
        const { value, headers } = encodeEnvelope(envelope);
        return { topic, partition, value, headers };
      });
      await kafka.producer.send({ messages });
      return envelopes;
    },

    async deleteBefore(topic, partition, offset) {
      const [deleted] = await kafka.admin.deleteRecords({
        topics: [{ name: topic, partitions: [{ partition, offset }] }],
      });
      expect(deleted?.partitions[0]?.lowWatermark).toBe(offset);
    },

    async recreate(topic, partitions) {
      const oldId = await currentTopicId(kafka, topic);
      await kafka.admin.deleteTopics({ topics: [topic] });
      await vi.waitFor(
        async () => {
          await kafka.admin.createTopics({ topics: [topic], partitions, replicas: 1 });
        },
        { timeout: 30_000, interval: 250 },
      );
      await untilLeadersServe(topic, oldId, partitions);
      // The producer's cached metadata names the old topic's leaders: on a cluster of several
      // brokers, one of them may not be a new leader, nor have let the old topic go yet.
      await kafka.producer.metadata({ topics: [topic], forceUpdate: true });
    },

    topicId: (topic) => currentTopicId(kafka, topic),
  };
}

/** The topic's id as the broker the admin client asks has it now. */
async function currentTopicId(kafka: KafkaTestSuite, topic: string): Promise<string> {
  const metadata = await kafka.admin.metadata({ topics: [topic], forceUpdate: true });
  const id = metadata.topics.get(topic)?.id;
  if (id === undefined) throw new Error(`no topic ${topic}`);
  return id;
}

/**
 * Resolves once the leader of each of the `partitions` partitions of `topic` serves the topic
 * created again, not the one of `oldId`: a Fetch by the new id answered for every partition.
 *
 * DeleteTopics and CreateTopics answer once the controller has committed the change; each broker
 * applies it later, from the metadata log, and under load that is tens of milliseconds on. Until
 * then a broker still holding the old topic's partition takes a Produce (which names the topic,
 * not its id) into the old log and acknowledges it, and deleting that log then discards the
 * records; its Metadata answers name the old topic too. Metadata naming the new id is not enough
 * either: a broker updates its metadata before its partitions, and in between answers a Fetch by
 * the new id with NOT_LEADER_OR_FOLLOWER, OFFSET_OUT_OF_RANGE (from offset 0) or an answer the
 * client cannot read. A Fetch by id answered is a partition of that id.
 */
async function untilLeadersServe(topic: string, oldId: string, partitions: number): Promise<void> {
  // A client id of its own: tests count the clients and requests of the runner's.
  const fetcher = new TopicFetcher(topic, { clientId: 'keel-test-recreate', brokers: kafkaBrokers });
  const fromStart = new Map(Array.from({ length: partitions }, (_, partition) => [partition, 0n]));
  try {
    await vi.waitFor(
      async () => {
        const current = await fetcher.current(true);
        expect(current?.partitions).toBe(partitions);
        expect(current?.id).not.toBe(oldId);
        expect(await fetcher.fetch(fromStart, 0)).toMatchObject({ kind: 'fetched', topicId: current?.id });
      },
      { timeout: 30_000, interval: 50 },
    );
  } finally {
    await fetcher.close();
  }
}

/**
 * Leaves stale the metadata that the Kafka clients of `clientId` get for `topic`, as a leader
 * moving leaves it, until `heal()`: each Metadata answer is altered as it arrives, before the
 * client caches it, so that Kafka itself refuses what a runner then asks of it. `'leader-epoch'`:
 * the partitions' leader epochs ahead of the broker's, so ListOffsets (which carries them) is
 * answered UNKNOWN_LEADER_EPOCH, as by a broker that has not yet applied its own election.
 * `'topic-id'`: another topic id, so a Fetch (which names the topic by it) is answered
 * UNKNOWN_TOPIC_ID, as by a leader that has not yet applied the topic's creation. `answers`: how
 * many Metadata answers were altered. For the one-shot calls here, for the running loop in
 * test/integration/kafka-projection.test.ts.
 */
export function staleMetadata(
  kafka: KafkaTestSuite,
  clientId: string,
  topic: string,
  how: 'leader-epoch' | 'topic-id',
): { answers: () => number; heal: () => void } {
  let stale = true;
  let answers = 0;
  const alter = (cluster: ClusterMetadata): void => {
    const metadata = cluster.topics.get(topic);
    if (!stale || metadata === undefined) return;
    answers++;
    if (how === 'topic-id') metadata.id = randomUUID();
    else for (const partition of metadata.partitions) partition.leaderEpoch += 1000;
  };
  const onCreated = (message: unknown): void => {
    const { type, instance } = message as CreationEvent<Base>;
    if (type === 'consumer' && instance.clientId === clientId) instance.on('client:metadata', alter);
  };
  subscribe(instancesChannel.name, onCreated);
  kafka.cleanups.push(async () => unsubscribe(instancesChannel.name, onCreated));
  return { answers: () => answers, heal: () => void (stale = false) };
}

/**
 * Has Kafka refuse the Fetch requests of the Kafka clients of `clientId` with OFFSET_OUT_OF_RANGE
 * for offsets that are valid, as a broker behind a partition's switch-over does, until `heal()`:
 * each Fetch's offsets are moved far past the partitions' ends as the request is made (what the
 * runner asked for is untouched), so that the broker refuses them while ListOffsets shows the
 * runner's own within range. `answers`: how many Fetch requests were altered.
 */
export function outOfRangeFetches(
  kafka: KafkaTestSuite,
  clientId: string,
): { answers: () => number; heal: () => void } {
  let behind = true;
  let answers = 0;
  const onFetch = (message: unknown): void => {
    const { client, options } = message as {
      client?: { clientId?: string };
      options?: { topics: { partitions: { fetchOffset: bigint }[] }[] };
    };
    if (!behind || client?.clientId !== clientId || options === undefined) return;
    answers++;
    for (const topic of options.topics)
      for (const partition of topic.partitions) partition.fetchOffset += 1_000_000_000n;
  };
  consumerFetchesChannel.start.subscribe(onFetch);
  kafka.cleanups.push(async () => consumerFetchesChannel.start.unsubscribe(onFetch));
  return { answers: () => answers, heal: () => void (behind = false) };
}
