// Draining the WAL outbox against a real PostgreSQL 15 with wal_level=logical (a server of the
// test's own): everything committed before the drain is published — by the drain's own relay when
// none streams from the slot, by the running relay when one does — and `keel outbox drain --slot`
// does the same from an operator's shell, with progress.
import { describe, expect, it } from 'vitest';
import { runCli } from '../../src/cli/main.ts';
import { migrate } from '../../src/db/index.ts';
import type { KeelError } from '../../src/errors/index.ts';
import { pgQueueMigrations, PgQueue, type Envelope } from '../../src/messaging/index.ts';
import { drainWalOutbox, type WalOutboxDrainProgress } from '../../src/outbox/index.ts';
import type { WalOutboxTestSlot } from '../../src/testing/index.ts';
import { until } from '../until.ts';
import { testEvent, TestPublisher, walOutboxTestServer } from './wal-outbox-kit.ts';

const wal = walOutboxTestServer((db) => migrate(db, pgQueueMigrations));

const event = (n: number): Envelope => testEvent(n, `k-${n % 7}`);

async function writeMessages(
  slot: WalOutboxTestSlot,
  transactions: number,
  perTransaction: number,
): Promise<string[]> {
  const ids: string[] = [];
  for (let t = 0; t < transactions; t++) {
    const messages = Array.from({ length: perTransaction }, (_, i) => event(t * perTransaction + i));
    ids.push(...messages.map((m) => m.id));
    await slot.write('orders', messages);
  }
  return ids;
}

/** A publisher whose every call waits until `open()`. */
function gatedPublisher(): { publisher: TestPublisher; open: () => void } {
  let open!: () => void;
  const gate = new Promise<void>((resolve) => (open = resolve));
  const publisher = new TestPublisher();
  publisher.hold = () => gate;
  return { publisher, open };
}

describe('drainWalOutbox', () => {
  it('with no relay streaming, relays everything committed before it, in commit order, then stops', async () => {
    const slot = await wal.newSlot();
    try {
      const ids = await writeMessages(slot, 5, 40);
      const publisher = new TestPublisher();
      const seen: WalOutboxDrainProgress[] = [];
      const { published } = await drainWalOutbox(wal.db, publisher, {
        connectionString: wal.url,
        ...slot,
        pollMs: 20,
        onProgress: (progress) => seen.push(progress),
      });
      expect(published).toBe(200);
      expect(publisher.ids()).toEqual(ids);
      expect(seen.at(0)?.bytesLeft).toBeGreaterThan(0);
      expect(seen.at(-1)).toEqual({ bytesLeft: 0, published: 200, relay: 'drain' });
      // Its relay stopped, and let the slot go: the slot is free for the service's own.
      expect(await slot.status()).toMatchObject({ active: false });
      // Nothing left: a second drain publishes nothing and returns.
      expect(
        (await drainWalOutbox(wal.db, publisher, { connectionString: wal.url, ...slot, pollMs: 20 }))
          .published,
      ).toBe(0);
    } finally {
      await slot.drop();
    }
  });

  it('while another relay streams, waits for it to publish past the mark and publishes nothing itself', async () => {
    const slot = await wal.newSlot();
    const { publisher: running, open } = gatedPublisher();
    const relay = slot.relay(running);
    await relay.start();
    try {
      await until(async () => (await slot.status()).active);
      const ids = await writeMessages(slot, 3, 10);
      const seen: WalOutboxDrainProgress[] = [];
      const mine = new TestPublisher();
      const drained = drainWalOutbox(wal.db, mine, {
        connectionString: wal.url,
        ...slot,
        pollMs: 20,
        onProgress: (progress) => seen.push(progress),
      });
      await until(() => seen.length >= 3);
      expect(seen.every((p) => p.relay === 'other' && p.bytesLeft > 0)).toBe(true);
      open();
      expect(await drained).toEqual({ published: 0 });
      expect(mine.received).toEqual([]);
      expect(running.ids()).toEqual(ids);
    } finally {
      await relay.stop();
      await slot.drop();
    }
  });

  it('fails with KEEL_NOT_FOUND naming a slot that does not exist', async () => {
    await expect(
      drainWalOutbox(wal.db, new TestPublisher(), { connectionString: wal.url, slotName: 'no_such_slot' }),
    ).rejects.toMatchObject({
      code: 'KEEL_NOT_FOUND',
      details: { slotName: 'no_such_slot' },
    } satisfies Partial<KeelError>);
  });
});

describe('keel outbox drain --slot', () => {
  it('publishes the WAL outbox to the PostgreSQL queue, with progress, and says so', async () => {
    // The slot the command drains, named on its command line.
    const slot = await wal.defaultSlot();
    try {
      await slot.write('cli-drain', [event(1), event(2), event(3)]);
      const out: string[] = [];
      const err: string[] = [];
      const code = await runCli(['outbox', 'drain', '--slot', 'keel_outbox'], {
        out: (line) => out.push(line),
        err: (line) => err.push(line),
        env: { KEEL_DB: 'pg', DATABASE_URL: wal.url },
      });
      expect({ code, out }).toEqual({
        code: 0,
        out: [
          'drained keel_outbox: published 3 here; the slot is past every message committed before the drain',
        ],
      });
      expect(err[0]).toMatch(/^draining keel_outbox: (\d+ bytes|\d+\.\d [KMG]iB) of WAL to go, published 0$/);
      expect(await new PgQueue(wal.db).depth('cli-drain')).toBe(3);

      const missing: string[] = [];
      expect(
        await runCli(['outbox', 'drain', '--slot', 'nope'], {
          out: () => undefined,
          err: (line) => missing.push(line),
          env: { KEEL_DB: 'pg', DATABASE_URL: wal.url },
        }),
      ).toBe(1);
      expect(missing).toEqual([
        'KEEL_NOT_FOUND: no replication slot nope: the WAL outbox was never set up here',
      ]);
    } finally {
      await slot.drop();
    }
  });
});
