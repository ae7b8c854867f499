import { afterEach, describe, expect, it } from 'vitest';
import { migrate } from '../db/index.ts';
import { createEnvelope, type Envelope } from '../messaging/envelope.ts';
import type { Publisher } from '../messaging/publisher.ts';
import { advanceUntil, createTestDb, testDbBackend, type TestDb } from '../testing/index.ts';
import { ManualClock } from '../time/index.ts';
import { addToOutbox } from './outbox.ts';
import { OutboxRelay } from './outbox-relay.ts';
import { outboxMigrations } from './schema.ts';

/** Records what reaches "the broker"; fails while `failing` is set. */
class RecordingPublisher implements Publisher {
  readonly sent: { destination: string; message: Envelope }[] = [];
  failing = false;
  async publish(destination: string, messages: readonly Envelope[]): Promise<void> {
    if (this.failing) throw new Error('broker down');
    for (const message of messages) this.sent.push({ destination, message });
  }
}

const dbs: TestDb[] = [];
afterEach(async () => {
  for (const db of dbs.splice(0)) await db.close();
});

async function setup(): Promise<{ db: TestDb; clock: ManualClock; publisher: RecordingPublisher }> {
  const db = await createTestDb();
  dbs.push(db);
  await migrate(db, outboxMigrations);
  return { db, clock: new ManualClock(), publisher: new RecordingPublisher() };
}

const event = (n: number, key: string | null = null): Envelope =>
  createEnvelope({ type: 'thing.happened.v1', payload: { n }, key });

describe('outbox', () => {
  it('publishes rows of committed transactions, never of rolled-back ones', async () => {
    const { db, clock, publisher } = await setup();
    await db.transaction((tx) => addToOutbox(tx, 'things', [event(1), event(2)]));
    await db
      .transaction(async (tx) => {
        await addToOutbox(tx, 'things', event(3));
        throw new Error('business rule failed');
      })
      .catch(() => undefined);
    const relay = new OutboxRelay(db, publisher, { clock });
    expect(await relay.relayOnce()).toBe(2);
    expect(await relay.relayOnce()).toBe(0);
    expect(publisher.sent.map((s) => (s.message.payload as { n: number }).n)).toEqual([1, 2]);
    expect(publisher.sent[0]?.destination).toBe('things');
  });

  it('keeps commit order per destination and groups a batch by destination', async () => {
    const { db, clock, publisher } = await setup();
    for (let i = 0; i < 10; i++) {
      await db.transaction((tx) => addToOutbox(tx, i % 2 === 0 ? 'even' : 'odd', event(i, 'k')));
    }
    const relay = new OutboxRelay(db, publisher, { clock, batchSize: 4 });
    while ((await relay.relayOnce()) > 0);
    const order = (d: string): number[] =>
      publisher.sent.filter((s) => s.destination === d).map((s) => (s.message.payload as { n: number }).n);
    expect(order('even')).toEqual([0, 2, 4, 6, 8]);
    expect(order('odd')).toEqual([1, 3, 5, 7, 9]);
  });

  it('wakes on NOTIFY when a transaction commits', async () => {
    const { db, clock, publisher } = await setup();
    const relay = new OutboxRelay(db, publisher, { clock, pollIntervalMs: 3_600_000 });
    await relay.start();
    const published = relay.events.once('published');
    await db.transaction((tx) => addToOutbox(tx, 'things', event(1)));
    await published;
    await relay.stop();
    expect(publisher.sent).toHaveLength(1);
  });

  it('retries after a publish failure with backoff, and parks a row after maxAttempts', async () => {
    const { db, clock, publisher } = await setup();
    await db.transaction((tx) => addToOutbox(tx, 'things', event(1)));
    publisher.failing = true;
    const relay = new OutboxRelay(db, publisher, { clock, maxAttempts: 3, retryDelay: () => 1000 });
    expect(await relay.relayOnce()).toBe(0);
    expect(await relay.relayOnce()).toBe(0); // not due yet
    await clock.advance(1000);
    expect(await relay.relayOnce()).toBe(0);
    const parked = relay.events.once('parked');
    await clock.advance(1000);
    expect(await relay.relayOnce()).toBe(0);
    expect((await parked).error).toMatchObject({ message: 'broker down' });
    publisher.failing = false;
    await clock.advance(60_000);
    expect(await relay.relayOnce()).toBe(0);
    const { rows } = await db.query<{ attempts: number; last_error: string; parked: boolean }>(
      'SELECT attempts, last_error, parked_at IS NOT NULL AS parked FROM keel_outbox',
    );
    expect(rows).toEqual([{ attempts: 3, last_error: 'Error: broker down', parked: true }]);
  });

  it('two relays at once publish every row, each exactly once when neither fails', async () => {
    const { db, clock, publisher } = await setup();
    const total = 300;
    for (let i = 0; i < total; i += 10) {
      await db.transaction((tx) =>
        addToOutbox(
          tx,
          'things',
          Array.from({ length: 10 }, (_, j) => event(i + j)),
        ),
      );
    }
    const a = new OutboxRelay(db, publisher, { clock, batchSize: 7 });
    const b = new OutboxRelay(db, publisher, { clock, batchSize: 7 });
    for (;;) {
      const [x, y] = await Promise.all([a.relayOnce(), b.relayOnce()]);
      if (x + y === 0) break;
    }
    const ns = publisher.sent.map((s) => (s.message.payload as { n: number }).n).sort((p, q) => p - q);
    expect(ns).toEqual(Array.from({ length: total }, (_, i) => i));
  });

  it('republishes rows whose relay died after publishing and before marking, once the claim expires', async () => {
    const { db, clock, publisher } = await setup();
    await db.transaction((tx) => addToOutbox(tx, 'things', event(1)));
    // A relay whose publisher hangs forever stands for a relay process that died mid-publish.
    const dead = new OutboxRelay(
      db,
      { publish: () => new Promise<void>(() => {}) },
      { clock, claimMs: 5000 },
    );
    void dead.relayOnce();
    const live = new OutboxRelay(db, publisher, { clock, claimMs: 5000 });
    await advanceUntil(clock, Promise.resolve());
    expect(await live.relayOnce()).toBe(0);
    await clock.advance(5000);
    expect(await live.relayOnce()).toBe(1);
  });

  it.skipIf(testDbBackend() === 'pglite')(
    'never skips a row that commits after a row with a higher id was published (pg only: PGlite transactions cannot overlap)',
    async () => {
      const { db, clock, publisher } = await setup();
      let commitLate: (() => void) | undefined;
      const late = db.transaction(async (tx) => {
        await addToOutbox(tx, 'things', event(1));
        await new Promise<void>((resolve) => (commitLate = resolve));
      });
      while (commitLate === undefined) await new Promise((resolve) => setImmediate(resolve));
      await db.transaction((tx) => addToOutbox(tx, 'things', event(2)));
      const relay = new OutboxRelay(db, publisher, { clock });
      expect(await relay.relayOnce()).toBe(1);
      commitLate();
      await late;
      expect(await relay.relayOnce()).toBe(1);
      expect(publisher.sent.map((s) => (s.message.payload as { n: number }).n)).toEqual([2, 1]);
    },
  );
});
