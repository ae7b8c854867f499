export {
  defineSchedule,
  type Schedule,
  type ScheduleOptions,
  type ScheduleTick,
  type FireTick,
} from './schedule-definition.ts';
export { Scheduler, type SchedulerOptions, type SchedulerEvents } from './scheduler.ts';
export { scheduleMigrations } from './schema.ts';
export {
  readSchedules,
  pauseSchedule,
  resumeSchedule,
  removeSchedule,
  triggerSchedule,
  triggerScheduleRun,
  type ScheduleRow,
  type TriggeredRun,
} from './schedule-store.ts';
export {
  triggerScheduleAndWait,
  waitForTriggeredRun,
  type TriggeredRunOutcome,
  type WaitForRunOptions,
} from './triggered-run.ts';
