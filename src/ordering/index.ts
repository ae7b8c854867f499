// keel/ordering: logical time. Lamport and vector clocks for causality between events, and a
// hybrid logical clock whose stamps every message envelope carries.
export { LamportClock } from './lamport-clock.ts';
export { VectorClock, type VectorOrder, type VectorClockJson } from './vector-clock.ts';
export {
  HybridLogicalClock,
  defaultMaxDriftMs,
  type HybridLogicalClockOptions,
} from './hybrid-logical-clock.ts';
export {
  formatHlc,
  parseHlc,
  compareHlc,
  assertHlcStamp,
  hlcMaxLogical,
  hlcMaxPhysical,
  hlcNodePattern,
  type HlcStamp,
} from './hlc-stamp.ts';
export { ClockDriftError } from './clock-drift-error.ts';
