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
  type ScheduleRow,
} from './schedule-store.ts';
