// Draining the WAL outbox against a real PostgreSQL 15 with wal_level=logical (a server of the
// test's own): everything committed before the drain is published — by the drain's own relay when
// none streams from the slot, by the running relay when one does — and `keel outbox drain --slot`
// does the same from an operator's shell, with progress.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../../src/cli/main.ts';
import { migrate, type Db } from '../../src/db/index.ts';
import type { KeelError } from '../../src/errors/index.ts';
import {
  createEnvelope,
  pgQueueMigrations,
  PgQueue,
  type Envelope,
  type Publisher,
} from '../../src/messaging/index.ts';
import {
  addToWalOutbox,
  drainWalOutbox,
  ensureWalOutboxSlot,
  dropWalOutboxSlot,
  WalOutboxRelay,
  type WalOutboxDrainProgress,
} from '../../src/outbox/index.ts';
import { startWalOutboxTestServer, type WalOutboxTestServer } from '../../src/testing/index.ts';
import { until } from '../until.ts';

let wal: WalOutboxTestServer;
let db: Db;

beforeAll(async () => {
  wal = await startWalOutboxTestServer();
  db = wal.db;
  await migrate(db, pgQueueMigrations);
}, 60_000);

afterAll(async () => {
  await wal?.stop();
});

/** Records what it is given, after `gate` (if any) opens. */
class GatedPublisher implements Publisher {
  readonly received: Envelope[] = [];
  gate: Promise<void> | undefined;
  async publish(_destination: string, messages: readonly Envelope[]): Promise<void> {
    await this.gate;
    this.received.push(...messages);
  }
}

const event = (n: number): Envelope =>
  createEnvelope({ type: 'test.event.v1', key: `k-${n % 7}`, payload: { n } });

async function writeMessages(
  prefix: string,
  transactions: number,
  perTransaction: number,
): Promise<string[]> {
  const ids: string[] = [];
  for (let t = 0; t < transactions; t++) {
    const messages = Array.from({ length: perTransaction }, (_, i) => event(t * perTransaction + i));
    ids.push(...messages.map((m) => m.id));
    await db.transaction((tx) => addToWalOutbox(tx, 'orders', messages, { prefix }));
  }
  return ids;
}

const slotActive = async (slotName: string): Promise<boolean> =>
  (
    await db.query<{ active: boolean }>('SELECT active FROM pg_replication_slots WHERE slot_name = $1', [
      slotName,
    ])
  ).rows[0]?.active === true;

describe('drainWalOutbox', () => {
  it('with no relay streaming, relays everything committed before it, in commit order, then stops', async () => {
    const slot = await wal.newSlot();
    try {
      const ids = await writeMessages(slot.prefix, 5, 40);
      const publisher = new GatedPublisher();
      const seen: WalOutboxDrainProgress[] = [];
      const { published } = await drainWalOutbox(db, publisher, {
        connectionString: wal.url,
        ...slot,
        pollMs: 20,
        onProgress: (progress) => seen.push(progress),
      });
      expect(published).toBe(200);
      expect(publisher.received.map((m) => m.id)).toEqual(ids);
      expect(seen.at(0)?.bytesLeft).toBeGreaterThan(0);
      expect(seen.at(-1)).toEqual({ bytesLeft: 0, published: 200, relay: 'drain' });
      // Its relay stopped: the slot is free for the service's own.
      await until(async () => !(await slotActive(slot.slotName)));
      // Nothing left: a second drain publishes nothing and returns.
      expect(
        (await drainWalOutbox(db, publisher, { connectionString: wal.url, ...slot, pollMs: 20 })).published,
      ).toBe(0);
    } finally {
      await slot.drop();
    }
  });

  it('while another relay streams, waits for it to publish past the mark and publishes nothing itself', async () => {
    const slot = await wal.newSlot();
    const running = new GatedPublisher();
    let open!: () => void;
    running.gate = new Promise((resolve) => (open = resolve));
    const relay = new WalOutboxRelay(db, running, { connectionString: wal.url, reconnectMs: 50, ...slot });
    await relay.start();
    try {
      await until(() => slotActive(slot.slotName));
      const ids = await writeMessages(slot.prefix, 3, 10);
      const seen: WalOutboxDrainProgress[] = [];
      const mine = new GatedPublisher();
      const drained = drainWalOutbox(db, mine, {
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
      expect(running.received.map((m) => m.id)).toEqual(ids);
    } finally {
      await relay.stop();
      await slot.drop();
    }
  });

  it('fails with KEEL_NOT_FOUND naming a slot that does not exist', async () => {
    await expect(
      drainWalOutbox(db, new GatedPublisher(), { connectionString: wal.url, slotName: 'no_such_slot' }),
    ).rejects.toMatchObject({
      code: 'KEEL_NOT_FOUND',
      details: { slotName: 'no_such_slot' },
    } satisfies Partial<KeelError>);
  });
});

describe('keel outbox drain --slot', () => {
  it('publishes the WAL outbox to the PostgreSQL queue, with progress, and says so', async () => {
    await ensureWalOutboxSlot(db);
    try {
      await db.transaction((tx) => addToWalOutbox(tx, 'cli-drain', [event(1), event(2), event(3)]));
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
      expect(await new PgQueue(db).depth('cli-drain')).toBe(3);

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
      await dropWalOutboxSlot(db);
    }
  });
});
