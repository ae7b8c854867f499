// `keel outbox status` beside the WAL outbox, against real PostgreSQL 15 servers of the test's
// own (startPgServer): with wal_level=logical it shows the slot, whether a relay streams from it
// and its lag; with wal_level=replica it shows the table outbox only, without an error. The CLI
// opens the database itself, from KEEL_DB=pg and DATABASE_URL, as an operator's shell would.
import { describe, expect, it } from 'vitest';
import { runCli } from '../../src/cli/main.ts';
import { migrate, openPgDb } from '../../src/db/index.ts';
import type { Envelope } from '../../src/messaging/index.ts';
import { outboxMigrations } from '../../src/outbox/index.ts';
import { startPgServer } from '../../src/testing/index.ts';
import { until } from '../until.ts';
import { testEvent, TestPublisher, walOutboxTestServer } from './wal-outbox-kit.ts';

const wal = walOutboxTestServer();

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

    // The slot a relay uses when given none, which the command shows by default.
    const slot = await wal.defaultSlot();
    try {
      // Enough WAL behind the slot's confirmed position for the human-readable form too.
      const big = (n: number): Envelope => testEvent(n, 'k', { pad: 'x'.repeat(2000) });
      await slot.write('orders', [big(1), big(2)]);
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
      expect(lag).toBeLessThanOrEqual((await slot.status()).lagBytes);

      const publisher = new TestPublisher();
      const relay = slot.relay(publisher);
      await relay.start();
      try {
        await until(() => publisher.received.length === 2);
        await until(async () => (await slot.status()).active);
        const streaming = await status(wal.url, '--slot', 'keel_outbox');
        expect(streaming.out[4]).toBe('wal slot   keel_outbox (active)');
        expect(streaming.out).toHaveLength(6);
      } finally {
        await relay.stop();
      }
    } finally {
      await slot.drop();
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
