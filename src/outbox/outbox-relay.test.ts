import { afterEach, describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '../errors/index.ts';
import { CircuitBreakerPolicy } from '../resilience/index.ts';
import { migrate, type Db } from '../db/index.ts';
import { createEnvelope, type Envelope } from '../messaging/envelope.ts';
import type { Publisher } from '../messaging/publisher.ts';
import { advanceUntil, createTestDb, testDbBackend, type TestDb } from '../testing/index.ts';
import { ManualClock } from '../time/index.ts';
import { addToOutbox } from './outbox.ts';
import { OutboxRelay } from './outbox-relay.ts';
import { outboxStatus, retryParked } from './outbox-status.ts';
import { outboxMigrations } from './schema.ts';

/** Records what reaches "the broker"; fails while `failing` is set, or for messages `refuse` picks. */
class RecordingPublisher implements Publisher {
  readonly sent: { destination: string; message: Envelope }[] = [];
  calls = 0;
  failing = false;
  refuse: (message: Envelope) => Error | undefined = () => undefined;
  /** Before sending: lets other relays' calls interleave with this one. */
  delay: () => Promise<void> = async () => undefined;
  async publish(destination: string, messages: readonly Envelope[]): Promise<void> {
    this.calls++;
    await this.delay();
    if (this.failing) throw new Error('broker down');
    for (const message of messages) {
      const refused = this.refuse(message);
      if (refused !== undefined) throw refused;
    }
    for (const message of messages) this.sent.push({ destination, message });
  }
}

const n = (s: { message: Envelope }): number => (s.message.payload as { n: number }).n;

async function rowsOf(
  db: TestDb,
): Promise<
  { n: number; attempts: number; parked: boolean; published: boolean; last_error: string | null }[]
> {
  const { rows } = await db.query<{
    n: number;
    attempts: number;
    parked: boolean;
    published: boolean;
    last_error: string | null;
  }>(
    // A published row has moved to the archive, with its attempts and last error.
    `SELECT (payload->>'n')::int AS n, attempts, parked, published, last_error
     FROM (SELECT seq, payload, attempts, parked_at IS NOT NULL AS parked, false AS published, last_error
           FROM keel_outbox
           UNION ALL
           SELECT seq, payload, attempts, false, true, last_error FROM keel_outbox_archive) AS all_rows
     ORDER BY seq`,
  );
  return rows;
}

/** A seeded generator, so a failing interleaving can be replayed. */
function prng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state * 1_664_525 + 1_013_904_223) >>> 0;
    return state / 2 ** 32;
  };
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
    // A relay whose publisher hangs forever, on a clock that stands still (so it never renews its
    // claim), stands for a relay process that died mid-publish.
    const dead = new OutboxRelay(
      db,
      { publish: () => new Promise<void>(() => {}) },
      { clock: new ManualClock(clock.now()), claimMs: 5000 },
    );
    void dead.relayOnce();
    const live = new OutboxRelay(db, publisher, { clock, claimMs: 5000 });
    await advanceUntil(clock, Promise.resolve());
    expect(await live.relayOnce()).toBe(0);
    await clock.advance(5000);
    expect(await live.relayOnce()).toBe(1);
  });

  it('keeps per-key commit order with three relays at once and publishes failing at random', async () => {
    const { db, clock, publisher } = await setup();
    const keys = ['a', 'b', 'c', 'd'];
    let next = 0;
    for (let t = 0; t < 40; t++) {
      await db.transaction((tx) =>
        addToOutbox(
          tx,
          t % 3 === 0 ? 'other' : 'things',
          Array.from({ length: 5 }, (_, j) => event(next++, keys[(t + j) % keys.length])),
        ),
      );
    }
    const random = prng(6);
    publisher.delay = async () => {
      for (let i = Math.floor(random() * 4); i > 0; i--) await new Promise((r) => setImmediate(r));
    };
    publisher.refuse = () => (random() < 0.15 ? new Error('flaky broker') : undefined);
    // Failures here are transient and frequent: the breaker and parking must not get in the way.
    const relays = Array.from(
      { length: 3 },
      () =>
        new OutboxRelay(db, publisher, {
          clock,
          batchSize: 6,
          maxAttempts: 1000,
          retryDelay: () => 10,
          breaker: new CircuitBreakerPolicy({ threshold: { kind: 'consecutive', failures: 1e9 }, clock }),
        }),
    );
    for (let round = 0; publisher.sent.length < next; round++) {
      expect(round).toBeLessThan(2000);
      await Promise.all(relays.map((r) => r.relayOnce()));
      await clock.advance(10);
    }
    expect(publisher.sent.map(n).sort((p, q) => p - q)).toEqual(Array.from({ length: next }, (_, i) => i));
    for (const destination of ['things', 'other']) {
      for (const key of keys) {
        const seen = publisher.sent
          .filter((s) => s.destination === destination && s.message.key === key)
          .map(n);
        expect(seen).toEqual([...seen].sort((p, q) => p - q));
      }
    }
  });

  it('never skips a row that becomes visible after rows with higher seq were published (late commit)', async () => {
    const { db, clock, publisher } = await setup();
    // Rows get seq numbers from 100 on; a transaction that took seq 50 and commits only now is
    // what a late commit looks like to the relay.
    await db.query('ALTER TABLE keel_outbox ALTER COLUMN seq RESTART WITH 100');
    await db.transaction((tx) => addToOutbox(tx, 'things', [event(2, 'k'), event(3, 'j')]));
    const relay = new OutboxRelay(db, publisher, { clock });
    expect(await relay.relayOnce()).toBe(2);
    const late = event(1, 'k');
    await db.query(
      `INSERT INTO keel_outbox (seq, destination, id, type, key, payload, occurred_at)
       OVERRIDING SYSTEM VALUE VALUES (50, 'things', $1, $2, $3, $4, $5)`,
      [late.id, late.type, late.key, JSON.stringify(late.payload), late.occurredAt],
    );
    expect(await relay.relayOnce()).toBe(1);
    // Broker order is commit order: 2 committed (and was published) before 1 committed.
    expect(publisher.sent.map(n)).toEqual([2, 3, 1]);
  });

  it.skipIf(testDbBackend() === 'pglite')(
    'a transaction that commits late is still published (pg only: PGlite transactions cannot overlap)',
    async () => {
      const { db, clock, publisher } = await setup();
      let commitLate: (() => void) | undefined;
      const late = db.transaction(async (tx) => {
        await addToOutbox(tx, 'things', event(1, 'a'));
        await new Promise<void>((resolve) => (commitLate = resolve));
      });
      while (commitLate === undefined) await new Promise((resolve) => setImmediate(resolve));
      await db.transaction((tx) => addToOutbox(tx, 'things', event(2, 'b')));
      const relay = new OutboxRelay(db, publisher, { clock });
      expect(await relay.relayOnce()).toBe(1);
      commitLate();
      await late;
      expect(await relay.relayOnce()).toBe(1);
      expect(publisher.sent.map(n)).toEqual([2, 1]);
    },
  );

  it.skipIf(testDbBackend() === 'pglite')(
    'writers of one key commit in seq order: the second waits at outbox.add for the first to commit (pg only)',
    async () => {
      const { db, clock, publisher } = await setup();
      let commitFirst: (() => void) | undefined;
      const first = db.transaction(async (tx) => {
        await addToOutbox(tx, 'things', event(1, 'k'));
        await new Promise<void>((resolve) => (commitFirst = resolve));
      });
      while (commitFirst === undefined) await new Promise((resolve) => setImmediate(resolve));
      const second = db.transaction((tx) => addToOutbox(tx, 'things', event(2, 'k')));
      // The second writer is blocked on the key's advisory lock, before it has a seq number.
      const waiting = async (): Promise<number> =>
        (
          await db.query<{ n: number }>(
            `SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND NOT granted`,
          )
        ).rows[0]!.n;
      while ((await waiting()) === 0) await new Promise((resolve) => setImmediate(resolve));
      const relay = new OutboxRelay(db, publisher, { clock });
      expect(await relay.relayOnce()).toBe(0);
      commitFirst();
      await Promise.all([first, second]);
      while ((await relay.relayOnce()) > 0);
      expect(publisher.sent.map(n)).toEqual([1, 2]);
      const { rows } = await db.query<{ n: number }>(
        `SELECT (payload->>'n')::int AS n FROM keel_outbox_archive ORDER BY seq`,
      );
      expect(rows.map((r) => r.n)).toEqual([1, 2]);
    },
  );

  it('holds a key back behind its failing row while other keys flow, and parks the poison row with its error', async () => {
    const { db, clock, publisher } = await setup();
    await db.transaction((tx) =>
      addToOutbox(tx, 'things', [event(1, 'x'), event(2, 'x'), event(3, 'y'), event(4, null)]),
    );
    publisher.refuse = (m) => ((m.payload as { n: number }).n === 1 ? new Error('too large') : undefined);
    const relay = new OutboxRelay(db, publisher, { clock, maxAttempts: 4, retryDelay: () => 1000 });
    const parked = relay.events.once('parked');
    for (let i = 0; i < 10; i++) {
      while ((await relay.relayOnce()) > 0);
      await clock.advance(1000);
    }
    expect((await parked).error).toMatchObject({ message: 'too large' });
    expect(relay.breaker.state.status).toBe('closed');
    // 3 and 4 went out; 2 waits behind its key's parked row, so x's order holds.
    expect(publisher.sent.map(n).sort()).toEqual([3, 4]);
    // The first batch held all four and failed as a whole; from then on each row went alone.
    expect(await rowsOf(db)).toEqual([
      { n: 1, attempts: 4, parked: true, published: false, last_error: 'Error: too large' },
      { n: 2, attempts: 1, parked: false, published: false, last_error: 'Error: too large' },
      { n: 3, attempts: 1, parked: false, published: true, last_error: 'Error: too large' },
      { n: 4, attempts: 1, parked: false, published: true, last_error: 'Error: too large' },
    ]);
    // The operator fixes the cause and retries: x's rows go out in order.
    publisher.refuse = () => undefined;
    expect(await retryParked(db)).toBe(1);
    while ((await relay.relayOnce()) > 0);
    expect(publisher.sent.map(n).slice(2)).toEqual([1, 2]);
  });

  it('parks a row at once when the broker refuses it for what it is (a permanent error)', async () => {
    const { db, clock, publisher } = await setup();
    await db.transaction((tx) => addToOutbox(tx, 'things', [event(1, 'x'), event(2, 'y')]));
    publisher.refuse = (m) =>
      (m.payload as { n: number }).n === 1
        ? new InvalidArgumentError('message', 'smaller', 'big')
        : undefined;
    const relay = new OutboxRelay(db, publisher, { clock });
    for (let i = 0; i < 3; i++) {
      await relay.relayOnce();
      await clock.advance(1000);
    }
    expect(publisher.sent.map(n)).toEqual([2]);
    expect(await rowsOf(db)).toMatchObject([
      { n: 1, attempts: 2, parked: true },
      { n: 2, attempts: 1, parked: false, published: true },
    ]);
  });

  it('stops claiming while the breaker is open, so a long outage parks nothing, and catches up after', async () => {
    const { db, clock, publisher } = await setup();
    for (let i = 0; i < 6; i++) await db.transaction((tx) => addToOutbox(tx, 'things', event(i, `k${i}`)));
    publisher.failing = true;
    const relay = new OutboxRelay(db, publisher, { clock, maxAttempts: 5 });
    let opened = 0;
    relay.breaker.on('break', () => opened++);
    // Ten minutes of outage, the relay trying every second.
    for (let s = 0; s < 600; s++) {
      await relay.relayOnce();
      await clock.advance(1000);
    }
    expect(opened).toBeGreaterThan(1);
    // While open the relay made no calls: about one probe per open period, not one per second.
    expect(publisher.calls).toBeLessThan(100);
    expect((await rowsOf(db)).filter((r) => r.parked)).toEqual([]);
    publisher.failing = false;
    for (let s = 0; s < 120 && publisher.sent.length < 6; s++) {
      while ((await relay.relayOnce()) > 0);
      await clock.advance(1000);
    }
    expect(publisher.sent.map(n).sort()).toEqual([0, 1, 2, 3, 4, 5]);
    expect(relay.breaker.state.status).toBe('closed');
  });

  it('falls back to polling when no NOTIFY arrives, and runs the cleaner from its loop', async () => {
    const { db, clock, publisher } = await setup();
    // A Db whose notifications are lost: only the poll can find the row.
    const deaf: Db = {
      dialect: db.dialect,
      schema: db.schema,
      query: (sql, params) => db.query(sql, params),
      transaction: (fn, options) => db.transaction(fn, options),
      listen: async () => async () => undefined,
      close: async () => undefined,
    };
    const relay = new OutboxRelay(deaf, publisher, {
      clock,
      // advanceUntil moves the clock on during real round trips: a claim made ahead must not
      // find the current one already expired.
      claimMs: 3_600_000,
      pollIntervalMs: 5000,
      retentionMs: 60_000,
      cleanupIntervalMs: 30_000,
    });
    await relay.start();
    try {
      await db.transaction((tx) => addToOutbox(tx, 'things', event(1)));
      await advanceUntil(clock, relay.events.once('published'), { stepMs: 500 });
      expect(publisher.sent.map(n)).toEqual([1]);
      // Published at t, deleted by the relay's own cleaner once older than the retention.
      await advanceUntil(clock, relay.events.once('pruned'), { stepMs: 5000 });
      expect(await outboxStatus(db, clock)).toMatchObject({ backlog: 0, published: 0 });
    } finally {
      await relay.stop();
    }
  });
});
