import { MeterProvider, MetricReader, type ResourceMetrics } from '@opentelemetry/sdk-metrics';
import { afterEach, describe, expect, it } from 'vitest';
import { migrate } from '../db/index.ts';
import { defineSchedule, Scheduler, scheduleMigrations } from '../schedule/index.ts';
import { advanceUntil, createTestDb, type TestDb } from '../testing/index.ts';
import { constantBackoff, ManualClock } from '../time/index.ts';
import { instrumentScheduler } from './instrument-scheduler.ts';

class TestReader extends MetricReader {
  protected async onForceFlush(): Promise<void> {}
  protected async onShutdown(): Promise<void> {}
}

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function points(metrics: ResourceMetrics, name: string): { attributes: object; value: unknown }[] {
  return metrics.scopeMetrics
    .flatMap((s) => s.metrics)
    .filter((m) => m.descriptor.name === name)
    .flatMap((m) => m.dataPoints.map((p) => ({ attributes: p.attributes, value: p.value })));
}

describe('instrumentScheduler', () => {
  it('counts ticks by schedule and outcome and records how late fired ticks fired', async () => {
    const db: TestDb = await createTestDb();
    cleanups.push(() => db.close());
    await migrate(db, scheduleMigrations);
    const clock = new ManualClock(Date.parse('2026-06-01T00:00:00Z'));
    let calls = 0;
    const schedule = defineSchedule({
      name: 'report',
      everyMs: 60_000,
      maxAttempts: 2,
      backoff: constantBackoff(5000),
      // Tick 1: fails twice (a failure, then given up). Tick 2: fires.
      fire: async () => {
        calls += 1;
        if (calls <= 2) throw new Error('report store down');
      },
    });
    const scheduler = new Scheduler(db, { schedules: [schedule], clock });
    cleanups.push(() => scheduler.stop());
    const reader = new TestReader();
    const meter = new MeterProvider({ readers: [reader] }).getMeter('t');
    using _ = instrumentScheduler(scheduler, meter);
    await scheduler.start();
    await advanceUntil(clock, scheduler.events.once('fired'), { stepMs: 1000 });
    const { resourceMetrics } = await reader.collect();
    const ticks = points(resourceMetrics, 'keel.schedule.ticks');
    expect(ticks).toEqual(
      expect.arrayContaining([
        { attributes: { 'keel.schedule.name': 'report', 'keel.outcome': 'failed' }, value: 1 },
        { attributes: { 'keel.schedule.name': 'report', 'keel.outcome': 'given_up' }, value: 1 },
        { attributes: { 'keel.schedule.name': 'report', 'keel.outcome': 'fired' }, value: 1 },
      ]),
    );
    expect(ticks).toHaveLength(3);
    const [delay] = points(resourceMetrics, 'keel.schedule.delay');
    expect(delay).toMatchObject({ attributes: { 'keel.schedule.name': 'report' }, value: { count: 1 } });
    // Fired within the clock's step of its tick.
    expect((delay!.value as { sum: number }).sum).toBeLessThanOrEqual(1);
  });
});
