// A batch's claim is renewed while the relay works on it: a publish slower than claimMs keeps its
// rows; a claim lost after its relay stalled is reported and never revived; a stopped relay stops
// renewing. The manual clock moves in steps, each after the statements of the last one settled.
import { afterEach, describe, expect, it } from 'vitest';
import { migrate, type Db } from '../db/index.ts';
import { createEnvelope, type Envelope } from '../messaging/envelope.ts';
import type { Publisher } from '../messaging/publisher.ts';
import type { LifecycleEvents } from '../service/index.ts';
import { createTestDb, type TestDb } from '../testing/index.ts';
import { statementsSettled } from '../testing/statements-in-flight.ts';
import { ManualClock } from '../time/index.ts';
import { addToOutbox } from './outbox.ts';
import { OutboxRelay, type OutboxRelayEvents } from './outbox-relay.ts';
import { outboxStatus } from './outbox-status.ts';
import { outboxMigrations } from './schema.ts';

const dbs: TestDb[] = [];
const relays: OutboxRelay[] = [];
afterEach(async () => {
  for (const relay of relays.splice(0)) await relay.stop();
  for (const db of dbs.splice(0)) await db.close();
});

const claimMs = 3000;

async function setup(): Promise<{ db: TestDb; clock: ManualClock }> {
  const db = await createTestDb();
  dbs.push(db);
  await migrate(db, outboxMigrations);
  return { db, clock: new ManualClock() };
}

const event = (n: number, key: string | null): Envelope =>
  createEnvelope({ type: 'thing.happened.v1', payload: { n }, key });
const n = (m: Envelope): number => (m.payload as { n: number }).n;

/** Records what it sends; holds every call until `release` while `held` is set. */
class GatedPublisher implements Publisher {
  readonly sent: Envelope[] = [];
  calls = 0;
  held = true;
  #open: () => void = () => undefined;
  #gate = new Promise<void>((resolve) => (this.#open = resolve));
  async publish(_destination: string, messages: readonly Envelope[]): Promise<void> {
    this.calls++;
    if (this.held) await this.#gate;
    this.sent.push(...messages);
  }
  release(): void {
    this.held = false;
    this.#open();
  }
}

/** A publisher that sends at once. */
function recording(): Publisher & { sent: Envelope[] } {
  const sent: Envelope[] = [];
  return { sent, publish: async (_d, messages) => void sent.push(...messages) };
}

async function waitFor(condition: () => boolean | Promise<boolean>): Promise<void> {
  for (let turn = 0; !(await condition()); turn++) {
    if (turn > 10_000) throw new Error('waitFor: condition never held');
    await new Promise((resolve) => setImmediate(resolve));
  }
}

/** Moves the clock by `ms`, then lets the statements its timers started (renewals) finish. */
async function step(clock: ManualClock, ms: number): Promise<void> {
  await clock.advance(ms);
  for (let turn = 0; turn < 5; turn++) await new Promise((resolve) => setImmediate(resolve));
  await statementsSettled();
}

const claims = async (db: TestDb): Promise<{ id: string; until: number }[]> =>
  (
    await db.query<{ id: string; until: Date }>(
      'SELECT id::text AS id, claim_until AS until FROM keel_outbox_claims ORDER BY claim_until',
    )
  ).rows.map((r) => ({ id: r.id, until: r.until.getTime() }));

type Events = OutboxRelayEvents & LifecycleEvents;

function collect<K extends keyof Events>(relay: OutboxRelay, name: K): Events[K][] {
  const seen: Events[K][] = [];
  relay.events.on(name, (payload) => void seen.push(payload));
  return seen;
}

/** `db`, whose claim renewals fail while `failing.now` is set; `failing.calls` counts them. */
function withFailingRenewals(db: TestDb): { db: Db; failing: { now: boolean; calls: number } } {
  const failing = { now: false, calls: 0 };
  const renewal = (sql: string): boolean => sql.startsWith('UPDATE keel_outbox_claims SET claim_until');
  return {
    failing,
    db: {
      dialect: db.dialect,
      schema: db.schema,
      query: (sql, params) => db.query(sql, params),
      transaction: (fn, options) =>
        db.transaction(
          (tx) =>
            fn({
              query: (sql, params) => {
                if (!renewal(sql)) return tx.query(sql, params);
                failing.calls++;
                return failing.now ? Promise.reject(new Error('connection lost')) : tx.query(sql, params);
              },
            }),
          options,
        ),
      listen: (channel, onNotify) => db.listen(channel, onNotify),
      close: async () => undefined,
    },
  };
}

describe('outbox relay claim renewal', () => {
  it('a publish slower than several claimMs keeps its claims: a second relay takes none of the rows, nothing goes out twice', async () => {
    const { db, clock } = await setup();
    await db.transaction((tx) =>
      addToOutbox(tx, 'things', [event(1, 'a'), event(2, 'b'), event(3, 'c'), event(4, null)]),
    );
    const slow = new GatedPublisher();
    const relay = new OutboxRelay(db, slow, { clock, batchSize: 2, claimMs });
    relays.push(relay);
    const errors = collect(relay, 'error');
    await relay.start();
    // The batch being published and the one claimed ahead of it.
    await waitFor(async () => slow.calls === 1 && (await claims(db)).length === 2);
    const claimedAt = clock.now();
    expect((await claims(db)).map((c) => c.until)).toEqual([claimedAt + claimMs, claimedAt + claimMs]);

    const other = recording();
    const second = new OutboxRelay(db, other, { clock, batchSize: 2, claimMs });
    for (let s = 1; s <= 15; s++) {
      await step(clock, claimMs / 3);
      // Both renewed on this beat: each now ends claimMs after it.
      expect((await claims(db)).map((c) => c.until)).toEqual([clock.now() + claimMs, clock.now() + claimMs]);
      expect(await second.relayOnce()).toBe(0);
    }
    expect(clock.now() - claimedAt).toBe(5 * claimMs);

    slow.release();
    await waitFor(async () => (await outboxStatus(db, clock)).published === 4);
    expect(await second.relayOnce()).toBe(0);
    expect(slow.sent.map(n).sort()).toEqual([1, 2, 3, 4]);
    expect(other.sent).toEqual([]);
    expect(await claims(db)).toEqual([]);
    expect(errors).toEqual([]);
    await relay.stop();
    expect(clock.pendingTimers).toBe(0);
  });

  it('a batch done within claimMs / 3 renews nothing: no statement, no timer left', async () => {
    const { db, clock } = await setup();
    await db.transaction((tx) => addToOutbox(tx, 'things', [event(1, 'a'), event(2, 'b')]));
    const { db: counted, failing } = withFailingRenewals(db);
    const relay = new OutboxRelay(counted, recording(), { clock, claimMs });
    expect(await relay.relayOnce()).toBe(2);
    await step(clock, 2 * claimMs);
    expect(failing.calls).toBe(0);
    expect(clock.pendingTimers).toBe(0);
  });

  it('a claim taken over after its relay stalled is reported, not renewed again, and the rest of its batch is not published', async () => {
    const { db, clock } = await setup();
    // Two destinations: two publish calls, the first held up while the claim is lost.
    await db.transaction(async (tx) => {
      await addToOutbox(tx, 'first', event(1, 'a'));
      await addToOutbox(tx, 'second', event(2, 'b'));
    });
    const { db: flaky, failing } = withFailingRenewals(db);
    const stalled = new GatedPublisher();
    const relay = new OutboxRelay(flaky, stalled, { clock, claimMs });
    const errors = collect(relay, 'error');
    const lost = collect(relay, 'claim-lost');
    const done = relay.relayOnce();
    await waitFor(() => stalled.calls === 1);
    const [claim] = await claims(db);

    // The database is out of reach for the relay's renewals past the claim's end.
    failing.now = true;
    for (let s = 1; s <= 4; s++) await step(clock, claimMs / 3);
    expect(failing.calls).toBe(4);
    expect(errors.map((e) => e.during)).toEqual(Array(4).fill('claim-renewal'));
    expect(lost).toEqual([]);

    // Expired: another relay takes the rows and publishes them.
    const other = recording();
    expect(await new OutboxRelay(db, other, { clock, claimMs }).relayOnce()).toBe(2);
    expect(other.sent.map(n)).toEqual([1, 2]);

    // The next renewal finds the claim gone: reported once, not revived, never tried again.
    failing.now = false;
    await step(clock, claimMs / 3);
    expect(failing.calls).toBe(5);
    expect(lost).toHaveLength(1);
    expect(lost[0]).toMatchObject({ claimId: claim!.id, reason: 'expired' });
    expect(lost[0]!.messages.map(n)).toEqual([1, 2]);
    expect(await claims(db)).toEqual([]);
    expect(clock.pendingTimers).toBe(0);
    for (let s = 0; s < 6; s++) await step(clock, claimMs / 3);
    expect(failing.calls).toBe(5);

    // The call under way completes (a duplicate of 1); 2, on the second call, is not sent again.
    stalled.release();
    expect(await done).toBe(1);
    expect(stalled.sent.map(n)).toEqual([1]);
    expect(await claims(db)).toEqual([]);
    expect(await outboxStatus(db, clock)).toMatchObject({ backlog: 0, published: 2 });
  });

  it('gives a claim up after maxClaimRenewalMs, so a publish that hangs does not hold its rows for ever', async () => {
    const { db, clock } = await setup();
    await db.transaction((tx) => addToOutbox(tx, 'things', event(1, 'a')));
    const hung = new GatedPublisher();
    const relay = new OutboxRelay(db, hung, { clock, claimMs, maxClaimRenewalMs: 4 * claimMs });
    const lost = collect(relay, 'claim-lost');
    const done = relay.relayOnce();
    await waitFor(() => hung.calls === 1);
    const other = recording();
    const second = new OutboxRelay(db, other, { clock, claimMs });
    // Renewed up to 4 claimMs (the last renewal at 11 000 ms ends it at 14 000 ms).
    for (let s = 1; s <= 12; s++) {
      await step(clock, claimMs / 3);
      expect(await second.relayOnce()).toBe(0);
    }
    expect(lost).toMatchObject([{ reason: 'renewal-limit' }]);
    expect(clock.pendingTimers).toBe(0);
    await step(clock, 2000);
    expect(await second.relayOnce()).toBe(1);
    expect(other.sent.map(n)).toEqual([1]);
    hung.release();
    expect(await done).toBe(1);
  });

  it('a stop waits for the batch in flight and renews its claim meanwhile; past the drain deadline it renews no more', async () => {
    const { db, clock } = await setup();
    await db.transaction((tx) => addToOutbox(tx, 'things', [event(1, 'a'), event(2, 'b')]));
    const hung = new GatedPublisher();
    const relay = new OutboxRelay(db, hung, { clock, claimMs });
    relays.push(relay);
    await relay.start();
    await waitFor(async () => hung.calls === 1 && (await claims(db)).length === 1);
    let stopped = false;
    const stopping = relay.stop({ drainMs: 2 * claimMs }).then(() => (stopped = true));

    // Draining: the claim is still renewed, and another relay takes nothing.
    const other = recording();
    const second = new OutboxRelay(db, other, { clock, claimMs });
    for (let s = 1; s < 6; s++) {
      await step(clock, claimMs / 3);
      expect(await second.relayOnce()).toBe(0);
      expect(stopped).toBe(false);
    }
    // The deadline: stop() returns with the publish still hanging, and no renewal is left.
    await step(clock, claimMs / 3);
    await stopping;
    expect(clock.pendingTimers).toBe(0);
    const [claim] = await claims(db);
    expect(claim!.until).toBeLessThanOrEqual(clock.now() + claimMs);
    await step(clock, claimMs);
    expect(await second.relayOnce()).toBe(2);
    expect(other.sent.map(n)).toEqual([1, 2]);

    // The publish returns after all: the stopped relay's loop ends, and renews nothing.
    hung.release();
    await waitFor(() => hung.sent.length === 2);
    await step(clock, claimMs);
    expect(clock.pendingTimers).toBe(0);
    expect(await claims(db)).toEqual([]);
  });
});
