// The WAL outbox relay's stop against a real PostgreSQL with wal_level=logical (a server of the
// file's own, from startPgServer): within the drain deadline the batch in flight finishes and is
// confirmed; past it, a publish that never answers is abandoned, the slot is let go for the next
// relay, which publishes that batch again, and the late answer changes nothing. The other WAL
// relay scenarios are in wal-outbox-relay.test.ts.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { until } from '../until.ts';
import type { Db } from '../../src/db/index.ts';
import { createEnvelope, type Envelope, type Publisher } from '../../src/messaging/index.ts';
import {
  startWalOutboxTestServer,
  type WalOutboxTestServer,
  type WalOutboxTestSlot,
} from '../../src/testing/wal-outbox-test-server.ts';
import { addToWalOutbox } from '../../src/outbox/wal-outbox.ts';
import { WalOutboxRelay } from '../../src/outbox/wal-outbox-relay.ts';
import { walOutboxStatus } from '../../src/outbox/wal-outbox-slot.ts';

let wal: WalOutboxTestServer;
let db: Db;

beforeAll(async () => {
  wal = await startWalOutboxTestServer();
  db = wal.db;
}, 60_000);

afterAll(async () => {
  await wal?.stop();
});

/**
 * Records what it is given; a call carrying `gated` answers only when the test calls `answer`
 * (resolving, or rejecting with the error given).
 */
class GatedPublisher implements Publisher {
  readonly received: Envelope[] = [];
  gatedCalls = 0;
  #answer: ((error?: Error) => void) | undefined;
  constructor(readonly gated: string) {}
  publish(_destination: string, messages: readonly Envelope[]): Promise<void> {
    if (!messages.some((m) => m.id === this.gated)) {
      this.received.push(...messages);
      return Promise.resolve();
    }
    this.gatedCalls++;
    return new Promise<void>((resolve, reject) => {
      this.#answer = (error) => {
        if (error !== undefined) return reject(error);
        this.received.push(...messages);
        resolve();
      };
    });
  }
  answer(error?: Error): void {
    this.#answer?.(error);
  }
}

function event(n: number): Envelope {
  return createEnvelope({ type: 'test.event.v1', key: 'k', payload: { n } });
}

const write = (names: WalOutboxTestSlot, messages: Envelope[]): Promise<unknown> =>
  db.transaction((tx) => addToWalOutbox(tx, 'orders', messages, { prefix: names.prefix }));

function relayFor(publisher: Publisher, names: WalOutboxTestSlot): WalOutboxRelay {
  const { slotName, publicationName, prefix } = names;
  return new WalOutboxRelay(db, publisher, {
    connectionString: wal.url,
    reconnectMs: 50,
    retryDelay: () => 20,
    slotName,
    publicationName,
    prefix,
  });
}

/** What the relay reported `published`, by id, and the drain deadlines it ran out of. */
function watch(relay: WalOutboxRelay): { published: string[]; drainTimeouts: number[] } {
  const published: string[] = [];
  const drainTimeouts: number[] = [];
  relay.events.on('published', ({ messages }) => published.push(...messages.map((m) => m.id)));
  relay.events.on('drain-timeout', ({ drainMs }) => drainTimeouts.push(drainMs));
  return { published, drainTimeouts };
}

async function confirmedPosition(names: WalOutboxTestSlot): Promise<string | null> {
  const { rows } = await db.query<{ confirmed: string | null }>(
    'SELECT confirmed_flush_lsn::text AS confirmed FROM pg_replication_slots WHERE slot_name = $1',
    [names.slotName],
  );
  return rows[0]?.confirmed ?? null;
}

/** The walsender may take a moment to let the slot go after its stream ended. */
const slotLetGo = (names: WalOutboxTestSlot): Promise<void> =>
  until(async () => !(await walOutboxStatus(db, names)).active, 15_000, 'the slot let go');

describe('WalOutboxRelay stop', () => {
  it.each([
    ['succeeds', undefined],
    ['fails', new Error('the broker answered at last')],
  ])(
    'past the drain deadline abandons a publish that never answers: the slot is let go, the batch comes again, and a late answer that %s changes nothing',
    async (_, lateError) => {
      const names = await wal.newSlot();
      const before = event(1);
      const hung = [event(2), event(3)];
      const publisher = new GatedPublisher(hung[0]!.id);
      const relay = relayFor(publisher, names);
      const { published, drainTimeouts } = watch(relay);
      await relay.start();
      await write(names, [before]);
      await until(() => published.length === 1, 15_000, 'the first batch published');
      await write(names, hung);
      await until(() => publisher.gatedCalls === 1, 15_000, 'the publish that hangs');

      await relay.stop({ drainMs: 200 });
      expect(drainTimeouts).toEqual([200]);
      expect(relay.state).toBe('stopped');
      await slotLetGo(names);
      const confirmed = await confirmedPosition(names);

      // The hung publish answers after the stop: nothing is confirmed, reported or published more.
      publisher.answer(lateError);
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect(published).toEqual([before.id]);
      expect(publisher.gatedCalls).toBe(1);
      expect(await confirmedPosition(names)).toBe(confirmed);

      // The next relay gets the abandoned batch again, and not what was confirmed before it.
      const next = new GatedPublisher('none');
      const second = relayFor(next, names);
      await second.start();
      try {
        await until(() => next.received.length >= 2, 15_000, 'the abandoned batch again');
      } finally {
        await second.stop();
      }
      expect(next.received.map((m) => m.id)).toEqual(hung.map((m) => m.id));
      await names.drop();
    },
  );

  it('within the drain deadline waits for the publish in flight, then confirms and reports it', async () => {
    const names = await wal.newSlot();
    const inFlight = event(1);
    const publisher = new GatedPublisher(inFlight.id);
    const relay = relayFor(publisher, names);
    const { published, drainTimeouts } = watch(relay);
    await relay.start();
    await write(names, [inFlight]);
    await until(() => publisher.gatedCalls === 1, 15_000, 'the publish in flight');

    let stopped = false;
    const stopping = relay.stop({ drainMs: 10_000 }).then(() => (stopped = true));
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(stopped).toBe(false);
    publisher.answer();
    await stopping;
    expect(drainTimeouts).toEqual([]);
    expect(published).toEqual([inFlight.id]);
    // The stream ended the way the protocol means it to, after the confirmation.
    await slotLetGo(names);

    // Confirmed: the next relay publishes only what came after.
    const after = event(2);
    const next = new GatedPublisher('none');
    const second = relayFor(next, names);
    await second.start();
    try {
      await write(names, [after]);
      await until(() => next.received.length >= 1, 15_000, 'the message written after');
    } finally {
      await second.stop();
    }
    expect(next.received.map((m) => m.id)).toEqual([after.id]);
    await names.drop();
  });
});
