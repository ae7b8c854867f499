// NATS-specific behaviour against the real server, beyond the shared conformance suite.
import { randomBytes } from 'node:crypto';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { connect } from '@nats-io/transport-node';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { KeelError } from '../../src/errors/index.ts';
import { createEnvelope, type Envelope } from '../../src/messaging/envelope.ts';
import { PublishError } from '../../src/messaging/publisher.ts';
import type { QueueConsumer } from '../../src/messaging/queue-consumer.ts';
import { NatsJetStreamBroker } from '../../src/messaging/adapters/nats/index.ts';
import type { TcpProxy } from '../../src/testing/index.ts';
import {
  deleteStreamsWithPrefix,
  dropConnections,
  natsUrl,
  proxyServers,
  requireNats,
  startNatsProxy,
  testPrefix,
} from '../../src/messaging/adapters/nats/test-support.ts';
import { until } from '../until.ts';

const prefix = testPrefix();
const open: { broker: NatsJetStreamBroker; consumers: QueueConsumer[] }[] = [];
let proxy: TcpProxy | undefined;

beforeAll(async () => {
  await requireNats();
  proxy = await startNatsProxy();
});
afterEach(async () => {
  for (const { broker, consumers } of open.splice(0)) {
    for (const consumer of consumers) await consumer.stop({ drainMs: 500 });
    await broker.close();
  }
});
afterAll(async () => {
  await proxy?.close();
  await deleteStreamsWithPrefix(prefix);
}, 30_000);

function broker(options: ConstructorParameters<typeof NatsJetStreamBroker>[0] = {}): NatsJetStreamBroker {
  const b = new NatsJetStreamBroker({ servers: natsUrl, prefix, ...options });
  open.push({ broker: b, consumers: [] });
  return b;
}

function track(b: NatsJetStreamBroker, consumer: QueueConsumer): QueueConsumer {
  open.find((o) => o.broker === b)!.consumers.push(consumer);
  return consumer;
}

const destination = (): string => `t_${randomBytes(5).toString('hex')}`;

function batch(count: number): Envelope[] {
  return Array.from({ length: count }, (_, n) =>
    createEnvelope({ type: 'nats.tested.v1', payload: { n }, key: `k${n % 3}` }),
  );
}

describe('NatsJetStreamBroker against the real server', () => {
  it('declares a stream per destination, idempotently, and publishes with the envelope id as Nats-Msg-Id', async () => {
    const first = broker();
    const second = broker();
    const to = destination();
    const [message] = batch(1);
    await first.publish(to, [message!]);
    // A second broker declares the same stream again and re-publishes the same id: dropped.
    await second.publish(to, [message!]);
    const nc = await connect({ servers: natsUrl });
    try {
      const info = await (await jetstreamManager(nc)).streams.info(first.streamName(to));
      expect(info.config.subjects).toEqual([first.subject(to)]);
      expect(info.config.storage).toBe('file');
      expect(info.state.messages).toBe(1);
    } finally {
      await nc.close();
    }
  });

  it('refuses delayed delivery it cannot do, and bad input, with typed errors naming the field', async () => {
    const b = broker();
    await expect(b.publish(destination(), batch(1), { availableAt: Date.now() + 60_000 })).rejects.toThrow(
      /availableAt: expected a time not in the future/,
    );
    await expect(b.publish('bad subject', batch(1))).rejects.toThrow(/destination: expected/);
    expect(() => b.source(destination(), { group: 'a.b' })).toThrow(/group: expected/);
    expect(() => b.source(destination(), { leaseMs: 0 })).toThrow(/leaseMs: expected/);
    await expect(b.redrive(destination(), { limit: -1 })).rejects.toThrow(/limit: expected/);
    expect(() => b.replay(destination(), { fromSequence: 0 })).toThrow(/fromSequence: expected/);
    expect(() => b.replay(destination(), { fromSequence: 1, fromTime: 1 })).toThrow(/fromSequence/);
  });

  it('a publish to an unreachable server rejects with PublishError naming every message', async () => {
    const b = broker({ servers: '127.0.0.1:1' });
    const sent = batch(3);
    const error = await b.publish(destination(), sent).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(PublishError);
    expect((error as PublishError).failedIds).toEqual(sent.map((m) => m.id));
    expect(((error as PublishError).cause as KeelError).code).toBe('KEEL_BROKER_UNAVAILABLE');
  });

  it('consumer groups: each group gets every message; members of one group share them', async () => {
    const b = broker();
    const to = destination();
    const seen = { a: [] as string[], b: [] as string[] };
    for (const group of ['a', 'b'] as const) {
      for (let member = 0; member < 2; member++) {
        const consumer = b.consumer(
          to,
          async (m) => {
            seen[group].push(m.id);
          },
          { group, pollIntervalMs: 100 },
        );
        track(b, consumer);
        await consumer.start();
      }
    }
    const sent = batch(30);
    await b.publish(to, sent);
    await until(() => seen.a.length >= 30 && seen.b.length >= 30);
    expect(new Set(seen.a)).toEqual(new Set(sent.map((m) => m.id)));
    expect(new Set(seen.b)).toEqual(new Set(sent.map((m) => m.id)));
  });

  it('a retry is a NAK with the delay: JetStream delivers it again after the delay, as attempt 2', async () => {
    const b = broker();
    const to = destination();
    const times: { attempt: number; at: number }[] = [];
    const consumer = track(
      b,
      b.consumer(
        to,
        async (_m, { attempt }) => {
          times.push({ attempt, at: Date.now() });
          if (attempt === 1) throw new Error('once');
        },
        { retryDelay: () => 800, pollIntervalMs: 100 },
      ),
    );
    await consumer.start();
    await b.publish(to, batch(1));
    await until(() => times.length === 2);
    expect(times.map((t) => t.attempt)).toEqual([1, 2]);
    expect(times[1]!.at - times[0]!.at).toBeGreaterThanOrEqual(750);
  });

  it('a message handed back on stop is not counted as an attempt', async () => {
    const b = broker();
    const to = destination();
    const first = track(
      b,
      b.consumer(
        to,
        (_m, { signal }) =>
          new Promise<void>((_, reject) =>
            signal.addEventListener('abort', () => reject(new Error('aborted'))),
          ),
        { pollIntervalMs: 100 },
      ),
    );
    const released = first.events.once('released');
    await first.start();
    await b.publish(to, batch(1));
    await until(() => first.inFlight === 1);
    await first.stop({ drainMs: 50 });
    await released;
    const attempts: number[] = [];
    const second = track(
      b,
      b.consumer(
        to,
        async (_m, { attempt }) => {
          attempts.push(attempt);
        },
        { pollIntervalMs: 100 },
      ),
    );
    await second.start();
    await until(() => attempts.length === 1);
    expect(attempts).toEqual([1]);
  });

  it('a handler slower than the lease keeps its message: the runtime renews it with +WPI', async () => {
    const b = broker({ leaseMs: 2000 });
    const to = destination();
    const attempts: number[] = [];
    let acked = 0;
    const slow = b.consumer(
      to,
      async (_m, { attempt }) => {
        attempts.push(attempt);
        await new Promise((resolve) => setTimeout(resolve, 4500));
      },
      { pollIntervalMs: 100 },
    );
    // A second member would get the message if its lease ran out.
    const other = b.consumer(
      to,
      async (_m, { attempt }) => {
        attempts.push(attempt);
      },
      { pollIntervalMs: 100 },
    );
    slow.events.on('acked', () => acked++);
    track(b, slow);
    track(b, other);
    await slow.start();
    await b.publish(to, batch(1));
    await until(() => attempts.length === 1);
    await other.start();
    await until(() => acked === 1, 10_000);
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(attempts).toEqual([1]);
  });

  it("joining a group whose lease is shorter raises it to the source's lease", async () => {
    const to = destination();
    const short = broker({ leaseMs: 1000 });
    const long = broker({ leaseMs: 4000 });
    await short.source(to).open(() => undefined);
    const source = long.source(to);
    await source.open(() => undefined);
    const nc = await connect({ servers: natsUrl });
    try {
      const info = await (await jetstreamManager(nc)).consumers.info(long.streamName(to), 'keel');
      expect(info.config.ack_wait).toBe(4000 * 1_000_000);
    } finally {
      await nc.close();
      await source.close();
    }
  });

  it('a message that is not a keel envelope is parked raw in the dead-letter stream, saying why', async () => {
    const b = broker();
    const to = destination();
    const handled: string[] = [];
    const consumer = track(
      b,
      b.consumer(
        to,
        async (m) => {
          handled.push(m.id);
        },
        { pollIntervalMs: 100 },
      ),
    );
    await consumer.start();
    const nc = await connect({ servers: natsUrl });
    try {
      await jetstream(nc).publish(b.subject(to), 'not json, no keel headers');
      await b.publish(to, batch(1));
      await until(() => handled.length === 1);
      const letters = [];
      const deadline = Date.now() + 10_000;
      while (letters.length === 0 && Date.now() < deadline) {
        for await (const entry of rawMessages(nc, b.streamName(`${to}.dead-letter`))) letters.push(entry);
        if (letters.length === 0) await new Promise((resolve) => setTimeout(resolve, 100));
      }
      expect(letters).toHaveLength(1);
      expect(letters[0]!.body).toBe('not json, no keel headers');
      expect(letters[0]!.headers['x-dead-letter-source']).toBe(to);
      expect(letters[0]!.headers['x-dead-letter-error']).toMatch(/^undecodable: /);
    } finally {
      await nc.close();
    }
  });

  it('redrive moves at most `limit`, to `to` when given, with a fresh attempt count', async () => {
    const b = broker();
    const to = destination();
    const consumer = track(
      b,
      b.consumer(
        to,
        async () => {
          throw new Error('broken');
        },
        { maxAttempts: 1, pollIntervalMs: 100 },
      ),
    );
    let dead = 0;
    consumer.events.on('dead-lettered', () => dead++);
    await consumer.start();
    await b.publish(to, batch(3));
    await until(() => dead === 3);
    await consumer.stop();
    const elsewhere = destination();
    expect(await b.redrive(`${to}.dead-letter`, { to: elsewhere, limit: 2 })).toBe(2);
    expect(await b.redrive(`${to}.dead-letter`, { to: elsewhere })).toBe(1);
    expect(await b.redrive(`${to}.dead-letter`)).toBe(0);
    const got: { id: string; attempt: number; headers: Record<string, string> }[] = [];
    const fixed = track(
      b,
      b.consumer(
        elsewhere,
        async (m, { attempt }) => {
          got.push({ id: m.id, attempt, headers: { ...m.headers } });
        },
        { pollIntervalMs: 100 },
      ),
    );
    await fixed.start();
    await until(() => got.length === 3);
    expect(got.map((g) => g.attempt)).toEqual([1, 1, 1]);
    expect(got.every((g) => Object.keys(g.headers).every((h) => !h.startsWith('x-dead-letter-')))).toBe(true);
  });

  it('replays by sequence and by time, acknowledged messages included, and ends at the last one', async () => {
    const b = broker();
    const to = destination();
    const first = batch(5);
    await b.publish(to, first);
    await new Promise((resolve) => setTimeout(resolve, 50));
    const middle = Date.now();
    await new Promise((resolve) => setTimeout(resolve, 50));
    const second = batch(5);
    await b.publish(to, second);
    const handled: string[] = [];
    const consumer = track(
      b,
      b.consumer(
        to,
        async (m) => {
          handled.push(m.id);
        },
        { pollIntervalMs: 100 },
      ),
    );
    await consumer.start();
    await until(() => handled.length === 10);

    const all = [];
    for await (const entry of b.replay(to)) all.push(entry);
    expect(all.map((e) => e.envelope.id)).toEqual([...first, ...second].map((m) => m.id));
    expect(all.map((e) => e.sequence)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);

    const fromSeven = [];
    for await (const entry of b.replay(to, { fromSequence: 7, batchSize: 2 })) fromSeven.push(entry.sequence);
    expect(fromSeven).toEqual([7, 8, 9, 10]);

    const fromTime = [];
    for await (const entry of b.replay(to, { fromTime: middle })) fromTime.push(entry.envelope.id);
    expect(fromTime).toEqual(second.map((m) => m.id));

    const empty = [];
    for await (const entry of b.replay(destination())) empty.push(entry);
    expect(empty).toEqual([]);
  });

  it('a stream deleted under a running consumer is declared again, with its group, and consuming goes on', async () => {
    const errors: unknown[] = [];
    const b = broker({ pullExpiresMs: 1000, onError: (error) => errors.push(error) });
    const to = destination();
    const seen = new Set<string>();
    const consumer = track(
      b,
      b.consumer(
        to,
        async (m) => {
          seen.add(m.id);
        },
        { pollIntervalMs: 100 },
      ),
    );
    await consumer.start();
    const before = batch(5);
    await b.publish(to, before);
    await until(() => seen.size === 5);
    const nc = await connect({ servers: natsUrl });
    try {
      await (await jetstreamManager(nc)).streams.delete(b.streamName(to));
    } finally {
      await nc.close();
    }
    const after = batch(5);
    for (let tries = 0; ; tries++) {
      try {
        await b.publish(to, after);
        break;
      } catch (error) {
        if (tries > 40) throw error;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
    await until(() => seen.size === 10, 15_000);
    expect(errors.length).toBeGreaterThan(0);
  });

  it('reconnects: a running consumer goes on after every connection is cut, and nothing is lost', async () => {
    const b = broker({ servers: proxyServers(proxy!), pullExpiresMs: 1000 });
    const to = destination();
    const seen = new Set<string>();
    const consumer = track(
      b,
      b.consumer(
        to,
        async (m) => {
          seen.add(m.id);
        },
        { pollIntervalMs: 100, concurrency: 4 },
      ),
    );
    await consumer.start();
    const before = batch(20);
    await b.publish(to, before);
    await until(() => seen.size === 20);
    expect(dropConnections(proxy!)).toBeGreaterThan(0);
    const after = batch(20);
    for (let tries = 0; ; tries++) {
      try {
        await b.publish(to, after);
        break;
      } catch (error) {
        if (tries > 40) throw error;
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
    }
    await until(() => seen.size === 40, 20_000);
    expect(seen).toEqual(new Set([...before, ...after].map((m) => m.id)));
  });
});

/** Every message of a stream as stored, through the stream's direct message API (no consumer). */
async function* rawMessages(
  nc: NatsConnection,
  stream: string,
): AsyncGenerator<{ body: string; headers: Record<string, string> }> {
  const jsm = await jetstreamManager(nc);
  const info = await jsm.streams.info(stream).catch(() => undefined);
  if (info === undefined) return;
  for (let seq = info.state.first_seq; seq <= info.state.last_seq && info.state.messages > 0; seq++) {
    const stored = await jsm.streams.getMessage(stream, { seq }).catch(() => null);
    if (stored === null) continue;
    const headers: Record<string, string> = {};
    for (const name of stored.header.keys()) headers[name] = stored.header.get(name);
    yield { body: stored.string(), headers };
  }
}
