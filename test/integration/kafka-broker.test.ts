import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { createEnvelope, type Envelope } from '../../src/messaging/envelope.ts';
import { PermanentError } from '../../src/messaging/handler.ts';
import { PublishError } from '../../src/messaging/publisher.ts';
import type { QueueConsumer } from '../../src/messaging/queue-consumer.ts';
import { KafkaBroker, type KafkaBrokerOptions } from '../../src/messaging/adapters/kafka/index.ts';
import { kafkaTestSuite } from '../../src/messaging/adapters/kafka/kafka-test-suite.ts';
import { kafkaBrokers, requireKafka } from '../../src/messaging/adapters/kafka/test-support.ts';
import { until } from '../until.ts';

// While this file runs, the conformance file's restart scenario waits (files run in parallel).
const suite = kafkaTestSuite({ clientId: 'keel-test' });

function topic(): string {
  const name = `kt_${randomBytes(5).toString('hex')}`;
  suite.topics.push(name, `${name}.dead-letter`);
  return name;
}

/** A broker closed after the test, its `consumers` stopped first. */
function broker(options: KafkaBrokerOptions = {}): { broker: KafkaBroker; consumers: QueueConsumer[] } {
  const entry = {
    broker: new KafkaBroker({ brokers: kafkaBrokers, ...options }),
    consumers: [] as QueueConsumer[],
  };
  suite.cleanups.push(async () => {
    for (const consumer of entry.consumers) await consumer.stop({ drainMs: 500 });
    await entry.broker.close();
  });
  return entry;
}

function messages(count: number, key: (i: number) => string | null = () => null): Envelope[] {
  return Array.from({ length: count }, (_, n) =>
    createEnvelope({ type: 'kafka.tested.v1', payload: { n }, key: key(n) }),
  );
}

async function committed(group: string, name: string): Promise<bigint[]> {
  const groups = await suite.admin.listConsumerGroupOffsets({ groups: [group] });
  const partitions = groups[0]?.topics.find((t) => t.name === name)?.partitions ?? [];
  return partitions.map((p) => p.committedOffset);
}

describe('KafkaBroker', () => {
  it('puts a key on the partition the Java client picks (murmur2, positive)', async () => {
    const { broker: kafka } = broker();
    const name = topic();
    await kafka.publish(
      name,
      messages(1, () => 'k0'),
    );
    const positions: number[] = [];
    await kafka.replay(name, { from: 'earliest' }, (_, position) => void positions.push(position.partition));
    // The Java producer and kafka-console-producer put `k0` on partition 2 of 3; the client's
    // default partitioner would pick 1.
    expect(positions).toEqual([2]);
  });

  it('replays a topic from the earliest offset, in order per partition, or from a time', async () => {
    const { broker: kafka } = broker();
    const name = topic();
    const early = messages(30, (i) => `k${i % 5}`);
    await kafka.publish(name, early);
    await new Promise((resolve) => setTimeout(resolve, 50));
    const cut = new Date();
    await new Promise((resolve) => setTimeout(resolve, 50));
    const late = messages(10, (i) => `k${i % 5}`);
    await kafka.publish(name, late);

    const all: Envelope[] = [];
    expect(await kafka.replay(name, { from: 'earliest' }, (m) => void all.push(m))).toBe(40);
    for (let k = 0; k < 5; k++) {
      const key = `k${k}`;
      expect(all.filter((m) => m.key === key).map((m) => m.id)).toEqual(
        [...early, ...late].filter((m) => m.key === key).map((m) => m.id),
      );
    }
    const since: string[] = [];
    await kafka.replay(name, { from: cut }, (m) => void since.push(m.id));
    expect(new Set(since)).toEqual(new Set(late.map((m) => m.id)));
    // Nothing was committed: a replay joins no consumer's group.
    expect(await committed(`keel.${name}`, name)).toEqual([]);
  });

  it('consumer groups: each group receives every message', async () => {
    const { broker: kafka, consumers } = broker();
    const name = topic();
    const seen = { one: new Set<string>(), two: new Set<string>() };
    for (const group of ['one', 'two'] as const) {
      const consumer = kafka.consumer(name, async (m) => void seen[group].add(m.id), {
        group,
        pollIntervalMs: 100,
      });
      consumers.push(consumer);
      await consumer.start();
    }
    const sent = messages(50);
    await kafka.publish(name, sent);
    await until(() => seen.one.size === 50 && seen.two.size === 50);
  });

  it('commits a partition only through its finished prefix: an unfinished record holds the offset', async () => {
    const { broker: kafka, consumers } = broker({ partitions: 1 });
    const name = topic();
    const sent = messages(5, (i) => `k${i}`);
    let release: (() => void) | undefined;
    const blocked = new Promise<void>((resolve) => (release = resolve));
    const done = new Set<string>();
    const consumer = kafka.consumer(
      name,
      async (m) => {
        if (m.id === sent[0]!.id) await blocked;
        done.add(m.id);
      },
      { concurrency: 5, pollIntervalMs: 100 },
    );
    consumers.push(consumer);
    await consumer.start();
    await kafka.publish(name, sent);
    await until(() => done.size === 4);
    await new Promise((resolve) => setTimeout(resolve, 300));
    // Records 1-4 are done, but record 0 is not: nothing may be committed past it.
    const [offset] = await committed(`keel.${name}`, name);
    expect(offset === undefined || offset <= 0n).toBe(true);
    release?.();
    await until(async () => (await committed(`keel.${name}`, name))[0] === 5n);
  });

  it("redrive moves dead letters from the group's committed offset, `limit` at a time, to `to` or their source", async () => {
    const { broker: kafka, consumers } = broker();
    const name = topic();
    const elsewhere = topic();
    const consumer = kafka.consumer(
      name,
      async () => {
        throw new PermanentError('bad');
      },
      { pollIntervalMs: 100 },
    );
    consumers.push(consumer);
    let dead = 0;
    consumer.events.on('dead-lettered', () => dead++);
    await consumer.start();
    const sent = messages(3);
    await kafka.publish(name, sent);
    await until(() => dead === 3);
    await consumer.stop({ drainMs: 500 });

    expect(await kafka.redrive(`${name}.dead-letter`, { limit: 2, to: elsewhere })).toBe(2);
    expect(await kafka.redrive(`${name}.dead-letter`)).toBe(1);
    expect(await kafka.redrive(`${name}.dead-letter`)).toBe(0);
    const moved: Envelope[] = [];
    await kafka.replay(elsewhere, { from: 'earliest' }, (m) => void moved.push(m));
    const back: Envelope[] = [];
    await kafka.replay(name, { from: 'earliest' }, (m) => void back.push(m));
    expect(moved).toHaveLength(2);
    expect(back).toHaveLength(4); // the three originals and the one redriven home
    const redrivenHome = back.filter((m) => back.filter((b) => b.id === m.id).length === 2).map((m) => m.id);
    expect(new Set([...moved.map((m) => m.id), ...redrivenHome])).toEqual(new Set(sent.map((m) => m.id)));
    for (const m of moved)
      expect(Object.keys(m.headers).filter((h) => h.startsWith('x-dead-letter-'))).toEqual([]);
  }, 60_000);

  it('awaitCommit: false commits in the background, and stop flushes the finished prefix', async () => {
    const { broker: kafka } = broker({ partitions: 1, awaitCommit: false });
    const name = topic();
    const seen = new Set<string>();
    const consumer = kafka.consumer(name, async (m) => void seen.add(m.id), {
      concurrency: 8,
      pollIntervalMs: 100,
    });
    await consumer.start();
    await kafka.publish(
      name,
      messages(200, (i) => `k${i % 7}`),
    );
    await until(() => seen.size === 200);
    await consumer.stop({ drainMs: 1000 });
    expect(await committed(`keel.${name}`, name)).toEqual([200n]);
  });

  it('a consumer process killed mid-work: its record goes to another member after the session timeout', async () => {
    const { broker: kafka, consumers } = broker();
    const name = topic();
    const [message] = messages(1);
    await kafka.publish(name, [message!]);
    const child = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        fileURLToPath(new URL('../../src/messaging/adapters/kafka/crash-child.ts', import.meta.url)),
        name,
        '3000',
      ],
      {
        stdio: ['ignore', 'pipe', 'inherit'],
        env: { ...process.env, KEEL_KAFKA_BROKERS: kafkaBrokers.join(',') },
      },
    );
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    await until(() => output.includes('claimed'), 30_000);
    expect(output).toContain(message!.id);
    child.kill('SIGKILL');
    const killedAt = Date.now();
    const received: { id: string; at: number }[] = [];
    const consumer = kafka.consumer(name, async (m) => void received.push({ id: m.id, at: Date.now() }), {
      leaseMs: 3000,
      pollIntervalMs: 100,
    });
    consumers.push(consumer);
    await consumer.start();
    await until(() => received.length === 1, 30_000);
    expect(received[0]!.id).toBe(message!.id);
    // The dead member's session (3 s) had to expire first, not much longer.
    expect(received[0]!.at - killedAt).toBeLessThan(15_000);
  }, 60_000);

  it('names the server and how to start it when Kafka is unreachable', async () => {
    await expect(requireKafka(['127.0.0.1:1'])).rejects.toThrow(
      /Kafka at 127\.0\.0\.1:1 is not reachable.*(scripts\/kafka\/start\.sh)/,
    );
  });

  it('publish to an unreachable Kafka rejects with a PublishError naming the messages', async () => {
    const { broker: kafka } = broker({ brokers: ['127.0.0.1:1'] });
    const sent = messages(2);
    const error: unknown = await kafka.publish('kt_unreachable', sent).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(PublishError);
    expect((error as PublishError).failedIds).toEqual(sent.map((m) => m.id));
  }, 30_000);

  it('a source that cannot reach Kafka fails to open with KEEL_BROKER_UNAVAILABLE', async () => {
    const { broker: kafka } = broker({ brokers: ['127.0.0.1:1'] });
    const source = kafka.source('kt_unreachable');
    await expect(source.open(() => undefined)).rejects.toMatchObject({ code: 'KEEL_BROKER_UNAVAILABLE' });
    await source.close();
  }, 30_000);

  it('refuses work after close', async () => {
    const { broker: kafka } = broker();
    await kafka.close();
    await expect(kafka.publish('kt_closed', messages(1))).rejects.toMatchObject({
      code: 'KEEL_SERVICE_STATE',
    });
    expect(() => kafka.source('kt_closed')).toThrow(/closed/);
  });

  it('refuses a destination that is not a Kafka topic name, naming the field', async () => {
    const { broker: kafka } = broker();
    await expect(kafka.publish('no spaces', messages(1))).rejects.toThrow(
      /destination: expected a Kafka topic name/,
    );
    expect(() => kafka.source('a/b')).toThrow(/destination/);
  });
});
