import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../../src/time/index.ts';
import { RouteLatency } from './route-latency.ts';

describe('RouteLatency', () => {
  it('gives p50, p95 and p99 within one bucket (±2.5 %) and the rate per route, busiest first', async () => {
    const clock = new ManualClock();
    const latency = new RouteLatency({ clock, windowMs: 60_000, slices: 12 });
    await clock.advance(10_000);
    // 1..100 ms, one of each: nearest-rank p50 = 50, p95 = 95, p99 = 99.
    for (let ms = 1; ms <= 100; ms++) latency.record('POST /v1/orders', ms);
    latency.record('GET /v1/orders/:id', 3);
    latency.record('GET /v1/orders/:id', 3);

    const [orders, reads, ...rest] = latency.stats();
    expect(rest).toEqual([]);
    expect(orders).toMatchObject({ route: 'POST /v1/orders', count: 100 });
    expect(orders!.p50Ms).toBeGreaterThan(50 / 1.05);
    expect(orders!.p50Ms).toBeLessThan(50 * 1.05);
    expect(orders!.p95Ms).toBeGreaterThan(95 / 1.05);
    expect(orders!.p95Ms).toBeLessThan(95 * 1.05);
    expect(orders!.p99Ms).toBeGreaterThan(99 / 1.05);
    expect(orders!.p99Ms).toBeLessThanOrEqual(100);
    // Running for 10 s, not the whole minute yet: 100 requests are 10 a second.
    expect(orders!.perSecond).toBeCloseTo(10, 6);
    // Every duration equal: the percentiles are that duration exactly, not a bucket's middle.
    expect(reads).toEqual({
      route: 'GET /v1/orders/:id',
      count: 2,
      perSecond: 0.2,
      p50Ms: 3,
      p95Ms: 3,
      p99Ms: 3,
    });
  });

  it('forgets requests once they are older than the window, a slice at a time', async () => {
    const clock = new ManualClock();
    const latency = new RouteLatency({ clock, windowMs: 60_000, slices: 12 });
    latency.record('POST /v1/orders', 500);
    await clock.advance(30_000);
    latency.record('POST /v1/orders', 5);
    expect(latency.stats()[0]).toMatchObject({ count: 2, p99Ms: 500 });
    expect(latency.stats()[0]!.perSecond).toBeCloseTo(2 / 30, 6);

    // The slow one's slice leaves the window; the fast one stays.
    await clock.advance(30_000);
    expect(latency.stats()[0]).toMatchObject({ count: 1, p50Ms: 5, p99Ms: 5 });
    // The rate is over the time the window's slices cover: 11 whole ones and the current, just begun.
    expect(latency.stats()[0]!.perSecond).toBeCloseTo(1 / 55, 6);

    await clock.advance(30_000);
    expect(latency.stats()).toEqual([]);
    // Its ring is reused from then on: the old counts are gone, not added to.
    latency.record('POST /v1/orders', 7);
    expect(latency.stats()[0]).toMatchObject({ count: 1, p50Ms: 7, p99Ms: 7 });
  });

  it('keeps durations below and above its buckets, and ignores ones that are not durations', () => {
    const latency = new RouteLatency({ clock: new ManualClock() });
    latency.record('GET /a', 0);
    latency.record('GET /b', 3_600_000);
    latency.record('GET /c', Number.NaN);
    latency.record('GET /c', -1);
    const stats = latency.stats();
    expect(stats.map((s) => [s.route, s.p50Ms])).toEqual([
      ['GET /a', 0],
      ['GET /b', 3_600_000],
    ]);
  });

  it('names the option that is wrong', () => {
    const clock = new ManualClock();
    expect(() => new RouteLatency({ clock, slices: 0 })).toThrow(/slices/);
    expect(() => new RouteLatency({ clock, windowMs: 5, slices: 12 })).toThrow(/windowMs/);
  });
});
