import type { Meter } from '@opentelemetry/api';
import type { QueueConsumer } from '../messaging/index.ts';
import type { ListenerHandle } from '../service/index.ts';
import { messagingAttributes as m, metricNames } from './names.ts';
import { observableTotals } from './observable-totals.ts';

/**
 * Counts what a consumer does with messages, from its events: `keel.consumer.handled`,
 * `keel.consumer.retried` and `keel.consumer.dead_lettered`, by destination. Handler duration
 * is measured by the interceptor (`tracedHandler(handler, { meter })`), around the handler
 * itself. Dispose the handle to detach; what was counted until then stays in the totals.
 *
 * A message costs one integer increment: the counters are observable over running totals
 * (`observableTotals`). Consumers of one destination instrumented on one meter share its totals.
 */
export function instrumentConsumer(
  consumer: QueueConsumer,
  meter: Meter,
  destination: string,
): Disposable & ListenerHandle {
  const totals = consumerTotals(meter).of(destination);
  const handles = [
    consumer.events.on('handled', () => totals.handled++),
    consumer.events.on('retried', () => totals.retried++),
    consumer.events.on('dead-lettered', () => totals.deadLettered++),
  ];
  const dispose = (): void => {
    for (const handle of handles) handle.dispose();
  };
  return { dispose, [Symbol.dispose]: dispose };
}

/** The consumer counters, by destination. */
function consumerTotals(meter: Meter) {
  return observableTotals(meter, m.destinationName, {
    handled: {
      name: metricNames.consumerHandled,
      description: 'Messages whose handler resolved (acked next)',
    },
    retried: {
      name: metricNames.consumerRetried,
      description: 'Deliveries that failed and were scheduled again',
    },
    deadLettered: {
      name: metricNames.consumerDeadLettered,
      description: 'Messages given up on: moved to the dead-letter destination',
    },
  });
}
