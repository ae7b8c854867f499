import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import type { MessageBroker } from '../messaging/broker.ts';
import { createEnvelope, type Envelope } from '../messaging/envelope.ts';
import type { QueueConsumer, QueueConsumerOptions } from '../messaging/queue-consumer.ts';
import type { SourceOptions } from '../messaging/broker.ts';
import type { Handler } from '../messaging/handler.ts';

export interface BrokerConformanceOptions {
  /** Names the suite in the report: `broker conformance: <name>`. */
  name: string;
  /** Opens a broker for one test; the suite closes it after the test. */
  open: () => Promise<MessageBroker>;
  /** Lease for the crash scenario: short, so a crashed consumer's message comes back quickly. Default 1 000 ms. */
  leaseMs?: number;
  /** Messages in the stress run. Default 10 000. */
  stressCount?: number;
  /**
   * Stops and starts the engine, or cuts every connection to it. Without it the restart scenario
   * is skipped, saying so.
   */
  restart?: () => Promise<void>;
  /** Longest a scenario waits for messages to arrive. Default 20 000 ms. */
  waitMs?: number;
}

/**
 * The one suite every `MessageBroker` passes, against its real engine: watermill's
 * `pubsub/tests`. Scenarios that a declared capability rules out are skipped with the reason.
 * Uses real time (the engines do), with short delays; each test has destinations of its own.
 */
export function describeBrokerConformance(options: BrokerConformanceOptions): void {
  const leaseMs = options.leaseMs ?? 1000;
  const waitMs = options.waitMs ?? 20_000;
  const stressCount = options.stressCount ?? 10_000;

  describe(`broker conformance: ${options.name}`, () => {
    const open: { broker: MessageBroker; consumers: QueueConsumer[] }[] = [];
    afterEach(async () => {
      for (const { broker, consumers } of open.splice(0)) {
        for (const consumer of consumers) await consumer.stop({ drainMs: 500 });
        await broker.close();
      }
    });

    async function setup(): Promise<{
      broker: MessageBroker;
      destination: string;
      consume: (
        handler: Handler,
        opts?: QueueConsumerOptions & SourceOptions,
        destination?: string,
      ) => Promise<QueueConsumer>;
    }> {
      const broker = await options.open();
      const entry = { broker, consumers: [] as QueueConsumer[] };
      open.push(entry);
      const destination = `conf_${randomBytes(5).toString('hex')}`;
      const consume = async (
        handler: Handler,
        opts: QueueConsumerOptions & SourceOptions = {},
        to = destination,
      ): Promise<QueueConsumer> => {
        const consumer = broker.consumer(to, handler, { pollIntervalMs: 100, retryDelay: () => 50, ...opts });
        entry.consumers.push(consumer);
        await consumer.start();
        return consumer;
      };
      return { broker, destination, consume };
    }

    it('round trip: every field of the envelope arrives as sent', async () => {
      const { broker, destination, consume } = await setup();
      const sent = batch(5, (i) => ({
        key: `k${i}`,
        headers: { 'correlation-id': `c${i}`, traceparent: tp },
      }));
      const received = collector();
      await consume(received.handler);
      await broker.publish(destination, sent);
      await received.untilCount(5, waitMs);
      expect(sortById(received.messages).map(comparable)).toEqual(sortById(sent).map(comparable));
    });

    it('at-least-once: a message whose handler fails is delivered again until it succeeds', async () => {
      const { broker, destination, consume } = await setup();
      const sent = batch(10);
      const attempts = new Map<string, number[]>();
      const done = collector();
      await consume(async (message, context) => {
        attempts.set(message.id, [...(attempts.get(message.id) ?? []), context.attempt]);
        if (context.attempt < 2) throw new Error('transient');
        await done.handler(message, context);
      });
      await broker.publish(destination, sent);
      await done.untilCount(10, waitMs);
      for (const message of sent) expect(attempts.get(message.id)?.slice(0, 2)).toEqual([1, 2]);
    });

    it('redelivery after a consumer crash: a claimed, unacknowledged message goes to another consumer', async () => {
      const { broker, destination, consume } = await setup();
      const [message] = batch(1);
      await broker.publish(destination, [message!]);
      const crashed = broker.source(destination, { leaseMs });
      await crashed.open(() => undefined);
      const deadline = Date.now() + waitMs;
      let claimed: Envelope | undefined;
      while (claimed === undefined && Date.now() < deadline) {
        claimed = (await crashed.claim(1))[0]?.envelope;
        if (claimed === undefined) await pause(50);
      }
      expect(claimed?.id).toBe(message!.id);
      await crashed.close(); // gone without ack, as a killed process would be
      const received = collector();
      await consume(received.handler, { leaseMs });
      await received.untilCount(1, waitMs + leaseMs);
      expect(received.messages[0]?.id).toBe(message!.id);
      expect(received.attempts[0]).toBeGreaterThanOrEqual(1);
    });

    it('lease heartbeat: a handler three leases long keeps its message, handled once while a second consumer waits', async (context) => {
      const { broker, destination, consume } = await setup();
      if (broker.source(destination, { leaseMs }).extend === undefined) {
        context.skip(
          `${options.name}: its source has no extend(); the engine holds a message by other means (a channel, a session), not by a lease the runtime renews`,
        );
        return;
      }
      const [message] = batch(1);
      const calls: number[] = [];
      const handler: Handler = async (_m, ctx) => {
        calls.push(ctx.attempt);
        await pause(3 * leaseMs);
      };
      const consumers = [await consume(handler, { leaseMs }), await consume(handler, { leaseMs })];
      const acked = Promise.race(consumers.map((consumer) => consumer.events.once('acked')));
      const lost: string[] = [];
      for (const consumer of consumers) {
        consumer.events.on('lease-lost', ({ error }) => lost.push(error.message));
      }
      await broker.publish(destination, [message!]);
      await withTimeout(acked, waitMs + 3 * leaseMs, () => `calls so far: ${calls.join(', ')}`);
      // A lapsed lease would have reached the other consumer by now.
      await pause(leaseMs);
      expect(calls).toEqual([1]);
      expect(lost).toEqual([]);
    });

    describe('ordering', () => {
      it('per key: same-key messages are handled in publish order, even across retries; a stuck key never stalls the others', async (context) => {
        const { broker, destination, consume } = await setup();
        if (broker.capabilities.ordering === 'none') {
          context.skip(`${options.name} declares ordering: 'none'`);
          return;
        }
        const keys = ['a', 'b', 'c', 'stuck'];
        const sent = batch(60, (i) => ({ key: keys[i % keys.length]! }));
        const handled: Envelope[] = [];
        let release: (() => void) | undefined;
        const released = new Promise<void>((resolve) => (release = resolve));
        const failedOnce = new Set<string>();
        const all = collector();
        await consume(
          async (message, ctx) => {
            if (message.key === 'stuck') await released;
            // Every third message fails once: its retry must still come before its successors.
            const n = (message.payload as { n: number }).n;
            if (n % 3 === 0 && !failedOnce.has(message.id)) {
              failedOnce.add(message.id);
              throw new Error('fail once');
            }
            handled.push(message);
            await all.handler(message, ctx);
          },
          { concurrency: 8 },
        );
        await broker.publish(destination, sent);
        // All of a, b and c finish while "stuck" is blocked.
        await all.untilCount(45, waitMs);
        expect(handled.filter((m) => m.key === 'stuck')).toHaveLength(0);
        release?.();
        await all.untilCount(60, waitMs);
        for (const key of keys) {
          const order = handled.filter((m) => m.key === key).map((m) => (m.payload as { n: number }).n);
          const expected = sent.filter((m) => m.key === key).map((m) => (m.payload as { n: number }).n);
          expect(order, `key ${key}`).toEqual(expected);
        }
      });

      it('total: one at a time in publish order', async (context) => {
        const { broker, destination, consume } = await setup();
        if (broker.capabilities.ordering !== 'total') {
          context.skip(`${options.name} declares ordering: '${broker.capabilities.ordering}', not 'total'`);
          return;
        }
        const sent = batch(30);
        const received = collector();
        await consume(received.handler, { concurrency: 4 });
        await broker.publish(destination, sent);
        await received.untilCount(30, waitMs);
        expect(received.messages.map((m) => m.id)).toEqual(sent.map((m) => m.id));
      });
    });

    it('competing consumers: two consumers share one destination and every message is handled', async () => {
      const { broker, destination, consume } = await setup();
      const sent = batch(200);
      const received = collector();
      await consume(received.handler, { concurrency: 4 });
      await consume(received.handler, { concurrency: 4 });
      await broker.publish(destination, sent);
      await received.untilCount(200, waitMs);
      expect(new Set(received.messages.map((m) => m.id))).toEqual(new Set(sent.map((m) => m.id)));
    });

    it('dead-letter after maxAttempts, with the error, attempts and failure times in headers; then redrive', async () => {
      const { broker, destination, consume } = await setup();
      const [message] = batch(1, () => ({ headers: { 'correlation-id': 'dl-1' } }));
      let fixed = false;
      const seen: number[] = [];
      const main = collector();
      const consumer = await consume(
        async (m, ctx) => {
          seen.push(ctx.attempt);
          if (!fixed) throw new Error('always fails');
          await main.handler(m, ctx);
        },
        { maxAttempts: 3 },
      );
      const deadLettered = consumer.events.once('dead-lettered');
      await broker.publish(destination, [message!]);
      await withTimeout(deadLettered, waitMs, () => `attempts so far: ${seen.join(', ')}`);
      expect(seen).toEqual([1, 2, 3]);

      // Look at the dead letter without taking it: claim it, read it, hand it back.
      const inspector = broker.source(`${destination}.dead-letter`, { leaseMs });
      await inspector.open(() => undefined);
      let letter: Envelope | undefined;
      const deadline = Date.now() + waitMs;
      while (letter === undefined && Date.now() < deadline) {
        const [delivery] = await inspector.claim(1);
        if (delivery === undefined) {
          await pause(50);
          continue;
        }
        letter = delivery.envelope;
        await inspector.release(delivery);
      }
      await inspector.close();
      expect(letter?.id).toBe(message!.id);
      expect(letter?.payload).toEqual(message!.payload);
      expect(letter?.headers).toMatchObject({
        'correlation-id': 'dl-1',
        'x-dead-letter-source': destination,
        'x-dead-letter-attempts': '3',
      });
      expect(letter?.headers['x-dead-letter-error']).toMatch(/always fails/);
      const first = Date.parse(letter?.headers['x-dead-letter-first-failed-at'] ?? '');
      const last = Date.parse(letter?.headers['x-dead-letter-last-failed-at'] ?? '');
      expect(Number.isFinite(first) && Number.isFinite(last) && first <= last).toBe(true);

      // The operator fixes the handler and redrives: the message goes back to its source.
      fixed = true;
      const moved = await retryUntil(
        () => broker.redrive(`${destination}.dead-letter`),
        (n) => n === 1,
        waitMs,
      );
      expect(moved).toBe(1);
      await main.untilCount(1, waitMs);
      expect(main.messages[0]?.id).toBe(message!.id);
      expect(main.messages[0]?.headers['x-dead-letter-source']).toBeUndefined();
      expect(main.attempts[0]).toBe(1);
    });

    it('delayed delivery: a message published for later is not delivered before its time', async (context) => {
      const { broker, destination, consume } = await setup();
      if (!broker.capabilities.delayedDelivery) {
        context.skip(`${options.name} declares delayedDelivery: false`);
        return;
      }
      const received = collector();
      await consume(received.handler);
      const publishedAt = Date.now();
      await broker.publish(destination, batch(1), { availableAt: publishedAt + 1500 });
      await received.untilCount(1, waitMs);
      expect(received.times[0]! - publishedAt).toBeGreaterThanOrEqual(1400);
    });

    it('drain on stop: in-flight work finishes and is acked; past the deadline it is handed back', async () => {
      const { broker, destination, consume } = await setup();
      const [slow, stuck] = batch(2);
      let started = 0;
      const first = await consume(
        async (message, { signal }) => {
          started++;
          if (message.id === slow!.id) await pause(300);
          // Stuck until the drain deadline aborts it, as a well-behaved handler does.
          else
            await new Promise<void>((_, reject) =>
              signal.addEventListener('abort', () => reject(new Error('aborted'))),
            );
        },
        { concurrency: 2, leaseMs },
      );
      const acked: string[] = [];
      first.events.on('acked', ({ messages }) => messages.forEach((m) => acked.push(m.id)));
      await broker.publish(destination, [slow!, stuck!]);
      while (started < 2) await pause(20);
      await first.stop({ drainMs: 1000 });
      expect(acked).toEqual([slow!.id]);
      const second = collector();
      await consume(second.handler, { leaseMs });
      await second.untilCount(1, waitMs + leaseMs);
      expect(second.messages.map((m) => m.id)).toEqual([stuck!.id]);
    });

    it('a stop right after the start ends at once; the next consumer gets every message', async () => {
      const { broker, destination, consume } = await setup();
      const early = collector();
      const first = await consume(early.handler, { leaseMs });
      const timedOut: number[] = [];
      first.events.on('drain-timeout', ({ drainMs }) => timedOut.push(drainMs));
      await first.stop({ drainMs: 5000 });
      // A stop that waited out its deadline left something running: a fetch, a connection.
      expect(timedOut).toEqual([]);
      const sent = batch(5);
      await broker.publish(destination, sent);
      const received = collector();
      await consume(received.handler, { leaseMs });
      await received.untilCount(sent.length, waitMs);
      expect(sortById(received.messages).map(comparable)).toEqual(sortById(sent).map(comparable));
      expect(early.messages).toEqual([]);
    });

    it('engine restart: messages published before and after are all delivered', async (context) => {
      if (options.restart === undefined) {
        context.skip(
          `${options.name}: no restart hook given (the engine runs in-process or cannot be restarted here)`,
        );
        return;
      }
      const { broker, destination, consume } = await setup();
      const before = batch(20);
      const after = batch(20);
      await broker.publish(destination, before);
      await options.restart();
      const deadline = Date.now() + waitMs;
      for (;;) {
        try {
          await broker.publish(destination, after);
          break;
        } catch (error) {
          if (Date.now() > deadline) throw error;
          await pause(250);
        }
      }
      const received = collector();
      await consume(received.handler);
      await received.untilCount(40, waitMs);
      expect(new Set(received.messages.map((m) => m.id))).toEqual(
        new Set([...before, ...after].map((m) => m.id)),
      );
    });

    it(`stress: ${stressCount} messages, each handled, none lost`, async () => {
      const { broker, destination, consume } = await setup();
      const sent = batch(stressCount);
      const seen = new Set<string>();
      let resolveAll: (() => void) | undefined;
      const all = new Promise<void>((resolve) => (resolveAll = resolve));
      await consume(
        async (message) => {
          seen.add(message.id);
          if (seen.size === stressCount) resolveAll?.();
        },
        { concurrency: 16 },
      );
      for (let i = 0; i < sent.length; i += 500) await broker.publish(destination, sent.slice(i, i + 500));
      await withTimeout(all, 120_000, () => `${seen.size} of ${stressCount} handled`);
      expect(seen.size).toBe(stressCount);
    }, 180_000);
  });
}

const tp = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';

function batch(
  count: number,
  extra: (i: number) => { key?: string; headers?: Record<string, string> } = () => ({}),
): Envelope[] {
  return Array.from({ length: count }, (_, n) =>
    createEnvelope({ type: 'conformance.tested.v1', payload: { n }, ...extra(n) }),
  );
}

function comparable(m: Envelope): object {
  return {
    id: m.id,
    type: m.type,
    key: m.key,
    payload: m.payload,
    headers: m.headers,
    occurredAt: m.occurredAt,
  };
}

function sortById(list: readonly Envelope[]): Envelope[] {
  return [...list].sort((a, b) => (a.id < b.id ? -1 : 1));
}

function pause(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Calls `fn` until `done(result)`, for engines where a released message takes a moment to be visible again. */
async function retryUntil<T>(fn: () => Promise<T>, done: (value: T) => boolean, ms: number): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await fn();
    if (done(value) || Date.now() > deadline) return value;
    await pause(100);
  }
}

async function withTimeout<T>(promise: Promise<T>, ms: number, describe: () => string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${describe()}`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Records what a handler received, and waits for a count of it. */
function collector(): {
  messages: Envelope[];
  attempts: number[];
  times: number[];
  handler: Handler;
  untilCount: (count: number, ms: number) => Promise<void>;
} {
  const messages: Envelope[] = [];
  const attempts: number[] = [];
  const times: number[] = [];
  const waiters: { count: number; resolve: () => void }[] = [];
  return {
    messages,
    attempts,
    times,
    handler: async (message, context) => {
      messages.push(message);
      attempts.push(context.attempt);
      times.push(Date.now());
      for (const waiter of waiters.filter((w) => messages.length >= w.count)) {
        waiters.splice(waiters.indexOf(waiter), 1);
        waiter.resolve();
      }
    },
    untilCount: (count, ms) =>
      messages.length >= count
        ? Promise.resolve()
        : withTimeout(
            new Promise<void>((resolve) => waiters.push({ count, resolve })),
            ms,
            () => `${messages.length} of ${count} messages arrived`,
          ),
  };
}
