import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { placeOrder } from '../../apps/shop/application/orders.ts';
import { findOrder } from '../../apps/shop/storage/orders-store.ts';
import { stockOf } from '../../apps/shop/storage/inventory-store.ts';
import { paymentsOf } from '../../apps/shop/storage/payments-store.ts';
import { migrate } from '../../src/db/index.ts';
import { shopMigrations } from '../../apps/shop/presets/open-shop.ts';
import {
  createShopStore,
  fulfilmentFinished,
  openTestShop,
  type ShopStore,
} from '../../apps/shop/test/test-shop.ts';
import { systemClock } from '../../src/time/index.ts';

const child = fileURLToPath(new URL('./fixtures/shop-worker-child.ts', import.meta.url));

interface ChildRun {
  proc: ChildProcess;
  lines: Record<string, unknown>[];
  next(event: string): Promise<Record<string, unknown>>;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

function runChild(mode: string, env: Record<string, string>): ChildRun {
  const proc = spawn(process.execPath, ['--import', 'tsx', child, mode], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const lines: Record<string, unknown>[] = [];
  const waiters: { event: string; resolve: (line: Record<string, unknown>) => void }[] = [];
  createInterface({ input: proc.stdout }).on('line', (text) => {
    const line = JSON.parse(text) as Record<string, unknown>;
    lines.push(line);
    const index = waiters.findIndex((w) => w.event === line.event);
    if (index >= 0) waiters.splice(index, 1)[0]!.resolve(line);
  });
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    proc.on('exit', (code, signal) => resolve({ code, signal })),
  );
  return {
    proc,
    lines,
    exit,
    next: (event) => {
      const seen = lines.find((line) => line.event === event && !(line as { taken?: boolean }).taken);
      if (seen) {
        (seen as { taken?: boolean }).taken = true;
        return Promise.resolve(seen);
      }
      return new Promise((resolve, reject) => {
        waiters.push({ event, resolve });
        void exit.then(({ code, signal }) =>
          reject(new Error(`child exited (${code ?? signal}) before "${event}"`)),
        );
      });
    },
  };
}

let store: ShopStore | undefined;
afterEach(async () => {
  await store?.dispose();
  store = undefined;
});

describe('chaos: a worker killed between its commit and its ack', () => {
  it('gets the message again after restart (at-least-once), and the effect is applied once', async () => {
    store = await createShopStore();
    const db = await store.open();
    await migrate(db, await shopMigrations());
    const stock = await stockOf(db, 'book-1');
    const order = await placeOrder(db, systemClock, {
      customerId: 'c-crash',
      items: [{ sku: 'book-1', quantity: 1 }],
    });
    await db.close();

    const doomed = runChild('kill-after-commit', store.env);
    const first = await doomed.next('handled');
    expect(first.attempt).toBe(1);
    expect(await doomed.exit).toEqual({ code: null, signal: 'SIGKILL' });
    expect(doomed.lines.some((line) => line.event === 'acked')).toBe(false);

    const survivor = runChild('run', store.env);
    const second = await survivor.next('handled');
    expect(second).toMatchObject({ id: first.id, attempt: 2 });
    await survivor.next('acked');
    survivor.proc.kill('SIGTERM');
    expect(await survivor.exit).toEqual({ code: 0, signal: null });

    // The saga the first run's commit started may be part-way (the survivor drains its current
    // step on SIGTERM): a worker in this process finishes it, taking over any expired lease.
    const after = await openTestShop(store, ['worker']);
    await after.start();
    try {
      expect(await fulfilmentFinished(after, order.id)).toMatchObject({ state: 'COMPLETED' });
      // Started once by the first run's commit; the redelivery found the inbox record and started nothing.
      expect(await findOrder(after.db, order.id)).toMatchObject({ status: 'CONFIRMED', version: 3 });
      expect(await paymentsOf(after.db, order.id)).toEqual([expect.objectContaining({ status: 'CHARGED' })]);
      expect(await stockOf(after.db, 'book-1')).toBe(stock! - 1);
      const { rows } = await after.db.query<{ queued: number; inbox: number; sagas: number }>(
        `SELECT (SELECT count(*)::int FROM keel_queue) AS queued,
                (SELECT count(*)::int FROM keel_inbox WHERE message_id = $1) AS inbox,
                (SELECT count(*)::int FROM keel_saga_instances) AS sagas`,
        [first.id],
      );
      // Nothing left to deliver; the inbox holds the one record that made the redelivery a no-op.
      expect(rows[0]).toEqual({ queued: 0, inbox: 1, sagas: 1 });
    } finally {
      await after.stop();
    }
  }, 120_000);
});
