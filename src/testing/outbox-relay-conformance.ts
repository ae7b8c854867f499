// The one suite both outbox relays pass — the table outbox (`addToOutbox` + `OutboxRelay`) and
// the WAL outbox (`addToWalOutbox` + `WalOutboxRelay`) — on what docs/outbox.md promises for
// both: every committed message published at least once, nothing of a rolled-back transaction,
// one key's messages in commit order, a clean stop and restart that loses nothing, a refused
// message parked while the rest flows, an outage waited out behind the breaker, and `published`
// listing only what the broker accepted. Real time with short waits; each test has an outbox of
// its own (a schema, and for the WAL a slot and prefix) and destinations of its own.
import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import type { Db } from '../db/index.ts';
import { InvalidArgumentError } from '../errors/index.ts';
import { createEnvelope, PublishError, type Envelope, type Publisher } from '../messaging/index.ts';
import type { OutboxWriter } from '../outbox/index.ts';
import { CircuitBreakerPolicy } from '../resilience/index.ts';
import type { ListenerHandle, Service } from '../service/index.ts';
import { sleep } from '../time/index.ts';

/** The options the suite sets; each harness maps them onto its relay's own. */
export interface OutboxRelayConformanceOptions {
  batchSize?: number;
  breaker?: CircuitBreakerPolicy;
  maxAttempts?: number;
  retryDelay?: (attempt: number) => number;
}

/** The events both relays emit, with the same payloads. */
export interface OutboxRelayConformanceEvents {
  published: { destination: string; messages: readonly Envelope[] };
  'publish-failed': { destination: string; messages: readonly Envelope[]; error: unknown; charged: boolean };
  parked: { message: Envelope; error: unknown };
  /** The stop's deadline passed with work still running. */
  'drain-timeout': { drainMs: number };
}

/** A relay as the suite sees it: a service, and the events both relays emit. */
export interface ConformanceRelay extends Service {
  readonly events: {
    on<K extends keyof OutboxRelayConformanceEvents>(
      name: K,
      listener: (payload: OutboxRelayConformanceEvents[K]) => void,
    ): ListenerHandle;
  };
}

/** One test's outbox, isolated from every other test's. */
export interface OutboxRelayTarget {
  /** Migrated with `outboxMigrations`; parked messages are rows of its `keel_outbox`. */
  db: Db;
  /** Writes messages in the caller's transaction, for this target's relays. */
  add: OutboxWriter;
  /** A relay, not started, reading what `add` wrote; several in turn read the same outbox. */
  relay(publisher: Publisher, options: OutboxRelayConformanceOptions): ConformanceRelay;
  /** After the test's relays stopped: drops what `open` made. */
  cleanup(): Promise<void>;
}

export interface OutboxRelayHarness {
  /**
   * What a consumer observes of order: `per-key` (one key's messages in commit order, keys
   * interleaved) or `total` (every message in commit order).
   */
  ordering: 'per-key' | 'total';
  /**
   * What happens to the later messages of a parked message's key: `held` (they wait until an
   * operator retries or deletes the parked row) or `flow` (they are published).
   */
  keyAfterParking: 'held' | 'flow';
  open(): Promise<OutboxRelayTarget>;
  /** Longest a scenario waits for messages. Default 15 000 ms. */
  waitMs?: number;
}

/** Fails with `what` when `condition` does not hold within `timeoutMs`; polls every 20 ms. */
async function until(
  condition: () => boolean | Promise<boolean>,
  what: string,
  timeoutMs = 15_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(20);
  }
}

/** Stands in for a broker: records what it accepts; `down` and `refuse` make it throw instead. */
class RecordingPublisher implements Publisher {
  readonly accepted: { destination: string; message: Envelope }[] = [];
  readonly calls: { destination: string; ids: string[] }[] = [];
  down = false;
  refuse: (message: Envelope) => Error | undefined = () => undefined;

  async publish(destination: string, messages: readonly Envelope[]): Promise<void> {
    this.calls.push({ destination, ids: messages.map((m) => m.id) });
    if (this.down) throw new Error('broker down');
    for (const message of messages) {
      const refused = this.refuse(message);
      if (refused !== undefined) throw refused;
    }
    for (const message of messages) this.accepted.push({ destination, message });
  }

  has(id: string): boolean {
    return this.accepted.some((a) => a.message.id === id);
  }
}

/** What every relay of one test reported. */
interface Reports {
  published: { destination: string; message: Envelope }[];
  failed: OutboxRelayConformanceEvents['publish-failed'][];
  parked: Envelope[];
}

const event = (key: string | null, n: number): Envelope =>
  createEnvelope({
    type: 'conformance.happened.v1',
    key,
    payload: { n },
    headers: { 'correlation-id': `c${n}` },
  });

const ids = (messages: readonly { message: Envelope }[] | readonly Envelope[]): string[] =>
  messages.map((m) => ('message' in m ? m.message.id : m.id));

/** First deliveries only: at-least-once may repeat a message, order is judged on the first. */
function firstDeliveries(accepted: readonly { message: Envelope }[]): Envelope[] {
  const seen = new Set<string>();
  const first: Envelope[] = [];
  for (const { message } of accepted) {
    if (seen.has(message.id)) continue;
    seen.add(message.id);
    first.push(message);
  }
  return first;
}

/** Opens after two failures in a row and probes again 100 ms later: an outage, quickly. */
const outageBreaker = (): CircuitBreakerPolicy =>
  new CircuitBreakerPolicy({ threshold: { kind: 'consecutive', failures: 2 }, openMs: 100 });

/** Each key's first deliveries came in the order `all` lists its messages. */
function expectKeysInOrder(
  publisher: RecordingPublisher,
  all: readonly Envelope[],
  keys: readonly string[],
): void {
  const received = firstDeliveries(publisher.accepted);
  for (const key of keys) {
    expect(ids(received.filter((m) => m.key === key)), `key ${key}`).toEqual(
      ids(all.filter((m) => m.key === key)),
    );
  }
}

const byDestinationAndId = (list: readonly { destination: string; message: Envelope }[]): string[] =>
  list.map((a) => `${a.destination}:${a.message.id}`).sort();

export function describeOutboxRelayConformance(name: string, harness: OutboxRelayHarness): void {
  const waitMs = harness.waitMs ?? 15_000;

  describe(`outbox relay conformance: ${name}`, () => {
    const open: { target: OutboxRelayTarget; relays: ConformanceRelay[] }[] = [];
    afterEach(async () => {
      for (const { target, relays } of open.splice(0)) {
        for (const relay of relays) await relay.stop({ drainMs: 2000 });
        await target.cleanup();
      }
    });

    async function setup(): Promise<{
      target: OutboxRelayTarget;
      publisher: RecordingPublisher;
      reports: Reports;
      /** A started relay; the suite stops it after the test. Retries wait 20 ms unless told. */
      start: (options?: OutboxRelayConformanceOptions) => Promise<ConformanceRelay>;
      destination: () => string;
      commit: (destination: string, messages: Envelope[]) => Promise<void>;
      waitFor: (what: string, condition: () => boolean | Promise<boolean>) => Promise<void>;
    }> {
      const target = await harness.open();
      const entry = { target, relays: [] as ConformanceRelay[] };
      open.push(entry);
      const publisher = new RecordingPublisher();
      const reports: Reports = { published: [], failed: [], parked: [] };
      const start = async (options: OutboxRelayConformanceOptions = {}): Promise<ConformanceRelay> => {
        const relay = target.relay(publisher, { retryDelay: () => 20, ...options });
        entry.relays.push(relay);
        relay.events.on('published', ({ destination, messages }) => {
          for (const message of messages) reports.published.push({ destination, message });
        });
        relay.events.on('publish-failed', (failure) => reports.failed.push(failure));
        relay.events.on('parked', ({ message }) => reports.parked.push(message));
        await relay.start();
        return relay;
      };
      return {
        target,
        publisher,
        reports,
        start,
        destination: () => `conf_${randomBytes(5).toString('hex')}`,
        commit: (destination, messages) =>
          target.db.transaction((tx) => target.add(tx, destination, messages)),
        waitFor: (what, condition) => until(condition, what, waitMs),
      };
    }

    /** `published` has reported exactly what the broker accepted, each to its destination. */
    async function expectPublishedIsAccepted(
      publisher: RecordingPublisher,
      reports: Reports,
      waitFor: (what: string, condition: () => boolean) => Promise<void>,
    ): Promise<void> {
      await waitFor(
        'published events for every accepted message',
        () => reports.published.length >= publisher.accepted.length,
      );
      expect(byDestinationAndId(reports.published)).toEqual(byDestinationAndId(publisher.accepted));
    }

    async function parkedRows(
      db: Db,
      destination: string,
    ): Promise<{ id: string; last_error: string | null }[]> {
      const { rows } = await db.query<{ id: string; last_error: string | null }>(
        `SELECT id::text AS id, last_error FROM keel_outbox
         WHERE destination = $1 AND parked_at IS NOT NULL ORDER BY id`,
        [destination],
      );
      return rows;
    }

    it('publishes every committed message, as written, to its destination, and nothing of a rolled-back transaction', async () => {
      const { target, publisher, reports, start, destination, commit, waitFor } = await setup();
      const orders = destination();
      const payments = destination();
      const rolledBack: Envelope[] = [];
      const rollBack = async (to: string, message: Envelope): Promise<void> => {
        rolledBack.push(message);
        await expect(
          target.db.transaction(async (tx) => {
            await target.add(tx, to, message);
            throw new Error('roll back');
          }),
        ).rejects.toThrow('roll back');
      };
      const expected: { destination: string; message: Envelope }[] = [];
      const committed = async (to: string, messages: Envelope[]): Promise<void> => {
        await commit(to, messages);
        for (const message of messages) expected.push({ destination: to, message });
      };

      // Written before the relay runs, and while it runs; two destinations in one transaction.
      await committed(orders, [event('a', 1), event('a', 2)]);
      await rollBack(orders, event('a', 3));
      await start();
      await target.db.transaction(async (tx) => {
        const [first, second] = [event('b', 4), event(null, 5)];
        await target.add(tx, orders, first);
        await target.add(tx, payments, second);
        expected.push({ destination: orders, message: first }, { destination: payments, message: second });
      });
      await rollBack(payments, event('b', 6));
      await committed(payments, [event('c', 7)]);

      await waitFor('every committed message', () => expected.every((e) => publisher.has(e.message.id)));
      // What a rolled-back transaction wrote would have come by now: it came before what committed after it.
      await sleep(300);
      expect(byDestinationAndId(publisher.accepted)).toEqual(byDestinationAndId(expected));
      for (const { message } of expected) {
        expect(publisher.accepted.find((a) => a.message.id === message.id)?.message).toEqual(message);
      }
      expect(ids(publisher.accepted)).not.toContain(rolledBack[0]!.id);
      expect(ids(publisher.accepted)).not.toContain(rolledBack[1]!.id);
      await expectPublishedIsAccepted(publisher, reports, waitFor);
    });

    it(`messages of one key arrive in the order their transactions committed${
      harness.ordering === 'total' ? ', and every message in commit order' : ''
    }`, async () => {
      const { target, publisher, start, destination, commit, waitFor } = await setup();
      const to = destination();
      await start({ batchSize: 5 });
      /** In commit order: each transaction here commits before the next begins, or as noted. */
      const sequential: Envelope[] = [];
      for (let i = 0; i < 12; i++) {
        const message = event(`k${i % 3}`, i);
        await commit(to, [message]);
        sequential.push(message);
      }
      const several = [event('k0', 12), event('k2', 13), event('k1', 14)];
      await commit(to, several);
      sequential.push(...several);

      // Begun first, committed last where the backend lets it: A writes and holds its transaction
      // open; B writes the same key, sleeps 50 ms in the server and commits. B cannot commit before
      // A where a key lock or a single connection makes it wait, and does 150 ms before A otherwise.
      const early = event('late', 15);
      const late = event('late', 16);
      let added!: () => void;
      const aWrote = new Promise<void>((resolve) => (added = resolve));
      const commitOrder: Envelope[] = [];
      const a = target.db
        .transaction(async (tx) => {
          await target.add(tx, to, early);
          await tx.query('SELECT 1');
          added();
          await sleep(200);
        })
        .then(() => commitOrder.push(early));
      await aWrote;
      const b = target.db
        .transaction(async (tx) => {
          await target.add(tx, to, late);
          await tx.query('SELECT pg_sleep(0.05)');
        })
        .then(() => commitOrder.push(late));
      await Promise.all([a, b]);
      sequential.push(...commitOrder);

      // Writers in parallel, each key's transactions one after the other.
      const parallel = new Map<string, Envelope[]>();
      await Promise.all(
        ['p0', 'p1', 'p2', 'k0'].map(async (key) => {
          const written: Envelope[] = [];
          parallel.set(key, written);
          for (let i = 0; i < 15; i++) {
            const message = event(key, 100 + i);
            await commit(to, [message]);
            written.push(message);
          }
        }),
      );

      // Per key, this is commit order: the parallel writers began after the sequential part.
      const all = [...sequential, ...[...parallel.values()].flat()];
      await waitFor(`all ${all.length} messages`, () => all.every((m) => publisher.has(m.id)));
      const received = firstDeliveries(publisher.accepted);
      for (const key of new Set(all.map((m) => m.key))) {
        expect(ids(received.filter((m) => m.key === key)), `key ${key}`).toEqual(
          ids(all.filter((m) => m.key === key)),
        );
      }
      if (harness.ordering === 'total') {
        // The sequential part committed before any parallel writer began.
        expect(ids(received.slice(0, sequential.length))).toEqual(ids(sequential));
      }
    });

    it('a clean stop and a restart lose nothing and repeat nothing, also what commits while no relay runs', async () => {
      const { publisher, reports, start, destination, commit, waitFor } = await setup();
      const to = destination();
      const batchSize = 3;
      let relay = await start({ batchSize });
      const written: Envelope[] = [];
      const writers = ['w0', 'w1', 'w2'].map(async (key) => {
        for (let i = 0; i < 20; i++) {
          const message = event(key, i);
          await commit(to, [message]);
          written.push(message);
        }
      });
      await waitFor('15 messages before the stop', () => publisher.accepted.length >= 15);
      await relay.stop();
      await Promise.all(writers);
      for (let i = 0; i < 5; i++) {
        const message = event('idle', i);
        await commit(to, [message]);
        written.push(message);
      }
      relay = await start({ batchSize });
      await waitFor(`all ${written.length} messages after the restart`, () =>
        written.every((m) => publisher.has(m.id)),
      );
      await relay.stop();

      expect(new Set(ids(publisher.accepted))).toEqual(new Set(ids(written)));
      // A clean stop finishes and records what it published: the next relay repeats none of it.
      expect(publisher.accepted.length).toBe(written.length);
      for (const key of ['w0', 'w1', 'w2', 'idle']) {
        const ns = publisher.accepted
          .filter((a) => a.message.key === key)
          .map((a) => (a.message.payload as { n: number }).n);
        expect(ns, `key ${key}`).toEqual(Array.from({ length: key === 'idle' ? 5 : 20 }, (_, i) => i));
      }
      for (const call of publisher.calls) expect(call.ids.length).toBeLessThanOrEqual(batchSize);
      await expectPublishedIsAccepted(publisher, reports, waitFor);
    });

    it('a stop right after the start ends at once, and the next relay publishes everything once', async () => {
      const { publisher, start, destination, commit, waitFor } = await setup();
      const to = destination();
      const timedOut: number[] = [];
      const first = await start();
      first.events.on('drain-timeout', ({ drainMs }) => timedOut.push(drainMs));
      await first.stop({ drainMs: 5000 });
      // A stop that waited out its deadline left something running, holding what the next needs.
      expect(timedOut).toEqual([]);
      const written = [event('k', 0), event('k', 1), event('other', 2)];
      await commit(to, written);
      const second = await start();
      second.events.on('drain-timeout', ({ drainMs }) => timedOut.push(drainMs));
      await waitFor('every message from the next relay', () => written.every((m) => publisher.has(m.id)));
      await second.stop({ drainMs: 5000 });
      expect(ids(publisher.accepted)).toEqual(ids(written));
      expect(timedOut).toEqual([]);
    });

    it(`a message the broker refuses permanently is parked and the rest flows (later messages of its key ${
      harness.keyAfterParking === 'held' ? 'are held' : 'too'
    })`, async () => {
      const { target, publisher, reports, start, destination, commit, waitFor } = await setup();
      const to = destination();
      const refused = event('a', 2);
      const refusedInside = event('c', 7);
      // One refused outright, one inside the PublishError a broker adapter throws.
      const refusals = new Map<string, Error>([
        [refused.id, new InvalidArgumentError('payload.n', 'an odd number', 2)],
        [
          refusedInside.id,
          new PublishError(to, [refusedInside.id], new InvalidArgumentError('n', 'less', 7)),
        ],
      ]);
      publisher.refuse = (message) => refusals.get(message.id);
      const sameKeyAfter = event('a', 3);
      const flowing = [event('a', 1), event('b', 4), event(null, 5), event('b', 8)];
      await start();
      await commit(to, [flowing[0]!, refused, sameKeyAfter, flowing[1]!, flowing[2]!]);
      await commit(to, [refusedInside, flowing[3]!]);

      await waitFor('both refused messages parked', () => reports.parked.length >= 2);
      await waitFor('the other messages', () => flowing.every((m) => publisher.has(m.id)));
      if (harness.keyAfterParking === 'flow') {
        await waitFor('the later message of the parked key', () => publisher.has(sameKeyAfter.id));
      } else {
        await sleep(300);
        expect(publisher.has(sameKeyAfter.id)).toBe(false);
      }
      expect(new Set(ids(reports.parked))).toEqual(new Set([refused.id, refusedInside.id]));
      const rows = await parkedRows(target.db, to);
      expect(rows.map((r) => r.id).sort()).toEqual([refused.id, refusedInside.id].sort());
      for (const row of rows) expect(row.last_error).toContain(refusals.get(row.id)!.message);
      expect(publisher.has(refused.id) || publisher.has(refusedInside.id)).toBe(false);
      const ofB = firstDeliveries(publisher.accepted).filter((m) => m.key === 'b');
      expect(ids(ofB)).toEqual(ids([flowing[1]!, flowing[3]!]));
      await expectPublishedIsAccepted(publisher, reports, waitFor);
    });

    it('a message that keeps failing while the broker is healthy is parked after maxAttempts, and the rest flows', async () => {
      const { target, publisher, reports, start, destination, commit, waitFor } = await setup();
      const to = destination();
      const failing = event('f', 2);
      publisher.refuse = (message) => (message.id === failing.id ? new Error('try again later') : undefined);
      const others = [event(null, 1), event('g', 3), event('g', 4)];
      const maxAttempts = 2;
      await start({ maxAttempts });
      await commit(to, [others[0]!, failing, others[1]!]);
      await commit(to, [others[2]!]);

      await waitFor('the failing message parked', () => reports.parked.length >= 1);
      await waitFor('the other messages', () => others.every((m) => publisher.has(m.id)));
      expect(ids(reports.parked)).toEqual([failing.id]);
      const tries = publisher.calls.filter((c) => c.ids.includes(failing.id)).length;
      expect(tries).toBeGreaterThanOrEqual(maxAttempts);
      const rows = await parkedRows(target.db, to);
      expect(rows.map((r) => r.id)).toEqual([failing.id]);
      expect(rows[0]!.last_error).toContain('try again later');
      expect(publisher.has(failing.id)).toBe(false);
      await expectPublishedIsAccepted(publisher, reports, waitFor);
    });

    it('a broker outage waits behind the breaker: nothing parked, everything delivered after, in order', async () => {
      const { target, publisher, reports, start, destination, commit, waitFor } = await setup();
      const to = destination();
      publisher.down = true;
      const breaker = outageBreaker();
      await start({ breaker, maxAttempts: 3 });
      const first = [event('k', 1), event('k', 2), event('j', 3)];
      const second = [event('k', 4), event(null, 5), event('j', 6)];
      await commit(to, first);
      await commit(to, second);

      // Far more calls than maxAttempts: only failures while the breaker was closed count.
      await waitFor(
        'the relay to probe the broker through the breaker',
        () => publisher.calls.length >= 8 && reports.failed.some((f) => !f.charged),
      );
      expect(reports.published).toEqual([]);
      publisher.down = false;
      const all = [...first, ...second];
      await waitFor('every message after the outage', () => all.every((m) => publisher.has(m.id)));

      expect(reports.parked).toEqual([]);
      expect(await parkedRows(target.db, to)).toEqual([]);
      expectKeysInOrder(publisher, all, ['k', 'j']);
      await expectPublishedIsAccepted(publisher, reports, waitFor);
    });

    it('a stop during a broker outage ends at once; the next relay delivers everything, in order', async () => {
      const { target, publisher, reports, start, destination, commit, waitFor } = await setup();
      const to = destination();
      publisher.down = true;
      const breaker = outageBreaker();
      const first = await start({ breaker, maxAttempts: 3 });
      const timedOut: number[] = [];
      first.events.on('drain-timeout', ({ drainMs }) => timedOut.push(drainMs));
      const all = [event('k', 1), event('k', 2), event('j', 3), event('k', 4)];
      await commit(to, all.slice(0, 2));
      await commit(to, all.slice(2));
      await waitFor('the relay to try the broker through the breaker', () => publisher.calls.length >= 4);
      await first.stop({ drainMs: 5000 });
      // Retrying behind the breaker is no work in flight: the stop does not wait for the broker.
      expect(timedOut).toEqual([]);
      publisher.down = false;
      await start();
      await waitFor('every message from the next relay', () => all.every((m) => publisher.has(m.id)));
      expect(reports.parked).toEqual([]);
      expect(await parkedRows(target.db, to)).toEqual([]);
      expectKeysInOrder(publisher, all, ['k', 'j']);
    });
  });
}
