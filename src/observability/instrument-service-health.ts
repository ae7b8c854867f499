import type { Meter } from '@opentelemetry/api';
import type { ListenerHandle, ServiceHealth } from '../service/index.ts';
import { keelAttributes, metricNames } from './names.ts';

/** Health as a number, for the `keel.service.health` gauge: 0 is good, as for the breaker's. */
export const serviceHealthValue: Readonly<Record<ServiceHealth['status'], number>> = {
  ok: 0,
  failing: 1,
  'not-running': 2,
};

/**
 * The `keel.service.health` gauge by `keel.service`: 0 ok, 1 failing (it runs but does not reach
 * a dependency), 2 not running — read at each collection from `parts()`, e.g. a `ServiceGroup`'s
 * `healthOfParts`. An alert on "1 for five minutes" finds a relay that lost its broker, which
 * neither a restart nor a readiness probe would. Dispose the handle to stop observing.
 */
export function instrumentServiceHealth(
  parts: () => Readonly<Record<string, ServiceHealth>>,
  meter: Meter,
): Disposable & ListenerHandle {
  const gauge = meter.createObservableGauge(metricNames.serviceHealth, {
    description: 'Service health: 0 ok, 1 failing (a dependency does not answer), 2 not running',
  });
  const observe = (result: { observe(value: number, attributes: Record<string, string>): void }): void => {
    for (const [service, health] of Object.entries(parts())) {
      result.observe(serviceHealthValue[health.status], { [keelAttributes.service]: service });
    }
  };
  gauge.addCallback(observe);
  const dispose = (): void => gauge.removeCallback(observe);
  return { dispose, [Symbol.dispose]: dispose };
}
