// The table relay's health(): what its own statements and publishes found. The database through a
// wrapper whose statements fail or hang on demand, the broker through a publisher that fails,
// refuses a message or hangs; the manual clock moves in steps, each after the statements of the
// last one settled.
import { afterEach, describe, expect, it } from 'vitest';
import { migrate, type Db } from '../db/index.ts';
import { InvalidArgumentError } from '../errors/index.ts';
import { createEnvelope, type Envelope } from '../messaging/envelope.ts';
import type { Publisher } from '../messaging/publisher.ts';
import { createTestDb, type TestDb } from '../testing/index.ts';
import { statementsSettled } from '../testing/statements-in-flight.ts';
import type { ServiceHealth } from '../service/index.ts';
import { ManualClock } from '../time/index.ts';
import { addToOutbox } from './outbox.ts';
import { OutboxRelay, type OutboxRelayOptions } from './outbox-relay.ts';
import { outboxMigrations } from './schema.ts';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const pollIntervalMs = 1000;
const claimMs = 3000;

/** The statements of `db` fail while `down` is set, and wait while `hung` is, until `answer()`. */
class Outage {
  down = false;
  hung = false;
  #waiting: (() => void)[] = [];

  /** Lets the statements that wait go on, and every later one. */
  answer(): void {
    this.hung = false;
    for (const go of this.#waiting.splice(0)) go();
  }

  async before(): Promise<void> {
    if (this.hung) await new Promise<void>((resolve) => this.#waiting.push(resolve));
    if (this.down) throw new Error('connection lost');
  }
}

function withOutage(db: TestDb, outage: Outage): Db {
  return {
    dialect: db.dialect,
    schema: db.schema,
    query: async (sql, params) => {
      await outage.before();
      return db.query(sql, params);
    },
    transaction: async (fn, options) => {
      await outage.before();
      return db.transaction(fn, options);
    },
    listen: (channel, onNotify) => db.listen(channel, onNotify),
    close: async () => undefined,
  };
}

/** Records what it sends; fails while `failing` is set, refuses what `refuse` picks, waits while `held`. */
class TestPublisher implements Publisher {
  readonly sent: Envelope[] = [];
  calls = 0;
  failing: Error | undefined;
  refuse: (message: Envelope) => Error | undefined = () => undefined;
  held = false;
  #release: () => void = () => undefined;

  async publish(_destination: string, messages: readonly Envelope[]): Promise<void> {
    this.calls++;
    if (this.held) await new Promise<void>((resolve) => (this.#release = resolve));
    if (this.failing !== undefined) throw this.failing;
    for (const message of messages) {
      const refused = this.refuse(message);
      if (refused !== undefined) throw refused;
    }
    this.sent.push(...messages);
  }

  release(): void {
    this.held = false;
    this.#release();
  }
}

async function setup(options: OutboxRelayOptions = {}): Promise<{
  db: TestDb;
  clock: ManualClock;
  outage: Outage;
  publisher: TestPublisher;
  relay: OutboxRelay;
}> {
  const db = await createTestDb();
  cleanups.push(() => db.close());
  await migrate(db, outboxMigrations);
  const clock = new ManualClock();
  const outage = new Outage();
  const publisher = new TestPublisher();
  const relay = new OutboxRelay(withOutage(db, outage), publisher, {
    clock,
    pollIntervalMs,
    claimMs,
    retryDelay: () => 1000,
    retentionMs: false,
    ...options,
  });
  cleanups.push(async () => {
    // Whatever a test left failing or hanging answers, so the relay can stop.
    outage.down = false;
    outage.answer();
    publisher.failing = undefined;
    publisher.release();
    await relay.stop();
  });
  // Reported failures are expected here; an unobserved `error` would only be noise.
  relay.events.on('error', () => undefined);
  return { db, clock, outage, publisher, relay };
}

const event = (n: number): Envelope =>
  createEnvelope({ type: 'thing.happened.v1', payload: { n }, key: `k${n}` });
const add = (db: TestDb, n: number): Promise<unknown> =>
  db.transaction((tx) => addToOutbox(tx, 'things', event(n)));

async function waitFor(condition: () => boolean): Promise<void> {
  for (let turn = 0; !condition(); turn++) {
    if (turn > 10_000) throw new Error('waitFor: condition never held');
    await new Promise((resolve) => setImmediate(resolve));
    await statementsSettled();
  }
}

const lastErrorOf = (health: ServiceHealth): unknown =>
  health.status === 'failing' ? health.lastError : undefined;

/** Until the relay's loop waits for its next poll: its round is done, its timer set. */
const idle = (clock: ManualClock): Promise<void> => waitFor(() => clock.pendingTimers > 0);

/** Moves the clock by `ms`, then lets the statements its timers started finish. */
async function step(clock: ManualClock, ms: number): Promise<void> {
  await clock.advance(ms);
  for (let turn = 0; turn < 5; turn++) await new Promise((resolve) => setImmediate(resolve));
  await statementsSettled();
}

describe('OutboxRelay health()', () => {
  it('is not-running before the start and after the stop, ok while it runs and its statements answer', async () => {
    const { clock, relay } = await setup();
    expect(relay.health()).toEqual({ status: 'not-running', state: 'idle' });
    await relay.start();
    await idle(clock);
    expect(relay.health()).toEqual({ status: 'ok', lastContactAt: clock.now() });
    // Idle, it polls every pollIntervalMs: each empty claim is an answer.
    for (let poll = 1; poll <= 2; poll++) {
      await step(clock, pollIntervalMs);
      await idle(clock);
    }
    expect(relay.health()).toEqual({ status: 'ok', lastContactAt: clock.now() });
    await relay.stop();
    expect(relay.health()).toEqual({ status: 'not-running', state: 'stopped' });
  });

  it('names the broker while publishes fail, and is ok again once one succeeds', async () => {
    const { db, clock, publisher, relay } = await setup();
    const down = new Error('broker down');
    publisher.failing = down;
    await add(db, 1);
    await relay.start();
    await waitFor(() => relay.health().status === 'failing');
    const failedAt = clock.now();
    expect(relay.health()).toMatchObject({
      status: 'failing',
      dependency: 'broker',
      during: 'publish',
      since: failedAt,
      failures: 1,
      lastError: down,
    });

    // The retry fails too: the same failure, counted, since the first.
    await idle(clock);
    await step(clock, 1000);
    await waitFor(() => publisher.calls === 2);
    expect(relay.health()).toMatchObject({ dependency: 'broker', since: failedAt, failures: 2 });

    publisher.failing = undefined;
    await idle(clock);
    await step(clock, 1000);
    await waitFor(() => publisher.sent.length === 1);
    expect(relay.health()).toEqual({ status: 'ok', lastContactAt: clock.now() });
  });

  it('a message refused for what it is (parked) is not the broker failing', async () => {
    const { db, publisher, relay } = await setup();
    publisher.refuse = (m) =>
      (m.payload as { n: number }).n === 1 ? new InvalidArgumentError('n', 'not 1') : undefined;
    await add(db, 1);
    const parked = relay.events.once('parked');
    await relay.start();
    await parked;
    await add(db, 2);
    await waitFor(() => publisher.sent.length === 1);
    expect(relay.health().status).toBe('ok');
  });

  it('names the database while its statements fail, and is ok again once one answers', async () => {
    const { clock, outage, relay } = await setup();
    await relay.start();
    await idle(clock);
    outage.down = true;
    await step(clock, pollIntervalMs);
    await waitFor(() => relay.health().status === 'failing');
    expect(relay.health()).toMatchObject({
      status: 'failing',
      dependency: 'database',
      during: 'claim',
      since: clock.now(),
      failures: 1,
    });
    expect(lastErrorOf(relay.health())).toMatchObject({ message: 'connection lost' });

    outage.down = false;
    // The relay backs off after a failed round: twice the poll interval.
    await idle(clock);
    await step(clock, 2 * pollIntervalMs);
    await waitFor(() => relay.health().status === 'ok');
    expect(relay.health()).toEqual({ status: 'ok', lastContactAt: clock.now() });
  });

  it('names the database when no statement has answered for pollIntervalMs + claimMs: one hangs', async () => {
    const { clock, outage, relay } = await setup();
    await relay.start();
    await idle(clock);
    const lastContactAt = clock.now();
    outage.hung = true;
    await step(clock, pollIntervalMs);
    // The claim waits for an answer; the record sees only the silence.
    await step(clock, claimMs);
    expect(relay.health()).toEqual({ status: 'ok', lastContactAt });
    await step(clock, 1);
    expect(relay.health()).toEqual({
      status: 'failing',
      dependency: 'database',
      during: undefined,
      since: lastContactAt + pollIntervalMs + claimMs,
      failures: 0,
      lastError: undefined,
      lastContactAt,
    });

    outage.answer();
    await waitFor(() => relay.health().status === 'ok');
  });

  it('names the broker while its breaker refuses publishes, also one isolated by hand with nothing failed', async () => {
    const { db, clock, publisher, relay } = await setup();
    await relay.start();
    await idle(clock);
    relay.breaker.isolate();
    await step(clock, pollIntervalMs);
    await idle(clock);
    expect(relay.health()).toMatchObject({
      status: 'failing',
      dependency: 'broker',
      during: 'publish',
    });
    expect(lastErrorOf(relay.health())).toMatchObject({ code: 'KEEL_CIRCUIT_ISOLATED' });
    expect(publisher.calls).toBe(0);

    // Back in service: ok at the next publish that succeeds.
    relay.breaker.reset();
    await add(db, 1);
    await idle(clock);
    await step(clock, pollIntervalMs);
    await waitFor(() => publisher.sent.length === 1);
    expect(relay.health().status).toBe('ok');
  });

  it('names the broker when a publish has not answered by the renewal limit, not the database', async () => {
    const { db, clock, publisher, relay } = await setup({ maxClaimRenewalMs: 4 * claimMs });
    publisher.held = true;
    await add(db, 1);
    await relay.start();
    await waitFor(() => publisher.calls === 1);
    // Its claim is renewed every claimMs / 3: the database answers meanwhile.
    for (let s = 1; s < 12; s++) await step(clock, claimMs / 3);
    expect(relay.health().status).toBe('ok');
    const lost = relay.events.once('claim-lost');
    await step(clock, claimMs / 3);
    expect(await lost).toMatchObject({ reason: 'renewal-limit' });
    expect(relay.health()).toMatchObject({
      status: 'failing',
      dependency: 'broker',
      during: 'publish',
      failures: 1,
    });
    expect(lastErrorOf(relay.health())).toMatchObject({ code: 'KEEL_TIMEOUT' });
    publisher.release();
    await waitFor(() => publisher.sent.length === 1);
  });
});
