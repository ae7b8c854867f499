// The started relay's pipeline (the next batch claimed while one is published, marks riding with
// later claims), claims as rows of keel_outbox_claims, and deleting rows on publish.
import { afterEach, describe, expect, it } from 'vitest';
import { migrate, type Db } from '../db/index.ts';
import { createEnvelope, type Envelope } from '../messaging/envelope.ts';
import type { Publisher } from '../messaging/publisher.ts';
import { CircuitBreakerPolicy } from '../resilience/index.ts';
import { advanceUntil, createTestDb, type TestDb } from '../testing/index.ts';
import { ManualClock } from '../time/index.ts';
import { addToOutbox } from './outbox.ts';
import { OutboxRelay } from './outbox-relay.ts';
import { outboxStatus } from './outbox-status.ts';
import { outboxMigrations } from './schema.ts';

const dbs: TestDb[] = [];
const relays: OutboxRelay[] = [];
afterEach(async () => {
  for (const relay of relays.splice(0)) await relay.stop();
  for (const db of dbs.splice(0)) await db.close();
});

async function setup(): Promise<{ db: TestDb; clock: ManualClock }> {
  const db = await createTestDb();
  dbs.push(db);
  await migrate(db, outboxMigrations);
  return { db, clock: new ManualClock() };
}

const event = (n: number, key: string | null): Envelope =>
  createEnvelope({ type: 'thing.happened.v1', payload: { n }, key });
const n = (m: Envelope): number => (m.payload as { n: number }).n;

/** A seeded generator, so a failing interleaving can be replayed. */
function prng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state * 1_664_525 + 1_013_904_223) >>> 0;
    return state / 2 ** 32;
  };
}

async function waitFor(condition: () => Promise<boolean>): Promise<void> {
  while (!(await condition())) await new Promise((resolve) => setImmediate(resolve));
}

const liveClaims = async (db: TestDb): Promise<{ owner: string; rows: number }[]> =>
  (
    await db.query<{ owner: string; rows: number }>(
      'SELECT owner, cardinality(seqs) AS rows FROM keel_outbox_claims ORDER BY owner',
    )
  ).rows;

describe('outbox relay pipeline', () => {
  it('two started relays claim ahead while publishing, and keep per-key commit order with publishes failing at random', async () => {
    const { db, clock } = await setup();
    const keys = ['a', 'b', 'c', 'd', 'e'];
    let total = 0;
    for (let t = 0; t < 30; t++) {
      await db.transaction((tx) =>
        addToOutbox(
          tx,
          t % 4 === 0 ? 'other' : 'things',
          Array.from({ length: 6 }, (_, j) => event(total++, keys[(t * 3 + j) % keys.length]!)),
        ),
      );
    }
    const random = prng(11);
    const sent: { destination: string; message: Envelope }[] = [];
    let mostClaimsOfOneOwner = 0;
    let allSent: () => void = () => undefined;
    const everySent = new Promise<void>((resolve) => (allSent = resolve));
    const publisher: Publisher = {
      publish: async (destination, messages) => {
        // While a batch is published, its relay already holds the next claim.
        const owners = new Map<string, number>();
        for (const claim of await liveClaims(db)) owners.set(claim.owner, (owners.get(claim.owner) ?? 0) + 1);
        mostClaimsOfOneOwner = Math.max(mostClaimsOfOneOwner, ...owners.values());
        for (let i = Math.floor(random() * 3); i > 0; i--) await new Promise((r) => setImmediate(r));
        if (random() < 0.15) throw new Error('flaky broker');
        for (const message of messages) sent.push({ destination, message });
        if (new Set(sent.map((s) => s.message.id)).size === total) allSent();
      },
    };
    for (let i = 0; i < 2; i++) {
      const relay = new OutboxRelay(db, publisher, {
        clock,
        batchSize: 4,
        // advanceUntil moves the clock on during real round trips: no claim may expire here.
        claimMs: 3_600_000,
        maxAttempts: 1000,
        retryDelay: () => 10,
        breaker: new CircuitBreakerPolicy({ threshold: { kind: 'consecutive', failures: 1e9 }, clock }),
      });
      relays.push(relay);
      await relay.start();
    }
    await advanceUntil(clock, everySent, { stepMs: 10 });
    for (const relay of relays.splice(0)) await relay.stop();

    expect(mostClaimsOfOneOwner).toBeGreaterThanOrEqual(2);
    // Nothing was published twice: no claim expired, and a failed batch's claim ahead went back.
    expect(sent.map((s) => n(s.message)).sort((p, q) => p - q)).toEqual(
      Array.from({ length: total }, (_, i) => i),
    );
    for (const destination of ['things', 'other']) {
      for (const key of keys) {
        const seen = sent
          .filter((s) => s.destination === destination && s.message.key === key)
          .map((s) => n(s.message));
        expect(seen).toEqual([...seen].sort((p, q) => p - q));
      }
    }
    // Every batch was marked and every claim ended, also the ones made ahead when the relays stopped.
    expect(await outboxStatus(db, clock)).toMatchObject({ backlog: 0, published: total });
    expect(await liveClaims(db)).toEqual([]);
  });

  it('a relay that dies after publishing a batch and before its mark: another relay waits for the claims to expire, then republishes in key order', async () => {
    const { db, clock } = await setup();
    await db.transaction((tx) =>
      addToOutbox(tx, 'things', [event(1, 'a'), event(2, 'b'), event(3, 'a'), event(4, 'b')]),
    );
    const sent: Envelope[] = [];
    let hanging: () => void = () => undefined;
    const hangs = new Promise<void>((resolve) => (hanging = resolve));
    let revive: () => void = () => undefined;
    const revived = new Promise<void>((resolve) => (revive = resolve));
    // The first batch reaches the broker, then the process dies: the publish never returns, so
    // neither this batch's mark nor the claim made ahead of it ever ends, and its clock stands
    // still, so it renews neither claim.
    const dying = new OutboxRelay(
      db,
      {
        publish: async (_destination, messages) => {
          sent.push(...messages);
          hanging();
          await revived;
          throw new Error('the process is gone');
        },
      },
      { clock: new ManualClock(clock.now()), batchSize: 2, claimMs: 5000 },
    );
    relays.push(dying);
    await dying.start();
    await hangs;
    expect(sent.map(n)).toEqual([1, 2]);
    // Its first claim and the one it made ahead (3 and 4: its own keys do not hold it back).
    await advanceUntil(
      clock,
      waitFor(async () => (await liveClaims(db)).length === 2),
      { stepMs: 1 },
    );
    expect(await outboxStatus(db, clock)).toMatchObject({ backlog: 4, published: 0 });

    const live = new OutboxRelay(
      db,
      { publish: async (_d, messages) => void sent.push(...messages) },
      {
        clock,
        claimMs: 5000,
      },
    );
    expect(await live.relayOnce()).toBe(0); // both claims hold the rows and their keys
    await clock.advance(5000);
    expect(await live.relayOnce()).toBe(4);
    // 1 and 2 twice (at-least-once), and each key's first deliveries in commit order.
    expect(sent.map(n)).toEqual([1, 2, 1, 2, 3, 4]);
    expect(await outboxStatus(db, clock)).toMatchObject({ backlog: 0, published: 4 });
    revive();
  });

  it('a statement failing mid-round gives the claims in hand back: a key is not overtaken while its failed row is unrecorded', async () => {
    const { db, clock } = await setup();
    await db.transaction((tx) => addToOutbox(tx, 'things', [event(1, 'k'), event(2, 'k')]));
    let failRecording = true;
    // The database refuses to record the first failed publish (a lost connection, say).
    const flaky: Db = {
      dialect: db.dialect,
      schema: db.schema,
      query: (sql, params) => {
        if (failRecording && sql.includes('SET attempts')) {
          failRecording = false;
          return Promise.reject(new Error('connection lost'));
        }
        return db.query(sql, params);
      },
      transaction: (fn, options) => db.transaction(fn, options),
      listen: (channel, onNotify) => db.listen(channel, onNotify),
      close: async () => undefined,
    };
    const sent: Envelope[] = [];
    let calls = 0;
    let allSent: () => void = () => undefined;
    const everySent = new Promise<void>((resolve) => (allSent = resolve));
    const relay = new OutboxRelay(
      flaky,
      {
        publish: async (_destination, messages) => {
          if (++calls === 1) throw new Error('refused once');
          sent.push(...messages);
          if (sent.length === 2) allSent();
        },
      },
      { clock, batchSize: 1, claimMs: 3_600_000 },
    );
    const errors: unknown[] = [];
    relay.events.on('error', ({ error }) => errors.push(error));
    relays.push(relay);
    await relay.start();
    await advanceUntil(clock, everySent, { stepMs: 100 });
    expect(errors).toMatchObject([{ message: 'connection lost' }]);
    expect(sent.map(n)).toEqual([1, 2]);
  });

  it('a mark that fails is written later: every row is published once and marked, its claim held until then', async () => {
    const { db, clock } = await setup();
    await db.transaction((tx) =>
      addToOutbox(tx, 'things', [event(1, 'a'), event(2, 'b'), event(3, 'a'), event(4, 'b'), event(5, 'a')]),
    );
    let failMark = true;
    // The database refuses the first mark (a lost connection, say); on PGlite the mark rides in a
    // claim's transaction, so that claim fails with it.
    const flaky: Db = {
      dialect: db.dialect,
      schema: db.schema,
      query: (sql, params) => {
        if (failMark && sql.includes('INSERT INTO keel_outbox_archive')) {
          failMark = false;
          return Promise.reject(new Error('connection lost'));
        }
        return db.query(sql, params);
      },
      transaction: (fn, options) =>
        db.transaction(
          (tx) =>
            fn({
              query: (sql, params) => {
                if (failMark && sql.includes('INSERT INTO keel_outbox_archive')) {
                  failMark = false;
                  return Promise.reject(new Error('connection lost'));
                }
                return tx.query(sql, params);
              },
            }),
          options,
        ),
      listen: (channel, onNotify) => db.listen(channel, onNotify),
      close: async () => undefined,
    };
    const sent: Envelope[] = [];
    const relay = new OutboxRelay(
      flaky,
      { publish: async (_destination, messages) => void sent.push(...messages) },
      { clock, batchSize: 2, claimMs: 3_600_000, retentionMs: false },
    );
    const errors: unknown[] = [];
    relay.events.on('error', ({ error }) => errors.push(error));
    relays.push(relay);
    await relay.start();
    await advanceUntil(
      clock,
      waitFor(async () => (await outboxStatus(db, clock)).backlog === 0),
      { stepMs: 500 },
    );
    await relay.stop();
    expect(errors).toMatchObject([{ message: 'connection lost' }]);
    // No claim expired (claimMs is an hour), so no row went out twice, and each key kept its order.
    expect(sent.map(n).sort()).toEqual([1, 2, 3, 4, 5]);
    expect(sent.filter((m) => m.key === 'a').map(n)).toEqual([1, 3, 5]);
    expect(await outboxStatus(db, clock)).toMatchObject({ backlog: 0, published: 5 });
    expect(await liveClaims(db)).toEqual([]);
  });

  it('rows claimed by a relay of an earlier version (claim_owner, claim_until) are left to it and hold their key', async () => {
    const { db, clock } = await setup();
    await db.transaction((tx) =>
      addToOutbox(tx, 'things', [event(1, 'a'), event(2, 'a'), event(3, 'b'), event(4, null)]),
    );
    await db.query(
      `UPDATE keel_outbox SET claim_owner = 'old-relay', claim_until = $1 WHERE payload->>'n' = '1'`,
      [new Date(clock.now() + 5000)],
    );
    const sent: Envelope[] = [];
    const relay = new OutboxRelay(
      db,
      { publish: async (_d, messages) => void sent.push(...messages) },
      {
        clock,
      },
    );
    expect(await relay.relayOnce()).toBe(2);
    expect(sent.map(n)).toEqual([3, 4]);
    await clock.advance(5000);
    expect(await relay.relayOnce()).toBe(2);
    expect(sent.map(n)).toEqual([3, 4, 1, 2]);
  });

  it('with retentionMs 0 a published row is deleted instead of marked', async () => {
    const { db, clock } = await setup();
    await db.transaction((tx) => addToOutbox(tx, 'things', [event(1, 'a'), event(2, null)]));
    const sent: Envelope[] = [];
    const relay = new OutboxRelay(
      db,
      { publish: async (_d, messages) => void sent.push(...messages) },
      {
        clock,
        retentionMs: 0,
      },
    );
    expect(await relay.relayOnce()).toBe(2);
    expect(sent.map(n)).toEqual([1, 2]);
    expect(await outboxStatus(db, clock)).toMatchObject({ backlog: 0, published: 0, parked: 0 });
    expect((await db.query('SELECT 1 FROM keel_outbox')).rowCount).toBe(0);
    expect(await liveClaims(db)).toEqual([]);
  });
});
