import { monitorEventLoopDelay } from 'node:perf_hooks';
import type { Meter } from '@opentelemetry/api';
import type { ListenerHandle } from '../service/index.ts';
import { metricNames } from './names.ts';

/**
 * Process health read at each collection: `nodejs.eventloop.delay.p99` and `.max` (s) since the
 * previous collection (the histogram is reset each time, so a stall shows in the next scrape
 * only), and `v8js.memory.heap.used` (bytes). Names from the OpenTelemetry runtime conventions.
 * Dispose to stop the event-loop monitor.
 */
export function instrumentRuntime(meter: Meter, options: { resolutionMs?: number } = {}): ListenerHandle {
  const monitor = monitorEventLoopDelay({ resolution: options.resolutionMs ?? 20 });
  monitor.enable();
  const p99 = meter.createObservableGauge(metricNames.eventLoopDelayP99, {
    description: 'Event-loop delay, 99th percentile since the previous collection',
    unit: 's',
  });
  const max = meter.createObservableGauge(metricNames.eventLoopDelayMax, {
    description: 'Event-loop delay, maximum since the previous collection',
    unit: 's',
  });
  const heap = meter.createObservableGauge(metricNames.heapUsed, { description: 'V8 heap used', unit: 'By' });
  const callback = (result: { observe: (gauge: typeof heap, value: number) => void }): void => {
    // Nanoseconds; 0 before the first sample rather than the monitor's initial 9.2e18 maximum.
    const count = monitor.count;
    result.observe(p99, count === 0 ? 0 : monitor.percentile(99) / 1e9);
    result.observe(max, count === 0 ? 0 : monitor.max / 1e9);
    result.observe(heap, process.memoryUsage().heapUsed);
    monitor.reset();
  };
  meter.addBatchObservableCallback(callback, [p99, max, heap]);
  const dispose = (): void => {
    meter.removeBatchObservableCallback(callback, [p99, max, heap]);
    monitor.disable();
  };
  return { dispose, [Symbol.dispose]: dispose };
}
