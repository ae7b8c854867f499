import type { Meter } from '@opentelemetry/api';
import type { Scheduler } from '../schedule/index.ts';
import type { ListenerHandle } from '../service/index.ts';
import { keelAttributes, metricNames } from './names.ts';
import { secondsBuckets } from './traced-handler.ts';

/**
 * Metrics for a `Scheduler`, from its events (keel/schedule imports no OpenTelemetry):
 * `keel.schedule.ticks` by schedule and outcome — `fired`, `failed` (an attempt, to be retried),
 * `given_up` (the last attempt failed), `skipped` (a pass over missed ticks, however many) — and
 * `keel.schedule.delay`, how late fired ticks fired. Dispose the handle to detach.
 */
export function instrumentScheduler(scheduler: Scheduler, meter: Meter): Disposable & ListenerHandle {
  const ticks = meter.createCounter(metricNames.scheduleTicks, {
    description: "A schedule's ticks by outcome",
  });
  const delay = meter.createHistogram(metricNames.scheduleDelay, {
    description: 'How long after its tick a fired tick fired',
    unit: 's',
    advice: { explicitBucketBoundaries: [...secondsBuckets] },
  });
  const count = (schedule: string, outcome: string): void =>
    ticks.add(1, { [keelAttributes.schedule]: schedule, [keelAttributes.outcome]: outcome });
  const handles = [
    scheduler.events.on('fired', ({ schedule, tick }) => {
      count(schedule, 'fired');
      if (tick.skippedFrom !== undefined) count(schedule, 'skipped');
      delay.record((tick.firedAt.getTime() - tick.at.getTime()) / 1000, {
        [keelAttributes.schedule]: schedule,
      });
    }),
    scheduler.events.on('skipped', ({ schedule }) => count(schedule, 'skipped')),
    scheduler.events.on('failed', ({ schedule, retryAt }) =>
      count(schedule, retryAt === undefined ? 'given_up' : 'failed'),
    ),
  ];
  const dispose = (): void => {
    for (const handle of handles) handle.dispose();
  };
  return { dispose, [Symbol.dispose]: dispose };
}
