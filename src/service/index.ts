export {
  ServiceBase,
  defaultDrainMs,
  type Service,
  type ServiceState,
  type StopOptions,
  type LifecycleEvents,
} from './service.ts';
export { ServiceGroup } from './service-group.ts';
export {
  HealthRecord,
  reportsHealth,
  type DependencyOptions,
  type ReportsHealth,
  type ServiceHealth,
} from './service-health.ts';
export { healthReport, type ServiceHealthReport } from './health-report.ts';
export { TypedEvents, type Listener, type ListenerHandle } from './typed-events.ts';
export { runUntilSignal, type RunOptions } from './run-until-signal.ts';
export { watchParent, type ParentWatch, type ParentWatchOptions } from './parent-watch.ts';
