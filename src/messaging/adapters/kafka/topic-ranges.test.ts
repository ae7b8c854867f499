// KafkaTopicRanges against the real Kafka: one client kept from read to read, a new one after a
// failure or a close, and a process it does not keep alive between reads.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { Admin, Producer } from '@platformatic/kafka';
import { describe, expect, it, vi } from 'vitest';
import { kafkaTestSuite } from './kafka-test-suite.ts';
import { kafkaBrokers } from './test-support.ts';
import { KafkaTopicRanges } from './topic-ranges.ts';

vi.setConfig({ testTimeout: 60_000 });

const kafka = kafkaTestSuite();
const { topics, cleanups } = kafka;

async function topicWithRecords(count: number): Promise<string> {
  const topic = `ktr_${randomBytes(5).toString('hex')}`;
  topics.push(topic);
  const admin = new Admin({ clientId: 'keel-test', bootstrapBrokers: kafkaBrokers });
  // Idempotent: a send retried while the new topic's leaders settle must not write its records twice.
  const producer = new Producer({
    clientId: 'keel-test',
    bootstrapBrokers: kafkaBrokers,
    idempotent: true,
    acks: -1,
  });
  try {
    await admin.createTopics({ topics: [topic], partitions: 2, replicas: 1 });
    if (count > 0)
      await producer.send({
        messages: Array.from({ length: count }, () => ({ topic, partition: 0, value: Buffer.from('{}') })),
      });
  } finally {
    await producer.close();
    await admin.close();
  }
  return topic;
}

function ranges(options: ConstructorParameters<typeof KafkaTopicRanges>[0]): KafkaTopicRanges {
  const built = new KafkaTopicRanges(options);
  cleanups.push(() => built.close());
  return built;
}

describe('KafkaTopicRanges', () => {
  it('reads every partition’s range over one client, kept from read to read', async () => {
    const topic = await topicWithRecords(3);
    const clientId = `keel-test-${randomBytes(3).toString('hex')}`;
    const created = kafka.clientsCreated(clientId);
    const reader = ranges({ topic, brokers: kafkaBrokers, clientId });
    expect(await reader.ranges()).toEqual([
      { partition: 0, start: 0n, end: 3n },
      { partition: 1, start: 0n, end: 0n },
    ]);
    const together = await Promise.all([reader.ranges(), reader.ranges(), reader.ranges()]);
    expect(together.map((r) => r[0]?.end)).toEqual([3n, 3n, 3n]);
    expect(created.count()).toBe(1);
    // Closed, the next read opens another.
    await reader.close();
    await reader.close();
    expect((await reader.ranges())[0]?.end).toBe(3n);
    expect(created.count()).toBe(2);
  });

  it('drops a client whose read failed: the next read tries a new one', async () => {
    const clientId = `keel-test-${randomBytes(3).toString('hex')}`;
    const created = kafka.clientsCreated(clientId);
    // Nothing listens on port 1: each connection is refused at once.
    const reader = ranges({ topic: 'orders', brokers: ['127.0.0.1:1'], clientId });
    await expect(reader.ranges()).rejects.toMatchObject({ code: 'KEEL_BROKER_UNAVAILABLE' });
    await expect(reader.ranges()).rejects.toMatchObject({ code: 'KEEL_BROKER_UNAVAILABLE' });
    expect(created.count()).toBe(2);
  });

  it('does not keep a process alive between reads: one that read and did not close exits', async () => {
    const topic = await topicWithRecords(1);
    const module = fileURLToPath(new URL('./topic-ranges.ts', import.meta.url));
    const script = `const { KafkaTopicRanges } = await import(${JSON.stringify(module)});
      const reader = new KafkaTopicRanges({ topic: ${JSON.stringify(topic)}, brokers: ${JSON.stringify(kafkaBrokers)} });
      await reader.ranges();
      const [first] = await reader.ranges();
      process.stdout.write(String(first.end));`;
    const { stdout } = await promisify(execFile)(
      process.execPath,
      ['--import', 'tsx', '--input-type=module', '-e', script],
      // Held by its connection, it would run until killed here, and fail the test.
      { timeout: 20_000 },
    );
    expect(stdout).toBe('1');
  });

  it('rejects bad options by field', () => {
    expect(() => new KafkaTopicRanges({ topic: 'no/slash' })).toThrow(
      expect.objectContaining({ field: 'topic' }),
    );
    expect(() => new KafkaTopicRanges({ topic: 't', brokers: ['nohost'] })).toThrow(
      expect.objectContaining({ field: 'brokers' }),
    );
    expect(() => new KafkaTopicRanges(undefined as unknown as { topic: string })).toThrow(
      expect.objectContaining({ field: 'options' }),
    );
  });
});
