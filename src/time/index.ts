export { SystemClock, systemClock, type Clock, type TimerHandle } from './clock.ts';
export { ManualClock, referenceInstant } from './manual-clock.ts';
export { sleep } from './sleep.ts';
