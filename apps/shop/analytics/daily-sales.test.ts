import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import type { Db } from '../../../src/db/index.ts';
import { readSchedules, Scheduler, triggerSchedule } from '../../../src/schedule/index.ts';
import { advanceUntil } from '../../../src/testing/index.ts';
import { ManualClock } from '../../../src/time/index.ts';
import { runAnalytics } from '../cmd/analytics.ts';
import { shopConfigFromEnv } from '../config.ts';
import { createShopStore, openTestShop, sharedDb, type ShopStore } from '../test/test-shop.ts';
import { dailySalesSchedule, dailySalesScheduleName, readDailySales } from './daily-sales.ts';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function newStore(): Promise<ShopStore> {
  const store = await createShopStore();
  cleanups.push(() => store.dispose());
  return store;
}

/** An order placed at `at`, with its payment when it was charged (refunded when cancelled after). */
async function order(
  db: Db,
  at: string,
  status: 'PENDING' | 'CONFIRMED' | 'CANCELLED',
  payment?: { cents: number; status: 'CHARGED' | 'DECLINED' | 'REFUNDED' },
): Promise<void> {
  const id = randomUUID();
  await db.query(
    `INSERT INTO orders (id, customer_id, status, items, created_at, updated_at) VALUES ($1, 'c-1', $2, '[]', $3, $3)`,
    [id, status, at],
  );
  if (payment !== undefined)
    await db.query(
      `INSERT INTO payments (id, idempotency_key, order_id, customer_id, amount_cents, status, created_at)
       VALUES ($1, $2, $3, 'c-1', $4, $5, $6)`,
      [randomUUID(), randomUUID(), id, payment.cents, payment.status, at],
    );
}

describe("the worker's daily-sales schedule", () => {
  it('closes the day before each tick from its orders and payments, in its time zone', async () => {
    const store = await newStore();
    const shop = await openTestShop(store, ['api']);
    cleanups.push(() => shop.stop({ drainMs: 1000 }));
    // Tracked (openTestShop's database is), so each step of the clock waits for the scheduler's statements.
    const db = shop.db;
    // In Berlin (UTC+2 in June) 1 June runs from 31 May 22:00Z to 1 June 22:00Z.
    await order(db, '2026-05-31T21:59:00Z', 'CONFIRMED', { cents: 999, status: 'CHARGED' }); // 31 May
    await order(db, '2026-05-31T22:00:00Z', 'CONFIRMED', { cents: 1200, status: 'CHARGED' });
    await order(db, '2026-06-01T12:00:00Z', 'CANCELLED', { cents: 350, status: 'REFUNDED' });
    await order(db, '2026-06-01T13:00:00Z', 'CANCELLED', { cents: 500, status: 'DECLINED' });
    await order(db, '2026-06-01T21:59:59Z', 'PENDING');
    await order(db, '2026-06-01T22:00:00Z', 'CONFIRMED', { cents: 4000, status: 'CHARGED' }); // 2 June
    const clock = new ManualClock(Date.parse('2026-06-01T21:00:00Z'));
    const scheduler = new Scheduler(db, {
      schedules: [dailySalesSchedule({ cron: '5 0 * * *', timeZone: 'Europe/Berlin' })],
      clock,
    });
    cleanups.push(() => scheduler.stop());
    await scheduler.start();
    // 00:05 in Berlin on 2 June is 22:05Z on 1 June.
    const { tick } = await advanceUntil(clock, scheduler.events.once('fired'), { stepMs: 60_000 });
    expect(tick.at.toISOString()).toBe('2026-06-01T22:05:00.000Z');
    expect(await readDailySales(db)).toEqual([
      {
        day: '2026-06-01',
        timeZone: 'Europe/Berlin',
        orders: 4,
        confirmed: 1,
        cancelled: 2,
        revenueCents: 1200,
        closedAt: tick.firedAt.toISOString(),
      },
    ]);
    const lines: string[] = [];
    expect(
      await runAnalytics(
        ['daily'],
        (line) => lines.push(line),
        async () => sharedDb(db),
      ),
    ).toBe(0);
    expect(lines).toEqual(['2026-06-01 Europe/Berlin  orders 4  confirmed 1  cancelled 2  revenue 12.00']);
  });

  it('is run by the worker, which catches up each day it missed within a week', async () => {
    const store = await newStore();
    const clock = new ManualClock(Date.parse('2026-06-01T12:00:00Z'));
    const dailySales = { cron: '5 0 * * *', timeZone: 'UTC' };
    const first = await openTestShop(store, ['worker'], clock, { config: { dailySales } });
    await first.start();
    await first.stop({ drainMs: 1000 });
    // Down from 1 June noon to 4 June 10:00: 2, 3 and 4 June's ticks are due, each closes a day.
    await clock.advance(Date.parse('2026-06-04T10:00:00Z') - clock.now());
    const worker = await openTestShop(store, ['worker'], clock, { config: { dailySales } });
    await worker.start();
    cleanups.push(() => worker.stop({ drainMs: 1000 }));
    await advanceUntil(
      clock,
      (async () => {
        while ((await readDailySales(worker.db)).length < 3) await new Promise((r) => setImmediate(r));
      })(),
      { stepMs: 100 },
    );
    expect((await readDailySales(worker.db)).map((d) => d.day)).toEqual([
      '2026-06-03',
      '2026-06-02',
      '2026-06-01',
    ]);
    const [row] = await readSchedules(worker.db, [dailySalesScheduleName]);
    expect(row).toMatchObject({
      spec: 'cron 5 0 * * * UTC',
      fired: 3,
      nextTick: Date.parse('2026-06-05T00:05:00Z'),
    });
  });

  it('closes the day before again when the schedule is triggered by hand, replacing its row', async () => {
    const store = await newStore();
    const clock = new ManualClock(Date.parse('2026-06-02T09:00:00Z'));
    const worker = await openTestShop(store, ['worker'], clock, {
      config: { dailySales: { cron: '5 0 * * *', timeZone: 'UTC' } },
    });
    await order(worker.db, '2026-06-01T10:00:00Z', 'CONFIRMED', { cents: 700, status: 'CHARGED' });
    await worker.start();
    cleanups.push(() => worker.stop({ drainMs: 1000 }));
    const closed = async (orders: number): Promise<void> => {
      while ((await readDailySales(worker.db))[0]?.orders !== orders)
        await new Promise((r) => setImmediate(r));
    };
    expect(await triggerSchedule(worker.db, dailySalesScheduleName, clock.now())).toBe(true);
    await closed(1);
    // A late order of 1 June; a second run closes the day again.
    await order(worker.db, '2026-06-01T23:00:00Z', 'CONFIRMED', { cents: 300, status: 'CHARGED' });
    await clock.advance(60_000);
    await triggerSchedule(worker.db, dailySalesScheduleName, clock.now());
    await closed(2);
    expect(await readDailySales(worker.db)).toEqual([
      expect.objectContaining({ day: '2026-06-01', orders: 2, revenueCents: 1000 }),
    ]);
    const [row] = await readSchedules(worker.db, [dailySalesScheduleName]);
    // Runs by hand leave the schedule's own next tick where it was.
    expect(row).toMatchObject({ fired: 2, triggeredAt: null, nextTick: Date.parse('2026-06-03T00:05:00Z') });
  });

  it('reads KEEL_DAILY_SALES and KEEL_TIME_ZONE, refusing a bad one by name', () => {
    expect(shopConfigFromEnv({}).dailySales).toEqual({ cron: '5 0 * * *', timeZone: 'UTC' });
    expect(shopConfigFromEnv({ KEEL_DAILY_SALES: 'off' }).dailySales).toBeUndefined();
    expect(
      shopConfigFromEnv({ KEEL_DAILY_SALES: '0 6 * * 1', KEEL_TIME_ZONE: 'America/New_York' }).dailySales,
    ).toEqual({ cron: '0 6 * * 1', timeZone: 'America/New_York' });
    expect(() => shopConfigFromEnv({ KEEL_DAILY_SALES: 'at six' })).toThrow(
      /^KEEL_DAILY_SALES: expected a cron/,
    );
    expect(() => shopConfigFromEnv({ KEEL_TIME_ZONE: 'Mars/Olympus' })).toThrow(/^KEEL_TIME_ZONE: expected/);
  });
});
