// The WAL outbox against a real PostgreSQL 15 with wal_level=logical (a server of the test's own,
// from startPgServer): messages written with pg_logical_emit_message in the caller's transaction
// reach the publisher in commit order, a rollback writes nothing, a restart loses nothing, a
// poison message is parked in the table outbox, a broker outage parks nothing, and a second
// relay stands by while the first streams.
import { describe, expect, it } from 'vitest';
import { openPgDb } from '../../src/db/index.ts';
import { InvalidArgumentError, type KeelError } from '../../src/errors/index.ts';
import type { Publisher } from '../../src/messaging/index.ts';
import {
  addToWalOutbox,
  ensureWalOutboxSlot,
  OutboxRelay,
  outboxStatus,
  retryParked,
  type WalOutboxRelay,
  type WalOutboxRelayOptions,
} from '../../src/outbox/index.ts';
import { CircuitBreakerPolicy } from '../../src/resilience/index.ts';
import { startPgServer, type WalOutboxTestSlot } from '../../src/testing/index.ts';
import { until } from '../until.ts';
import { eventNumber, testEvent, TestPublisher, walOutboxTestServer } from './wal-outbox-kit.ts';

const wal = walOutboxTestServer();

const relayFor = (
  publisher: Publisher,
  names: WalOutboxTestSlot,
  options: Partial<WalOutboxRelayOptions> = {},
): WalOutboxRelay => names.relay(publisher, { retryDelay: () => 20, ...options });

/** Four writers, each committing its key's 100 messages one transaction at a time. */
function writeUnderLoad(names: WalOutboxTestSlot): { written: string[]; writers: Promise<unknown> } {
  const written: string[] = [];
  const writers = Array.from({ length: 4 }, async (_, w) => {
    for (let i = 0; i < 100; i++) {
      const m = testEvent(i, `key-${w}`);
      await names.write('orders', m);
      written.push(m.id);
    }
  });
  return { written, writers: Promise.all(writers) };
}

/** What `writeUnderLoad` wrote arrived once each, every key's messages in the order written. */
function expectEachKeyInOrder(publisher: TestPublisher): void {
  for (let w = 0; w < 4; w++) {
    const ns = publisher.received
      .filter((r) => r.message.key === `key-${w}`)
      .map((r) => eventNumber(r.message));
    expect(ns, `key-${w}`).toEqual(Array.from({ length: 100 }, (_, i) => i));
  }
}

describe('WalOutboxRelay', () => {
  it('publishes committed messages in commit order and nothing of a rolled-back transaction', async () => {
    const names = await wal.newSlot();
    const publisher = new TestPublisher();
    const relay = relayFor(publisher, names);
    await relay.start();
    try {
      const committed: string[] = [];
      // Interleaved transactions: B commits before A, so B's messages come first.
      const txA = wal.db.transaction(async (tx) => {
        const m = testEvent(1);
        await addToWalOutbox(tx, 'orders', m, { prefix: names.prefix });
        await new Promise((resolve) => setTimeout(resolve, 100));
        committed.push(m.id);
      });
      await new Promise((resolve) => setTimeout(resolve, 20));
      await wal.db
        .transaction(async (tx) => {
          const ms = [testEvent(2), testEvent(3, 'other')];
          await addToWalOutbox(tx, 'orders', ms, { prefix: names.prefix });
          await addToWalOutbox(tx, 'payments', testEvent(4, 'p'), { prefix: names.prefix });
        })
        .then(() => undefined);
      await txA;
      await expect(
        wal.db.transaction(async (tx) => {
          await addToWalOutbox(tx, 'orders', testEvent(99), { prefix: names.prefix });
          throw new Error('roll back');
        }),
      ).rejects.toThrow('roll back');
      // A message under another prefix is not this relay's.
      await wal.db.transaction((tx) =>
        addToWalOutbox(tx, 'orders', testEvent(100), { prefix: 'someone_else' }),
      );

      await until(() => publisher.received.length >= 4);
      await new Promise((resolve) => setTimeout(resolve, 200));
      const seen = publisher.received.map((r) => `${r.destination}:${eventNumber(r.message)}`);
      expect(seen).toEqual(['orders:2', 'orders:3', 'payments:4', 'orders:1']);
      expect(publisher.received[3]!.message.id).toBe(committed[0]);
    } finally {
      await relay.stop();
    }
    // Everything published was confirmed: a new relay on the slot gets nothing again.
    const again = new TestPublisher();
    const next = relayFor(again, names);
    await next.start();
    await names.write('orders', testEvent(5));
    await until(() => again.received.length >= 1);
    await next.stop();
    expect(again.received.map((r) => eventNumber(r.message))).toEqual([5]);
    await names.drop();
  });

  it('loses nothing across a stop and a restart under a stream of writes, in order per key', async () => {
    const names = await wal.newSlot();
    const publisher = new TestPublisher();
    let relay = relayFor(publisher, names, { batchSize: 7 });
    await relay.start();
    const { written, writers } = writeUnderLoad(names);
    await until(() => publisher.received.length >= 50);
    await relay.stop();
    relay = relayFor(publisher, names, { batchSize: 7 });
    await relay.start();
    await writers;
    await until(() => new Set(publisher.ids()).size >= written.length);
    await relay.stop();
    expect(new Set(publisher.ids())).toEqual(new Set(written));
    // A clean stop confirms what it published: nothing comes twice.
    expect(publisher.received.length).toBe(written.length);
    expectEachKeyInOrder(publisher);
    const status = await names.status();
    expect(status).toMatchObject({ exists: true, active: false });
    await names.drop();
  });

  it('a stop in the middle of a transaction larger than a call, with the server still sending, repeats nothing', async () => {
    const names = await wal.newSlot();
    const publisher = new TestPublisher();
    const written: string[] = [];
    for (let t = 0; t < 40; t++) {
      const ms = Array.from({ length: 20 }, (_, i) => testEvent(t * 20 + i, `key-${i % 4}`));
      await names.write('orders', ms);
      written.push(...ms.map((m) => m.id));
    }
    // Calls of 7: the 16th transaction goes out as 7, 7 and 6. The stop comes with its second
    // call, while the server still has most of the backlog to send (the relay holds 40 at most).
    let relay: WalOutboxRelay;
    const stopping: Promise<void>[] = [];
    const stopMidway: Publisher = {
      publish: async (destination, messages) => {
        if (publisher.received.length === 15 * 20 + 7) stopping.push(relay.stop());
        await publisher.publish(destination, messages);
      },
    };
    relay = relayFor(stopMidway, names, { batchSize: 7, maxBuffered: 40 });
    await relay.start();
    await until(() => stopping.length > 0);
    await stopping[0];
    // The transaction in hand was published whole and confirmed.
    expect(publisher.received.length).toBe(16 * 20);
    relay = relayFor(publisher, names, { batchSize: 7 });
    await relay.start();
    await until(() => publisher.received.length >= written.length);
    await relay.stop();
    expect(publisher.ids()).toEqual(written);
    await names.drop();
  });

  it('a stop right after the start lets go of the slot at once', async () => {
    const names = await wal.newSlot();
    const relay = relayFor(new TestPublisher(), names);
    const drainTimeouts: number[] = [];
    relay.events.on('drain-timeout', ({ drainMs }) => drainTimeouts.push(drainMs));
    await relay.start();
    await relay.stop();
    // Before, the stream connected after the stop and held the slot until the drain deadline.
    expect(drainTimeouts).toEqual([]);
    expect(await names.status()).toMatchObject({ exists: true, active: false });
    // And one that stops while its stream connects.
    const second = relayFor(new TestPublisher(), names);
    second.events.on('drain-timeout', ({ drainMs }) => drainTimeouts.push(drainMs));
    await second.start();
    await new Promise((resolve) => setTimeout(resolve, 5));
    await second.stop();
    expect(drainTimeouts).toEqual([]);
    expect(await names.status()).toMatchObject({ exists: true, active: false });
    await names.drop();
  });

  it('parks a message the broker refuses in the table outbox; later messages of its key wait behind it there', async () => {
    const names = await wal.newSlot();
    const publisher = new TestPublisher();
    const poison = testEvent(2);
    let refusing = true;
    publisher.fail = (_destination, messages) =>
      refusing && messages.some((m) => m.id === poison.id)
        ? new InvalidArgumentError('payload', 'something else', 1)
        : undefined;
    const relay = relayFor(publisher, names);
    const parked: string[] = [];
    relay.events.on('parked', ({ message }) => parked.push(message.id));
    const reported: string[] = [];
    relay.events.on('published', ({ messages }) => reported.push(...messages.map((m) => m.id)));
    const n = (ids: string[]): number[] =>
      ids.map((id) => eventNumber(publisher.received.find((r) => r.message.id === id)!.message));
    let tableRelay: OutboxRelay | undefined;
    await relay.start();
    try {
      await names.write('orders', [testEvent(1), poison, testEvent(3), testEvent(4, 'other')]);
      await until(() => publisher.received.length >= 2);
      expect(parked).toEqual([poison.id]);
      // A later transaction's message of the key waits behind the parked one too.
      await names.write('orders', testEvent(5));
      await until(async () => (await outboxStatus(wal.db)).backlog === 2 && reported.length >= 2);
      expect(n(publisher.ids())).toEqual([1, 4]);
      // `published` reports what the broker accepted: the parked and held messages are not among it.
      expect(reported).toEqual(publisher.ids());
      const { rows } = await wal.db.query<{ id: string; destination: string; last_error: string }>(
        `SELECT id, destination, last_error FROM keel_outbox WHERE parked_at IS NOT NULL`,
      );
      expect(rows.map((row) => [row.id, row.destination])).toEqual([[poison.id, 'orders']]);
      expect(rows[0]!.last_error).toContain('payload');
      expect((await outboxStatus(wal.db)).parked).toBe(1);

      // An operator retries the parked message; the table relay publishes it, then the key's rest, in order.
      refusing = false;
      expect(await retryParked(wal.db)).toBe(1);
      tableRelay = new OutboxRelay(wal.db, publisher, { pollIntervalMs: 20 });
      await tableRelay.start();
      await until(() => publisher.received.length >= 5);
      expect(n(publisher.ids())).toEqual([1, 4, 2, 3, 5]);
      // The key's table rows are all published: its next message goes straight from the WAL.
      await names.write('orders', testEvent(6));
      await until(() => publisher.received.length >= 6);
      expect(n(publisher.ids())).toEqual([1, 4, 2, 3, 5, 6]);
      // The broker records a message before the relay's `published` event fires, so wait for the report.
      await until(() => reported.length >= 3);
      expect(reported.at(-1)).toBe(publisher.ids().at(-1));
    } finally {
      await tableRelay?.stop();
      await relay.stop();
      await wal.db.query('DELETE FROM keel_outbox');
      await names.drop();
    }
  });

  it('waits out a broker outage behind the breaker: nothing parked, everything delivered after', async () => {
    const names = await wal.newSlot();
    const publisher = new TestPublisher();
    let down = true;
    publisher.fail = () => (down ? new Error('broker down') : undefined);
    const breaker = new CircuitBreakerPolicy({
      threshold: { kind: 'consecutive', failures: 2 },
      openMs: 100,
    });
    const relay = relayFor(publisher, names, { breaker, maxAttempts: 3 });
    const parked: string[] = [];
    relay.events.on('parked', ({ message }) => parked.push(message.id));
    await relay.start();
    try {
      const ms = Array.from({ length: 5 }, (_, i) => testEvent(i));
      await names.write('orders', ms);
      await until(() => publisher.calls >= 6);
      down = false;
      await until(() => publisher.received.length >= 5);
      expect(publisher.ids()).toEqual(ms.map((m) => m.id));
      expect(parked).toEqual([]);
    } finally {
      await relay.stop();
      await names.drop();
    }
  });

  it('a stream that breaks under a stream of writes is streamed again: nothing lost or repeated, each key in order', async () => {
    const names = await wal.newSlot();
    const publisher = new TestPublisher();
    const relay = relayFor(publisher, names, { batchSize: 7 });
    let streams = 0;
    relay.events.on('streaming', () => streams++);
    const streamErrors: unknown[] = [];
    relay.events.on('error', ({ error, during }) => {
      if (during === 'stream') streamErrors.push(error);
    });
    await relay.start();
    const { written, writers } = writeUnderLoad(names);
    try {
      // The server ends the replication connection twice, mid-stream (as a failover or an
      // administrator would): the relay streams again from the slot's confirmed position.
      for (let cut = 1; cut <= 2; cut++) {
        await until(() => publisher.received.length >= 60 * cut && streams === cut);
        await wal.db.query(
          `SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = $1 AND active`,
          [names.slotName],
        );
        await until(() => streams === cut + 1);
      }
      await writers;
      await until(() => new Set(publisher.ids()).size >= written.length);
    } finally {
      await relay.stop();
    }
    expect(streamErrors.length).toBeGreaterThanOrEqual(2);
    expect(new Set(publisher.ids())).toEqual(new Set(written));
    // The server sends again what was not confirmed; the relay, still running, knows it published
    // it and passes over it: nothing twice, each key in order.
    expect(publisher.received.length).toBe(written.length);
    expectEachKeyInOrder(publisher);
    await names.drop();
  });

  it('a second relay stands by while the first streams, and takes over when it stops', async () => {
    const names = await wal.newSlot();
    const first = new TestPublisher();
    const second = new TestPublisher();
    const a = relayFor(first, names);
    const b = relayFor(second, names);
    let standby = false;
    b.events.on('standby', () => (standby = true));
    await a.start();
    await until(async () => (await names.status()).active);
    await b.start();
    try {
      await until(() => standby);
      await names.write('orders', testEvent(1));
      await until(() => first.received.length === 1);
      await a.stop();
      await names.write('orders', testEvent(2));
      await until(() => second.received.length === 1);
      expect(eventNumber(second.received[0]!.message)).toBe(2);
    } finally {
      await a.stop();
      await b.stop();
      await names.drop();
    }
  });

  it('confirms WAL that held nothing of its own, so an idle outbox on a busy database pins no WAL', async () => {
    const names = await wal.newSlot();
    const publisher = new TestPublisher();
    const relay = relayFor(publisher, names);
    await relay.start();
    try {
      await wal.db.query('CREATE TABLE busy (n integer, filler text)');
      for (let i = 0; i < 20; i++) {
        await wal.db.query(`INSERT INTO busy SELECT g, repeat('x', 200) FROM generate_series(1, 500) AS g`);
      }
      // ~2.5 MB of WAL went by, none of it the relay's: the slot's position follows it all the same.
      await until(async () => (await names.status()).lagBytes < 64 * 1024);
      expect(publisher.received).toEqual([]);
    } finally {
      await relay.stop();
      await wal.db.query('DROP TABLE IF EXISTS busy');
      await names.drop();
    }
  });

  it('holds at most maxBuffered messages (and what one socket read brings) while the broker is slow', async () => {
    const names = await wal.newSlot();
    const publisher = new TestPublisher();
    const slowPublisher: Publisher = {
      publish: async (destination, messages) => {
        await new Promise((resolve) => setTimeout(resolve, 5));
        await publisher.publish(destination, messages);
      },
    };
    const ms = Array.from({ length: 3000 }, (_, i) => testEvent(i, `k${i % 7}`));
    for (let i = 0; i < ms.length; i += 100) {
      await names.write('orders', ms.slice(i, i + 100));
    }
    const relay = relayFor(slowPublisher, names, { batchSize: 50, maxBuffered: 200 });
    let most = 0;
    relay.events.on('published', () => (most = Math.max(most, relay.buffered)));
    await relay.start();
    try {
      await until(() => publisher.received.length >= ms.length, 30_000);
      expect(publisher.ids()).toEqual(ms.map((m) => m.id));
      // A paused socket still hands over the chunk it already read (64 KiB: ~200 of these messages).
      expect(most).toBeLessThanOrEqual(200 + 400);
      expect(most).toBeGreaterThan(0);
    } finally {
      await relay.stop();
      await names.drop();
    }
  });

  it('never skips a transaction whose commit record starts where the confirmed one ended', async () => {
    const names = await wal.newSlot();
    // B writes its message first and commits right after A: B's commit record follows A's directly.
    const a = testEvent(1, 'a');
    const b = testEvent(2, 'b');
    let releaseB: () => void = () => undefined;
    let bWrote: () => void = () => undefined;
    const bWritten = new Promise<void>((resolve) => (bWrote = resolve));
    const txB = wal.db.transaction(async (tx) => {
      await addToWalOutbox(tx, 'orders', b, { prefix: names.prefix });
      await tx.query('SELECT 1');
      bWrote();
      await new Promise<void>((resolve) => (releaseB = resolve));
    });
    await bWritten;
    await names.write('orders', a);
    releaseB();
    await txB;
    // The first relay publishes A and confirms it, but B fails until the relay stops.
    const publisher = new TestPublisher();
    let failB = true;
    publisher.fail = (_destination, messages) =>
      failB && messages.some((m) => m.id === b.id) ? new Error('broker hiccup') : undefined;
    const first = relayFor(publisher, names, { batchSize: 1 });
    await first.start();
    await until(() => publisher.received.length === 1);
    await until(() => publisher.calls >= 3);
    await first.stop();
    expect(publisher.ids()).toEqual([a.id]);
    failB = false;
    const second = relayFor(publisher, names, { batchSize: 1 });
    await second.start();
    try {
      await until(() => publisher.received.length === 2);
      expect(publisher.ids()).toEqual([a.id, b.id]);
    } finally {
      await second.stop();
      await names.drop();
    }
  });

  it("passes over what is not keel's under its prefix, and goes no further than a newer keel's record", async () => {
    const names = await wal.newSlot();
    const publisher = new TestPublisher();
    const relay = relayFor(publisher, names);
    const errors: string[] = [];
    relay.events.on('error', ({ error, during }) => errors.push(`${during}: ${(error as Error).message}`));
    const emit = (content: string): Promise<unknown> =>
      wal.db.query('SELECT pg_logical_emit_message(true, $1, $2::text)', [names.prefix, content]);
    const first = testEvent(1);
    const second = testEvent(2);
    const third = testEvent(3);
    await names.write('orders', first);
    await emit('not json at all');
    await names.write('orders', second);
    await emit(JSON.stringify({ v: 2, destination: 'orders', messages: [] }));
    await names.write('orders', third);
    await relay.start();
    try {
      await until(() => errors.filter((e) => e.includes('encoding version 2')).length >= 2);
      expect(publisher.ids()).toEqual([first.id, second.id]);
      expect(errors).toContainEqual(expect.stringContaining('decode: a WAL outbox record is not JSON'));
    } finally {
      await relay.stop();
    }
    // The relay halted its stream at the newer record by closing it, and its stop resolved once
    // the server's walsender let the slot go: a peek at a slot still active would be refused.
    expect(await names.status()).toMatchObject({ active: false });
    // Nothing past the newer record was confirmed: it and the third message are still in the slot.
    const { rows } = await wal.db.query<{ n: string }>(
      `SELECT count(*)::text AS n FROM pg_logical_slot_peek_binary_changes($1, NULL, NULL,
         'proto_version', '1', 'publication_names', $2, 'messages', 'true')
       WHERE get_byte(data, 0) = 77`,
      [names.slotName, names.publicationName],
    );
    expect(Number(rows[0]?.n)).toBe(2);
    await names.drop();
  });

  it('refuses a server without wal_level=logical, naming the setting', async () => {
    const plain = await startPgServer({ walLevel: 'replica' });
    const other = await openPgDb({ url: plain.url });
    try {
      const error = await ensureWalOutboxSlot(other).then(
        () => undefined,
        (e: unknown) => e as KeelError,
      );
      expect(error?.code).toBe('KEEL_DB_FEATURE_MISSING');
      expect(error?.message).toContain('wal_level = logical');
    } finally {
      await other.close();
      await plain.stop();
    }
  });
});
