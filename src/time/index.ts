export { SystemClock, systemClock, type Clock, type TimerHandle } from './clock.ts';
export { ManualClock, referenceInstant } from './manual-clock.ts';
export { sleep } from './sleep.ts';
export {
  constantBackoff,
  exponentialBackoff,
  type Backoff,
  type ExponentialBackoffOptions,
} from './backoff.ts';
export { fullJitter, equalJitter, decorrelatedJitter, type JitterKind, type Random } from './jitter.ts';
export { uuidv7At } from './uuid-v7.ts';
export { parseDuration } from './duration.ts';
