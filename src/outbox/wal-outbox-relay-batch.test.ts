// The publish of a batch when a stop's drain deadline abandons it: the call that hangs is no
// longer the relay's business, and whatever it ends with is neither reported, retried nor taken
// as accepted. The relay around it is tested against a real server in
// test/integration/wal-outbox-relay-stop.test.ts.
import { describe, expect, it } from 'vitest';
import type { Db } from '../db/db.ts';
import { createEnvelope, type Envelope } from '../messaging/index.ts';
import { CircuitBreakerPolicy } from '../resilience/index.ts';
import { HealthRecord } from '../service/service-health.ts';
import { TypedEvents } from '../service/typed-events.ts';
import type { LifecycleEvents } from '../service/service.ts';
import { ManualClock } from '../time/index.ts';
import { RelayWaits } from './relay-waits.ts';
import { BatchPublisher } from './wal-outbox-relay-batch.ts';
import type { WalOutboxRelayEvents } from './wal-outbox-relay-events.ts';
import { HeldKeys } from './wal-outbox-relay-held-keys.ts';

/** A publisher whose first call answers only when the test says; later calls succeed at once. */
function hangingPublisher(): {
  publish: (destination: string, messages: readonly Envelope[]) => Promise<void>;
  calls: Envelope[][];
  answer: (error?: Error) => void;
} {
  const calls: Envelope[][] = [];
  let answer: (error?: Error) => void = () => undefined;
  return {
    calls,
    answer: (error) => answer(error),
    publish: (_destination, messages) => {
      calls.push([...messages]);
      if (calls.length > 1) return Promise.resolve();
      return new Promise<void>((resolve, reject) => {
        answer = (error) => (error === undefined ? resolve() : reject(error));
      });
    },
  };
}

function setup(): {
  batches: BatchPublisher;
  publisher: ReturnType<typeof hangingPublisher>;
  clock: ManualClock;
  waits: RelayWaits;
  abandon: AbortController;
  reported: string[];
} {
  const clock = new ManualClock();
  const waits = new RelayWaits(clock);
  const events = new TypedEvents<WalOutboxRelayEvents & LifecycleEvents>();
  const reported: string[] = [];
  events.on('publish-failed', () => reported.push('publish-failed'));
  events.on('parked', () => reported.push('parked'));
  events.on('error', ({ during }) => reported.push(`error during ${during}`));
  // No key is held, so the table outbox is never written: any statement is a bug here.
  const db = { query: () => Promise.reject(new Error('no statement expected')) } as unknown as Db;
  const retryDelay = (): number => 1000;
  const publisher = hangingPublisher();
  const abandon = new AbortController();
  const health = new HealthRecord(clock, { broker: {}, database: {} });
  const batches = new BatchPublisher({
    publisher,
    heldKeys: new HeldKeys({ db, clock, retryDelay, waits, events, health }),
    breaker: new CircuitBreakerPolicy({ clock }),
    clock,
    waits,
    events,
    batchSize: 1,
    maxAttempts: 3,
    retryDelay,
    reconnectMs: 1000,
    abandoned: abandon.signal,
    health,
  });
  return { batches, publisher, clock, waits, abandon, reported };
}

const sends = [
  {
    destination: 'orders',
    messages: [1, 2].map((n) => createEnvelope({ type: 'test.event.v1', key: 'k', payload: { n } })),
  },
];

describe('BatchPublisher, abandoned at the drain deadline', () => {
  it('a hung call that succeeds later: nothing is taken as accepted and no further call goes out', async () => {
    const { batches, publisher, clock, waits, abandon, reported } = setup();
    const published = batches.publish(sends);
    await clock.advance(0);
    expect(publisher.calls).toHaveLength(1);
    waits.stop();
    abandon.abort();
    publisher.answer();
    expect(await published).toBeUndefined();
    // The batch's second call would have gone out on a stop that was not abandoned.
    expect(publisher.calls).toHaveLength(1);
    expect(reported).toEqual([]);
    expect(clock.pendingTimers).toBe(0);
  });

  it('a hung call that fails later: neither reported nor retried', async () => {
    const { batches, publisher, clock, waits, abandon, reported } = setup();
    const published = batches.publish(sends);
    await clock.advance(0);
    waits.stop();
    abandon.abort();
    publisher.answer(new Error('broker answered at last'));
    expect(await published).toBeUndefined();
    expect(publisher.calls).toHaveLength(1);
    expect(reported).toEqual([]);
    // No retry is waiting either.
    expect(clock.pendingTimers).toBe(0);
  });

  it('a stop that is not abandoned still publishes the batch in hand whole', async () => {
    const { batches, publisher, clock, waits } = setup();
    const published = batches.publish(sends);
    await clock.advance(0);
    waits.stop();
    publisher.answer();
    expect(await published).toEqual(sends);
    expect(publisher.calls).toHaveLength(2);
  });
});
