import type { Logger } from 'pino';
import type { Db } from '../../../src/db/index.ts';
import { Scheduler } from '../../../src/schedule/index.ts';
import type { Clock } from '../../../src/time/index.ts';
import { dailySalesSchedule, type DailySalesConfig } from './daily-sales.ts';

/** The worker's scheduler: every worker runs one, and each day is closed by one of them. */
export function dailySalesScheduler(
  db: Db,
  config: DailySalesConfig,
  clock: Clock,
  logger: Logger,
): Scheduler {
  const scheduler = new Scheduler(db, { schedules: [dailySalesSchedule(config)], clock, name: 'schedules' });
  scheduler.events.on('fired', ({ schedule, tick }) =>
    logger.info({ schedule, tick: tick.at.toISOString(), skippedFrom: tick.skippedFrom }, 'schedule fired'),
  );
  scheduler.events.on('failed', ({ schedule, tick, error, retryAt }) =>
    logger.warn(
      { err: error, schedule, tick: tick.at.toISOString(), attempt: tick.attempt, retryAt },
      retryAt === undefined ? 'schedule gave a tick up' : 'schedule tick failed',
    ),
  );
  scheduler.events.on('conflict', ({ schedule, ours, stored }) =>
    logger.warn(
      { schedule, ours, stored },
      'schedule defined differently by another process: not fired here',
    ),
  );
  scheduler.events.on('error', ({ error, during }) => logger.warn({ err: error, during }, 'scheduler error'));
  return scheduler;
}
