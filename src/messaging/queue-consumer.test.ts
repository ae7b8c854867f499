import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { HybridLogicalClock, compareHlc, formatHlc, parseHlc } from '../ordering/index.ts';
import { ManualClock } from '../time/index.ts';
import type { Delivery, DeliverySource } from './delivery-source.ts';
import { createEnvelope, type Envelope } from './envelope.ts';
import { PermanentError } from './handler.ts';
import { MessageRegistry } from './message-registry.ts';
import { defineMessage } from './message-type.ts';
import { QueueConsumer } from './queue-consumer.ts';

interface Item extends Delivery {
  readonly index: number;
}

/** An in-process source that records every call the runtime makes, on a manual clock. */
class RecordingSource implements DeliverySource<Item> {
  readonly destination = 'jobs';
  readonly ready: { envelope: Envelope; attempt: number; at: number }[] = [];
  readonly log: string[] = [];
  readonly acked: Envelope[] = [];
  readonly dead: { envelope: Envelope; error: unknown }[] = [];
  /** The `max` of every claim that found something. */
  readonly claims: number[] = [];
  /** How many messages each claim that found something brought. */
  readonly claimed: number[] = [];
  /** How many messages each ack call acknowledged. */
  readonly ackBatches: number[] = [];
  /** While set, each ack call waits until the test calls the next of `heldAcks`. */
  holdAcks = false;
  readonly heldAcks: (() => void)[] = [];
  wake: (() => void) | undefined;
  #next = 0;

  constructor(readonly clock: ManualClock) {}

  push(envelope: Envelope): void {
    this.ready.push({ envelope, attempt: 0, at: this.clock.now() });
    this.wake?.();
  }
  async open(wake: () => void): Promise<void> {
    this.wake = wake;
  }
  async claim(max: number): Promise<Item[]> {
    const now = this.clock.now();
    const due = this.ready.filter((r) => r.at <= now).slice(0, max);
    for (const r of due) this.ready.splice(this.ready.indexOf(r), 1);
    if (due.length > 0) {
      this.claims.push(max);
      this.claimed.push(due.length);
    }
    return due.map((r) => ({ envelope: r.envelope, attempt: r.attempt + 1, index: this.#next++ }));
  }
  async ack(deliveries: readonly Item[]): Promise<void> {
    this.ackBatches.push(deliveries.length);
    if (this.holdAcks) await new Promise<void>((resolve) => this.heldAcks.push(resolve));
    for (const d of deliveries) {
      this.acked.push(d.envelope);
      this.log.push(`ack ${String(d.envelope.payload)}`);
    }
  }
  async retry(d: Item, delayMs: number): Promise<void> {
    this.log.push(`retry ${String(d.envelope.payload)} in ${delayMs}`);
    this.ready.push({ envelope: d.envelope, attempt: d.attempt, at: this.clock.now() + delayMs });
  }
  async deadLetter(d: Item, error: unknown): Promise<void> {
    this.log.push(`dead ${String(d.envelope.payload)}`);
    this.dead.push({ envelope: d.envelope, error });
  }
  async release(d: Item): Promise<void> {
    this.log.push(`release ${String(d.envelope.payload)}`);
    this.ready.push({ envelope: d.envelope, attempt: d.attempt - 1, at: this.clock.now() });
  }
  async close(): Promise<void> {
    this.log.push('close');
  }
}

function message(payload: unknown): Envelope {
  return createEnvelope({ type: 'job.run.v1', payload });
}

describe('QueueConsumer', () => {
  it('acks a message only after the handler resolves', async () => {
    const clock = new ManualClock();
    const source = new RecordingSource(clock);
    const seen: string[] = [];
    const consumer = new QueueConsumer(
      source,
      async (m) => {
        seen.push(`handle ${String(m.payload)}`);
        expect(source.acked).toHaveLength(0);
      },
      { clock },
    );
    await consumer.start();
    const acked = consumer.events.once('acked');
    source.push(message('a'));
    await acked;
    expect(seen).toEqual(['handle a']);
    expect(source.log).toEqual(['ack a']);
    await consumer.stop();
  });

  it('retries a failing handler with the configured delay, then succeeds', async () => {
    const clock = new ManualClock();
    const source = new RecordingSource(clock);
    let calls = 0;
    const consumer = new QueueConsumer(
      source,
      async (_m, ctx) => {
        calls++;
        if (ctx.attempt < 3) throw new Error(`flaky ${ctx.attempt}`);
      },
      { clock, retryDelay: (attempt) => attempt * 100, pollIntervalMs: 50 },
    );
    await consumer.start();
    source.push(message('a'));
    const acked = consumer.events.once('acked');
    await clock.advance(1000);
    await acked;
    expect(calls).toBe(3);
    expect(source.log).toEqual(['retry a in 100', 'retry a in 200', 'ack a']);
    await consumer.stop();
  });

  it('dead-letters after maxAttempts deliveries, counting the first', async () => {
    const clock = new ManualClock();
    const source = new RecordingSource(clock);
    let calls = 0;
    const consumer = new QueueConsumer(
      source,
      async () => {
        calls++;
        throw new Error('always');
      },
      { clock, maxAttempts: 3, retryDelay: () => 10, pollIntervalMs: 5 },
    );
    await consumer.start();
    const dead = consumer.events.once('dead-lettered');
    source.push(message('a'));
    await clock.advance(100);
    expect((await dead).attempt).toBe(3);
    expect(calls).toBe(3);
    await consumer.stop();
  });

  it('dead-letters a PermanentError at once', async () => {
    const clock = new ManualClock();
    const source = new RecordingSource(clock);
    const consumer = new QueueConsumer(
      source,
      async () => {
        throw new PermanentError('bad data');
      },
      { clock },
    );
    await consumer.start();
    const dead = consumer.events.once('dead-lettered');
    source.push(message('a'));
    expect((await dead).attempt).toBe(1);
    expect(source.log).toEqual(['dead a']);
    await consumer.stop();
  });

  it('dead-letters a message that fails its registered schema without calling the handler', async () => {
    const clock = new ManualClock();
    const source = new RecordingSource(clock);
    const jobRun = defineMessage('job.run', 1, z.object({ n: z.number() }));
    let calls = 0;
    const consumer = new QueueConsumer(source, async () => void calls++, {
      clock,
      registry: new MessageRegistry([jobRun]),
    });
    await consumer.start();
    const dead = consumer.events.once('dead-lettered');
    source.push(message('not an object'));
    const { error } = await dead;
    expect(error).toMatchObject({ code: 'KEEL_MESSAGE_INVALID' });
    expect(calls).toBe(0);
    await consumer.stop();
  });

  it('never runs more handlers at once than its concurrency', async () => {
    const clock = new ManualClock();
    const source = new RecordingSource(clock);
    let running = 0;
    let peak = 0;
    const gates: (() => void)[] = [];
    const consumer = new QueueConsumer(
      source,
      async () => {
        running++;
        peak = Math.max(peak, running);
        await new Promise<void>((resolve) => gates.push(resolve));
        running--;
      },
      { clock, concurrency: 3 },
    );
    await consumer.start();
    for (let i = 0; i < 10; i++) source.push(message(i));
    let acked = 0;
    consumer.events.on('acked', () => acked++);
    while (acked < 10) {
      await clock.advance(0);
      gates.shift()?.();
      await clock.advance(0);
    }
    expect(peak).toBe(3);
    await consumer.stop();
  });

  it('on stop, waits for in-flight work within the drain budget and claims nothing new', async () => {
    const clock = new ManualClock();
    const source = new RecordingSource(clock);
    let release: (() => void) | undefined;
    const consumer = new QueueConsumer(
      source,
      async () => {
        await new Promise<void>((resolve) => (release = resolve));
      },
      { clock },
    );
    await consumer.start();
    source.push(message('a'));
    await clock.advance(0);
    expect(consumer.inFlight).toBe(1);
    const stopped = consumer.stop({ drainMs: 5000 });
    source.push(message('b'));
    await clock.advance(1000);
    release?.();
    await stopped;
    expect(source.log).toEqual(['ack a', 'close']);
    expect(source.ready.map((r) => r.envelope.payload)).toEqual(['b']);
  });

  it('past the drain deadline, aborts the handler and releases its message unacknowledged', async () => {
    const clock = new ManualClock();
    const source = new RecordingSource(clock);
    const consumer = new QueueConsumer(
      source,
      async (_m, { signal }) => {
        await new Promise<void>((_resolve, reject) =>
          signal.addEventListener('abort', () => reject(signal.reason as Error)),
        );
      },
      { clock },
    );
    await consumer.start();
    source.push(message('a'));
    await clock.advance(0);
    const stopped = consumer.stop({ drainMs: 1000 });
    await clock.advance(1000);
    await stopped;
    expect(source.log).toEqual(['release a', 'close']);
    expect(source.ready[0]?.attempt).toBe(0);
  });

  it('a handler that reads ctx.signal only after the drain deadline finds it aborted, and its message is released', async () => {
    const clock = new ManualClock();
    const source = new RecordingSource(clock);
    const consumer = new QueueConsumer(
      source,
      async (_m, ctx) => {
        await new Promise<void>((resolve) => clock.setTimeout(resolve, 1500));
        // First read, after the abort: the signal is made already aborted, with the reason.
        ctx.signal.throwIfAborted();
      },
      { clock },
    );
    await consumer.start();
    source.push(message('a'));
    await clock.advance(0);
    const stopped = consumer.stop({ drainMs: 1000 });
    await clock.advance(2000);
    await stopped;
    expect(source.log).toEqual(['release a', 'close']);
  });

  it('makes an AbortController only for a handler that reads ctx.signal', async () => {
    const clock = new ManualClock();
    const source = new RecordingSource(clock);
    const Real = globalThis.AbortController;
    let made = 0;
    globalThis.AbortController = class extends Real {
      constructor() {
        super();
        made++;
      }
    };
    try {
      const signals: AbortSignal[] = [];
      const consumer = new QueueConsumer(
        source,
        async (m, ctx) => {
          if (m.payload === 'reads') signals.push(ctx.signal, ctx.signal);
        },
        { clock, concurrency: 4 },
      );
      let acked = 0;
      consumer.events.on('acked', () => acked++);
      await consumer.start();
      for (const p of ['a', 'b', 'reads', 'c']) source.push(message(p));
      while (acked < 4) await clock.advance(0);
      // Counted before stop(), which makes one for its drain deadline.
      expect(made).toBe(1);
      await consumer.stop();
      expect(signals[0]).toBe(signals[1]);
      expect(signals[0]?.aborted).toBe(false);
    } finally {
      globalThis.AbortController = Real;
    }
  });

  it('keeps polling after a claim fails, and reports the error', async () => {
    const clock = new ManualClock();
    const source = new RecordingSource(clock);
    const realClaim = source.claim.bind(source);
    let failures = 1;
    source.claim = async (max) => {
      if (failures-- > 0) throw new Error('connection reset');
      return realClaim(max);
    };
    const consumer = new QueueConsumer(source, async () => {}, { clock, pollIntervalMs: 100 });
    const errors: string[] = [];
    consumer.events.on('error', ({ during }) => errors.push(during));
    source.push(message('a'));
    await consumer.start();
    const acked = consumer.events.once('acked');
    await clock.advance(10_000);
    await acked;
    expect(errors).toEqual(['claim']);
    await consumer.stop();
  });

  it('prefetch: claims concurrency + prefetch at once, hands the buffered messages out in order without claiming again, releases them on stop', async () => {
    const clock = new ManualClock();
    const source = new RecordingSource(clock);
    const started: unknown[] = [];
    const gates: (() => void)[] = [];
    const consumer = new QueueConsumer(
      source,
      async (m) => {
        started.push(m.payload);
        await new Promise<void>((resolve) => gates.push(resolve));
      },
      { clock, concurrency: 1, prefetch: 2, pollIntervalMs: 60_000 },
    );
    for (const p of ['a', 'b', 'c', 'd', 'e']) source.push(message(p));
    await consumer.start();
    await clock.advance(0);
    expect(source.claims).toEqual([3]);
    expect(consumer.stats).toEqual({ buffered: 2, inFlight: 1, awaitingAck: 0, held: 3 });
    expect(started).toEqual(['a']);

    // A finished handler takes the next buffered message at once; the freed slot is claimed
    // again only for what the bound allows (one message).
    gates.shift()?.();
    await clock.advance(0);
    expect(started).toEqual(['a', 'b']);
    expect(source.claims).toEqual([3, 1]);
    expect(consumer.stats.held).toBe(3);

    const stopped = consumer.stop({ drainMs: 1000 });
    await clock.advance(0);
    gates.shift()?.();
    await stopped;
    expect(started).toEqual(['a', 'b']);
    expect(source.log).toEqual(['ack a', 'release c', 'release d', 'ack b', 'close']);
    expect(source.ready.map((r) => r.envelope.payload).sort()).toEqual(['c', 'd', 'e']);
  });

  it('refills the prefetch buffer in batches once it is half empty, not a message per finished handler', async () => {
    const clock = new ManualClock();
    const source = new RecordingSource(clock);
    const gates: (() => void)[] = [];
    const consumer = new QueueConsumer(source, () => new Promise<void>((resolve) => gates.push(resolve)), {
      clock,
      concurrency: 2,
      prefetch: 8,
      pollIntervalMs: 60_000,
    });
    for (let i = 0; i < 40; i++) source.push(message(i));
    await consumer.start();
    await clock.advance(0);
    let peak = 0;
    for (let finished = 0; finished < 20; finished++) {
      gates.shift()?.();
      await clock.advance(0);
      peak = Math.max(peak, consumer.stats.held);
    }
    // The first fills every slot and the buffer; then each refill waits until the buffer is down
    // to 4 and brings 4, where claiming on every finished handler would bring one at a time.
    expect(source.claimed).toEqual([10, 4, 4, 4, 4, 4]);
    expect(peak).toBeLessThanOrEqual(10);
    for (const gate of gates.splice(0)) gate();
    const stopped = consumer.stop({ drainMs: 1000 });
    while (gates.length > 0 || consumer.inFlight > 0) {
      for (const gate of gates.splice(0)) gate();
      await clock.advance(0);
    }
    await stopped;
  });

  it('while every handler slot has work, waits for room for a batch rather than claiming what one slow ack frees', async () => {
    const clock = new ManualClock();
    const source = new RecordingSource(clock);
    source.holdAcks = true;
    const gates: (() => void)[] = [];
    const consumer = new QueueConsumer(source, () => new Promise<void>((resolve) => gates.push(resolve)), {
      clock,
      concurrency: 2,
      prefetch: 8,
      pollIntervalMs: 60_000,
    });
    for (let i = 0; i < 40; i++) source.push(message(i));
    await consumer.start();
    await clock.advance(0);
    // Six handlers finish; the first is acked alone (its ack is slow), five wait for the next call.
    for (let i = 0; i < 6; i++) {
      gates.shift()?.();
      await clock.advance(0);
    }
    expect(source.ackBatches).toEqual([1]);
    expect(consumer.stats).toEqual({ buffered: 2, inFlight: 2, awaitingAck: 6, held: 10 });
    // The slow ack frees one place: too little for a claim while both slots have work.
    source.heldAcks.shift()?.();
    await clock.advance(0);
    expect(source.claimed).toEqual([10]);
    expect(source.ackBatches).toEqual([1, 5]);
    // The next frees five: one claim brings six.
    source.heldAcks.shift()?.();
    await clock.advance(0);
    expect(source.claimed).toEqual([10, 6]);
    expect(consumer.stats.held).toBe(10);
    source.holdAcks = false;
    const stopped = consumer.stop({ drainMs: 1000 });
    while (gates.length > 0 || consumer.inFlight > 0) {
      for (const gate of gates.splice(0)) gate();
      await clock.advance(0);
    }
    await stopped;
  });

  it('takes messages pushed one by one within a turn of the event loop in one claim', async () => {
    const clock = new ManualClock();
    const source = new RecordingSource(clock);
    const gates: (() => void)[] = [];
    const consumer = new QueueConsumer(source, () => new Promise<void>((resolve) => gates.push(resolve)), {
      clock,
      concurrency: 8,
      prefetch: 0,
    });
    await consumer.start();
    await clock.advance(0);
    // As a client that hands each message of a read over in its own microtask, waking the
    // consumer for each.
    for (let i = 0; i < 5; i++) {
      source.push(message(i));
      await Promise.resolve();
    }
    await clock.advance(0);
    expect(source.claimed).toEqual([5]);
    expect(consumer.inFlight).toBe(5);
    for (const gate of gates.splice(0)) gate();
    await clock.advance(0);
    await consumer.stop();
  });

  it('acks the handlers that finish in the same turn of the event loop in one call', async () => {
    const clock = new ManualClock();
    const source = new RecordingSource(clock);
    const consumer = new QueueConsumer(source, async () => {}, { clock, concurrency: 4 });
    let acked = 0;
    consumer.events.on('acked', () => acked++);
    for (let i = 0; i < 4; i++) source.push(message(i));
    await consumer.start();
    while (acked < 4) await clock.advance(0);
    expect(source.ackBatches).toEqual([4]);
    await consumer.stop();
  });

  it('a failed batched ack is reported (ack-failed and error), nothing of it counts as acked, and the next batch still goes', async () => {
    const clock = new ManualClock();
    const source = new RecordingSource(clock);
    const realAck = source.ack.bind(source);
    let failNext = true;
    source.ack = async (deliveries) => {
      if (failNext) {
        failNext = false;
        throw new Error('connection reset during commit');
      }
      return realAck(deliveries);
    };
    const consumer = new QueueConsumer(source, async () => {}, { clock, concurrency: 4 });
    const failed: unknown[][] = [];
    const errors: string[] = [];
    const acked: unknown[] = [];
    consumer.events.on('ack-failed', ({ messages }) => failed.push(messages.map((m) => m.payload)));
    consumer.events.on('error', ({ during }) => errors.push(during));
    consumer.events.on('acked', ({ messages }) => messages.forEach((m) => acked.push(m.payload)));
    await consumer.start();
    source.push(message('a'));
    await clock.advance(0);
    expect(failed).toEqual([['a']]);
    expect(errors).toEqual(['ack']);
    expect(acked).toEqual([]);
    expect(consumer.stats.held).toBe(0);
    source.push(message('b'));
    await clock.advance(0);
    expect(acked).toEqual(['b']);
    await consumer.stop();
  });

  it('refuses bad options naming the option', () => {
    const source = new RecordingSource(new ManualClock());
    expect(() => new QueueConsumer(source, async () => {}, { concurrency: 0 })).toThrow(
      /concurrency: expected an integer >= 1/,
    );
    expect(() => new QueueConsumer(source, async () => {}, { maxAttempts: 1.5 })).toThrow(/maxAttempts/);
  });
});

describe('QueueConsumer with a hybrid logical clock', () => {
  it('merges each received stamp, so the next local stamp orders after it; a stamp from far ahead is reported, not merged', async () => {
    const clock = new ManualClock();
    const source = new RecordingSource(clock);
    const producer = new HybridLogicalClock({ node: 'producer', clock: { now: () => clock.now() + 5_000 } });
    const local = new HybridLogicalClock({ node: 'consumer', clock, maxDriftMs: 60_000 });
    const consumer = new QueueConsumer(source, async () => {}, { clock, hlc: local });
    const errors: string[] = [];
    consumer.events.on('error', ({ during }) => errors.push(during));
    await consumer.start();

    const sent = createEnvelope({ type: 'job.run.v1', payload: 1 }, clock, producer);
    const acked = consumer.events.once('acked');
    source.push(sent);
    await acked;
    expect(compareHlc(local.now(), parseHlc(sent.hlc!))).toBe(1);

    const farAhead = createEnvelope({
      type: 'job.run.v1',
      payload: 2,
      hlc: formatHlc({ physical: clock.now() + 3_600_000, logical: 0, node: 'rogue' }),
    });
    const acked2 = consumer.events.once('acked');
    source.push(farAhead);
    await acked2;
    expect(errors).toEqual(['hlc']);
    expect(local.now().physical).toBeLessThan(clock.now() + 3_600_000);
    await consumer.stop();
  });
});
