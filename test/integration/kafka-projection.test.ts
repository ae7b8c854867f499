// KafkaProjectionRunner against the real Kafka and the suite's database (PGlite, or PostgreSQL
// with KEEL_DB=pg): a read model applied from a topic in the transaction that stores its
// offsets. The model's primary key is the record's place, so a record applied twice fails the
// batch instead of passing unseen; exactly once is checked by counting what is left.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { Admin, Producer } from '@platformatic/kafka';
import { describe, expect, it, vi } from 'vitest';
import { defaultDatabaseUrl, migrate, openDb, type Db, type DbConfig } from '../../src/db/index.ts';
import { createEnvelope, type Envelope } from '../../src/messaging/envelope.ts';
import { encodeEnvelope } from '../../src/messaging/adapters/kafka/record-codec.ts';
import {
  KafkaBroker,
  KafkaProjectionRunner,
  kafkaProjectionMigrations,
  type KafkaProjection,
  type KafkaProjectionRunnerOptions,
} from '../../src/messaging/adapters/kafka/index.ts';
import { kafkaTestSuite } from '../../src/messaging/adapters/kafka/kafka-test-suite.ts';
import { staleMetadata } from '../../src/messaging/adapters/kafka/projection-test-support.ts';
import { staleLeaderAnswers, staleLeaderLimitMs } from '../../src/messaging/adapters/kafka/stale-leader.ts';
import { kafkaBrokers } from '../../src/messaging/adapters/kafka/test-support.ts';
import {
  advanceUntil,
  createTempPgliteDir,
  createTestDb,
  testDbBackend,
  uniqueSchemaName,
} from '../../src/testing/index.ts';
import { ManualClock } from '../../src/time/index.ts';
import { modelMigrations, modelProjection } from './fixtures/kafka-projection-model.ts';
import { until } from '../until.ts';

vi.setConfig({ testTimeout: 60_000 });

const child = fileURLToPath(new URL('./fixtures/kafka-projection-child.ts', import.meta.url));
const suite = kafkaTestSuite();
const { topics, cleanups } = suite;

function topic(): string {
  const name = `kp_${randomBytes(5).toString('hex')}`;
  topics.push(name);
  return name;
}

async function setup(partitions = 3): Promise<{ db: Db; kafka: KafkaBroker; topic: string }> {
  const db = await createTestDb();
  cleanups.push(() => db.close());
  await migrate(db, [...kafkaProjectionMigrations, ...modelMigrations]);
  const kafka = new KafkaBroker({ brokers: kafkaBrokers, partitions });
  cleanups.push(() => kafka.close());
  return { db, kafka, topic: topic() };
}

function runner(
  db: Db,
  projection: KafkaProjection,
  name: string,
  options: Partial<KafkaProjectionRunnerOptions> = {},
): KafkaProjectionRunner {
  const built = new KafkaProjectionRunner(db, projection, {
    name: 'model.v1',
    topic: name,
    brokers: kafkaBrokers,
    ...options,
  });
  cleanups.push(() => built.stop({ drainMs: 2000 }));
  return built;
}

function events(count: number, key: (i: number) => string | null = (i) => `k${i % 5}`): Envelope[] {
  return Array.from({ length: count }, (_, n) =>
    createEnvelope({ type: 'thing.counted.v1', payload: { n }, key: key(n) }),
  );
}

interface ModelRow {
  partition: number;
  offset: string;
  id: string;
  n: number;
}

async function model(db: Db): Promise<ModelRow[]> {
  const { rows } = await db.query<ModelRow>(
    'SELECT partition, record_offset::text AS offset, id, n FROM model ORDER BY partition, record_offset',
  );
  return rows;
}

async function distinctIds(db: Db): Promise<number> {
  const { rows } = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM model_ids');
  return rows[0]!.n;
}

/** The offsets stored, as `partition@next` strings: easy to compare. */
async function stored(run: KafkaProjectionRunner): Promise<string[]> {
  return [...(await run.position())].map(([partition, next]) => `${partition}@${next}`).sort();
}

/** Every partition's end as `partition@end`, for partitions that have records. */
async function ends(run: KafkaProjectionRunner): Promise<string[]> {
  return (await run.partitions())
    .filter((p) => p.end > 0n)
    .map((p) => `${p.partition}@${p.end}`)
    .sort();
}

describe('KafkaProjectionRunner', () => {
  it('applies every record once, in order per partition, in batches, storing each partition’s next offset', async () => {
    const { db, kafka, topic: name } = await setup(3);
    const sent = events(30);
    await kafka.publish(name, sent);
    const projection = modelProjection();
    const run = runner(db, projection, name, { batchSize: 4 });
    let applied = 0;
    run.events.on('applied', ({ count }) => void (applied += count));
    await run.start();
    await until(() => applied === 30, 30_000, '30 records applied');

    const rows = await model(db);
    expect(rows).toHaveLength(30);
    // A key's records sit in one partition: the model holds them in the order they were sent.
    const keyOf = new Map(sent.map((m) => [m.id, m.key]));
    for (let k = 0; k < 5; k++) {
      const key = `k${k}`;
      expect(rows.filter((row) => keyOf.get(row.id) === key).map((row) => row.id)).toEqual(
        sent.filter((m) => m.key === key).map((m) => m.id),
      );
    }
    // Each call's records ascend per partition, and every partition's offsets appear once in all.
    expect(projection.calls.every((call) => call.length <= 4)).toBe(true);
    const seen = projection.calls.flat().map((e) => `${e.partition}@${e.offset}`);
    expect(new Set(seen).size).toBe(30);
    expect(await stored(run)).toEqual(await ends(run));
    expect(await run.lag()).toBe(0);
    expect((await run.progress()).every((p) => p.next === p.end && p.lag === 0)).toBe(true);
    // No consumer group is joined: Kafka's committed offsets play no part.
    const admin = new Admin({ clientId: 'keel-test', bootstrapBrokers: kafkaBrokers });
    try {
      expect([...(await admin.listGroups()).keys()].filter((group) => group.includes(name))).toEqual([]);
    } finally {
      await admin.close();
    }
  });

  it('rolls a batch back with its offsets when the handler throws after writing, and applies it once on the retry', async () => {
    const { db, kafka, topic: name } = await setup(1);
    await kafka.publish(name, events(5));
    const clock = new ManualClock();
    let failures = 1;
    const projection = modelProjection(() => {
      if (failures-- > 0) throw new Error('the model refused the batch after its writes');
    });
    const run = runner(db, projection, name, { clock, retryDelayMs: 5000 });
    const failed = run.events.once('error');
    await run.start();
    expect((await failed).during).toBe('apply');
    // The failed call wrote every row of its batch; none of it stayed, nor did an offset.
    expect(projection.calls[0]).toHaveLength(5);
    expect(await model(db)).toEqual([]);
    expect(await stored(run)).toEqual([]);
    const failedAt = clock.now();
    await advanceUntil(clock, run.events.once('applied'));
    expect(clock.now() - failedAt).toBeGreaterThanOrEqual(5000);
    expect((await model(db)).map((row) => row.n)).toEqual([0, 1, 2, 3, 4]);
    expect(await stored(run)).toEqual(['0@5']);
  });

  it('a process killed after a commit, then one killed between its writes and its commit: each record applied once', async () => {
    const name = topic();
    const kafka = new KafkaBroker({ brokers: kafkaBrokers, partitions: 1 });
    cleanups.push(() => kafka.close());
    const sent = events(10);
    await kafka.publish(name, sent);
    const store = await processStore();

    // Killed right after its first batch committed: the batch and its offset stay.
    const first = await runChild(store.config, name, 'kill-after-commit', 4);
    expect(first.signal).toBe('SIGKILL');
    expect(first.lines.filter((line) => line.event === 'applied')).toEqual([{ event: 'applied', count: 4 }]);
    let db = await store.open();
    expect((await model(db)).map((row) => row.n)).toEqual([0, 1, 2, 3]);
    await db.close();

    // Killed inside its first batch, after the handler wrote records 4-7: none of it stays.
    const second = await runChild(store.config, name, 'kill-before-commit', 4);
    expect(second.signal).toBe('SIGKILL');
    expect(second.lines.find((line) => line.event === 'wrote')).toEqual({
      event: 'wrote',
      offsets: ['0@4', '0@5', '0@6', '0@7'],
    });
    db = await store.open();
    expect((await model(db)).map((row) => row.n)).toEqual([0, 1, 2, 3]);

    // A new runner goes on from the stored offset: 4-9, nothing twice, nothing lost.
    const run = runner(db, modelProjection(), name, { name: 'crash.v1' });
    expect(await run.catchUp()).toBe(6);
    expect((await model(db)).map((row) => row.id)).toEqual(sent.map((m) => m.id));
    expect(await stored(run)).toEqual(['0@10']);
    await db.close();
    // Two child processes, each loading tsx and its database: minutes on a loaded machine.
  }, 240_000);

  it('a restarted runner goes on from the stored offsets, not from the start', async () => {
    const { db, kafka, topic: name } = await setup(3);
    await kafka.publish(name, events(10));
    const first = runner(db, modelProjection(), name);
    let applied = 0;
    first.events.on('applied', ({ count }) => void (applied += count));
    await first.start();
    await until(() => applied === 10);
    await first.stop();

    const later = events(5);
    await kafka.publish(name, later);
    const projection = modelProjection();
    const second = runner(db, projection, name);
    let again = 0;
    second.events.on('applied', ({ count }) => void (again += count));
    await second.start();
    await until(() => again === 5);
    expect(
      projection.calls
        .flat()
        .map((e) => e.envelope.id)
        .sort(),
    ).toEqual(later.map((m) => m.id).sort());
    expect(await model(db)).toHaveLength(15);
    expect(await stored(second)).toEqual(await ends(second));
  });

  it('two runners of one projection (two workers) take turns: each record applied once, no batch refused', async () => {
    const { db, kafka, topic: name } = await setup(3);
    const runs = [
      runner(db, modelProjection(), name, { batchSize: 3 }),
      runner(db, modelProjection(), name, { batchSize: 3 }),
    ];
    const errors: unknown[] = [];
    let applied = 0;
    for (const run of runs) {
      run.events.on('error', ({ error }) => void errors.push(error));
      run.events.on('applied', ({ count }) => void (applied += count));
    }
    await Promise.all(runs.map((run) => run.start()));
    const sent: Envelope[] = [];
    for (let i = 0; i < 5; i++) {
      const some = events(8, (n) => `k${(i + n) % 7}`);
      sent.push(...some);
      await kafka.publish(name, some);
    }
    await until(
      async () => (await model(db)).length === 40 && (await runs[0]!.lag()) === 0,
      30_000,
      'all 40 applied',
    );
    // A record applied twice would have failed its batch on the model's key: an error here.
    expect(errors).toEqual([]);
    // A batch another runner got to first is dropped, not applied: the two applied 40 between them.
    expect(applied).toBe(40);
    expect(new Set((await model(db)).map((row) => row.id))).toEqual(new Set(sent.map((m) => m.id)));
    await expect(runs[0]!.stop().then(() => runs[0]!.catchUp())).rejects.toMatchObject({
      code: 'KEEL_SERVICE_STATE',
    });
  });

  it('passes a record the topic holds twice to the handler twice: deduplicating is the projection’s business', async () => {
    const { db, kafka, topic: name } = await setup(1);
    const [once, twice] = events(2);
    // What a publisher that retried after a lost acknowledgement leaves: one envelope at two offsets.
    await kafka.publish(name, [once!, twice!]);
    await kafka.publish(name, [twice!]);
    const run = runner(db, modelProjection(), name);
    expect(await run.catchUp()).toBe(3);
    expect((await model(db)).map((row) => row.id)).toEqual([once!.id, twice!.id, twice!.id]);
    // The projection that keys its rows by envelope id counts it once.
    expect(await distinctIds(db)).toBe(2);
  });

  it('rebuild() empties the model and replays from the earliest offsets, started or from a command line', async () => {
    const { db, kafka, topic: name } = await setup(3);
    await kafka.publish(name, events(6));
    const run = runner(db, modelProjection(), name);
    let applied = 0;
    run.events.on('applied', ({ count }) => void (applied += count));
    await run.start();
    await until(() => applied === 6);
    const before = await model(db);

    await run.rebuild();
    // In one transaction: the model and the offsets go together, then the runner replays.
    await until(() => applied === 12, 15_000, 'the replay of 6 records');
    expect(await model(db)).toEqual(before);
    expect(await stored(run)).toEqual(await ends(run));
    await run.stop();

    // The command line's way: a runner never started, a connection of its own.
    const cli = runner(db, modelProjection(), name);
    await cli.rebuild();
    expect(await model(db)).toEqual([]);
    expect(await stored(cli)).toEqual([]);
    expect(await cli.lag()).toBe(6);
    expect(await cli.catchUp()).toBe(6);
    expect(await model(db)).toEqual(before);
    expect(await cli.lag()).toBe(0);
  });

  it('stop() while a batch is in flight lets it commit; a new runner applies only the rest', async () => {
    const { db, kafka, topic: name } = await setup(1);
    await kafka.publish(name, events(6));
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    let entered!: () => void;
    const inFlight = new Promise<void>((resolve) => (entered = resolve));
    const run = runner(
      db,
      modelProjection(async (_entries, call) => {
        if (call !== 1) return;
        entered();
        await released;
      }),
      name,
      { batchSize: 4 },
    );
    await run.start();
    await inFlight;
    let stopped = false;
    const stopping = run.stop({ drainMs: 30_000 }).then(() => (stopped = true));
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(stopped).toBe(false);
    release();
    await stopping;
    expect((await model(db)).map((row) => row.n)).toEqual([0, 1, 2, 3]);
    expect(await stored(run)).toEqual(['0@4']);

    const next = runner(db, modelProjection(), name);
    expect(await next.catchUp()).toBe(2);
    expect((await model(db)).map((row) => row.n)).toEqual([0, 1, 2, 3, 4, 5]);
  });

  it('past the drain deadline, the batch in flight rolls back when its handler returns, and is applied by the next runner', async () => {
    const { db, kafka, topic: name } = await setup(1);
    await kafka.publish(name, events(3));
    const clock = new ManualClock();
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    let entered!: () => void;
    const inFlight = new Promise<void>((resolve) => (entered = resolve));
    let returned!: () => void;
    const handlerReturned = new Promise<void>((resolve) => (returned = resolve));
    const run = runner(
      db,
      modelProjection(async () => {
        entered();
        await released;
        returned();
      }),
      name,
      { clock },
    );
    await run.start();
    await inFlight;
    const stopping = run.stop({ drainMs: 1000 });
    await clock.advance(1000);
    await stopping;
    expect(run.state).toBe('stopped');
    release();
    await handlerReturned;

    // The next runner's batch waits on the projection's row until the rollback, then finds no offsets.
    const next = runner(db, modelProjection(), name);
    expect(await next.catchUp()).toBe(3);
    expect((await model(db)).map((row) => row.n)).toEqual([0, 1, 2]);
    expect(await stored(next)).toEqual(['0@3']);
  });

  it('reads a topic written in transactions: committed records once, aborted ones never, its offsets past the markers', async () => {
    const { db, kafka, topic: name } = await setup(1);
    const [plain, ...rest] = events(4);
    await kafka.publish(name, [plain!]);
    const producer = new Producer<Buffer, Buffer, Buffer, Buffer>({
      clientId: 'keel-test',
      bootstrapBrokers: kafkaBrokers,
      transactionalId: `keel-test-${name}`,
      idempotent: true,
      acks: -1,
    });
    cleanups.push(() => producer.close());
    const record = (envelope: Envelope): { topic: string; value: Buffer; headers: Map<Buffer, Buffer> } => {
      const { value, headers } = encodeEnvelope(envelope);
      return { topic: name, value, headers };
    };
    const committed = await producer.beginTransaction();
    await committed.send({ messages: [record(rest[0]!), record(rest[1]!)] });
    await committed.commit();
    const aborted = await producer.beginTransaction();
    await aborted.send({ messages: [record(rest[2]!)] });
    await aborted.abort();

    const run = runner(db, modelProjection(), name);
    expect(await run.catchUp()).toBe(3);
    expect((await model(db)).map((row) => row.id)).toEqual([plain!.id, rest[0]!.id, rest[1]!.id]);
    // Offsets 3 (the commit marker), 4 (the aborted record) and 5 (its marker) are passed over:
    // an offset kept at 3 would leave a lag that never ends and a fetch that returns at once.
    expect(await stored(run)).toEqual(['0@6']);
    expect(await run.lag()).toBe(0);
  });

  it('starts before its topic exists, and applies from the first record once the topic is created', async () => {
    const { db, kafka, topic: name } = await setup(2);
    const run = runner(db, modelProjection(), name, { pollIntervalMs: 100 });
    const errors: unknown[] = [];
    run.events.on('error', ({ error }) => void errors.push(error));
    await run.start();
    expect(await run.lag()).toBe(0);
    let applied = 0;
    run.events.on('applied', ({ count }) => void (applied += count));
    await kafka.publish(name, events(4));
    await until(() => applied === 4);
    // A topic a moment old may answer that its leaders are still being elected: not an error.
    expect(errors).toEqual([]);
    expect(await model(db)).toHaveLength(4);
  });

  it.each(['leader-epoch', 'topic-id'] as const)(
    'a leader answering that the metadata is stale (%s): looked at again quietly, after retryDelayMs and on fresh metadata, until 30 s have passed; then reported, at every look, until one goes through',
    async (how) => {
      const { db, kafka, topic: name } = await setup(2);
      await kafka.publish(name, events(6));
      const clientId = `keel-test-${randomBytes(3).toString('hex')}`;
      const metadata = staleMetadata(suite, clientId, name, how);
      const requests = suite.requestsSent(clientId);
      const clock = new ManualClock();
      const startedAt = clock.now();
      const run = runner(db, modelProjection(), name, { clock, clientId, retryDelayMs: 1000 });
      const errors: { error: unknown; at: number }[] = [];
      run.events.on('error', ({ error }) => void errors.push({ error, at: clock.now() - startedAt }));
      let applied = 0;
      run.events.on('applied', ({ count }) => void (applied += count));
      await run.start();
      // One pause at a time: a look runs on real I/O, then the runner pauses on its clock.
      let pauses = 0;
      const paused = (): Promise<void> => until(() => clock.nextTimerIn() !== undefined, 15_000, 'a pause');
      for (await paused(); errors.length < 2; await paused()) {
        expect(clock.nextTimerIn()).toBe(1000);
        await clock.advance(1000);
        pauses++;
      }
      // The first look failed at the start: quiet for 30 s, reported at the look at 30 s and the next.
      expect(errors.map((e) => e.at)).toEqual([staleLeaderLimitMs, staleLeaderLimitMs + 1000]);
      const answer = how === 'topic-id' ? 'UNKNOWN_TOPIC_ID' : 'UNKNOWN_LEADER_EPOCH';
      for (const { error } of errors) {
        expect(error).toMatchObject({ code: 'KEEL_BROKER_UNAVAILABLE' });
        expect(staleLeaderAnswers(error)).toEqual([answer]);
      }
      // Each look asked Kafka for the metadata afresh, and none followed another without a pause
      // but the one after the first UNKNOWN_TOPIC_ID (cached metadata may name a deleted topic).
      const looks = pauses + 1 + (how === 'topic-id' ? 1 : 0);
      expect(pauses).toBe(31);
      expect(metadata.answers()).toBe(looks);
      expect(requests.count('Metadata')).toBe(looks);
      expect(requests.count(how === 'topic-id' ? 'Fetch' : 'ListOffsets')).toBe(looks);

      metadata.heal();
      await clock.advance(1000);
      await until(() => applied === 6, 15_000, '6 records applied');
      expect(errors).toHaveLength(2);
      expect(await model(db)).toHaveLength(6);
    },
  );
});

/**
 * A database two processes open in turn: a PGlite directory, or a schema on the server. The
 * child gets its `config`.
 */
async function processStore(): Promise<{ config: DbConfig; open: () => Promise<Db> }> {
  const prepare = async (db: Db): Promise<Db> => {
    await migrate(db, [...kafkaProjectionMigrations, ...modelMigrations]);
    return db;
  };
  if (testDbBackend() === 'pg') {
    const url = process.env.DATABASE_URL?.trim() || defaultDatabaseUrl;
    const schema = uniqueSchemaName('kafka_projection');
    const config: DbConfig = { kind: 'pg', url, schema };
    cleanups.push(async () => {
      const client = new pg.Client({ connectionString: url });
      await client.connect();
      await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      await client.end();
    });
    await (await prepare(await openDb(config))).close();
    return { config, open: () => openDb(config) };
  }
  const dir = await createTempPgliteDir('keel-kafka-projection-');
  cleanups.push(() => dir.remove());
  await (await prepare(await dir.open())).close();
  return { config: { kind: 'pglite', dataDir: dir.path }, open: () => dir.open() };
}

async function runChild(
  config: DbConfig,
  name: string,
  mode: 'kill-after-commit' | 'kill-before-commit',
  batchSize: number,
): Promise<{ signal: NodeJS.Signals | null; lines: Record<string, unknown>[] }> {
  const proc = spawn(process.execPath, ['--import', 'tsx', child, name, mode, String(batchSize)], {
    env: { ...process.env, KEEL_TEST_DB: JSON.stringify(config) },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const lines: Record<string, unknown>[] = [];
  createInterface({ input: proc.stdout }).on(
    'line',
    (text) => void lines.push(JSON.parse(text) as Record<string, unknown>),
  );
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`the child (${mode}) did not kill itself within 90 s: ${JSON.stringify(lines)}`));
    }, 90_000);
    proc.on('error', reject);
    proc.on('close', (_code, signal) => {
      clearTimeout(timer);
      resolve({ signal, lines });
    });
  });
}
