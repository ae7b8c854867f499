import { describe, expect, it } from 'vitest';
import { ManualClock } from '../time/index.ts';
import { MemoryBroker } from './adapters/memory/index.ts';
import type { Delivery, DeliverySource } from './delivery-source.ts';
import { createEnvelope, type Envelope } from './envelope.ts';
import { LeaseLostError, PermanentError } from './handler.ts';
import { QueueConsumer } from './queue-consumer.ts';

interface Item extends Delivery {
  readonly index: number;
}

/**
 * A source with leases, on a manual clock, that records every call: `extend` answers with the
 * deliveries named in `taken` (as a database would after another consumer took them), or throws
 * while `failRenewals` is set.
 */
class LeasedSource implements DeliverySource<Item> {
  readonly destination = 'jobs';
  readonly leaseMs = 3000;
  readonly ready: Envelope[] = [];
  readonly log: string[] = [];
  readonly renewals: { at: number; payloads: unknown[] }[] = [];
  readonly taken = new Set<unknown>();
  readonly refuseAcks = new Set<unknown>();
  /** Payloads whose retry, dead-letter or release finds the lease gone. */
  readonly refuseSettles = new Set<unknown>();
  failRenewals = false;
  wake: (() => void) | undefined;
  #next = 0;

  constructor(readonly clock: ManualClock) {}

  push(...envelopes: Envelope[]): void {
    this.ready.push(...envelopes);
    this.wake?.();
  }
  async open(wake: () => void): Promise<void> {
    this.wake = wake;
  }
  async claim(max: number): Promise<Item[]> {
    const due = this.ready.splice(0, max);
    if (due.length > 0) this.log.push(`claim ${due.map((e) => String(e.payload)).join(',')}`);
    return due.map((envelope) => ({ envelope, attempt: 1, index: this.#next++ }));
  }
  async ack(deliveries: readonly Item[]): Promise<Item[]> {
    const refused = deliveries.filter((d) => this.refuseAcks.has(d.envelope.payload));
    for (const d of deliveries) if (!refused.includes(d)) this.log.push(`ack ${String(d.envelope.payload)}`);
    return refused;
  }
  async extend(deliveries: readonly Item[]): Promise<Item[]> {
    if (this.failRenewals) throw new Error('connection reset');
    this.renewals.push({ at: this.clock.now(), payloads: deliveries.map((d) => d.envelope.payload) });
    return deliveries.filter((d) => this.taken.has(d.envelope.payload));
  }
  async retry(d: Item): Promise<boolean> {
    return this.#settle('retry', d);
  }
  async deadLetter(d: Item): Promise<boolean> {
    return this.#settle('dead', d);
  }
  async release(d: Item): Promise<boolean> {
    return this.#settle('release', d);
  }
  #settle(kind: string, d: Item): boolean {
    if (this.refuseSettles.has(d.envelope.payload)) return false;
    this.log.push(`${kind} ${String(d.envelope.payload)}`);
    return true;
  }
  async close(): Promise<void> {
    this.log.push('close');
  }
}

function message(payload: unknown): Envelope {
  return createEnvelope({ type: 'job.run.v1', payload });
}

/** A handler that waits for `open(payload)` (or its signal), recording the abort reason. */
function gatedHandler(): {
  handler: (m: Envelope, ctx: { signal: AbortSignal }) => Promise<void>;
  open: (payload: unknown) => void;
  aborted: Map<unknown, unknown>;
} {
  const gates = new Map<unknown, () => void>();
  const aborted = new Map<unknown, unknown>();
  return {
    aborted,
    open: (payload) => gates.get(payload)?.(),
    handler: (m, { signal }) =>
      new Promise<void>((resolve) => {
        gates.set(m.payload, resolve);
        // A handler that notices the abort but, careless, resolves anyway: nothing may be acked.
        signal.addEventListener('abort', () => {
          aborted.set(m.payload, signal.reason);
          resolve();
        });
      }),
  };
}

describe('QueueConsumer leases', () => {
  it('renews every held lease (running and prefetched) in one call every leaseMs / 3, and stops when nothing is held', async () => {
    const clock = new ManualClock();
    const source = new LeasedSource(clock);
    const gated = gatedHandler();
    const consumer = new QueueConsumer(source, gated.handler, { clock, concurrency: 1, prefetch: 1 });
    await consumer.start();
    const start = clock.now();
    source.push(message('a'), message('b'));
    await clock.advance(0);
    expect(consumer.stats).toMatchObject({ buffered: 1, inFlight: 1, held: 2 });

    // A handler three leases long: renewed at 1 s, 2 s, ... and never given up.
    await clock.advance(9000);
    expect(source.renewals.map((r) => r.at - start)).toEqual([
      1000, 2000, 3000, 4000, 5000, 6000, 7000, 8000, 9000,
    ]);
    expect(source.renewals.every((r) => r.payloads.join() === 'a,b')).toBe(true);
    expect(gated.aborted.size).toBe(0);

    const acked = consumer.events.once('acked');
    gated.open('a');
    await acked;
    await clock.advance(1000);
    expect(source.renewals.at(-1)?.payloads).toEqual(['b']);
    gated.open('b');
    await clock.advance(0);
    const renewed = source.renewals.length;
    await clock.advance(5000);
    expect(source.renewals).toHaveLength(renewed);
    expect(source.log).toEqual(['claim a,b', 'ack a', 'ack b']);
    await consumer.stop();
    expect(clock.pendingTimers).toBe(0);
  });

  it('aborts a handler whose lease a renewal finds taken, with LeaseLostError, and applies nothing of it', async () => {
    const clock = new ManualClock();
    const source = new LeasedSource(clock);
    const gated = gatedHandler();
    const consumer = new QueueConsumer(source, gated.handler, { clock, concurrency: 2 });
    const lost: { payload: unknown; error: LeaseLostError }[] = [];
    consumer.events.on('lease-lost', ({ message: m, error }) => lost.push({ payload: m.payload, error }));
    await consumer.start();
    source.push(message('a'), message('b'));
    await clock.advance(0);
    source.taken.add('a');
    await clock.advance(1000);

    const reason = gated.aborted.get('a');
    expect(reason).toBeInstanceOf(LeaseLostError);
    expect(reason).toMatchObject({ code: 'KEEL_LEASE_LOST', reason: 'taken' });
    expect(lost.map((l) => l.payload)).toEqual(['a']);
    expect(gated.aborted.has('b')).toBe(false);
    // Given up, it is no longer renewed; the other goes on.
    await clock.advance(1000);
    expect(source.renewals.map((r) => r.payloads)).toEqual([['a', 'b'], ['b']]);
    // The aborted handler resolved, yet its message is neither acked, retried nor released.
    gated.open('b');
    await clock.advance(0);
    expect(source.log).toEqual(['claim a,b', 'ack b']);
    expect(consumer.stats.held).toBe(0);
    await consumer.stop();
  });

  it('a handler that reads ctx.signal only after its lease was lost finds it aborted with LeaseLostError', async () => {
    const clock = new ManualClock();
    const source = new LeasedSource(clock);
    const gates = new Map<unknown, () => void>();
    const seen = new Map<unknown, unknown>();
    const consumer = new QueueConsumer(
      source,
      async (m, ctx) => {
        await new Promise<void>((resolve) => gates.set(m.payload, resolve));
        seen.set(m.payload, ctx.signal.aborted ? ctx.signal.reason : 'not aborted');
      },
      { clock, concurrency: 2 },
    );
    await consumer.start();
    source.push(message('a'), message('b'));
    await clock.advance(0);
    source.taken.add('a');
    await clock.advance(1000);
    gates.get('a')?.();
    gates.get('b')?.();
    await clock.advance(0);
    expect(seen.get('a')).toMatchObject({ code: 'KEEL_LEASE_LOST', reason: 'taken' });
    expect(seen.get('b')).toBe('not aborted');
    expect(source.log).toEqual(['claim a,b', 'ack b']);
    await consumer.stop();
  });

  it('gives up a prefetched message whose lease was taken, without handing it to the handler', async () => {
    const clock = new ManualClock();
    const source = new LeasedSource(clock);
    const gated = gatedHandler();
    const seen: unknown[] = [];
    const consumer = new QueueConsumer(
      source,
      async (m, ctx) => {
        seen.push(m.payload);
        await gated.handler(m, ctx);
      },
      { clock, concurrency: 1, prefetch: 2 },
    );
    await consumer.start();
    source.push(message('a'), message('b'), message('c'));
    await clock.advance(0);
    source.taken.add('b');
    await clock.advance(1000);
    expect(consumer.stats).toMatchObject({ buffered: 1, inFlight: 1 });
    gated.open('a');
    await clock.advance(0);
    gated.open('c');
    await clock.advance(0);
    expect(seen).toEqual(['a', 'c']);
    expect(source.log).toEqual(['claim a,b,c', 'ack a', 'ack c']);
    await consumer.stop();
  });

  it('when renewals fail past the lease, aborts the handler as expired: another consumer may have it', async () => {
    const clock = new ManualClock();
    const source = new LeasedSource(clock);
    const gated = gatedHandler();
    const consumer = new QueueConsumer(source, gated.handler, { clock });
    const errors: string[] = [];
    consumer.events.on('error', ({ during }) => errors.push(during));
    await consumer.start();
    source.push(message('a'));
    await clock.advance(0);
    source.failRenewals = true;
    // Renewals at 1 s and 2 s fail while the lease (3 s) still runs: keep going.
    await clock.advance(2000);
    expect(errors).toEqual(['heartbeat', 'heartbeat']);
    expect(gated.aborted.size).toBe(0);
    await clock.advance(1000);
    expect(gated.aborted.get('a')).toMatchObject({ code: 'KEEL_LEASE_LOST', reason: 'expired' });
    await clock.advance(0);
    expect(source.log).toEqual(['claim a']);
    await consumer.stop();
  });

  it('a renewal that succeeds moves the lease on: failures afterwards count from it', async () => {
    const clock = new ManualClock();
    const source = new LeasedSource(clock);
    const gated = gatedHandler();
    const consumer = new QueueConsumer(source, gated.handler, { clock });
    await consumer.start();
    source.push(message('a'));
    await clock.advance(2000); // renewed at 1 s and 2 s: held until 5 s
    source.failRenewals = true;
    await clock.advance(2000); // 3 s and 4 s fail
    expect(gated.aborted.size).toBe(0);
    await clock.advance(1000); // 5 s fails, past the lease
    expect(gated.aborted.get('a')).toMatchObject({ reason: 'expired' });
    await consumer.stop();
  });

  it('an ack refused because the lease was lost is reported as lease-lost, not acked', async () => {
    const clock = new ManualClock();
    const source = new LeasedSource(clock);
    source.refuseAcks.add('a');
    const consumer = new QueueConsumer(source, async () => {}, { clock });
    const acked: unknown[] = [];
    const lost: unknown[] = [];
    consumer.events.on('acked', ({ messages }) => messages.forEach((m) => acked.push(m.payload)));
    consumer.events.on('lease-lost', ({ message: m }) => lost.push(m.payload));
    await consumer.start();
    source.push(message('a'), message('b'));
    await clock.advance(0);
    await clock.advance(0);
    expect(acked).toEqual(['b']);
    expect(lost).toEqual(['a']);
    await consumer.stop();
  });

  it('a retry or dead-letter that finds the lease gone is reported as lease-lost, not as the settle', async () => {
    const clock = new ManualClock();
    const source = new LeasedSource(clock);
    source.refuseSettles.add('a').add('b');
    // 'a' fails for good (a dead-letter); 'b' and 'c' fail once (a retry).
    const consumer = new QueueConsumer(
      source,
      async (m) => {
        throw m.payload === 'a' ? new PermanentError('bad a') : new Error(`failed ${String(m.payload)}`);
      },
      { clock },
    );
    const reported: string[] = [];
    for (const event of ['retried', 'dead-lettered', 'lease-lost'] as const) {
      consumer.events.on(event, ({ message: m }) => reported.push(`${event} ${String(m.payload)}`));
    }
    const retried = consumer.events.once('retried');
    await consumer.start();
    source.push(message('a'), message('b'), message('c'));
    await retried;
    await consumer.stop();
    expect(reported.sort()).toEqual(['lease-lost a', 'lease-lost b', 'retried c']);
    expect(source.log.filter((entry) => !entry.startsWith('claim'))).toEqual(['retry c', 'close']);
  });

  it('heartbeatMs: false renews nothing; a heartbeat not below the lease is refused by name', async () => {
    const clock = new ManualClock();
    const source = new LeasedSource(clock);
    expect(() => new QueueConsumer(source, async () => {}, { heartbeatMs: 3000 })).toThrow(
      /heartbeatMs: expected a number > 0 and < leaseMs \(3000\)/,
    );
    const gated = gatedHandler();
    const consumer = new QueueConsumer(source, gated.handler, { clock, heartbeatMs: false });
    await consumer.start();
    source.push(message('a'));
    await clock.advance(10_000);
    expect(source.renewals).toHaveLength(0);
    gated.open('a');
    await consumer.stop();
  });

  it('keeps renewing through the drain on stop, and stops renewing once stopped', async () => {
    const clock = new ManualClock();
    const source = new LeasedSource(clock);
    const gated = gatedHandler();
    const consumer = new QueueConsumer(source, gated.handler, { clock });
    await consumer.start();
    source.push(message('a'));
    await clock.advance(0);
    const stopped = consumer.stop({ drainMs: 10_000 });
    await clock.advance(4000);
    expect(source.renewals.map((r) => r.payloads)).toEqual([['a'], ['a'], ['a'], ['a']]);
    gated.open('a');
    await stopped;
    expect(source.log).toEqual(['claim a', 'ack a', 'close']);
    expect(clock.pendingTimers).toBe(0);
  });
});

describe('QueueConsumer over the memory broker: leases end to end', () => {
  it('a handler three leases long is delivered once while a rival consumer polls', async () => {
    const clock = new ManualClock();
    const broker = new MemoryBroker({ clock });
    const attempts: number[] = [];
    const consumer = broker.consumer(
      'jobs',
      async (_m, ctx) => {
        attempts.push(ctx.attempt);
        await new Promise<void>((resolve) => clock.setTimeout(resolve, 9000));
      },
      { leaseMs: 3000 },
    );
    const rival = broker.consumer('jobs', async (_m, ctx) => void attempts.push(ctx.attempt), {
      leaseMs: 3000,
      pollIntervalMs: 100,
    });
    await consumer.start();
    await broker.publish('jobs', [message('slow')]);
    await clock.advance(0);
    await rival.start();
    const acked = consumer.events.once('acked');
    await clock.advance(9000);
    await acked;
    expect(attempts).toEqual([1]);
    expect(broker.depth('jobs')).toBe(0);
    await rival.stop();
    await consumer.stop();
  });

  it('a handled message whose ack write failed comes back after its lease (no longer renewed), then is acked', async () => {
    const clock = new ManualClock();
    const broker = new MemoryBroker({ clock });
    const source = broker.source('jobs', { leaseMs: 3000 });
    const realAck = source.ack.bind(source);
    let failures = 1;
    source.ack = async (deliveries) => {
      if (failures-- > 0) throw new Error('connection reset during commit');
      return realAck(deliveries);
    };
    const attempts: number[] = [];
    const consumer = new QueueConsumer(source, async (_m, ctx) => void attempts.push(ctx.attempt), {
      clock,
      pollIntervalMs: 500,
    });
    const failed = consumer.events.once('ack-failed');
    await consumer.start();
    await broker.publish('jobs', [message('a')]);
    await clock.advance(0);
    expect((await failed).messages.map((m) => m.payload)).toEqual(['a']);
    expect(broker.depth('jobs')).toBe(1);
    // Renewals would keep it forever; it comes back once the lease it had runs out.
    await clock.advance(2500);
    expect(attempts).toEqual([1]);
    const acked = consumer.events.once('acked');
    await clock.advance(1000);
    await acked;
    expect(attempts).toEqual([1, 2]);
    expect(broker.depth('jobs')).toBe(0);
    await consumer.stop();
  });
});
