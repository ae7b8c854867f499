// The WAL outbox relay's stop against a real PostgreSQL with wal_level=logical (a server of the
// file's own, from startPgServer): within the drain deadline the batch in flight finishes and is
// confirmed; past it, a publish that never answers is abandoned, the slot is let go for the next
// relay, which publishes that batch again, and the late answer changes nothing. stop() resolves
// once the server let the slot go (the relay is stopping until then), so a relay started right
// after takes it at its first try; with the database gone it resolves anyway, within
// slotReleaseMs. The other WAL relay scenarios are in wal-outbox-relay.test.ts.
import { describe, expect, it } from 'vitest';
import { until } from '../until.ts';
import type { WalOutboxRelay, WalOutboxRelayEvents } from '../../src/outbox/index.ts';
import { flakyDb, startWalOutboxTestServer, type WalOutboxTestSlot } from '../../src/testing/index.ts';
import { testEvent, TestPublisher, walOutboxTestServer } from './wal-outbox-kit.ts';

const wal = walOutboxTestServer();

/** Holds each publish carrying `id` until the test calls `answer` (resolving, or failing with the error given). */
function holdOn(publisher: TestPublisher, id: string): { calls: number; answer: (error?: Error) => void } {
  const gate = { calls: 0, answer: (_error?: Error): void => undefined };
  publisher.hold = (messages) => {
    if (!messages.some((m) => m.id === id)) return undefined;
    gate.calls++;
    return new Promise<void>((resolve, reject) => {
      gate.answer = (error) => (error === undefined ? resolve() : reject(error));
    });
  };
  return gate;
}

const relayFor = (publisher: TestPublisher, names: WalOutboxTestSlot): WalOutboxRelay =>
  names.relay(publisher, { retryDelay: () => 20 });

/** What the relay reported `published`, by id, and the drain deadlines it ran out of. */
function watch(relay: WalOutboxRelay): { published: string[]; drainTimeouts: number[] } {
  const published: string[] = [];
  const drainTimeouts: number[] = [];
  relay.events.on('published', ({ messages }) => published.push(...messages.map((m) => m.id)));
  relay.events.on('drain-timeout', ({ drainMs }) => drainTimeouts.push(drainMs));
  return { published, drainTimeouts };
}

async function confirmedPosition(names: WalOutboxTestSlot): Promise<string | null> {
  const { rows } = await wal.db.query<{ confirmed: string | null }>(
    'SELECT confirmed_flush_lsn::text AS confirmed FROM pg_replication_slots WHERE slot_name = $1',
    [names.slotName],
  );
  return rows[0]?.confirmed ?? null;
}

/** How the relay's first try at the slot went: it streamed, stood by, or failed. */
function firstTry(relay: WalOutboxRelay): Promise<'streaming' | 'standby' | 'error'> {
  return Promise.race([
    relay.events.once('streaming').then(() => 'streaming' as const),
    relay.events.once('standby').then(() => 'standby' as const),
    relay.events.once('error', { filter: ({ during }) => during === 'stream' }).then(() => 'error' as const),
  ]);
}

/** Each `slot-release` the relay emits. */
function releases(relay: WalOutboxRelay): WalOutboxRelayEvents['slot-release'][] {
  const seen: WalOutboxRelayEvents['slot-release'][] = [];
  relay.events.on('slot-release', (release) => seen.push(release));
  return seen;
}

/** The relay's state at each `slot-release`: its stop has not resolved, so it is still stopping. */
function statesAtRelease(relay: WalOutboxRelay): string[] {
  const states: string[] = [];
  relay.events.on('slot-release', () => states.push(relay.state));
  return states;
}

/**
 * How a relay's stream ends before its stop: a stop while idle; while the server sends a backlog;
 * past the drain deadline, a publish hanging; right after the server ended the stream (its
 * walsender on its way out); right after the relay closed its stream at a newer keel's record.
 */
type Ending = 'idle' | 'sending' | 'abandoned' | 'terminated' | 'halted';

/**
 * Runs a relay on `names` for each ending in turn, each started at once after the last one's stop
 * resolved; says for each how its first try at the slot went (after the last one's stop), whether
 * the slot was let go when its own stop resolved, and how its `slot-release` ended.
 */
async function stopThenStart(names: WalOutboxTestSlot, endings: readonly Ending[]): Promise<string[]> {
  const rounds: string[] = [];
  for (const ending of endings) {
    const publisher = new TestPublisher();
    if (ending === 'abandoned') publisher.hold = () => new Promise<void>(() => undefined);
    const relay = relayFor(publisher, names);
    relay.events.on('error', () => undefined);
    const released = releases(relay);
    const first = firstTry(relay);
    const halted =
      ending === 'halted'
        ? relay.events.once('error', { filter: ({ during }) => during === 'decode' })
        : undefined;
    await relay.start();
    const tried = await first;
    if (ending === 'sending') {
      const writes = Array.from({ length: 20 }, (_, t) =>
        names.write(
          'orders',
          Array.from({ length: 10 }, (_, i) => testEvent(t * 10 + i)),
        ),
      );
      await until(() => publisher.calls > 0, 15_000, 'the backlog arriving');
      await Promise.all(writes);
    } else if (ending === 'abandoned') {
      await names.write('orders', testEvent(1));
      await until(() => publisher.calls > 0, 15_000, 'the publish that hangs');
    } else if (ending === 'terminated') {
      await wal.db.query(
        'SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = $1 AND active',
        [names.slotName],
      );
    }
    await halted;
    await relay.stop({ drainMs: ending === 'abandoned' ? 100 : 10_000 });
    const { active } = await names.status();
    rounds.push(`${tried}, ${active ? 'still held' : 'let go'}, ${released.map((r) => r.outcome).join()}`);
  }
  return rounds;
}

/** How long `fn` took, in real milliseconds. */
async function timed(fn: () => Promise<unknown>): Promise<number> {
  const started = performance.now();
  await fn();
  return performance.now() - started;
}

describe('WalOutboxRelay stop', () => {
  it.each([
    ['succeeds', undefined],
    ['fails', new Error('the broker answered at last')],
  ])(
    'past the drain deadline abandons a publish that never answers: the slot is let go, the batch comes again, and a late answer that %s changes nothing',
    async (_, lateError) => {
      const names = await wal.newSlot();
      const before = testEvent(1);
      const hung = [testEvent(2), testEvent(3)];
      const publisher = new TestPublisher();
      const gate = holdOn(publisher, hung[0]!.id);
      const relay = relayFor(publisher, names);
      const { published, drainTimeouts } = watch(relay);
      const atRelease = statesAtRelease(relay);
      await relay.start();
      await names.write('orders', [before]);
      await until(() => published.length === 1, 15_000, 'the first batch published');
      await names.write('orders', hung);
      await until(() => gate.calls === 1, 15_000, 'the publish that hangs');

      await relay.stop({ drainMs: 200 });
      expect(drainTimeouts).toEqual([200]);
      expect(relay.state).toBe('stopped');
      // stop() resolved once the server let the slot go, past the drain deadline too: it waited
      // for that stopping, not stopped.
      expect(atRelease).toEqual(['stopping']);
      expect(await names.status()).toMatchObject({ active: false });
      const confirmed = await confirmedPosition(names);

      // The hung publish answers after the stop: nothing is confirmed, reported or published more.
      gate.answer(lateError);
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect(published).toEqual([before.id]);
      expect(gate.calls).toBe(1);
      expect(await confirmedPosition(names)).toBe(confirmed);

      // The next relay gets the abandoned batch again, and not what was confirmed before it.
      const next = new TestPublisher();
      const second = relayFor(next, names);
      await second.start();
      try {
        await until(() => next.received.length >= 2, 15_000, 'the abandoned batch again');
      } finally {
        await second.stop();
      }
      expect(next.ids()).toEqual(hung.map((m) => m.id));
      await names.drop();
    },
  );

  it('within the drain deadline waits for the publish in flight, then confirms and reports it', async () => {
    const names = await wal.newSlot();
    const inFlight = testEvent(1);
    const publisher = new TestPublisher();
    const gate = holdOn(publisher, inFlight.id);
    const relay = relayFor(publisher, names);
    const { published, drainTimeouts } = watch(relay);
    await relay.start();
    await names.write('orders', [inFlight]);
    await until(() => gate.calls === 1, 15_000, 'the publish in flight');

    let stopped = false;
    const stopping = relay.stop({ drainMs: 10_000 }).then(() => (stopped = true));
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(stopped).toBe(false);
    gate.answer();
    await stopping;
    expect(drainTimeouts).toEqual([]);
    expect(published).toEqual([inFlight.id]);
    // The stream ended the way the protocol means it to, after the confirmation, and stop()
    // resolved once the server let the slot go.
    expect(await names.status()).toMatchObject({ active: false });

    // Confirmed: the next relay publishes only what came after.
    const after = testEvent(2);
    const next = new TestPublisher();
    const second = relayFor(next, names);
    await second.start();
    try {
      await names.write('orders', [after]);
      await until(() => next.received.length >= 1, 15_000, 'the message written after');
    } finally {
      await second.stop();
    }
    expect(next.ids()).toEqual([after.id]);
    await names.drop();
  });

  it('a relay started right after a stop takes the slot at its first try, however the stream ended', async () => {
    const names = await wal.newSlot();
    const endings = ['idle', 'sending', 'abandoned', 'terminated'] as const;
    const rounds = await stopThenStart(names, [...endings, ...endings, ...endings, 'idle']);
    expect(rounds.filter((round) => round !== 'streaming, let go, released')).toEqual([]);
    await names.drop();
  }, 60_000);

  it("a relay that closed its stream itself (at a newer keel's record) has let the slot go when stop() resolves", async () => {
    const names = await wal.newSlot();
    // The relay goes no further than this record: it closes its stream there, every time.
    await wal.db.query('SELECT pg_logical_emit_message(true, $1, $2::text)', [
      names.prefix,
      JSON.stringify({ v: 2, destination: 'orders', messages: [] }),
    ]);
    const rounds = await stopThenStart(
      names,
      Array.from({ length: 20 }, () => 'halted' as const),
    );
    expect(rounds.filter((round) => round !== 'streaming, let go, released')).toEqual([]);
    await names.drop();
  }, 60_000);

  it('a standby, which never held the slot, waits for nothing', async () => {
    const names = await wal.newSlot();
    const active = relayFor(new TestPublisher(), names);
    const standby = relayFor(new TestPublisher(), names);
    const streaming = active.events.once('streaming');
    await active.start();
    await streaming;
    const standingBy = standby.events.once('standby');
    await standby.start();
    await standingBy;
    const seen = releases(standby);
    await standby.stop();
    expect(seen).toEqual([]);
    const activeSeen = releases(active);
    await active.stop();
    expect(activeSeen).toMatchObject([{ slotName: names.slotName, outcome: 'released' }]);
    await names.drop();
  });

  it('with the database hanging, resolves at slotReleaseMs, saying it timed out', async () => {
    const flaky = flakyDb(wal.db);
    // The slot's relay reads the slot over the Db it was created on.
    const names = await wal.newSlot(flaky.db);
    const onFlaky = names.relay(new TestPublisher(), { slotReleaseMs: 500 });
    const streaming = onFlaky.events.once('streaming');
    await onFlaky.start();
    await streaming;
    const seen = releases(onFlaky);
    const atRelease = statesAtRelease(onFlaky);
    flaky.hang();
    try {
      const took = await timed(async () => {
        const stopping = onFlaky.stop();
        // Midway through the wait for the slot: the drain is over, the stop is not.
        await new Promise((resolve) => setTimeout(resolve, 200));
        expect(onFlaky.state).toBe('stopping');
        await stopping;
      });
      expect(took).toBeGreaterThanOrEqual(450);
      expect(took).toBeLessThan(3000);
      expect(atRelease).toEqual(['stopping']);
      expect(onFlaky.state).toBe('stopped');
      expect(seen).toMatchObject([{ outcome: 'timed-out' }]);
      expect(seen[0]!.waitedMs).toBeGreaterThanOrEqual(500);
    } finally {
      flaky.restore();
    }
    await names.drop();
  });

  it('with the database gone, resolves at once, saying the server could not be asked', async () => {
    const own = await startWalOutboxTestServer();
    try {
      const names = await own.newSlot();
      const relay = names.relay(new TestPublisher(), { slotReleaseMs: 10_000 });
      relay.events.on('error', () => undefined);
      const streaming = relay.events.once('streaming');
      await relay.start();
      await streaming;
      const seen = releases(relay);
      await own.server.stop();
      const took = await timed(() => relay.stop());
      expect(took).toBeLessThan(5000);
      expect(seen).toMatchObject([{ slotName: names.slotName, outcome: 'unreachable' }]);
      expect(seen[0]!.error).toBeDefined();
    } finally {
      await own.stop();
    }
  }, 60_000);
});
