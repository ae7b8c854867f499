// RabbitMQ streams (`RabbitMqStreamBroker`) against a real server at 127.0.0.1:5672 (or
// KEEL_RABBITMQ_URL): consumer groups with their own committed offsets, replay from the start,
// an offset or a time, and a standby instance taking a group over. The shared scenarios run in
// test/conformance/rabbitmq.test.ts.
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { isKeelError } from '../../src/errors/index.ts';
import { constantBackoff } from '../../src/time/index.ts';
import { createEnvelope, type Envelope } from '../../src/messaging/envelope.ts';
import {
  RabbitMqStreamBroker,
  type StreamSourceOptions,
} from '../../src/messaging/adapters/rabbitmq/rabbitmq-stream-broker.ts';
import { groupQueueNames } from '../../src/messaging/adapters/rabbitmq/stream-offsets.ts';
import {
  closeConnectionsNamed,
  rabbitMqUrl,
  rabbitmqctlWorks,
} from '../../src/messaging/adapters/rabbitmq/test-support.ts';
import { rabbitMqTestResources } from './rabbitmq-test-resources.ts';
import { connect } from 'amqplib';
import type { QueueConsumer } from '../../src/messaging/queue-consumer.ts';
import { until } from '../until.ts';

const { brokers, consumers } = rabbitMqTestResources<RabbitMqStreamBroker>();

const canUseRabbitmqctl = await rabbitmqctlWorks();

function setup(): { broker: RabbitMqStreamBroker; stream: string; tag: string } {
  const tag = `keel-stream-${randomBytes(4).toString('hex')}`;
  const broker = new RabbitMqStreamBroker({ url: rabbitMqUrl, name: tag, standbyRetryMs: 100 });
  brokers.push(broker);
  return { broker, stream: `rmqs_${randomBytes(5).toString('hex')}`, tag };
}

function messages(from: number, count: number): Envelope[] {
  return Array.from({ length: count }, (_, i) =>
    createEnvelope({ type: 'job.run.v1', payload: { n: from + i } }),
  );
}

const n = (m: Envelope): number => (m.payload as { n: number }).n;

function pause(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Starts a consumer that records the payload numbers it handles. */
async function reader(
  broker: RabbitMqStreamBroker,
  stream: string,
  options: StreamSourceOptions = {},
): Promise<{ seen: number[]; consumer: QueueConsumer }> {
  const seen: number[] = [];
  const consumer = broker.consumer(stream, async (m) => void seen.push(n(m)), {
    pollIntervalMs: 100,
    ...options,
  });
  consumers.push(consumer);
  await consumer.start();
  return { seen, consumer };
}

describe('RabbitMqStreamBroker', () => {
  it('declares replayable consumer groups, without delayed delivery', async () => {
    const { broker, stream } = setup();
    expect(broker.capabilities).toMatchObject({
      replayable: true,
      consumerGroups: true,
      delayedDelivery: false,
    });
    const refused = await broker
      .publish(stream, messages(0, 1), { availableAt: Date.now() + 1000 })
      .catch((error: unknown) => error);
    expect(isKeelError(refused) && refused.details).toMatchObject({ field: 'availableAt' });
    expect(() => broker.source(stream, { group: 'no spaces' })).toThrow(/group/);
    expect(() => broker.source(stream, { from: -1 })).toThrow(/from/);
  });

  it('each group receives every message and keeps its own offset: a restarted group goes on where it stopped', async () => {
    const { broker, stream } = setup();
    await broker.publish(stream, messages(0, 5));
    const billing = await reader(broker, stream, { group: 'billing' });
    const audit = await reader(broker, stream, { group: 'audit' });
    await until(() => billing.seen.length === 5 && audit.seen.length === 5);
    await billing.consumer.stop({ drainMs: 1000 });
    await broker.publish(stream, messages(5, 3));
    await until(() => audit.seen.length === 8);
    const again = await reader(broker, stream, { group: 'billing' });
    await until(() => again.seen.length === 3);
    await pause(300);
    expect(again.seen).toEqual([5, 6, 7]);
    expect([...audit.seen].sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
  });

  it('replays from the first message, from an offset, and from a time', async () => {
    const { broker, stream } = setup();
    await broker.publish(stream, messages(0, 4));
    const first = await reader(broker, stream, { group: 'g1' });
    await until(() => first.seen.length === 4);
    await first.consumer.stop({ drainMs: 1000 });
    // The group committed everything; a replay reads the stream again regardless.
    const replay = await reader(broker, stream, { group: 'g1', from: 'first' });
    await until(() => replay.seen.length === 4);
    expect([...replay.seen].sort()).toEqual([0, 1, 2, 3]);
    await replay.consumer.stop({ drainMs: 1000 });
    const fromOffset = await reader(broker, stream, { group: 'g2', from: 2 });
    await until(() => fromOffset.seen.length === 2);
    await pause(300);
    expect([...fromOffset.seen].sort()).toEqual([2, 3]);
    // The timestamp is whole seconds, and compared with the chunks' times on the broker's clock:
    // RabbitMQ's (the Erlang VM's) lags the host's for a while after the host's clock is stepped,
    // as it slews back. A margin of a second on each side of the cut: a lag or a lead of up to a
    // second still puts the first batch before it and the second after it.
    await pause(2100);
    const cut = new Date();
    await pause(1100);
    await broker.publish(stream, messages(4, 2));
    const fromTime = await reader(broker, stream, { group: 'g3', from: cut });
    await until(() => fromTime.seen.length >= 2);
    await pause(300);
    expect(fromTime.seen.filter((x) => x < 4)).toEqual([]);
    expect([...fromTime.seen].sort()).toEqual([4, 5]);
  });

  it('one instance of a group reads at a time; a standby takes over from the committed offset', async () => {
    const { broker, stream } = setup();
    const first = await reader(broker, stream, { group: 'workers' });
    const second = await reader(broker, stream, { group: 'workers' });
    await broker.publish(stream, messages(0, 10));
    await until(() => first.seen.length + second.seen.length === 10);
    await pause(300);
    // The first holds the group; the second stood by.
    expect(first.seen.length === 10 ? second.seen : first.seen).toEqual([]);
    const [active, standby] = first.seen.length === 10 ? [first, second] : [second, first];
    await active.consumer.stop({ drainMs: 1000 });
    await broker.publish(stream, messages(10, 5));
    await until(() => standby.seen.length === 5);
    await pause(300);
    expect([...standby.seen].sort((a, b) => a - b)).toEqual([10, 11, 12, 13, 14]);
  });

  it('the stream and group channels go together: an error on the stream channel hands the group to a standby, from the committed offset', async () => {
    const { broker, stream, tag } = setup();
    await broker.publish(stream, messages(0, 3));
    // The failing reader comes back only after the test: it must not take the group again first.
    const slow = new RabbitMqStreamBroker({
      url: rabbitMqUrl,
      name: `${tag}-failing`,
      reconnectBackoff: constantBackoff(60_000),
    });
    brokers.push(slow);
    const failing = slow.source(stream, { group: 'g' });
    await failing.open(() => {});
    try {
      const claimed: Awaited<ReturnType<typeof failing.claim>> = [];
      const deadline = Date.now() + 15_000;
      while (claimed.length < 3 && Date.now() < deadline) {
        claimed.push(...(await failing.claim(3 - claimed.length)));
        if (claimed.length < 3) await pause(20);
      }
      await failing.ack(claimed);
      await pause(300); // the commit of offset 2
      const standby = await reader(broker, stream, { group: 'g' });
      await pause(300);
      expect(standby.seen).toEqual([]);
      // A settle the server refuses (an unknown delivery tag) closes the stream channel alone; the
      // group channel (lock and offset records) must follow, or the group would be stuck.
      const channel = claimed[0]!.confirmer.channel;
      channel.ack({ fields: { deliveryTag: 999_999 } } as unknown as Parameters<typeof channel.ack>[0]);
      await until(() => !failing.active);
      await broker.publish(stream, messages(3, 2));
      await until(() => standby.seen.length === 2);
      await pause(300);
      expect(standby.seen).toEqual([3, 4]);
    } finally {
      await failing.close();
    }
  });

  it('a reader whose lock queue is deleted lets the group go, and one reader holds the new lock', async () => {
    const { broker, stream, tag } = setup();
    const other = new RabbitMqStreamBroker({ url: rabbitMqUrl, name: `${tag}-other`, standbyRetryMs: 100 });
    brokers.push(other);
    const first = broker.source(stream, { group: 'g' });
    await first.open(() => {});
    expect(first.active).toBe(true);
    const { lock } = groupQueueNames(stream, 'g');
    const connection = await connect(rabbitMqUrl);
    try {
      const channel = await connection.createChannel();
      await channel.deleteQueue(lock);
      await channel.close();
      // The server cancelled the lock's consumer: the first reader lets go, then takes the
      // group again from a new lock queue, or the second one does; never both at once.
      const second = other.source(stream, { group: 'g' });
      await second.open(() => {});
      let both = false;
      const deadline = Date.now() + 3000;
      while (Date.now() < deadline) {
        if (first.active && second.active) both = true;
        await pause(20);
      }
      expect(both).toBe(false);
      expect([first.active, second.active].filter(Boolean)).toHaveLength(1);
      const check = await connection.createChannel();
      expect((await check.checkQueue(lock)).consumerCount).toBe(1);
      await check.close();
      await second.close();
    } finally {
      await first.close();
      await connection.close();
    }
  });

  it('a crashed reader leaves its unacknowledged messages uncommitted: the group reads them again', async () => {
    const { broker, stream } = setup();
    await broker.publish(stream, messages(0, 3));
    const crashed = broker.source(stream);
    await crashed.open(() => {});
    const claimed: Awaited<ReturnType<typeof crashed.claim>> = [];
    const deadline = Date.now() + 15_000;
    while (claimed.length < 3 && Date.now() < deadline) {
      claimed.push(...(await crashed.claim(3 - claimed.length)));
      if (claimed.length < 3) await pause(20);
    }
    expect(claimed.map((d) => d.offset)).toEqual([0, 1, 2]);
    await crashed.ack([claimed[0]!]);
    await crashed.close(); // the other two never acked
    const next = await reader(broker, stream);
    await until(() => next.seen.length === 2);
    await pause(300);
    expect([...next.seen].sort()).toEqual([1, 2]);
  });

  it('the offsets queue: after a crash between a commit and its acks the highest record counts, and the next commit leaves one', async () => {
    const { broker, stream } = setup();
    await broker.publish(stream, messages(0, 5));
    const { offsets } = groupQueueNames(stream, 'g');
    const connection = await connect(rabbitMqUrl);
    try {
      const channel = await connection.createConfirmChannel();
      await channel.assertQueue(offsets, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
      for (const offset of [3, 1]) {
        channel.sendToQueue(offsets, Buffer.from(JSON.stringify({ offset })), { persistent: true });
      }
      await channel.waitForConfirms();
      const g = await reader(broker, stream, { group: 'g' });
      await until(() => g.seen.length === 1);
      await g.consumer.stop({ drainMs: 1000 });
      expect(g.seen).toEqual([4]);
      // The reader's channel closed with the record held: the server returns it (asynchronously).
      let count = 0;
      for (let i = 0; i < 50 && count === 0; i++) {
        count = (await channel.checkQueue(offsets)).messageCount;
        if (count === 0) await pause(50);
      }
      expect(count).toBe(1);
      const [record] = [await channel.get(offsets, { noAck: true })];
      expect(record !== false && JSON.parse(record.content.toString())).toEqual({ offset: 4 });
    } finally {
      await connection.close();
    }
  });

  it.skipIf(!canUseRabbitmqctl)(
    'a reader whose connection the server closed takes its group again and re-reads what it had not committed',
    async () => {
      const { broker, stream, tag } = setup();
      const errors: unknown[] = [];
      const seen: number[] = [];
      let release: () => void = () => {};
      const held = new Promise<void>((resolve) => (release = resolve));
      const consumer = broker.consumer(
        stream,
        async (message) => {
          seen.push(n(message));
          if (seen.length === 1) await held;
        },
        { pollIntervalMs: 50 },
      );
      consumer.events.on('error', ({ error }) => void errors.push(error));
      consumers.push(consumer);
      await consumer.start();
      await broker.publish(stream, messages(0, 1));
      await until(() => seen.length === 1);
      expect(await closeConnectionsNamed(tag)).toBeGreaterThan(0);
      release(); // handled after its channel died: the ack cannot count
      await until(() => errors.length > 0);
      expect(isKeelError(errors[0], 'KEEL_BROKER_UNAVAILABLE')).toBe(true);
      for (let published = false; !published;) {
        published = await broker.publish(stream, messages(1, 1)).then(
          () => true,
          () => pause(100).then(() => false),
        );
      }
      await until(() => seen.includes(1) && seen.filter((x) => x === 0).length === 2);
    },
  );
});
