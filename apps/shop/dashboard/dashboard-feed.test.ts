import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../../src/time/index.ts';
import { DashboardFeed } from './dashboard-feed.ts';
import type { DashboardSnapshot } from './dashboard-snapshot.ts';

/** A build that counts its reads and stamps each snapshot with its number. */
function counting(clock: ManualClock) {
  const counter = {
    reads: 0,
    fail: false,
    build: async (): Promise<DashboardSnapshot> => {
      counter.reads++;
      if (counter.fail) throw new Error('database down');
      return {
        at: new Date(clock.now()).toISOString(),
        queues: [],
        outbox: null,
        sagas: null,
        breakers: [{ name: `read-${counter.reads}`, state: 'closed' }],
        processes: null,
        schedules: null,
        latency: [],
        unavailable: [],
      };
    },
  };
  return counter;
}
const readOf = (snapshot: DashboardSnapshot): string => snapshot.breakers![0]!.name;

describe('DashboardFeed', () => {
  it('sends every subscriber a snapshot at once and one per interval, from one read for all', async () => {
    const clock = new ManualClock();
    const source = counting(clock);
    const feed = new DashboardFeed(source.build, { clock, intervalMs: 1000 });
    const pages: string[][] = [[], [], []];
    const handles = pages.map((page) => feed.subscribe((s) => page.push(readOf(s))));
    await clock.advance(0);
    expect(source.reads).toBe(1);
    expect(pages).toEqual([['read-1'], ['read-1'], ['read-1']]);

    await clock.advance(3000);
    expect(source.reads).toBe(4);
    for (const page of pages) expect(page).toEqual(['read-1', 'read-2', 'read-3', 'read-4']);
    // A JSON caller within the interval gets the cached one: no fifth read.
    expect(readOf(await feed.latest())).toBe('read-4');
    expect(source.reads).toBe(4);

    for (const handle of handles) handle.dispose();
    expect(feed.subscribers).toBe(0);
    expect(clock.pendingTimers).toBe(0);
    await clock.advance(5000);
    expect(source.reads).toBe(4);
  });

  it('reads once for callers that ask at the same time, and again once the cache is an interval old', async () => {
    const clock = new ManualClock();
    const source = counting(clock);
    const feed = new DashboardFeed(source.build, { clock, intervalMs: 1000 });
    const [a, b] = await Promise.all([feed.latest(), feed.latest()]);
    expect(a).toBe(b);
    await clock.advance(999);
    expect(readOf(await feed.latest())).toBe('read-1');
    await clock.advance(1);
    expect(readOf(await feed.latest())).toBe('read-2');
  });

  it('skips a tick whose read failed and goes on ticking', async () => {
    const clock = new ManualClock();
    const source = counting(clock);
    const feed = new DashboardFeed(source.build, { clock, intervalMs: 1000 });
    const seen: string[] = [];
    using _subscription = feed.subscribe((s) => seen.push(readOf(s)));
    await clock.advance(0);
    source.fail = true;
    await clock.advance(1000);
    await expect(feed.latest()).rejects.toThrow('database down');
    source.fail = false;
    await clock.advance(1000);
    expect(seen).toEqual(['read-1', 'read-4']);
  });

  it('runs one timer however often subscribers come and go, and none once closed', async () => {
    const clock = new ManualClock();
    const source = counting(clock);
    const feed = new DashboardFeed(source.build, { clock, intervalMs: 1000 });
    const first = feed.subscribe(() => undefined);
    await clock.advance(1000);
    first.dispose();
    const second = feed.subscribe(() => undefined);
    feed.subscribe(() => undefined);
    expect(clock.pendingTimers).toBe(1);
    await clock.advance(1000);
    expect(clock.pendingTimers).toBe(1);
    second.dispose();
    feed.close();
    expect(feed.subscribers).toBe(0);
    expect(clock.pendingTimers).toBe(0);
    const late: unknown[] = [];
    feed.subscribe((s) => late.push(s));
    await clock.advance(2000);
    expect(late).toEqual([]);
    expect(clock.pendingTimers).toBe(0);
  });
});
