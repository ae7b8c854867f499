import type { Meter } from '@opentelemetry/api';
import type { QueueConsumer } from '../messaging/index.ts';
import type { ListenerHandle } from '../service/index.ts';
import { messagingAttributes as m, metricNames } from './names.ts';

/**
 * Counts what a consumer does with messages, from its events: `keel.consumer.handled`,
 * `keel.consumer.retried` and `keel.consumer.dead_lettered`, by destination. Handler duration
 * is measured by the interceptor (`tracedHandler(handler, { meter })`), around the handler
 * itself. Dispose the handle to detach.
 */
export function instrumentConsumer(
  consumer: QueueConsumer,
  meter: Meter,
  destination: string,
): Disposable & ListenerHandle {
  const attributes = { [m.destinationName]: destination };
  const handled = meter.createCounter(metricNames.consumerHandled, {
    description: 'Messages whose handler resolved (acked next)',
  });
  const retried = meter.createCounter(metricNames.consumerRetried, {
    description: 'Deliveries that failed and were scheduled again',
  });
  const deadLettered = meter.createCounter(metricNames.consumerDeadLettered, {
    description: 'Messages given up on: moved to the dead-letter destination',
  });
  const handles = [
    consumer.events.on('handled', () => handled.add(1, attributes)),
    consumer.events.on('retried', () => retried.add(1, attributes)),
    consumer.events.on('dead-lettered', () => deadLettered.add(1, attributes)),
  ];
  const dispose = (): void => {
    for (const handle of handles) handle.dispose();
  };
  return { dispose, [Symbol.dispose]: dispose };
}
