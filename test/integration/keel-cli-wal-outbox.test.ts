// `keel outbox status` beside the WAL outbox, against real PostgreSQL 15 servers of the test's
// own (startPgServer): with wal_level=logical it shows the slot, whether a relay streams from it
// and its lag; with wal_level=replica it shows the table outbox only, without an error. The CLI
// opens the database itself, from KEEL_DB=pg and DATABASE_URL, as an operator's shell would.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../../src/cli/main.ts';
import { migrate, openPgDb, type Db } from '../../src/db/index.ts';
import { createEnvelope, type Envelope, type Publisher } from '../../src/messaging/index.ts';
import {
  addToWalOutbox,
  dropWalOutboxSlot,
  ensureWalOutboxSlot,
  outboxMigrations,
  walOutboxStatus,
  WalOutboxRelay,
} from '../../src/outbox/index.ts';
import {
  startPgServer,
  startWalOutboxTestServer,
  type WalOutboxTestServer,
} from '../../src/testing/index.ts';
import { until } from '../until.ts';

let wal: WalOutboxTestServer;
let db: Db;

beforeAll(async () => {
  wal = await startWalOutboxTestServer();
  db = wal.db;
}, 60_000);

afterAll(async () => {
  await wal?.stop();
});

async function status(
  url: string,
  ...options: string[]
): Promise<{ code: number; out: string[]; err: string[] }> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await runCli(['outbox', 'status', ...options], {
    out: (line) => out.push(line),
    err: (line) => err.push(line),
    env: { KEEL_DB: 'pg', DATABASE_URL: url },
  });
  return { code, out, err };
}

describe('keel outbox status with the WAL outbox', () => {
  it('shows the slot, whether a relay streams from it, and its lag in bytes', async () => {
    const before = await status(wal.url);
    expect(before).toMatchObject({ code: 0, err: [] });
    expect(before.out).toHaveLength(4);

    await ensureWalOutboxSlot(db);
    try {
      // Enough WAL behind the slot's confirmed position for the human-readable form too.
      const big = (n: number): Envelope =>
        createEnvelope({ type: 'test.event.v1', key: 'k', payload: { n, pad: 'x'.repeat(2000) } });
      await db.transaction((tx) => addToWalOutbox(tx, 'orders', [big(1), big(2)]));
      const idle = await status(wal.url);
      expect(idle.code).toBe(0);
      expect(idle.out.slice(0, 4).map((line) => line.split(/\s+/)[0])).toEqual([
        'backlog',
        'parked',
        'published',
        'oldest',
      ]);
      expect(idle.out[4]).toBe('wal slot   keel_outbox (inactive)');
      expect(idle.out[5]).toMatch(/^wal lag {4}\d+ bytes \(\d+\.\d (KiB|MiB)\)$/);
      const lag = Number(/^wal lag {4}(\d+)/.exec(idle.out[5]!)![1]);
      // The server's position only moves on (other backends write WAL too).
      expect(lag).toBeGreaterThan(4000);
      expect(lag).toBeLessThanOrEqual((await walOutboxStatus(db)).lagBytes);

      const received: Envelope[] = [];
      const publisher: Publisher = {
        publish: async (_destination, messages) => void received.push(...messages),
      };
      const relay = new WalOutboxRelay(db, publisher, { connectionString: wal.url, reconnectMs: 50 });
      await relay.start();
      try {
        await until(() => received.length === 2);
        await until(async () => (await walOutboxStatus(db)).active);
        const streaming = await status(wal.url, '--slot', 'keel_outbox');
        expect(streaming.out[4]).toBe('wal slot   keel_outbox (active)');
        expect(streaming.out).toHaveLength(6);
      } finally {
        await relay.stop();
      }
    } finally {
      await dropWalOutboxSlot(db);
    }
    expect((await status(wal.url)).out).toHaveLength(4);
  });

  it('shows the table outbox only, without an error, on a server without wal_level=logical', async () => {
    const plain = await startPgServer({ walLevel: 'replica' });
    try {
      const other = await openPgDb({ url: plain.url });
      await migrate(other, outboxMigrations).finally(() => other.close());
      const shown = await status(plain.url);
      expect(shown).toMatchObject({ code: 0, err: [] });
      expect(shown.out.map((line) => line.split(/\s+/)[0])).toEqual([
        'backlog',
        'parked',
        'published',
        'oldest',
      ]);
      expect((await status(plain.url, '--slot', 'keel_outbox')).out.at(-1)).toBe(
        'wal slot   keel_outbox (no such replication slot)',
      );
    } finally {
      await plain.stop();
    }
  }, 60_000);
});
