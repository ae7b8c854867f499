import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { triggerSchedule } from '../../../src/schedule/index.ts';
import type { Shop } from '../app.ts';
import { writeHeartbeat } from '../processes/processes-store.ts';
import { DbFault, databaseUnreachable, statementFailed } from '../test/db-fault.ts';
import { createShopStore, openTestShop, type ShopStore } from '../test/test-shop.ts';

const executablePath = process.env.KEEL_CHROMIUM ?? '/usr/bin/chromium';
// CI installs Debian's chromium (.ci/run); locally it may be absent.
const skip = !existsSync(executablePath) && process.env.CI !== 'true';
const missing = skip ? ` (skipped: no Chromium at ${executablePath})` : '';
// The network is closed: without these Chromium spends its start on refused connections.
const chromiumArgs = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
const waitMs = 20_000;

let store: ShopStore;
let shop: Shop;
let profile: string;
let browser: BrowserContext;

beforeAll(async () => {
  if (skip) return;
  if (!existsSync(executablePath)) {
    throw new Error(
      `Chromium is not installed at ${executablePath}: apt-get install -y --no-install-recommends chromium (.ci/run does)`,
    );
  }
  profile = await mkdtemp(path.join(tmpdir(), 'keel-chromium-'));
  // Side by side: each takes seconds on a busy machine.
  [browser, shop] = await Promise.all([
    chromium.launchPersistentContext(profile, {
      executablePath,
      args: chromiumArgs,
      headless: true,
      viewport: { width: 1280, height: 900 },
    }),
    (async () => {
      store = await createShopStore();
      // The worker's daily-sales schedule: its row is what the schedules card shows.
      const started = await openTestShop(store, ['api', 'worker', 'relay'], undefined, {
        config: { dailySales: { cron: '5 0 * * *', timeZone: 'UTC' } },
      });
      await started.start();
      return started;
    })(),
  ]);
}, 60_000);
afterAll(async () => {
  await browser?.close();
  await shop?.stop();
  await store?.dispose();
  if (profile !== undefined) await rm(profile, { recursive: true, force: true });
});

async function placeOrder(key: string, customerId: string): Promise<void> {
  const response = await fetch(`${shop.server!.address}/v1/orders`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'idempotency-key': key },
    body: JSON.stringify({ customerId, items: [{ sku: 'book-1', quantity: 1 }] }),
  });
  expect(response.status).toBe(202);
}

/** Writes the row of a process other than the shop's, last seen at `lastSeenAt`, beating every minute; returns its id. */
async function otherProcess(
  roles: string[],
  lastSeenAt: number,
  health: Parameters<typeof writeHeartbeat>[1]['health'],
): Promise<string> {
  const id = randomUUID();
  await writeHeartbeat(shop.db, {
    id,
    roles,
    host: 'elsewhere',
    pid: 4242,
    startedAt: lastSeenAt - 600_000,
    lastSeenAt,
    // A minute: the live one stays live however long the test takes.
    heartbeatMs: 60_000,
    breakers: [],
    health,
  });
  return id;
}

/** Resolves once the element `selector` shows exactly `text`; fails after `waitMs`. */
const shows = (page: Page, selector: string, text: string): Promise<void> =>
  page.locator(selector, { hasText: new RegExp(`^${text}$`) }).waitFor({ timeout: waitMs });

/** How opaque the element `selector` shows: its own opacity times each of its ancestors'. */
const shownOpacity = (page: Page, selector: string): Promise<number> =>
  page.locator(selector).evaluate((element) => {
    // The script runs in the page: its DOM, which this project's types leave out.
    interface Shown {
      parentElement: Shown | null;
    }
    const view = globalThis as unknown as { getComputedStyle(e: Shown): { opacity: string } };
    let opacity = 1;
    for (let e: Shown | null = element as Shown; e !== null; e = e.parentElement)
      opacity *= Number(view.getComputedStyle(e).opacity);
    return opacity;
  });

describe('the dashboard in Chromium', () => {
  it.skipIf(skip)(
    `updates live, without a reload, as orders go through the shop${missing}`,
    async () => {
      const page = browser.pages()[0] ?? (await browser.newPage());
      const pageErrors: string[] = [];
      page.on('pageerror', (error) => pageErrors.push(error.message));
      // A resource the CSP blocks, or one that fails to load, shows only here.
      page.on('console', (message) => {
        if (message.type() === 'error') pageErrors.push(message.text());
      });
      let navigations = 0;
      page.on('framenavigated', (frame) => {
        if (frame === page.mainFrame()) navigations++;
      });

      await page.goto(`${shop.server!.address}/dashboard`);
      await page.locator('#status[data-state="live"]').waitFor({ timeout: waitMs });
      await shows(page, '#sagas-COMPLETED', '0');
      await page.locator('#queues tr[data-queue="shop.orders"]').waitFor({ timeout: waitMs });
      // The one process, from its row in the table: live, and the one serving the page.
      const first = `#processes tr[data-process="${shop.heartbeat.id}"]`;
      await shows(page, `${first} td.state`, 'live');
      expect(await page.locator(`${first} td.roles`).textContent()).toMatch(/^api \+ worker \+ relay/);
      expect(await page.locator(`${first} td.roles small`).textContent()).toBe('serves this page');
      expect(await page.locator(`${first} td.pid`).textContent()).toBe(String(process.pid));
      expect(await page.locator('#breakers .empty').isVisible()).toBe(true);
      expect(await page.locator('#latency tr[data-route="POST /v1/orders"]').count()).toBe(0);
      // Its own parts, read live: all of them ok, a count and nothing listed.
      await page.locator(`${first} td.parts .ok`, { hasText: /^\d+ parts ok$/ }).waitFor({ timeout: waitMs });
      expect(await page.locator(`${first} td.parts .part`).count()).toBe(0);

      // A relay elsewhere whose broker refuses it, and a worker that crashed while its database
      // did not answer: their rows as their heartbeats would write them.
      const relay = await otherProcess(['relay'], Date.now(), {
        'process-heartbeat': { status: 'ok' },
        'outbox-relay': {
          status: 'failing',
          dependency: 'broker',
          during: 'publish',
          since: new Date(Date.now() - 42_000).toISOString(),
          failures: 9,
          error: 'ECONNREFUSED',
        },
      });
      const crashed = await otherProcess(['worker'], Date.now() - 600_000, {
        'saga-runner': { status: 'ok' },
        worker: {
          status: 'failing',
          dependency: 'database',
          since: new Date(Date.now() - 615_000).toISOString(),
          failures: 0,
        },
      });
      const failing = `#processes tr[data-process="${relay}"] td.parts[data-known="live"]`;
      await page
        .locator(`${failing} .part[data-part="outbox-relay"][data-status="failing"]`, {
          hasText: /^outbox-relay broker failing since 4\d\.\d s ago ECONNREFUSED$/,
        })
        .waitFor({ timeout: waitMs });
      expect(await page.locator(`${failing} .part`).count()).toBe(1);
      expect(await page.locator(`${failing} .ok`).textContent()).toBe('1 part ok');
      expect(await page.locator(`${failing} .part`).getAttribute('title')).toMatch(
        /^9 failures in a row, during publish, since \S+Z, no answer since it started$/,
      );
      // A stale process's parts are what it said last, and marked so.
      const lastKnown = `#processes tr[data-process="${crashed}"] td.parts[data-known="last"]`;
      await shows(page, `${lastKnown} small.known`, 'last known');
      await page
        .locator(`${lastKnown} .part[data-part="worker"]`, {
          hasText: /^worker database failing since 10 min 1\d s ago$/,
        })
        .waitFor({ timeout: waitMs });

      // Three that go through, and one whose payment is declined and compensated.
      await Promise.all([
        placeOrder('browser-1', 'c-1'),
        placeOrder('browser-2', 'c-2'),
        placeOrder('browser-3', 'c-3'),
        placeOrder('browser-4', 'declined-4'),
      ]);

      await shows(page, '#sagas-COMPLETED', '3');
      await shows(page, '#sagas-COMPENSATED', '1');
      await shows(page, '#sagas-attention', '0');
      await shows(page, '#latency tr[data-route="POST /v1/orders"] td.count', '4');
      // Locators, not waitForFunction: Playwright runs its predicate through eval in the page,
      // which the page's CSP refuses (no 'unsafe-eval'); it failed now and then with an EvalError.
      await page.locator('#outbox-published', { hasText: /^([4-9]|\d{2,})$/ }).waitFor({ timeout: waitMs });
      await shows(page, '#outbox-backlog', '0');
      await shows(page, '#queues tr[data-queue="shop.orders"] td.dead-letters', '0');
      const schedule = '#schedules tr[data-schedule="shop.daily-sales"]';
      await shows(page, `${schedule} td.spec`, 'cron 5 0 \\* \\* \\* UTC');
      await shows(page, `${schedule} td.state`, 'waiting');
      expect(await page.locator(`${schedule} td.next`).textContent()).toMatch(/^in \d/);
      expect(await page.locator(`${schedule} td.by-hand`).textContent()).toBe('—');
      // A run by hand: the worker fires it at once. One of a schedule no process defines stays
      // pending, and the card says so.
      await shop.db.query(
        `INSERT INTO keel_schedules (name, spec, next_tick) VALUES ('reports.retired', 'every 3600000', now() + interval '1 hour')`,
      );
      expect(await triggerSchedule(shop.db, 'shop.daily-sales', Date.now())).toBe(true);
      expect(await triggerSchedule(shop.db, 'reports.retired', Date.now())).toBe(true);
      await page
        .locator(`${schedule} td.by-hand[data-state="fired"]`, { hasText: /^run 1 fired \d/ })
        .waitFor({ timeout: waitMs });
      await page
        .locator('#schedules tr[data-schedule="reports.retired"] td.by-hand[data-state="pending"]', {
          hasText: /^run 1 pending, asked \d/,
        })
        .waitFor({ timeout: waitMs });
      const p99 = await page.locator('#latency tr[data-route="POST /v1/orders"] td.p99').textContent();
      expect(p99).toMatch(/^\d+(\.\d+)? (ms|s)$/);
      expect(navigations).toBe(1);
      expect(pageErrors).toEqual([]);

      // KEEL_DASHBOARD_SCREENSHOT keeps a picture to look at; otherwise it goes with the temp dir.
      const shot = process.env.KEEL_DASHBOARD_SCREENSHOT ?? path.join(profile, 'dashboard.png');
      await page.screenshot({ path: shot, fullPage: true });
      expect((await stat(shot)).size).toBeGreaterThan(10_000);

      // The shop going away is shown, not a frozen page that looks fine; once it is back, on the
      // same address, the page goes on by itself.
      const address = new URL(shop.server!.address);
      await shop.stop();
      await page.locator('#status[data-state="reconnecting"]').waitFor({ timeout: waitMs });
      shop = await openTestShop(store, ['api'], undefined, {
        config: { http: { host: address.hostname, port: Number(address.port) } },
      });
      await shop.start();
      await page.locator('#status[data-state="live"]').waitFor({ timeout: waitMs });
      await shows(page, '#sagas-COMPLETED', '3');
      // The first process said it stopped; the new one is a row of its own.
      await shows(page, `${first} td.state`, 'stopped');
      await shows(page, `#processes tr[data-process="${shop.heartbeat.id}"] td.state`, 'live');
      expect(navigations).toBe(1);
    },
    90_000,
  );

  it.skipIf(skip)(
    `shows its own process and its parts, live, before its row is written and while the database is down${missing}`,
    async () => {
      // A shop of its own, whose database fails on demand, in place of the one before.
      await shop.stop();
      const fault = new DbFault();
      shop = await openTestShop(store, ['api'], undefined, { db: (db) => fault.wrap(db) });
      const page = await browser.newPage();
      const pageErrors: string[] = [];
      page.on('pageerror', (error) => pageErrors.push(error.message));
      const own = `#processes tr[data-process="${shop.heartbeat.id}"]`;

      // Its heartbeat alone cannot write: it starts without its row, and shows all the same,
      // among the rows of the processes before it (stopped), which the table gives.
      await fault.during(
        statementFailed(),
        async () => {
          await shop.start();
          await page.goto(`${shop.server!.address}/dashboard`);
          await page
            .locator(`${own} td.parts .part[data-part="process-heartbeat"][data-status="failing"]`, {
              hasText: /^process-heartbeat database failing since \d+\.\d s ago XX001$/,
            })
            .waitFor({ timeout: waitMs });
          expect(await page.locator(`${own} td.state`).textContent()).toBe('live');
          expect(await page.locator(`${own} td.roles small`).textContent()).toBe('serves this page');
          expect(await page.locator('#processes tr[data-state="stopped"]').count()).toBeGreaterThan(0);
          expect(await page.locator('#processes.unavailable').count()).toBe(0);
        },
        /^\s*INSERT INTO processes/,
      );
      // Its row written: there once, its heartbeat ok.
      await shop.heartbeat.beat();
      await page.locator(`${own} td.parts .ok`, { hasText: /^\d+ parts ok$/ }).waitFor({ timeout: waitMs });
      expect(await page.locator(own).count()).toBe(1);

      await fault.during(databaseUnreachable(), async () => {
        // Its next beat fails now rather than in up to 5 s: the heartbeat is one of its parts.
        await shop.heartbeat.beat();
        await page
          .locator(
            `${own} td.parts[data-known="live"] .part[data-part="process-heartbeat"][data-status="failing"]`,
            {
              hasText: /^process-heartbeat database failing since \d+\.\d s ago KEEL_DB_UNAVAILABLE$/,
            },
          )
          .waitFor({ timeout: waitMs });
        // Its row alone, marked as the one serving the page; the card says the others are unknown.
        expect(await page.locator('#processes tbody tr').count()).toBe(1);
        expect(await page.locator(`${own} td.roles small`).textContent()).toBe('serves this page');
        expect(await page.locator(`${own} td.state`).textContent()).toBe('live');
        expect(await page.locator(`${own} td.pid`).textContent()).toBe(String(process.pid));
        expect(await page.locator('#processes .problem').textContent()).toMatch(
          /^unavailable: other processes' unknown: PostgreSQL at .* is unreachable/,
        );
        expect(await page.locator('#processes.unavailable').count()).toBe(1);
        // Read now, not from the table that failed: it is not dimmed with the card.
        expect(await shownOpacity(page, `${own} td.parts`)).toBe(1);
        expect(await shownOpacity(page, '#processes thead')).toBeLessThan(1);
      });

      // The database back: every row again, from the table.
      await page.locator('#processes tr[data-state="stopped"]').first().waitFor({ timeout: waitMs });
      await page.locator('#processes:not(.unavailable)').waitFor({ timeout: waitMs });
      expect(pageErrors).toEqual([]);
      await page.close();
    },
    60_000,
  );
});
