// The WAL relay's health(): what its own calls found. Its publishes and its writes to the table
// outbox through its BatchPublisher (a publisher that fails or refuses, a Db that fails on
// demand); the relay as a whole with a Db that answers its statements and a replication
// connection that cannot be made (a closed port). A stream that breaks and comes back, and a
// standby relay, are tested against a real server in test/integration/wal-outbox-relay-health.test.ts.
import { describe, expect, it } from 'vitest';
import type { Db, QueryResult } from '../db/db.ts';
import { InvalidArgumentError } from '../errors/index.ts';
import { createEnvelope, type Envelope, type Publisher } from '../messaging/index.ts';
import { CircuitBreakerPolicy } from '../resilience/index.ts';
import { HealthRecord } from '../service/service-health.ts';
import type { LifecycleEvents } from '../service/service.ts';
import { TypedEvents } from '../service/typed-events.ts';
import { ManualClock } from '../time/index.ts';
import type { WalOutboxRelayDependency } from './relay-health.ts';
import { RelayWaits } from './relay-waits.ts';
import { BatchPublisher } from './wal-outbox-relay-batch.ts';
import type { WalOutboxRelayEvents } from './wal-outbox-relay-events.ts';
import { HeldKeys } from './wal-outbox-relay-held-keys.ts';
import { WalOutboxRelay } from './wal-outbox-relay.ts';

/** Fails while `failing` is set; refuses what `refuse` picks; records what it takes. */
class TestPublisher implements Publisher {
  readonly sent: Envelope[] = [];
  calls = 0;
  failing: Error | undefined;
  refuse: (message: Envelope) => Error | undefined = () => undefined;
  async publish(_destination: string, messages: readonly Envelope[]): Promise<void> {
    this.calls++;
    if (this.failing !== undefined) throw this.failing;
    for (const message of messages) {
      const refused = this.refuse(message);
      if (refused !== undefined) throw refused;
    }
    this.sent.push(...messages);
  }
}

/** A Db for the table outbox's writes: each statement fails while `down` is set. */
function tableOutbox(): { db: Db; outage: { down: boolean; statements: number } } {
  const outage = { down: false, statements: 0 };
  const query = async (): Promise<QueryResult<never>> => {
    outage.statements++;
    if (outage.down) throw new Error('connection lost');
    return { rows: [], rowCount: 0 };
  };
  return { outage, db: { query } as unknown as Db };
}

function batchSetup(): {
  batches: BatchPublisher;
  publisher: TestPublisher;
  breaker: CircuitBreakerPolicy;
  outage: { down: boolean; statements: number };
  clock: ManualClock;
  health: HealthRecord<WalOutboxRelayDependency>;
} {
  const clock = new ManualClock();
  const waits = new RelayWaits(clock);
  const events = new TypedEvents<WalOutboxRelayEvents & LifecycleEvents>();
  events.on('error', () => undefined);
  const health = new HealthRecord<WalOutboxRelayDependency>(clock, {
    replication: {},
    broker: {},
    database: {},
  });
  health.started();
  const { db, outage } = tableOutbox();
  const retryDelay = (): number => 1000;
  const publisher = new TestPublisher();
  const breaker = new CircuitBreakerPolicy({ clock });
  const batches = new BatchPublisher({
    publisher,
    heldKeys: new HeldKeys({ db, clock, retryDelay, waits, events, health }),
    breaker,
    clock,
    waits,
    events,
    batchSize: 10,
    maxAttempts: 3,
    retryDelay,
    reconnectMs: 1000,
    abandoned: new AbortController().signal,
    health,
  });
  return { batches, publisher, breaker, outage, clock, health };
}

const sends = (...ns: number[]): { destination: string; messages: Envelope[] }[] => [
  {
    destination: 'orders',
    messages: ns.map((n) => createEnvelope({ type: 'test.event.v1', key: `k${n}`, payload: { n } })),
  },
];

/** Lets the publisher's promises run (no timer fires). */
const settle = async (): Promise<void> => {
  for (let turn = 0; turn < 10; turn++) await new Promise((resolve) => setImmediate(resolve));
};

describe('WalOutboxRelay health(): its publishes and its writes to the table outbox', () => {
  it('names the broker while publishes fail, and clears it at the next one that succeeds', async () => {
    const { batches, publisher, clock, health } = batchSetup();
    const down = new Error('broker down');
    publisher.failing = down;
    const published = batches.publish(sends(1));
    await settle();
    expect(health.health('running')).toMatchObject({
      status: 'failing',
      dependency: 'broker',
      during: 'publish',
      since: clock.now(),
      failures: 1,
      lastError: down,
    });
    publisher.failing = undefined;
    await clock.advance(1000);
    await published;
    expect(health.health('running')).toEqual({ status: 'ok', lastContactAt: clock.now() });
  });

  it('a message refused for what it is (parked) is not the broker failing', async () => {
    const { batches, publisher, outage, health } = batchSetup();
    publisher.refuse = () => new InvalidArgumentError('payload', 'a payload the broker takes');
    expect(await batches.publish(sends(1))).toEqual([]);
    expect(outage.statements).toBe(1); // the park
    expect(health.health('running')).toMatchObject({ status: 'ok' });
  });

  it('names the database while a park fails, and clears it once the park is written', async () => {
    const { batches, publisher, outage, clock, health } = batchSetup();
    publisher.refuse = () => new InvalidArgumentError('payload', 'a payload the broker takes');
    outage.down = true;
    const published = batches.publish(sends(1));
    await settle();
    expect(health.health('running')).toMatchObject({
      status: 'failing',
      dependency: 'database',
      during: 'park',
      failures: 1,
    });
    outage.down = false;
    await clock.advance(1000);
    expect(await published).toEqual([]);
    expect(health.health('running')).toEqual({ status: 'ok', lastContactAt: clock.now() });
  });

  it('names the broker while the breaker refuses publishes, also one isolated by hand', async () => {
    const { batches, publisher, breaker, clock, health } = batchSetup();
    breaker.isolate();
    const published = batches.publish(sends(1));
    await settle();
    expect(publisher.calls).toBe(0);
    expect(health.health('running')).toMatchObject({
      status: 'failing',
      dependency: 'broker',
    });
    const isolated = health.health('running');
    expect(isolated.status === 'failing' ? isolated.lastError : undefined).toMatchObject({
      code: 'KEEL_CIRCUIT_ISOLATED',
    });
    breaker.reset();
    await clock.advance(1000);
    await published;
    expect(health.health('running')).toMatchObject({ status: 'ok' });
  });
});

/**
 * A Db that answers the statements of the relay's start (the table outbox and the slot exist)
 * and its read of the slot's position before each stream, which fails while `slotReadFails`.
 */
function startableDb(): { db: Db; slotReadFails: { now: boolean } } {
  const slotReadFails = { now: false };
  const query = async (sql: string): Promise<QueryResult<Record<string, unknown>>> => {
    const rows = (...r: Record<string, unknown>[]): QueryResult<Record<string, unknown>> => ({
      rows: r,
      rowCount: r.length,
    });
    if (sql.includes('to_regclass')) return rows({ table: 'keel_outbox' });
    if (sql.includes('wal_level')) return rows({ wal_level: 'logical' });
    if (sql.includes('confirmed_flush_lsn')) {
      if (slotReadFails.now) throw new Error('connection lost');
      return rows({ confirmed: '0/16B3748' });
    }
    if (sql.includes('pg_replication_slots')) return rows({ '?column?': 1 });
    return rows();
  };
  return { slotReadFails, db: { dialect: 'pg', schema: 'public', query } as unknown as Db };
}

/** Port 1 on the loopback: nothing listens, so a connection is refused at once. */
const unreachable = 'postgres://keel@127.0.0.1:1/keel';

describe('WalOutboxRelay health(): the relay', () => {
  it('is not-running before the start and after the stop; names replication while the stream cannot be started', async () => {
    const { db } = startableDb();
    const clock = new ManualClock();
    const relay = new WalOutboxRelay(db, new TestPublisher(), { connectionString: unreachable, clock });
    expect(relay.health()).toEqual({ status: 'not-running', state: 'idle' });
    const failed = relay.events.once('error');
    await relay.start();
    // The start's statements answered: ok until the stream says otherwise.
    expect(relay.health()).toMatchObject({ status: 'ok', lastContactAt: clock.now() });
    const { error, during } = await failed;
    expect(during).toBe('stream');
    expect(relay.health()).toMatchObject({
      status: 'failing',
      dependency: 'replication',
      during: 'stream',
      failures: 1,
      lastError: error,
    });
    await relay.stop();
    expect(relay.health()).toEqual({ status: 'not-running', state: 'stopped' });
  });

  it('names the database, not replication, when the read of the slot before a stream fails', async () => {
    const { db, slotReadFails } = startableDb();
    slotReadFails.now = true;
    const clock = new ManualClock();
    const relay = new WalOutboxRelay(db, new TestPublisher(), { connectionString: unreachable, clock });
    const failed = relay.events.once('error');
    await relay.start();
    await failed;
    expect(relay.health()).toMatchObject({
      status: 'failing',
      dependency: 'database',
      during: 'stream',
      failures: 1,
    });
    await relay.stop();
  });
});
